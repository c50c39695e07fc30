#!/usr/bin/env bash
# A throw-away one-node SLURM 22.05 cluster (Debian bookworm packages) on loopback, with
# accounting (slurmdbd + MariaDB), for tests that submit Snakemake jobs through
# snakemake-executor-plugin-slurm and check them with sacct. Needs root (CI: fresh Debian 12
# container, no systemd).
#
#   tests/slurm/cluster.sh start DIR   # progress on stderr; `export ...` lines on stdout
#   tests/slurm/cluster.sh stop DIR    # idempotent; fine after a failed start (use it in a trap)
#
#   trap 'tests/slurm/cluster.sh stop /tmp/slurm' EXIT
#   eval "$(tests/slurm/cluster.sh start /tmp/slurm)"     # or later: . /tmp/slurm/env.sh
#
# Design
# - Everything lives under DIR: slurm.conf, slurmdbd.conf, gres.conf, an empty plugstack.conf,
#   the munge key, state/spool dirs, logs/, run/ (sockets, the daemons' own PID files), pids/
#   (the PIDs this script recorded; `stop` kills exactly those, after checking the process
#   name), the MariaDB datadir and env.sh. `start` on a DIR it made before stops that cluster and
#   wipes DIR first; it refuses any other non-empty DIR.
# - munged: own key and socket (slurm.conf/slurmdbd.conf `AuthInfo=socket=DIR/run/munge.sock`).
#   MariaDB: datadir made by mariadb-install-db, run as root (--user=root), TCP on 127.0.0.1 only,
#   socket in DIR. Every daemon runs in the foreground under setsid (immune to the caller's
#   Ctrl-C / process group), stdio to DIR/log, its PID recorded at launch.
# - Node: this host's short name with NodeAddr=127.0.0.1, CPUs=nproc as 1 socket x nproc cores
#   x 1 thread and RealMemory = 90% of the available memory (cgroup limit included), with
#   SlurmdParameters=config_overrides so that a host whose real topology differs (hyperthreads,
#   cpusets) is not drained. No cgroups: proctrack/linuxproc, task/none, jobacct_gather/linux,
#   select/cons_tres + CR_Core_Memory (DefMemPerCPU = RealMemory/CPUs, so jobs without --mem
#   do not take the whole node). Partitions `cpu` (default) and `gpu`, same node. Gres=gpu:1 is
#   a fake character device DIR/fakegpu0 (mknod c 1 3, i.e. /dev/null's numbers; a symlink to
#   /dev/null if mknod is not allowed); AccountingStorageTRES=gres/gpu so sacct's AllocTRES
#   shows gres/gpu=1.
# - Ports (override with SLURMCI_PORT_BASE, default 16817): slurmctld BASE, slurmd BASE+1,
#   slurmdbd BASE+2, MariaDB BASE+3. MariaDB listens on 127.0.0.1 only; the Slurm daemons
#   listen on all addresses of their port (22.05 has no bind-address setting), but every
#   address in the config is 127.0.0.1.
#
# The trap: snakemake-executor-plugin-slurm-jobstep (0.6.1) runs, inside the job, `srun` with an
# environment without SLURM_* (it keeps only SLURM_JOB_ID/JOBID, SLURM_ARRAY_*, SLURM_CLUSTER_NAME,
# SLURM_SUBMIT_DIR/HOST) and without SRUN_*/SBATCH_*. SLURM_CONF goes too, so a cluster known
# only through SLURM_CONF fails there with "Could not establish a configuration source".
# 22.05's clients look for SLURM_CONF, then /etc/slurm/slurm.conf, then /run/slurm/conf/slurm.conf
# (the cache a *configless* slurmd links there), then DNS SRV records. Configless would not keep
# /etc clean for free: before slurmd has its config it must authenticate to slurmctld through
# munge's DEFAULT socket (/run/munge/munge.socket.2), and it writes /run/slurm/conf itself. So
# this script creates /etc/slurm/slurm.conf as a symlink to DIR/slurm.conf, only when no such
# file exists (a dangling symlink left by a killed run counts as absent); the directory
# /etc/slurm too if missing. What it creates is listed in DIR/outside.list and `stop` removes
# exactly that. `start` checks it with a job that runs srun with the plugin's environment.
#
# Packages are installed with apt-get when missing (service start-up during the install is held
# off with a temporary /usr/sbin/policy-rc.d when the image has none). Every external command
# that could hang runs under `timeout -s KILL`.
set -euo pipefail
umask 022
PATH=$PATH:/usr/sbin:/sbin

