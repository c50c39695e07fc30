"""Checks of `make test-slurm` after the demo ran through SLURM (tests/slurm/run.sh): every
segment job COMPLETED with the resources the profile asked for (sacct), every output meets the
instance-table contract, and the cohort summary lists every slide. Prints the sacct lines."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import geopandas as gpd
import pandas as pd
import pyarrow.parquet as pq

from nuclick_core.io.instances import GEOPARQUET_VERSION, INSTANCE_COLUMNS
from nuclick_core.io.status import STATUSES

FIELDS = "JobID,JobName,Comment,Partition,State,ExitCode,ReqCPUS,ReqMem,Timelimit,AllocTRES"


def fail(message: str) -> None:
    print(f"FAIL: {message}")
    sys.exit(1)


def check_jobs(sacct: Path, samples: list[str], cpus: int, mem_mb: int, minutes: int) -> None:
    rows = [
        dict(zip(FIELDS.split(","), ln.split("|"), strict=True))
        for ln in sacct.read_text().splitlines()
        if ln.strip()
    ]
    print(FIELDS.replace(",", " | "))
    for r in rows:
        print(" | ".join(r.values()))
    segment = [r for r in rows if r["Comment"].startswith("rule_segment")]
    for sample in samples:
        jobs = [r for r in segment if r["Comment"] == f"rule_segment_wildcards_{sample}"]
        if len(jobs) != 1:
            fail(f"expected one SLURM job for sample {sample}, sacct shows {len(jobs)}")
        job = jobs[0]
        want = {
            "State": "COMPLETED",
            "ExitCode": "0:0",
            "Partition": "gpu",
            "ReqCPUS": str(cpus),
            "ReqMem": f"{mem_mb}M",
            "Timelimit": f"{minutes // 60:02d}:{minutes % 60:02d}:00",
        }
        wrong = {k: (job[k], v) for k, v in want.items() if job[k] != v}
        if wrong:
            fail(f"job {job['JobID']} ({sample}): (got, want) {wrong}")
        tres = dict(item.split("=", 1) for item in job["AllocTRES"].split(",") if "=" in item)
        if tres.get("gres/gpu") != "1" or tres.get("cpu") != str(cpus):
            fail(f"job {job['JobID']} ({sample}) was allocated {job['AllocTRES']}")
    print(
        f"ok: {len(samples)} segment jobs COMPLETED on partition gpu with {cpus} CPUs, "
        f"{mem_mb} MB, {minutes} min and gres/gpu=1"
    )


def check_table(path: Path, annotations: Path) -> int:
    schema = pq.read_schema(path)
    geo = json.loads(schema.metadata[b"geo"])
    if geo["version"] != GEOPARQUET_VERSION or geo["columns"]["geometry"]["crs"] is not None:
        fail(f"{path}: GeoParquet metadata {geo}")
    table = gpd.read_parquet(path)
    want = list(INSTANCE_COLUMNS)
    if [c for c in table.columns if c != "geometry"][: len(want)] != want:
        fail(f"{path}: columns {list(table.columns)}")
    n = len(table)
    if (
        sorted(table["click_id"]) != list(range(n))
        or (table["instance_id"] != table["click_id"] + 1).any()
    ):
        fail(f"{path}: click_id / instance_id are not one row per click")
    if not set(table["status"]) <= set(STATUSES):
        fail(f"{path}: statuses {set(table['status'])}")
    ok = table["status"] == "ok"
    if table.geometry[ok].isna().any() or table.geometry[~ok].notna().any():
        fail(f"{path}: a geometry is missing on an ok row or present on another")
    if not table.geometry[ok].is_valid.all():
        fail(f"{path}: invalid polygons")
    if ok.any() and table.geometry[ok].union_all().area < 0.999 * table.geometry[ok].area.sum():
        fail(f"{path}: instances overlap")
    clicks = len(pd.read_csv(annotations)) if annotations.suffix == ".csv" else None
    if clicks is not None and clicks != n:
        fail(f"{path}: {n} rows for {clicks} clicks")
    return n


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--sacct", type=Path, required=True)
    p.add_argument("--work", type=Path, required=True)
    p.add_argument("--cpus", type=int, required=True)
    p.add_argument("--mem-mb", type=int, required=True)
    p.add_argument("--minutes", type=int, required=True)
    args = p.parse_args()
    sheet = pd.read_csv(args.work / "config" / "samples.tsv", sep="\t", dtype=str)
    samples = list(sheet["sample"])
    check_jobs(args.sacct, samples, args.cpus, args.mem_mb, args.minutes)
    for row in sheet.itertuples():
        n = check_table(
            args.work / "results" / row.sample / "instances.parquet", args.work / row.annotations
        )
        print(f"ok: {row.sample}: {n} rows, instance-table contract met")
    cohort = json.loads((args.work / "results/summary/cohort.json").read_text())
    states = {r["sample"]: r["state"] for r in cohort["slides"]}
    if states != dict.fromkeys(samples, "done"):
        fail(f"cohort summary states {states}")
    print(f"ok: cohort summary: {json.dumps(cohort['totals'])}")


if __name__ == "__main__":
    main()
