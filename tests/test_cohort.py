"""A cohort through the workflow (#16): the DAG of a 1,000-slide sheet builds fast, a broken
slide among good ones ends as a listed failure in the cohort summary while the others complete,
and a killed job leaves no table that looks finished and is completed by --rerun-incomplete."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from PIL import Image

from nuclick_core.io.status import STATUSES
from tests.conftest import disks_image
from tests.test_workflow import BIN, SNAKEFILE, output_of, snakemake, write_config, write_sheet

DAG_SECONDS = 15.0


def _slide(folder: Path, name: str, n: int = 4, size: int = 300) -> None:
    rng = np.random.default_rng(len(name))
    cells = np.arange(20, size - 20, 8)  # distinct clicks at least 8 px apart
    grid = np.stack(np.meshgrid(cells, cells), -1).reshape(-1, 2)
    centres = grid[rng.choice(len(grid), n, replace=False)] + 0.5
    Image.fromarray(disks_image(shape=(size, size), centres=centres)).save(folder / f"{name}.png")
    (folder / f"{name}.csv").write_text("x,y\n" + "".join(f"{x},{y}\n" for x, y in centres))


def _config(folder: Path, model: Path) -> Path:
    return write_config(
        folder,
        "samples: samples.tsv\nsegment:\n  threads: 1\n  batch_size: 4\n"
        f"  models: {{nucleus: {model}}}\n",
    )


def test_a_thousand_slide_sheet_builds_its_dag_in_seconds(tmp_path: Path) -> None:
    _slide(tmp_path, "s", n=1, size=64)
    write_sheet(tmp_path, [f"s{i:04d}\ts.png\ts.csv\tnucleus\t0.5\t" for i in range(1000)])
    config = write_config(tmp_path, "samples: samples.tsv\n")
    t0 = time.perf_counter()
    run = snakemake("--dry-run", "--configfile", config, "--cores", "2", workdir=tmp_path)
    seconds = time.perf_counter() - t0
    assert run.returncode == 0, output_of(run)
    assert "segment     1000" in run.stdout, output_of(run)
    assert seconds < DAG_SECONDS, f"snakemake -n took {seconds:.1f} s for 1,000 slides"


def test_a_broken_slide_is_a_listed_failure_while_the_others_complete(
    tmp_path: Path, tiny_model: Path
) -> None:
    for name in ("good1", "good2"):
        _slide(tmp_path, name)
    (tmp_path / "broken.tif").write_bytes(b"II*\x00" + bytes(64))  # a TIFF header, no image
    (tmp_path / "broken.csv").write_text("x,y\n10.5,10.5\n")
    write_sheet(
        tmp_path,
        [
            f"{n}\t{n}.{'tif' if n == 'broken' else 'png'}\t{n}.csv\tnucleus\t0.5\t"
            for n in ("good1", "broken", "good2")
        ],
    )
    config = _config(tmp_path, tiny_model)
    run = snakemake("--configfile", config, "--cores", "1", "--keep-going", workdir=tmp_path)
    assert run.returncode != 0, output_of(run)  # the run says that a job failed
    assert (tmp_path / "results/good1/instances.parquet").is_file(), output_of(run)
    assert (tmp_path / "results/good2/instances.parquet").is_file(), output_of(run)
    assert not (tmp_path / "results/broken").exists() or not any(
        (tmp_path / "results/broken").iterdir()
    )

    summary = snakemake("summary", "--configfile", config, "--cores", "1", workdir=tmp_path)
    assert summary.returncode == 0, output_of(summary)
    cohort = json.loads((tmp_path / "results/summary/cohort.json").read_text())
    rows = {r["sample"]: r for r in cohort["slides"]}
    assert list(rows) == ["good1", "broken", "good2"]  # every slide, in sheet order
    assert rows["broken"]["state"] == "failed"
    assert "broken.tif" in rows["broken"]["reason"], rows["broken"]
    for name in ("good1", "good2"):
        good = rows[name]
        assert good["state"] == "done" and good["clicks"] == 4 and good["model"] == "tiny"
        assert good["seconds"] > 0 and sum(good["statuses"].values()) == 4
    assert cohort["totals"] | {"statuses": None, "seconds": None} == {
        "slides": 3,
        "done": 2,
        "failed": 1,
        "incomplete": 0,
        "not_run": 0,
        "clicks": 8,
        "statuses": None,
        "seconds": None,
    }
    assert set(STATUSES) <= set(cohort["totals"]["statuses"])  # every status, 0 included
    csv_lines = (tmp_path / "results/summary/cohort.csv").read_text().splitlines()
    assert csv_lines[0].startswith("sample,slide,object,state,clicks,n_ok,")
    assert len(csv_lines) == 4
    page = (tmp_path / "results/summary/cohort.html").read_text()
    assert "2 done, 1 failed" in page and "broken.tif" in page

    # the summary is redone when a slide's log changes, without segmenting anything
    again = snakemake("summary", "--configfile", config, "--cores", "1", workdir=tmp_path)
    assert "Nothing to be done" in again.stdout + again.stderr, output_of(again)
    (tmp_path / "logs/segment/broken.log").write_text("")
    redo = snakemake("summary", "--configfile", config, "--cores", "1", workdir=tmp_path)
    assert redo.returncode == 0 and "rule segment" not in redo.stdout + redo.stderr, output_of(redo)
    cohort = json.loads((tmp_path / "results/summary/cohort.json").read_text())
    assert cohort["slides"][1]["state"] == "incomplete"


def test_an_unreadable_table_is_a_listed_failure(tmp_path: Path) -> None:
    from nuclick_core.evaluation.cohort import cohort_summary

    write_sheet(tmp_path, ["a\ta.png\ta.csv\tnucleus\t0.5\t", "b\tb.png\tb.csv\tnucleus\t0.5\t"])
    (tmp_path / "results/a").mkdir(parents=True)
    (tmp_path / "results/a/instances.parquet").write_bytes(b"PAR1 not parquet")
    summary = cohort_summary(tmp_path / "samples.tsv", tmp_path / "results", tmp_path / "logs")
    a, b = summary["slides"]
    assert a["state"] == "failed" and "unreadable table" in a["reason"]
    assert b["state"] == "not_run" and summary["totals"]["not_run"] == 1


def test_a_killed_run_leaves_no_finished_looking_table_and_is_completed(
    tmp_path: Path, tiny_model: Path
) -> None:
    _slide(tmp_path, "big", n=1500, size=1600)
    write_sheet(tmp_path, ["big\tbig.png\tbig.csv\tnucleus\t0.5\t"])
    config = _config(tmp_path, tiny_model)
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "OMP_NUM_THREADS": "1"}
    command = [str(BIN / "snakemake"), "--snakefile", str(SNAKEFILE), "--directory", str(tmp_path)]
    job = subprocess.Popen(
        [*command, "--configfile", str(config), "--cores", "1"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    log = tmp_path / "logs/segment/big.log"
    deadline = time.monotonic() + 120
    # the model is loaded: the engine starts (1,500 clicks take seconds on any machine)
    while "ONNX Runtime providers" not in (log.read_text() if log.is_file() else ""):
        assert job.poll() is None and time.monotonic() < deadline, "the job ended too soon"
        time.sleep(0.05)
    os.killpg(job.pid, signal.SIGKILL)  # as a node failure or the scheduler's kill would
    job.wait(timeout=30)
    table = tmp_path / "results/big/instances.parquet"
    assert not table.exists()  # nothing that looks finished

    unlock = snakemake("--unlock", "--configfile", config, workdir=tmp_path)
    assert unlock.returncode == 0, output_of(unlock)
    rerun = snakemake(
        "--configfile", config, "--cores", "1", "--rerun-incomplete", workdir=tmp_path
    )
    assert rerun.returncode == 0, output_of(rerun)
    done = pq.read_table(table)
    assert done.num_rows == 1500
    assert sorted(done.column("click_id").to_pylist()) == list(range(1500))
