"""Tests of the Snakemake workflow: lint, dry run, config and sample sheet validation, and a real
end-to-end run on a synthetic image with a tiny random-weight model.

Snakemake runs as a subprocess from the Python env that runs pytest, as a user would run it.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from PIL import Image

from nuclick_core.training.recipe import TrainRecipe, read_recipe_json
from tests.conftest import disks_image

REPO = Path(__file__).resolve().parents[1]
SNAKEFILE = REPO / "Snakefile"
BIN = Path(sys.executable).parent


def snakemake(*args: str | Path, workdir: Path = REPO) -> subprocess.CompletedProcess:
    """Run Snakemake on the repository's Snakefile in ``workdir`` and return the finished process.

    The env's bin folder goes first on PATH so that the rules find its `nuclick`.
    """
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "OMP_NUM_THREADS": "1",
    }
    command = [str(BIN / "snakemake"), "--snakefile", str(SNAKEFILE), "--directory", str(workdir)]
    return subprocess.run(
        [*command, *map(str, args)],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def output_of(run: subprocess.CompletedProcess) -> str:
    return f"exit code {run.returncode}\n--- stdout\n{run.stdout}\n--- stderr\n{run.stderr}"


def job_counts(run: subprocess.CompletedProcess) -> dict[str, int]:
    """The "Job stats" table of a (dry) run: rule name -> number of jobs."""
    text = run.stdout + run.stderr
    table = text[text.index("Job stats:") :]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.MULTILINE)}


def test_lint_is_clean():
    run = snakemake("--lint", "--nolock")
    assert run.returncode == 0, output_of(run)
    assert "Congratulations, your workflow is in a good condition!" in run.stdout + run.stderr, (
        output_of(run)
    )


def test_dry_run_plans_one_segment_job_per_sample():
    sheet = pd.read_csv(REPO / "config" / "samples.tsv", sep="\t", dtype=str)
    run = snakemake("--dry-run", "--forceall", "--nolock", "--cores", "2")
    assert run.returncode == 0, output_of(run)
    counts = job_counts(run)
    assert counts["segment"] == len(sheet) == 3, output_of(run)
    assert counts["all"] == 1
    for sample in sheet["sample"]:
        assert f"wildcards: sample={sample}\n" in run.stdout, output_of(run)
        assert f"results/{sample}/instances.parquet" in run.stdout


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A working directory with an image and clicks that exist, for the validation tests."""
    Image.new("RGB", (32, 32), (230, 200, 220)).save(tmp_path / "image.png")
    (tmp_path / "clicks.csv").write_text("x,y\n10.5,10.5\n")
    return tmp_path


def write_config(workdir: Path, text: str) -> Path:
    path = workdir / "config.yaml"
    path.write_text(text)
    return path


def write_sheet(workdir: Path, rows: list[str]) -> None:
    header = "sample\tslide\tannotations\tobject\tmpp\tmodel"
    (workdir / "samples.tsv").write_text("\n".join([header, *rows]) + "\n")


