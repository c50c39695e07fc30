"""Requests checked against what a SLURM partition offers, before anything is submitted.

A job that asks for more CPUs, memory, GPUs or time than any node of its partition has stays
PENDING forever (reason ``PartitionConfig`` or ``Resources``) and Snakemake waits with it. The
workflow's ``onstart`` hook (Snakefile) calls :func:`check_jobs` when it runs with the SLURM
executor, so such a run stops at once, naming the rule, the request, what the partition has
and the profile key to change. Partitions are read with ``sinfo`` and ``scontrol``.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from nuclick_core.errors import NuclickError

PROFILE = "workflow/profiles/slurm/config.yaml"
Runner = Callable[[list[str]], str]


@dataclass(frozen=True)
class Request:
    """What one job asks for (the first attempt)."""

    rule: str
    partition: str
    cpus: int
    mem_mb: float
    minutes: float
    gpus: int


@dataclass(frozen=True)
class Partition:
    """The most a single node of a partition offers, and the partition's time limit."""

    name: str
    cpus: int
    mem_mb: float
    gpus: int
    max_minutes: float  # inf: no limit


def _run(command: list[str]) -> str:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=True)
    except FileNotFoundError as exc:
        raise NuclickError(f"{command[0]} not found: run on a SLURM login node") from exc
    except subprocess.CalledProcessError as exc:
        raise NuclickError(f"{' '.join(command)} failed: {exc.stderr.strip()}") from exc
    except subprocess.TimeoutExpired as exc:
        raise NuclickError(f"{' '.join(command)} did not answer in 60 s") from exc
    return done.stdout


def slurm_minutes(text: str) -> float:
    """A SLURM time limit (``UNLIMITED``, ``MM``, ``MM:SS``, ``HH:MM:SS``, ``D-HH[:MM[:SS]]``)
    in minutes."""
    text = text.strip()
    if text.upper() in ("UNLIMITED", "INFINITE", "NONE", ""):
        return float("inf")
    days, _, rest = text.rpartition("-")
    try:
        parts = [int(p) for p in rest.split(":")]
        if days:
            h, m, s = [*parts, 0, 0][:3]
        elif len(parts) == 3:
            h, m, s = parts
        else:
            h, (m, s) = 0, [*parts, 0][:2]
        return int(days or 0) * 1440 + h * 60 + m + s / 60
    except ValueError as exc:
        raise NuclickError(f"cannot read the SLURM time limit {text!r}") from exc


def _gpus(gres: str) -> int:
    """GPUs of one node from sinfo's ``%G`` (``gpu:2``, ``gpu:a100:4(S:0-1)``, ``(null)``)."""
    return sum(int(m.group(1)) for m in re.finditer(r"\bgpu(?::[^:,(]+)?:(\d+)", gres))


def read_partition(name: str, run: Runner = _run) -> Partition:
    """The largest node of partition ``name`` and its time limit."""
    nodes = run(["sinfo", "--noheader", "--Node", "--partition", name, "--format=%c|%m|%G"])
    rows = [line.split("|") for line in nodes.splitlines() if line.strip()]
    if not rows:
        known = run(["sinfo", "--noheader", "--format=%P"]).split()
        raise NuclickError(
            f"SLURM partition {name!r} does not exist or has no nodes; the partitions are "
            f"{', '.join(known) or 'none'}: set cpu_partition / gpu_partition in {PROFILE}"
        )
    info = run(["scontrol", "show", "partition", name, "--oneliner"])
    limit = re.search(r"\bMaxTime=(\S+)", info)
    return Partition(
        name,
        cpus=max(int(c.rstrip("+")) for c, _, _ in rows),
        mem_mb=max(float(m.rstrip("+")) for _, m, _ in rows),
        gpus=max(_gpus(g) for _, _, g in rows),
        max_minutes=slurm_minutes(limit.group(1)) if limit else float("inf"),
    )


def problems(request: Request, partition: Partition) -> list[str]:
    """Why ``request`` can never start on ``partition`` (empty when it fits)."""
    where = f"rule {request.rule} asks partition {partition.name} for"
    out = []
    if request.cpus > partition.cpus:
        out.append(
            f"{where} {request.cpus} CPUs but its largest node has {partition.cpus}: lower "
            f"segment_cpus (set-threads) in {PROFILE}"
        )
    if request.mem_mb > partition.mem_mb:
        out.append(
            f"{where} {request.mem_mb:.0f} MB but its largest node has "
            f"{partition.mem_mb:.0f} MB: lower segment_mem_mb / other_mem_mb in {PROFILE}"
        )
    if request.gpus > partition.gpus:
        has = f"{partition.gpus} GPUs per node" if partition.gpus else "no GPU (gres/gpu)"
        out.append(
            f"{where} {request.gpus} GPUs but it has {has}: set gpu_partition to a partition "
            f"with GPUs, or gpus: 0 to segment on CPUs, in {PROFILE}"
        )
    if request.minutes > partition.max_minutes:
        out.append(
            f"{where} {request.minutes:.0f} min but its time limit is "
            f"{partition.max_minutes:.0f} min: lower segment_minutes / other_minutes in {PROFILE}"
        )
    return out


def check_requests(requests: Iterable[Request], run: Runner = _run) -> list[str]:
    """Every problem of ``requests`` (one line each), reading each partition once."""
    partitions: dict[str, Partition] = {}
    found: list[str] = []
    for request in dict.fromkeys(requests):  # one check per distinct request
        if request.partition not in partitions:
            partitions[request.partition] = read_partition(request.partition, run)
        found += [p for p in problems(request, partitions[request.partition]) if p not in found]
    return found


def default_partition(run: Runner = _run) -> str:
    """The cluster's default partition (marked ``*`` by sinfo), for jobs that name none."""
    for name in run(["sinfo", "--noheader", "--format=%P"]).split():
        if name.endswith("*"):
            return name[:-1]
    raise NuclickError(f"the cluster has no default partition: set cpu_partition in {PROFILE}")