PKGS=(slurmctld slurmd slurm-client slurmdbd munge mariadb-server slurm-wlm-mysql-plugin)
PORT_BASE=${SLURMCI_PORT_BASE:-16817}
PORT_CTLD=$PORT_BASE
PORT_SLURMD=$((PORT_BASE + 1))
PORT_DBD=$((PORT_BASE + 2))
PORT_MYSQL=$((PORT_BASE + 3))
CLUSTER=${SLURMCI_CLUSTER:-ci}
ACCOUNT=${SLURMCI_ACCOUNT:-ci}
DB_USER=slurm
DB_PASS=slurmci
ETC_CONF=/etc/slurm/slurm.conf
# Daemons in start order; `stop` goes backwards. name:process-name (as in /proc/PID/comm).
DAEMONS=(munged:munged mariadb:mariadbd slurmdbd:slurmdbd slurmctld:slurmctld slurmd:slurmd)

log() { printf '[cluster.sh %s] %s\n' "$(date +%T)" "$*" >&2; }
die() {
	log "ERROR: $*"
	exit 1
}
# t SECONDS CMD...: run CMD, killed after SECONDS.
t() {
	local secs=$1
	shift
	timeout -s KILL "$secs" "$@"
}

usage() {
	echo "usage: $0 start|stop DIR" >&2
	exit 2
}

set_paths() {
	D=$(realpath -m -- "$1")
	CONF=$D/slurm.conf
	RUN=$D/run
	PIDS=$D/pids
	LOGS=$D/log
	JOBS=$D/jobs
	MARKER=$D/.slurm-test-cluster
	OUTSIDE=$D/outside.list
	MUNGE_SOCK=$RUN/munge.sock
	MYSQL_SOCK=$RUN/mysql.sock
	NODE=$(uname -n)
	NODE=${NODE%%.*}
}

# --- processes ------------------------------------------------------------------------------