@pytest.mark.parametrize(
    ("config", "rows", "expected"),
    [
        pytest.param(
            "samples: samples.tsv\nsegment:\n  batchsize: 8\n",
            ["a\timage.png\tclicks.csv\tnucleus\t0.5\t"],
            ["Additional properties are not allowed ('batchsize' was unexpected)"],
            id="typo-in-config",
        ),
        pytest.param(
            "samples: samples.tsv\nsegment:\n  provider: gpu\n",
            ["a\timage.png\tclicks.csv\tnucleus\t0.5\t"],
            ["'gpu' is not one of ['auto', 'cpu', 'cuda', 'tensorrt']"],
            id="bad-provider",
        ),
        pytest.param(
            "samples: samples.tsv\n",
            [
                "a\timage.png\tclicks.csv\tnucleus\t0.5\t",
                "b\timage.png\tclicks.csv\tnucleus\t0.5\t",
                "a\timage.png\tclicks.csv\tcell\t0.5\t",
            ],
            ["sample names must be unique", "line 2 ('a')", "line 4 ('a')"],
            id="duplicate-sample",
        ),
        pytest.param(
            "samples: samples.tsv\n",
            ["a\timage.png\tclicks.csv\tnuclei\t0.5\t"],
            [
                "'nuclei' is not one of ['nucleus', 'cell', 'gland']",
                "samples.tsv line 2 (sample 'a')",
            ],
            id="bad-object",
        ),
        pytest.param(
            "samples: samples.tsv\n",
            ["a b\timage.png\tclicks.csv\tnucleus\t0.5\t"],
            ["'a b' does not match"],
            id="bad-sample-name",
        ),
        pytest.param(
            "samples: samples.tsv\n",
            ["..\timage.png\tclicks.csv\tnucleus\t0.5\t"],
            ["'..' does not match", "samples.tsv line 2 (sample '..')"],
            id="sample-named-dot-dot",  # would write outside results/ (#13, defect 7)
        ),
        pytest.param(
            "samples: samples.tsv\n",
            ["a\timage.png\tclicks.csv\tnucleus\tfine\t"],
            ["'fine' is not of type 'number'"],
            id="bad-mpp",
        ),
        pytest.param(
            "samples: samples.tsv\n",
            ["a\timage.png\tclicks.csv\tnucleus\t0.5\t", "b\tmissing.svs\tclicks.csv\t\t\t"],
            ["line 3 (sample 'b')", "slide file missing.svs does not exist"],
            id="missing-slide",
        ),
        pytest.param(
            "samples: sheet.tsv\n",
            ["a\timage.png\tclicks.csv\tnucleus\t0.5\t"],
            ["sample sheet sheet.tsv does not exist"],
            id="missing-sheet",
        ),
    ],
)
def test_validation_rejects_bad_input_naming_the_problem(
    workdir: Path, config: str, rows: list[str], expected: list[str]
):
    write_sheet(workdir, rows)
    run = snakemake("--dry-run", "--configfile", write_config(workdir, config), workdir=workdir)
    assert run.returncode != 0, output_of(run)
    for text in expected:
        assert text in run.stdout + run.stderr, output_of(run)


def test_comma_separated_sheet_is_named_as_such(workdir: Path):
    """#13 defect 6: a CSV sample sheet raised KeyError inside the sheet's own error handler."""
    text = "sample,slide,annotations,object,mpp,model\na,image.png,clicks.csv,nucleus,0.5,\n"
    (workdir / "samples.tsv").write_text(text)
    run = snakemake(
        "--dry-run",
        "--configfile",
        write_config(workdir, "samples: samples.tsv\n"),
        workdir=workdir,
    )
    assert run.returncode != 0, output_of(run)
    out = run.stdout + run.stderr
    assert "line 1 lacks the column(s) sample, slide, annotations" in out, output_of(run)
    assert "must be tab-separated (TSV)" in out and "KeyError" not in out, output_of(run)


def test_validation_fills_defaults(workdir: Path):
    """A sheet with only the required columns and an empty config are enough."""
    (workdir / "samples.tsv").write_text("sample\tslide\tannotations\na\timage.png\tclicks.csv\n")
    run = snakemake(
        "--dry-run",
        "--printshellcmds",
        "--configfile",
        write_config(workdir, "{}\n"),
        "--config",
        "samples=samples.tsv",
        workdir=workdir,
    )
    assert run.returncode == 0, output_of(run)
    command = re.search(r"^Shell command: (nuclick segment .*)$", run.stdout, re.MULTILINE)
    assert command, output_of(run)
    flags = command[1].split()
    for flag, value in [
        ("--object", "nucleus"),
        ("--batch-size", "16"),
        ("--provider", "auto"),
        ("--tile", "1024"),
    ]:
        assert flags[flags.index(flag) + 1] == value, command[1]
    assert "--mpp" not in flags and "--model" not in flags, command[1]


