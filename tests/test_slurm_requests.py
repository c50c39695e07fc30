"""Requests checked against a SLURM partition before submission (#16), on sinfo / scontrol
outputs as a real slurmctld prints them (the real cluster: `make test-slurm`)."""

from __future__ import annotations

import math

import pytest

from nuclick_core.errors import NuclickError
from nuclick_core.slurm import Request, check_requests, default_partition, slurm_minutes

SINFO = {
    "gpu": "16|64000|gpu:a100:2(S:0-1)\n32|128000|gpu:a100:4(S:0-1)\n",
    "cpu": "8|32000|(null)\n",
}
SCONTROL = {
    "gpu": "PartitionName=gpu AllowGroups=ALL MaxTime=2-00:00:00 State=UP TotalCPUs=48",
    "cpu": "PartitionName=cpu AllowGroups=ALL MaxTime=UNLIMITED State=UP",
}


def fake(command: list[str]) -> str:
    if command[0] == "sinfo" and "--partition" in command:
        return SINFO.get(command[command.index("--partition") + 1], "")
    if command[0] == "sinfo":
        return "cpu*\ngpu\n"
    return SCONTROL[command[3]]


@pytest.mark.parametrize(
    ("text", "minutes"),
    [
        ("UNLIMITED", math.inf),
        ("30", 30),
        ("30:30", 30.5),
        ("01:02:00", 62),
        ("2-00:00:00", 2880),
        ("1-12", 2160),
        ("1-00:30", 1470),
    ],
)
def test_slurm_time_limits(text: str, minutes: float) -> None:
    assert slurm_minutes(text) == minutes


def test_requests_that_fit_pass() -> None:
    ok = [Request("segment", "gpu", 32, 100000, 240, 4), Request("overlay", "cpu", 2, 4000, 60, 0)]
    assert check_requests(ok, fake) == []


def test_requests_that_never_start_are_named_with_the_fix() -> None:
    found = check_requests(
        [
            Request("segment", "cpu", 64, 64000, 240, 1),
            Request("segment", "gpu", 8, 16000, 4000, 8),
        ],
        fake,
    )
    assert found == [
        "rule segment asks partition cpu for 64 CPUs but its largest node has 8: lower "
        "segment_cpus (set-threads) in workflow/profiles/slurm/config.yaml",
        "rule segment asks partition cpu for 64000 MB but its largest node has 32000 MB: lower "
        "segment_mem_mb / other_mem_mb in workflow/profiles/slurm/config.yaml",
        "rule segment asks partition cpu for 1 GPUs but it has no GPU (gres/gpu): set "
        "gpu_partition to a partition with GPUs, or gpus: 0 to segment on CPUs, in "
        "workflow/profiles/slurm/config.yaml",
        "rule segment asks partition gpu for 8 GPUs but it has 4 GPUs per node: set "
        "gpu_partition to a partition with GPUs, or gpus: 0 to segment on CPUs, in "
        "workflow/profiles/slurm/config.yaml",
        "rule segment asks partition gpu for 4000 min but its time limit is 2880 min: lower "
        "segment_minutes / other_minutes in workflow/profiles/slurm/config.yaml",
    ]


def test_unknown_partition_lists_the_real_ones() -> None:
    with pytest.raises(NuclickError, match=r"'EDIT-gpu-partition' does not exist .* cpu\*, gpu"):
        check_requests([Request("segment", "EDIT-gpu-partition", 1, 1, 1, 0)], fake)
    assert default_partition(fake) == "cpu"


def test_the_profile_reads_its_site_variables_from_the_environment(monkeypatch) -> None:
    from snakemake.profiles import ProfileConfigFileParser

    from tests.test_workflow import REPO

    def parse() -> dict:
        with open(REPO / "workflow/profiles/slurm/config.yaml") as f:
            return dict(ProfileConfigFileParser().parse(f))

    shipped = parse()
    assert "software-deployment-method" not in shipped  # conda only when asked (--sdm conda)
    assert shipped["set-resources"] == [
        "segment:slurm_partition=EDIT-gpu-partition",
        "segment:gpu=1",
        "segment:mem_mb=16000 * attempt",  # a retry asks for twice the memory and time
        "segment:runtime=240 * attempt",
    ]
    assert shipped["set-threads"] == ["segment=8"]
    monkeypatch.setenv("NUCLICK_SLURM_GPUS", "0")
    monkeypatch.setenv("NUCLICK_SLURM_CPU_PARTITION", "short")
    monkeypatch.setenv("NUCLICK_SLURM_ACCOUNT", "lab7")
    cpu_only = parse()
    assert cpu_only["default-resources"][:2] == ["slurm_partition=short", "slurm_account=lab7"]
    assert cpu_only["set-resources"][0] == "segment:slurm_partition=short"
    assert not any("gpu" in r for r in cpu_only["set-resources"])