# alive PID COMM: PID exists, is not a zombie, and is called COMM.
alive() {
	local pid=$1 comm=$2 stat
	[[ $pid =~ ^[0-9]+$ ]] || return 1
	[[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$comm" ]] || return 1
	stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
	stat=${stat##*) }
	[[ ${stat%% *} != Z ]]
}

comm_of() {
	local d
	for d in "${DAEMONS[@]}"; do
		[[ ${d%%:*} == "$1" ]] && echo "${d#*:}" && return 0
	done
	return 1
}

recorded_alive() {
	local f=$PIDS/$1.pid
	[[ -f $f ]] && alive "$(cat "$f")" "$(comm_of "$1")"
}

# launch NAME CMD...: start CMD in the background in its own session, record its PID.
launch() {
	local name=$1
	shift
	setsid "$@" </dev/null >>"$LOGS/$name.out" 2>&1 &
	echo $! >"$PIDS/$name.pid"
}

# gone PID COMM TRIES: whether the process ends within TRIES x 0.2 s.
gone() {
	local i
	for ((i = 0; i < $3; i++)); do
		alive "$1" "$2" || return 0
		sleep 0.2
	done
	return 1
}

# stop_pid PID COMM: TERM, wait up to 20 s, then KILL (and wait up to 5 s).
stop_pid() {
	local pid=$1 comm=$2
	alive "$pid" "$comm" || return 0
	kill -TERM "$pid" 2>/dev/null || true
	gone "$pid" "$comm" 100 && return 0
	log "$comm ($pid) still alive after TERM; KILL"
	kill -KILL "$pid" 2>/dev/null || true
	gone "$pid" "$comm" 25 && return 0
	log "WARNING: $comm ($pid) survived KILL"
}

# wait_for DESC SECONDS DAEMON CMD...: poll CMD until it succeeds; fail early if DAEMON died.
wait_for() {
	local desc=$1 secs=$2 name=$3 deadline
	shift 3
	deadline=$((SECONDS + secs))
	until "$@" >/dev/null 2>&1; do
		recorded_alive "$name" || die "$desc: $name exited (see $LOGS/$name.log, $LOGS/$name.out)"
		((SECONDS < deadline)) || die "$desc: not ready after ${secs}s (see $LOGS/$name.log)"
		sleep 0.2
	done
}

dump_logs() {
	local f
	for f in "$LOGS"/*; do
		[[ -s $f ]] || continue
		echo "----- $f (last 25 lines)" >&2
		tail -n 25 "$f" >&2 || true
	done
}

# --- checks used while waiting -----------------------------------------------------------------

munge_ok() { t 5 munge -n -S "$MUNGE_SOCK" | t 5 unmunge -S "$MUNGE_SOCK"; }
mysql_ok() { t 5 mariadb-admin --no-defaults --socket="$MYSQL_SOCK" -uroot --connect-timeout=2 ping; }
dbd_ok() { t 10 sacctmgr -n -P list cluster format=cluster; }
ctld_ok() { t 5 scontrol ping | grep -q 'is UP'; }
node_ok() { [[ $(t 5 sinfo -h -N -n "$NODE" -o %T | sort -u) == idle ]]; }
port_free() { ! t 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }

# --- start ------------------------------------------------------------------------------------

ensure_packages() {
	local p missing=() made_policy=""
	for p in "${PKGS[@]}"; do
		[[ $(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null) == installed ]] || missing+=("$p")
	done
	((${#missing[@]})) || return 0
	log "installing ${missing[*]}"
	if [[ ! -e /usr/sbin/policy-rc.d ]]; then
		# Keep the packages' postinst scripts from starting the system-wide daemons.
		printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
		chmod 755 /usr/sbin/policy-rc.d
		made_policy=1
	fi
	local rc=0
	{
		install_pkgs "${missing[@]}" || {
			t 600 apt-get update -q >&2 && install_pkgs "${missing[@]}"
		}
	} || rc=$?
	[[ -z $made_policy ]] || rm -f /usr/sbin/policy-rc.d
	((rc == 0)) || die "apt-get install ${missing[*]} failed"
}

install_pkgs() {
	DEBIAN_FRONTEND=noninteractive t 1200 apt-get install -y -q --no-install-recommends "$@" >&2
}

# RealMemory: 90% of MemAvailable, or of what the cgroup limit leaves, whichever is lower.
real_memory_mb() {
	local avail max cur
	avail=$(awk '/^MemAvailable:/ {print int($2 / 1024)}' /proc/meminfo)
	if [[ -r /sys/fs/cgroup/memory.max ]]; then
		max=$(cat /sys/fs/cgroup/memory.max)
		cur=$(cat /sys/fs/cgroup/memory.current 2>/dev/null || echo 0)
	elif [[ -r /sys/fs/cgroup/memory/memory.limit_in_bytes ]]; then
		max=$(cat /sys/fs/cgroup/memory/memory.limit_in_bytes)
		cur=$(cat /sys/fs/cgroup/memory/memory.usage_in_bytes 2>/dev/null || echo 0)
	fi
	if [[ ${max:-max} =~ ^[0-9]+$ ]] && ((max < 1 << 50)); then
		local cg=$(((max - cur) / 1048576))
		((cg < avail)) && avail=$cg
	fi
	echo $((avail * 9 / 10))
}

write_configs() {
	local cpus mem
	cpus=$(nproc)
	mem=$(real_memory_mb)
	((mem >= 256)) || die "only ${mem} MB of memory for the node"

	cat >"$CONF" <<EOF
# Generated by tests/slurm/cluster.sh: a one-node test cluster under $D
ClusterName=$CLUSTER
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$PORT_CTLD
SlurmdPort=$PORT_SLURMD
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCK
CredType=cred/munge
MpiDefault=none
SwitchType=switch/none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=10
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=$((mem / cpus))
GresTypes=gpu
SlurmdParameters=config_overrides
SchedulerType=sched/backfill
# Schedule batch jobs at submit time (default: up to 3 s later); a test cluster wants latency low.
SchedulerParameters=batch_sched_delay=0
PriorityType=priority/basic
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$PORT_DBD
# For accounting_storage/slurmdbd this is the munge socket (AuthInfo is not used for slurmdbd).
AccountingStoragePass=$MUNGE_SOCK
AccountingStorageTRES=gres/gpu
# sacct shows the job comment, where the Snakemake plugin names the rule and wildcards.
AccountingStoreFlags=job_comment
JobCompType=jobcomp/none
StateSaveLocation=$D/state/slurmctld
SlurmdSpoolDir=$D/state/slurmd
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.pid
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
PlugStackConfig=$D/plugstack.conf
MailProg=/bin/true
ReturnToService=2
MinJobAge=300
KillWait=5
Waittime=0
InactiveLimit=0
MessageTimeout=10
BatchStartTimeout=30
SlurmctldTimeout=120
SlurmdTimeout=300
UnkillableStepTimeout=30
NodeName=$NODE NodeAddr=127.0.0.1 NodeHostname=$NODE CPUs=$cpus Boards=1 SocketsPerBoard=1 CoresPerSocket=$cpus ThreadsPerCore=1 RealMemory=$mem Gres=gpu:1 State=UNKNOWN
PartitionName=cpu Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=$NODE Default=NO MaxTime=INFINITE State=UP
EOF

	cat >"$D/gres.conf" <<EOF
AutoDetect=off
NodeName=$NODE Name=gpu File=$D/fakegpu0
EOF
	: >"$D/plugstack.conf"

	# slurmdbd reads slurmdbd.conf next to SLURM_CONF; it must be 0600 and owned by SlurmUser.
	(
		umask 077
		cat >"$D/slurmdbd.conf" <<EOF
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCK
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=$PORT_DBD
SlurmUser=root
DebugLevel=info
LogFile=$LOGS/slurmdbd.log
PidFile=$RUN/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$PORT_MYSQL
StorageUser=$DB_USER
StoragePass=$DB_PASS
StorageLoc=slurm_acct_db
EOF
	)
	log "node $NODE: CPUs=$cpus RealMemory=${mem}MB Gres=gpu:1 ($D/fakegpu0)"
}

# Create /etc/slurm/slurm.conf -> DIR/slurm.conf for commands run without SLURM_CONF (see top).
link_etc_conf() {
	if [[ -L $ETC_CONF && ! -e $ETC_CONF ]]; then
		log "replacing dangling symlink $ETC_CONF -> $(readlink "$ETC_CONF")"
		rm -f "$ETC_CONF"
	fi
	if [[ -e $ETC_CONF || -L $ETC_CONF ]]; then
		die "$ETC_CONF exists; in-job commands without SLURM_CONF would read it instead of $CONF. Remove it (or stop the cluster it belongs to) first"
	fi
	if [[ ! -d /etc/slurm ]]; then
		mkdir /etc/slurm
		echo "dir /etc/slurm" >>"$OUTSIDE"
	fi
	ln -s "$CONF" "$ETC_CONF"
	echo "symlink $ETC_CONF $CONF" >>"$OUTSIDE"
}

start_munge() {
	dd if=/dev/urandom of="$D/munge.key" bs=1024 count=1 status=none
	chmod 400 "$D/munge.key"
	launch munged munged --foreground --force --socket="$MUNGE_SOCK" --key-file="$D/munge.key" \
		--pid-file="$RUN/munged.pid" --log-file="$LOGS/munged.log" \
		--seed-file="$D/state/munge/munged.seed"
	wait_for munged 15 munged munge_ok
}

start_mariadb() {
	local opts=(--innodb-buffer-pool-size=256M --innodb-log-file-size=64M
		--innodb-lock-wait-timeout=900 --innodb-flush-log-at-trx-commit=0
		--innodb-flush-method=fsync --innodb-doublewrite=0)
	t 120 mariadb-install-db --no-defaults --user=root --datadir="$D/mysql" --skip-test-db \
		--auth-root-authentication-method=socket --skip-name-resolve "${opts[@]}" \
		>"$LOGS/mariadb-install-db.log" 2>&1 ||
		die "mariadb-install-db failed (see $LOGS/mariadb-install-db.log)"
	launch mariadb mariadbd --no-defaults --user=root --datadir="$D/mysql" \
		--socket="$MYSQL_SOCK" --port="$PORT_MYSQL" --bind-address=127.0.0.1 --skip-name-resolve \
		--pid-file="$RUN/mariadbd.pid" --log-error="$LOGS/mariadb.log" --tmpdir="$D/tmp" \
		--performance-schema=0 --max-connections=100 "${opts[@]}"
	wait_for mariadb 60 mariadb mysql_ok
	t 20 mariadb --no-defaults --socket="$MYSQL_SOCK" -uroot -e "
		CREATE USER '$DB_USER'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
		GRANT ALL PRIVILEGES ON *.* TO '$DB_USER'@'127.0.0.1';" ||
		die "could not create the MariaDB user for slurmdbd"
}

register_accounts() {
	local u users=(root)
	[[ $(id -un) == root ]] || users+=("$(id -un)")
	[[ -z ${SUDO_USER:-} || $SUDO_USER == root ]] || users+=("$SUDO_USER")
	t 20 sacctmgr -i add cluster "$CLUSTER" >/dev/null
	t 20 sacctmgr -i add account "$ACCOUNT" Cluster="$CLUSTER" Description=ci Organization=ci >/dev/null
	for u in "${users[@]}"; do
		t 20 sacctmgr -i add user "$u" Account="$ACCOUNT" DefaultAccount="$ACCOUNT" Cluster="$CLUSTER" >/dev/null
		# root already exists (under account root) once the cluster is added: make ci its default.
		t 20 sacctmgr -i modify user "$u" set DefaultAccount="$ACCOUNT" >/dev/null || true
	done
	[[ $(t 10 sacctmgr -n -P list user root format=defaultaccount) == "$ACCOUNT" ]] ||
		die "sacctmgr: root's default account is not $ACCOUNT"
}

# The verification job: a plain srun step, then srun under the environment the Snakemake jobstep
# plugin gives it (SLURM_* except the ones it keeps, SRUN_*, SBATCH_* and SLURM_CONF removed).
write_verify_job() {
	local name=$1 extra=$2
	cat >"$JOBS/$name.sh" <<EOF
#!/bin/bash
set -eu
srun true
keep='^SLURM_(JOB_ID|JOBID|ARRAY_JOB_ID|ARRAY_TASK_ID|ARRAY_TASK_MIN|ARRAY_TASK_MAX|ARRAY_TASK_STEP|CLUSTER_NAME|SUBMIT_DIR|SUBMIT_HOST)\$'
drop=()
for v in \$(compgen -e); do
	case \$v in SLURM_* | SRUN_* | SBATCH_*) [[ \$v =~ \$keep ]] || drop+=(-u "\$v") ;; esac
done
env "\${drop[@]}" bash -c 'env | grep -E "^(SLURM|SRUN|SBATCH)_" | sort; srun -n1 --cpu-bind=q --cpus-per-task=1 $extra --nodes=1 true'
echo "$name: ok"
EOF
	chmod 755 "$JOBS/$name.sh"
}

verify() {
	local cpu_id gpu_id rc_cpu=0 rc_gpu=0 p_cpu p_gpu id states deadline tres
	write_verify_job verify-cpu ""
	write_verify_job verify-gpu "--gpus=1"
	t 60 sbatch --parsable --wait -J verify-cpu -p cpu -n1 -c1 --mem=64M -t 2 -D "$JOBS" \
		-o "$JOBS/%x-%j.out" "$JOBS/verify-cpu.sh" >"$JOBS/verify-cpu.id" &
	p_cpu=$!
	t 60 sbatch --parsable --wait -J verify-gpu -p gpu -n1 -c1 --mem=64M --gpus=1 -t 2 -D "$JOBS" \
		-o "$JOBS/%x-%j.out" "$JOBS/verify-gpu.sh" >"$JOBS/verify-gpu.id" &
	p_gpu=$!
	wait "$p_cpu" || rc_cpu=$?
	wait "$p_gpu" || rc_gpu=$?
	cpu_id=$(cat "$JOBS/verify-cpu.id")
	gpu_id=$(cat "$JOBS/verify-gpu.id")
	((rc_cpu == 0)) || { cat "$JOBS"/verify-cpu-*.out >&2 2>/dev/null || true; die "verification job verify-cpu ($cpu_id) failed (rc $rc_cpu)"; }
	((rc_gpu == 0)) || { cat "$JOBS"/verify-gpu-*.out >&2 2>/dev/null || true; die "verification job verify-gpu ($gpu_id) failed (rc $rc_gpu)"; }
	# Accounting reaches slurmdbd asynchronously: poll until the job and its steps are COMPLETED.
	for id in "$cpu_id" "$gpu_id"; do
		deadline=$((SECONDS + 20))
		while :; do
			states=$(t 10 sacct -j "$id" -n -P -o State 2>/dev/null | sort -u | tr '\n' ' ')
			[[ $states == "COMPLETED " && $(t 10 sacct -j "$id" -n -P -o JobID | wc -l) -ge 4 ]] && break
			((SECONDS < deadline)) || die "sacct -j $id: states '${states}' (want only COMPLETED, job+batch+2 steps)"
			sleep 0.5
		done
	done
	tres=$(t 10 sacct -j "$gpu_id" -n -P -X -o AllocTRES)
	[[ $tres == *gres/gpu=1* ]] || die "sacct -j $gpu_id AllocTRES '$tres' lacks gres/gpu=1"
	t 10 sacct -j "$cpu_id,$gpu_id" -P -o JobID,JobName,Partition,Account,State,ExitCode,ReqTRES,AllocTRES >&2
}

do_start() {
	local t0=$SECONDS d
	[[ $EUID -eq 0 ]] || die "must run as root"
	if [[ -e $D && ! -d $D ]]; then die "$D is not a directory"; fi
	if [[ -f $MARKER ]]; then
		log "$D holds an earlier cluster: stopping it and wiping $D"
		do_stop
		rm -rf -- "$D"
	elif [[ -d $D && -n $(ls -A "$D") ]]; then
		die "$D is not empty and was not made by this script"
	fi
	[[ $D != *[[:space:]]* ]] || die "DIR must not contain white space (it goes into slurm.conf): $D"
	((${#MYSQL_SOCK} < 100)) || die "DIR path too long for unix sockets: $D"

	ensure_packages
	for d in "$PORT_CTLD" "$PORT_SLURMD" "$PORT_DBD" "$PORT_MYSQL"; do
		port_free "$d" || die "port $d on 127.0.0.1 is in use (set SLURMCI_PORT_BASE)"
	done

	mkdir -p "$D"
	touch "$MARKER"
	STARTED=1
	mkdir -p "$RUN" "$PIDS" "$LOGS" "$JOBS" "$D/tmp" "$D/state/slurmctld" "$D/state/slurmd" \
		"$D/state/munge" "$D/mysql"
	chmod 755 "$D" "$RUN"
	mknod "$D/fakegpu0" c 1 3 2>/dev/null || ln -s /dev/null "$D/fakegpu0"
	write_configs
	export SLURM_CONF=$CONF
	link_etc_conf

	log "starting munged"
	start_munge
	log "starting MariaDB (127.0.0.1:$PORT_MYSQL)"
	start_mariadb
	log "starting slurmdbd (127.0.0.1:$PORT_DBD)"
	launch slurmdbd slurmdbd -D
	wait_for slurmdbd 60 slurmdbd dbd_ok
	register_accounts
	log "starting slurmctld (127.0.0.1:$PORT_CTLD)"
	launch slurmctld slurmctld -D -f "$CONF"
	wait_for slurmctld 30 slurmctld ctld_ok
	log "starting slurmd (127.0.0.1:$PORT_SLURMD)"
	launch slurmd slurmd -D -N "$NODE" -f "$CONF"
	wait_for "slurmd (node $NODE idle)" 30 slurmd node_ok
	# slurmctld's first scheduling pass comes ~4 s after it starts, whatever is queued; a job
	# submitted before it misses sbatch --wait's first poll (2 s) and waits for the next (8 s
	# later). Waiting for the pass (it logs its SchedulerParameters) is only a speed-up.
	local deadline=$((SECONDS + 8))
	until grep -q 'SchedulerParameters=' "$LOGS/slurmctld.log" 2>/dev/null || ((SECONDS >= deadline)); do
		sleep 0.2
	done
	log "daemons up after $((SECONDS - t0))s; running the verification jobs"
	verify

	printf 'export SLURM_CONF=%q\n' "$CONF" >"$D/env.sh"
	log "cluster ready in $((SECONDS - t0))s; eval these lines (also in $D/env.sh):"
	cat "$D/env.sh"
}

# --- stop -------------------------------------------------------------------------------------

# slurmstepd processes (and job processes) of this cluster: their environment has our SLURM_CONF.
kill_strays() {
	local f pid pids=()
	for f in /proc/[0-9]*/environ; do
		pid=${f#/proc/}
		pid=${pid%/environ}
		[[ $pid != "$$" ]] || continue
		if tr '\0' '\n' 2>/dev/null <"$f" | grep -qxF "SLURM_CONF=$CONF"; then
			pids+=("$pid")
		fi
	done
	for pid in "${pids[@]}"; do
		[[ $(cat "/proc/$pid/comm" 2>/dev/null) == slurmstepd ]] || continue
		log "killing leftover slurmstepd $pid"
		kill -KILL "$pid" 2>/dev/null || true
	done
}

do_stop() {
	local i d name pid kind path target
	[[ -d $D ]] || {
		log "$D does not exist; nothing to stop"
		return 0
	}
	export SLURM_CONF=$CONF
	if recorded_alive slurmctld; then
		local jobs
		jobs=$(t 10 squeue -h -o %A 2>/dev/null || true)
		# shellcheck disable=SC2086 # one word per job id
		[[ -z $jobs ]] || t 10 scancel --full $jobs 2>/dev/null || true
	fi
	for ((i = ${#DAEMONS[@]} - 1; i >= 0; i--)); do
		d=${DAEMONS[i]}
		name=${d%%:*}
		[[ -f $PIDS/$name.pid ]] || continue
		pid=$(cat "$PIDS/$name.pid")
		if alive "$pid" "${d#*:}"; then
			log "stopping $name ($pid)"
			stop_pid "$pid" "${d#*:}"
		fi
		rm -f "$PIDS/$name.pid"
	done
	kill_strays
	if [[ -f $OUTSIDE ]]; then
		tac "$OUTSIDE" | while read -r kind path target; do
			case $kind in
			symlink)
				if [[ -L $path && $(readlink "$path") == "$target" ]]; then
					rm -f "$path" && log "removed $path"
				fi
				;;
			dir)
				if rmdir "$path" 2>/dev/null; then log "removed $path"; fi
				;;
			esac
		done
		rm -f "$OUTSIDE"
	fi
}

# --- main -------------------------------------------------------------------------------------

[[ $# -eq 2 ]] || usage
set_paths "$2"
case $1 in
start)
	trap 'rc=$?; if ((rc)); then dump_logs; if [[ -n ${STARTED:-} && ${SLURMCI_KEEP_ON_FAILURE:-0} != 1 ]]; then log "start failed: stopping what was started"; do_stop || true; fi; fi' EXIT
	do_start
	;;
stop) do_stop ;;
*) usage ;;
esac