def test_end_to_end_run_writes_one_instance_row_per_click(tmp_path: Path, tiny_model: Path):
    """Two slides through the real workflow with the tiny random-weight model (conftest)."""
    centres = np.array([[50.5, 60.5], [150.5, 150.5], [250.5, 80.5], [80.5, 240.5]])
    Image.fromarray(disks_image(shape=(300, 300), centres=centres)).save(tmp_path / "image.png")
    clicks = np.vstack([centres, [[200.5, 220.5]]])  # the last click lies on background
    (tmp_path / "clicks.csv").write_text("x,y\n" + "".join(f"{x},{y}\n" for x, y in clicks))
    # `by_sheet` names its model in the sample sheet (and gives the mpp); `by_config` gets the
    # config's model for nuclei and the model's mpp (the PNG carries none).
    write_sheet(
        tmp_path,
        [
            f"by_sheet\timage.png\tclicks.csv\tnucleus\t0.5\t{tiny_model}",
            "by_config\timage.png\tclicks.csv\t\t\t",
        ],
    )
    config = write_config(
        tmp_path,
        "samples: samples.tsv\n"
        "segment:\n"
        "  threads: 1\n"
        "  batch_size: 4\n"
        f"  models: {{nucleus: {tiny_model}}}\n",
    )

    run = snakemake("--configfile", config, "--cores", "1", workdir=tmp_path)
    assert run.returncode == 0, output_of(run)

    for sample in ("by_sheet", "by_config"):
        table = pq.read_table(tmp_path / "results" / sample / "instances.parquet")
        assert table.num_rows == len(clicks), sample
        assert sorted(table.column("click_id").to_pylist()) == list(range(len(clicks)))
        statuses = table.sort_by("click_id").column("status").to_pylist()
        assert statuses[-1] == "on_background", statuses  # the click on bright glass
        assert statuses[:-1].count("ok") >= 3, statuses  # the tiny model finds the dark disks
        geojson = json.loads((tmp_path / "results" / sample / "instances.geojson").read_text())
        assert geojson["type"] == "FeatureCollection"
        assert len(geojson["features"]) == statuses.count("ok")
        log = (tmp_path / "logs" / "segment" / f"{sample}.log").read_text()
        assert "wrote results/" in log, log
    metadata = pq.read_schema(tmp_path / "results" / "by_sheet" / "instances.parquet").metadata
    assert b"tiny" in b"".join(metadata.values())

    again = snakemake("--dry-run", "--configfile", config, workdir=tmp_path)
    assert again.returncode == 0, output_of(again)
    assert "Nothing to be done" in again.stdout + again.stderr, output_of(again)


def test_retrain_target_plans_train_export_evaluate_promote():
    run = snakemake(
        "retrain", "--dry-run", "--nolock", "--cores", "2", "--config", "retrain_tag=2026-12-01"
    )
    assert run.returncode == 0, output_of(run)
    counts = job_counts(run)
    for rule in ("train", "export_candidate", "promote", "retrain"):
        assert counts[rule] == 1, output_of(run)
    assert counts["evaluate"] >= 1
    assert "models/nucleus-2026-12-01/model.onnx" in run.stdout


def test_retrain_passes_the_recipe_offset_and_loss_cap(tmp_path: Path):
    """The nucleus recipe's keys reach train, export and evaluate; alpha_max only when set."""
    overrides = tmp_path / "recipe.yaml"
    overrides.write_text(
        "train:\n  nucleus:\n    image_offset: [-0.25, -0.5]\n    alpha_max: 2\n"
        "    near_miss: 0.25\n    click_tolerance: 5\n"
    )
    run = snakemake(
        "retrain",
        "--dry-run",
        "--nolock",
        "--printshellcmds",
        "--cores",
        "2",
        "--configfile",
        REPO / "config" / "config.yaml",
        overrides,
        "--config",
        "retrain_tag=2026-12-01",
        "retrain_objects=[nucleus,cell]",
    )
    assert run.returncode == 0, output_of(run)
    commands = re.findall(
        r"^Shell command: (nuclick (?:train|evaluate|export) .*)$", run.stdout, re.MULTILINE
    )
    nucleus = [c for c in commands if "--object nucleus" in c and "export" not in c]
    cell = [c for c in commands if "--object cell" in c]
    assert nucleus and cell, output_of(run)
    for command in nucleus:
        if not command.startswith("nuclick train"):  # train takes it inside --recipe
            assert "--image-offset=-0.25,-0.5" in command, command
    (train,) = [c for c in nucleus if c.startswith("nuclick train")]
    argv = shlex.split(train)
    recipe = TrainRecipe.from_mapping(read_recipe_json(argv[argv.index("--recipe") + 1]))
    assert (recipe.alpha_max, recipe.near_miss) == (2.0, 0.25), train
    assert recipe.image_offset == (-0.25, -0.5), train
    (export,) = [c for c in commands if c.startswith("nuclick export") and "nucleus-" in c]
    assert "--click-tolerance 5 " in export, export
    assert not any("--image-offset" in c for c in cell), cell
    (cell_train,) = [c for c in cell if c.startswith("nuclick train")]
    argv = shlex.split(cell_train)
    cell_recipe = TrainRecipe.from_mapping(read_recipe_json(argv[argv.index("--recipe") + 1]))
    assert cell_recipe.alpha_max is None and cell_recipe.format == "cells"


