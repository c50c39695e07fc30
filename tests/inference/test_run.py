"""One slide end to end as a library call, and the status vocabulary it writes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nuclick_core.cli.main import main
from nuclick_core.errors import NuclickError
from nuclick_core.inference.run import open_run, run_slide, write_run
from nuclick_core.io import status
from nuclick_core.io.instances import read_instances, read_provenance


def _clicks(tmp_path, centres, extra=()):
    path = tmp_path / "clicks.csv"
    rows = [*map(tuple, centres), *extra]
    path.write_text("x,y\n" + "".join(f"{x},{y}\n" for x, y in rows))
    return path


def test_run_slide_returns_table_stats_and_provenance(tmp_path, demo_scene, tiny_model) -> None:
    image, centres = demo_scene
    # one click outside the slide and one on glass: statuses from the vocabulary
    clicks = _clicks(tmp_path, centres, extra=[(5000.0, 10.0), (395.0, 5.0)])
    run = run_slide(image, clicks, model=str(tiny_model), mpp=0.5, threads=1, batch_size=4)
    assert len(run.table) == len(centres) + 2
    assert set(run.table["status"]) <= set(status.STATUSES)
    assert run.table["status"].iloc[len(centres)] == status.OUTSIDE_SLIDE
    assert run.stats["clicks"] == len(run.table)
    assert run.stats["patches"] == len(centres) + 1  # every click inside the slide
    assert sum(run.stats["statuses"].values()) == len(run.table)
    assert run.provenance["model"]["name"] == "tiny"
    assert run.provenance["slide"]["mpp"] == 0.5
    out = tmp_path / "out.parquet"
    write_run(run, out, geojson=tmp_path / "out.geojson")
    written = {**run.provenance, "run": run.stats}  # the statistics travel with the table
    assert read_provenance(out) == json.loads(json.dumps(written, default=str))
    back = read_instances(out).sort_values("click_id")
    assert list(back["status"]) == list(run.table["status"])
    assert json.loads((tmp_path / "out.geojson").read_text())["type"] == "FeatureCollection"


def test_open_run_refuses_a_model_of_another_object_type(tmp_path, demo_scene, tiny_model):
    image, centres = demo_scene
    clicks = _clicks(tmp_path, centres)
    with (
        pytest.raises(NuclickError, match="is a nucleus model but --object is cell"),
        open_run(image, clicks, model=str(tiny_model), object_type="cell", mpp=0.5),
    ):
        pass


def test_stability_makes_the_same_model_check_as_segment(tmp_path, demo_scene, tiny_model):
    image, centres = demo_scene
    clicks = _clicks(tmp_path, centres)
    args = ["--slide", str(image), "--annotations", str(clicks), "--model", str(tiny_model)]
    out = tmp_path / "s.json"
    assert main(["stability", *args, "--object", "cell", "--out", str(out)]) == 2
    assert not out.exists()


def test_statuses_are_documented() -> None:
    assert status.PENDING not in status.STATUSES
    assert all(v and isinstance(v, str) for v in status.STATUSES.values())
    consts = {v for k, v in vars(status).items() if k.isupper() and isinstance(v, str)}
    assert consts - {status.PENDING} == set(status.STATUSES)
    assert np.all([s == s.lower() for s in status.STATUSES])


def test_spilled_geometries_write_the_same_files_as_held_ones(
    tmp_path, demo_scene, tiny_model
) -> None:
    image, centres = demo_scene
    clicks = _clicks(tmp_path, centres, extra=[(5000.0, 10.0)])
    kw = dict(model=str(tiny_model), mpp=0.5, threads=1, batch_size=4, progress_every=0)
    held = run_slide(image, clicks, **kw)
    spill = tmp_path / "spill"
    spill.mkdir()
    spilled = run_slide(image, clicks, spill_dir=spill, **kw)
    assert spilled.geometries.spilled and "geometry" not in spilled.table.columns
    assert len(list(spill.iterdir())) == 1  # the WKB file, while the run is open
    for run, name in ((held, "held"), (spilled, "spilled")):
        write_run(run, tmp_path / f"{name}.parquet", geojson=tmp_path / f"{name}.geojson")
    spilled.geometries.close()
    assert list(spill.iterdir()) == []  # closing removes it
    a, b = read_instances(tmp_path / "held.parquet"), read_instances(tmp_path / "spilled.parquet")
    assert a.drop(columns="geometry").equals(b.drop(columns="geometry"))
    assert list(a.geometry.to_wkb()) == list(b.geometry.to_wkb())
    assert (tmp_path / "held.geojson").read_bytes() == (tmp_path / "spilled.geojson").read_bytes()
    ok = (a["status"] == status.OK).sum()
    assert ok > 0 and len(json.loads((tmp_path / "held.geojson").read_text())["features"]) == ok


def test_segment_cli_spills_into_the_given_folder_and_refuses_a_missing_one(
    tmp_path, demo_scene, tiny_model
) -> None:
    image, centres = demo_scene
    clicks = _clicks(tmp_path, centres)
    out = tmp_path / "o.parquet"
    args = ["segment", "--slide", str(image), "--annotations", str(clicks)]
    args += ["--model", str(tiny_model), "--mpp", "0.5", "--out", str(out)]
    assert main([*args, "--spill-dir", str(tmp_path / "nowhere")]) != 0
    assert not out.exists()
    spill = tmp_path / "spill"
    spill.mkdir()
    assert main([*args, "--spill-dir", str(spill)]) == 0
    assert out.exists() and list(spill.iterdir()) == []
    assert len(read_instances(out)) == len(centres)
