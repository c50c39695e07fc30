#!/usr/bin/env bash
# `make test-slurm` (#16): the demo workflow through a real SLURM 22.05 scheduler with the
# project's own profile, workflow/profiles/slurm. Needs root (it installs Debian's slurm, munge
# and MariaDB packages when missing and starts a one-node cluster on loopback:
# tests/slurm/cluster.sh). What it checks:
#   1. a profile asking for more CPUs than the node has stops before submitting anything;
#   2. the demo's three segment jobs run as SLURM jobs, and sacct shows each COMPLETED with the
#      CPUs, memory, time, partition and gres/gpu=1 the profile asked for;
#   3. every output meets the instance-table contract; `snakemake summary` lists every slide.
# The CI overlay is environment variables only (NUCLICK_SLURM_*: the partitions of this cluster
# and the node's CPU count; its fake GPU is declared by cluster.sh); the profile and rules are
# what users get. Two test-speed flags shorten the plugin's status polling.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
REPO=$PWD
PYTHON=${PYTHON:-python3}
VENV=$REPO/.venv-slurm
CLUSTER=$(mktemp -d /tmp/nuclick-slurm.XXXXXX)
WORK=$CLUSTER/work
t0=$(date +%s)

cleanup() { tests/slurm/cluster.sh stop "$CLUSTER" || true; }
trap cleanup EXIT

# The executor plugin stays out of .venv: with it installed, every snakemake start queries
# sacct/scontrol, which hang for seconds where SLURM's clients exist but no cluster runs (as here
# after this test), and that would slow every later `make test`. .venv-slurm is .venv (its
# site-packages added by a .pth file, so nothing is installed twice) plus the plugin.
BASE=$REPO/.venv
[ -x "$BASE/bin/nuclick" ] || { echo "FAIL: $BASE has no nuclick; run make test first"; exit 1; }
if [ ! -f "$VENV/.installed" ] || [ "$BASE/.installed-run" -nt "$VENV/.installed" ]; then
	rm -rf "$VENV"
	"$PYTHON" -m venv "$VENV"
	purelib() { "$1" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'; }
	echo "import site; site.addsitedir('$(purelib "$BASE/bin/python")')" >"$(purelib "$VENV/bin/python")/nuclick-base.pth"
	"$VENV/bin/python" -m pip install -q 'snakemake-executor-plugin-slurm>=2.8,<3'
	touch "$VENV/.installed"
fi

eval "$(timeout -s KILL 300 tests/slurm/cluster.sh start "$CLUSTER")"
echo "cluster up after $(($(date +%s) - t0)) s"

# The demo's working directory: its config and sample sheet, a fresh results/ and logs/.
mkdir -p "$WORK"
ln -s "$REPO/config" "$WORK/config"
export PATH="$VENV/bin:$BASE/bin:$PATH" OMP_NUM_THREADS=1
export NUCLICK_SLURM_CPU_PARTITION=cpu NUCLICK_SLURM_GPU_PARTITION=gpu
cpus=$(sinfo --noheader --Node --format=%c | head -n 1)
mem=$(sinfo --noheader --Node --format=%m | head -n 1)
smk=("$VENV/bin/python" -m snakemake --snakefile "$REPO/Snakefile" --directory "$WORK" --profile "$REPO/workflow/profiles/slurm"
	--slurm-init-seconds-before-status-checks 2 --seconds-between-status-checks 2 --latency-wait 5)

# 1. The PENDING-forever trap: more CPUs than the node has stops before any submission.
before=$(sacct --noheader -X -P --starttime=now-1hour --format=JobID | wc -l)
if NUCLICK_SLURM_SEGMENT_CPUS=$((cpus * 8)) timeout -s KILL 120 "${smk[@]}" >"$CLUSTER/trap.log" 2>&1; then
	echo "FAIL: a request for $((cpus * 8)) CPUs on a $cpus-CPU node was submitted"
	exit 1
fi
grep -q "asks partition gpu for $((cpus * 8)) CPUs but its largest node has $cpus" "$CLUSTER/trap.log" || {
	cat "$CLUSTER/trap.log"
	echo "FAIL: the over-sized request was not named"
	exit 1
}
after=$(sacct --noheader -X -P --starttime=now-1hour --format=JobID | wc -l)
[ "$before" = "$after" ] || { echo "FAIL: jobs were submitted ($before -> $after)"; exit 1; }
echo "ok: an over-sized request stops before submission: $(grep -o 'rule segment asks[^:]*' "$CLUSTER/trap.log" | head -n 1)"

# 2. The demo through SLURM. Memory: the profile's 16000 MB unless the node has less.
if [ "$mem" -lt 16000 ]; then export NUCLICK_SLURM_SEGMENT_MEM_MB=$((mem - 500)); fi
export NUCLICK_SLURM_SEGMENT_CPUS=$cpus
t1=$(date +%s)
timeout -s KILL 900 "${smk[@]}" >"$CLUSTER/run.log" 2>&1 || {
	tail -n 60 "$CLUSTER/run.log"
	for f in "$WORK"/logs/segment/*.log; do echo "--- $f"; tail -n 20 "$f"; done
	echo "FAIL: the workflow did not complete through SLURM"
	exit 1
}
echo "demo through SLURM in $(($(date +%s) - t1)) s"
timeout -s KILL 120 "${smk[@]}" summary >"$CLUSTER/summary.log" 2>&1 || {
	tail -n 30 "$CLUSTER/summary.log"
	exit 1
}

# 3. sacct, the outputs' contract and the summary.
sacct --noheader -X -P --starttime=now-1hour \
	--format=JobID,JobName%40,Comment%60,Partition,State,ExitCode,ReqCPUS,ReqMem,Timelimit,AllocTRES%80 \
	>"$CLUSTER/sacct.txt"
"$VENV/bin/python" tests/slurm/check_run.py --sacct "$CLUSTER/sacct.txt" --work "$WORK" \
	--cpus "$cpus" --mem-mb "${NUCLICK_SLURM_SEGMENT_MEM_MB:-16000}" --minutes 240
echo "make test-slurm passed in $(($(date +%s) - t0)) s"