def test_convert_target_runs_one_job_per_shard_then_finishes(tmp_path: Path, known_model: Path):
    """`snakemake convert` (#15): three tiles in two shard jobs, then the finishing job; the
    same manifest as converting them in one go."""
    from nuclick_core.data.marks import centroid_clicks
    from nuclick_core.data.synth import nuclei_scene

    (tmp_path / "tiles").mkdir()
    (tmp_path / "points").mkdir()
    for k in range(3):
        s = nuclei_scene(size=(128, 128), n_nuclei=8, seed=40 + k, radius_range=(5.0, 8.0))
        Image.fromarray(s.image).save(tmp_path / "tiles" / f"t{k}.png")
        _, xy = centroid_clicks(s.labels)
        (tmp_path / "points" / f"t{k}.csv").write_text(
            "x,y\n" + "".join(f"{x},{y}\n" for x, y in xy)
        )
    _one_sample(tmp_path)
    config = write_config(
        tmp_path,
        "samples: samples.tsv\n"
        "convert:\n"
        "  images: tiles\n"
        "  points: points\n"
        "  out: converted\n"
        "  shards: 2\n"
        f"  model: {known_model}\n"
        "  mpp: 0.5\n"
        "  threads: 1\n",
    )
    plan = snakemake("convert", "--dry-run", "--configfile", config, workdir=tmp_path)
    assert plan.returncode == 0, output_of(plan)
    assert job_counts(plan) == {"convert_shard": 2, "convert": 1, "total": 3}, output_of(plan)
    run = snakemake("convert", "--configfile", config, "--cores", "1", workdir=tmp_path)
    assert run.returncode == 0, output_of(run)
    manifest = json.loads((tmp_path / "converted" / "manifest.json").read_text())
    assert [r["image"] for r in manifest["per_image"]] == ["t0.png", "t1.png", "t2.png"]
    assert manifest["clicks"] == sum(r["clicks"] for r in manifest["per_image"]) > 0
    assert (tmp_path / "converted" / "summary.html").exists()
    assert sorted(p.name for p in (tmp_path / "converted" / "labels").iterdir()) == [
        "t0.png",
        "t1.png",
        "t2.png",
    ]


def _one_sample(folder: Path) -> None:
    """A valid sample sheet (the segment branch's; convert does not use it)."""
    Image.new("RGB", (32, 32), (230, 200, 220)).save(folder / "image.png")
    (folder / "clicks.csv").write_text("x,y\n10.5,10.5\n")
    write_sheet(folder, ["a\timage.png\tclicks.csv\tnucleus\t0.5\t"])


def test_convert_target_without_images_names_the_keys(tmp_path: Path):
    _one_sample(tmp_path)
    config = write_config(tmp_path, "samples: samples.tsv\n")
    run = snakemake("convert", "--dry-run", "--configfile", config, workdir=tmp_path)
    assert run.returncode != 0
    assert "convert.images and convert.points" in run.stdout + run.stderr, output_of(run)
