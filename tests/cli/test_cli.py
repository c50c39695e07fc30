"""`nuclick segment` end to end: output contract, provenance, and bad inputs that leave no file."""

from __future__ import annotations

import json
import os

import geopandas as gpd
import numpy as np
import pyarrow.parquet as pq
import pytest
import shapely

from nuclick_core.cli.main import main
from nuclick_core.io.instances import read_provenance


def _csv(path, centres) -> None:
    path.write_text("x,y\n" + "".join(f"{x},{y}\n" for x, y in centres))


def test_segment_writes_geoparquet_and_geojson(tmp_path, demo_scene, tiny_model, caplog) -> None:
    caplog.set_level("INFO", logger="nuclick")
    image, centres = demo_scene
    clicks = tmp_path / "clicks.csv"
    _csv(clicks, centres)
    out, gj = tmp_path / "out" / "instances.parquet", tmp_path / "out" / "instances.geojson"
    code = main(
        [
            "segment",
            "--slide",
            str(image),
            "--annotations",
            str(clicks),
            "--out",
            str(out),
            "--geojson",
            str(gj),
            "--model",
            str(tiny_model),
            "--mpp",
            "0.5",
            "--threads",
            "1",
            "--batch-size",
            "4",
        ]
    )
    assert code == 0
    n = len(centres)
    assert f"progress: {n}/{n} clicks (100.0%)" in caplog.text  # the job log's last progress
    assert read_provenance(out)["run"]["clicks"] == n  # the run's statistics travel with it
    geo = json.loads(pq.read_schema(out).metadata[b"geo"])
    assert geo["version"] == "1.1.0" and geo["primary_column"] == "geometry"
    column = geo["columns"]["geometry"]
    assert column["crs"] is None and "bbox" in column["covering"]
    table = gpd.read_parquet(out)
    assert len(table) == len(centres)
    assert sorted(table["click_id"]) == list(range(len(centres)))
    ok = table[table["status"] == "ok"]
    assert len(ok) >= len(centres) // 2  # the tiny model finds the dark disks
    # the GeoParquet 1.1 metadata describes the geometries actually present (#13)
    present = sorted(set(ok.geometry.geom_type))
    assert sorted(column["geometry_types"]) == present and column["encoding"] == "WKB"
    assert column["bbox"] == pytest.approx(list(shapely.total_bounds(ok.geometry.values)))
    raw = pq.read_table(out).to_pandas()
    has = raw["geometry"].notna()
    bounds = shapely.bounds(shapely.from_wkb(raw.loc[has, "geometry"].values))
    cover = np.array([[b["xmin"], b["ymin"], b["xmax"], b["ymax"]] for b in raw.loc[has, "bbox"]])
    assert np.allclose(cover, bounds)
    x0, y0, x1, y1 = shapely.total_bounds(ok.geometry.values)
    box = (x0, y0, (x0 + x1) / 2, (y0 + y1) / 2)
    sub = gpd.read_parquet(out, bbox=box)
    want = set(ok[ok.intersects(shapely.box(*box))]["click_id"])
    assert want and want <= set(sub["click_id"])
    prov = read_provenance(out)
    assert prov["model"]["name"] == "tiny" and len(prov["model"]["sha256"]) == 64
    assert prov["slide"]["mpp"] == 0.5 and prov["slide"]["mpp_source"] == "user"
    features = json.loads(gj.read_text())["features"]
    assert len(features) == len(ok) > 0
    for props in (f["properties"] for f in features):
        assert props["objectType"] == "detection"
        assert {"name", "color"} <= set(props["classification"])
        assert {"score", "area_um2"} <= set(props["measurements"])


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "does not exist"),
        ("", "no marks"),
        ("a,b\n1,2\n", "x"),
        ("x,y\n10,abc\n", "abc"),
        ("x,y\n10,10\n10,10\n", "uplicat"),
        ("x,y\n5000,5000\n6000,7000\n", "level-0"),
        (
            '{"type": "Feature", "geometry": {"type": "Polygon", "coordinates": '
            '[[[0,0],[1,0],[1,1],[0,0]]]}, "properties": {}}',
            "Polygon",
        ),
    ],
)
def test_bad_annotations_fail_cleanly(tmp_path, demo_scene, tiny_model, caplog, content, message):
    image, _ = demo_scene
    suffix = ".geojson" if content and content.startswith("{") else ".csv"
    clicks = tmp_path / f"clicks{suffix}"
    if content is not None:
        clicks.write_text(content)
    out = tmp_path / "out" / "instances.parquet"
    code = main(
        [
            "segment",
            "--slide",
            str(image),
            "--annotations",
            str(clicks),
            "--out",
            str(out),
            "--model",
            str(tiny_model),
            "--mpp",
            "0.5",
            "--threads",
            "1",
        ]
    )
    assert code == 2
    assert message in caplog.text
    assert str(clicks.name) in caplog.text
    assert not out.exists()
    assert not any(out.parent.glob("*")) if out.parent.exists() else True


def test_unreadable_slide_fails_cleanly(tmp_path, tiny_model, caplog) -> None:
    slide = tmp_path / "broken.svs"
    slide.write_bytes(b"nonsense")
    clicks = tmp_path / "c.csv"
    _csv(clicks, [(1, 1)])
    out = tmp_path / "o.parquet"
    code = main(
        [
            "segment",
            "--slide",
            str(slide),
            "--annotations",
            str(clicks),
            "--out",
            str(out),
            "--model",
            str(tiny_model),
        ]
    )
    assert code == 2 and "broken.svs" in caplog.text and not out.exists()


def test_unknown_model_is_a_clear_error(tmp_path, demo_scene, caplog) -> None:
    image, centres = demo_scene
    clicks = tmp_path / "c.csv"
    _csv(clicks, centres)
    code = main(
        [
            "segment",
            "--slide",
            str(image),
            "--annotations",
            str(clicks),
            "--out",
            str(tmp_path / "o.parquet"),
            "--model",
            "no-such-model",
        ]
    )
    assert code == 2 and "no-such-model" in caplog.text


def _overlay(image, instances, clicks, png, *extra: str) -> int:
    args = ["overlay", "--slide", str(image), "--instances", str(instances)]
    return main([*args, "--annotations", str(clicks), "--out", str(png), *extra])


@pytest.fixture
def segmented(tmp_path, demo_scene, tiny_model):
    """The demo scene segmented by the tiny model: (image, clicks CSV, instances parquet)."""
    image, centres = demo_scene
    clicks = tmp_path / "clicks.csv"
    _csv(clicks, centres)
    out = tmp_path / "i.parquet"
    args = ["segment", "--slide", str(image), "--annotations", str(clicks), "--out", str(out)]
    assert main([*args, "--model", str(tiny_model), "--mpp", "0.5", "--threads", "1"]) == 0
    return image, clicks, out


def test_label_mask_export_matches_polygons(tmp_path, segmented) -> None:
    import numpy as np
    from PIL import Image

    _, _, out = segmented
    tif = tmp_path / "labels.tif"
    assert main(["export-labels", "--instances", str(out), "--out", str(tif)]) == 0
    with Image.open(tif) as im:
        labels = np.array(im)
    table = gpd.read_parquet(out)
    assert labels.shape == (300, 400)
    for row in table[table["status"] == "ok"].itertuples():
        # the model's grid is level 0 here, so polygons are exact pixel outlines
        assert (labels == row.instance_id).sum() == row.area_px
    assert (
        main(["export-labels", "--instances", str(out), "--out", str(tif), "--max-pixels", "100"])
        == 2
    )


def test_overlay_and_stability_commands(tmp_path, segmented, tiny_model) -> None:
    image, clicks, out = segmented
    png = tmp_path / "o.png"
    assert _overlay(image, out, clicks, png, "--region", "0,0,200,150", "--mpp", "0.5") == 0
    from PIL import Image

    with Image.open(png) as im:
        assert im.size == (200, 150)
    stab = tmp_path / "s.json"
    assert (
        main(
            [
                "stability",
                "--slide",
                str(image),
                "--annotations",
                str(clicks),
                "--out",
                str(stab),
                "--model",
                str(tiny_model),
                "--mpp",
                "0.5",
                "--sigmas",
                "0,2",
                "--threads",
                "1",
            ]
        )
        == 0
    )
    result = json.loads(stab.read_text())["stability"]
    assert result["0"]["mean_iou"] == 1.0  # no jitter: identical masks
    assert 0.0 <= result["2"]["mean_iou"] <= 1.0


def test_run_report(tmp_path, segmented, tiny_model) -> None:
    image, clicks, out = segmented
    common = ["--model", str(tiny_model), "--mpp", "0.5", "--threads", "1"]
    png, stab, html = tmp_path / "o.png", tmp_path / "s.json", tmp_path / "r.html"
    assert _overlay(image, out, clicks, png, "--mpp", "0.5") == 0
    assert (
        main(
            [
                "stability",
                "--slide",
                str(image),
                "--annotations",
                str(clicks),
                "--out",
                str(stab),
                "--sigmas",
                "1",
                *common,
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "run-report",
                "--instances",
                str(out),
                "--stability",
                str(stab),
                "--overlay",
                str(png),
                "--out",
                str(html),
            ]
        )
        == 0
    )
    text = html.read_text()
    assert "Stability under click jitter" in text and "0.5 um/px" in text
    assert "data:image/png;base64," in text


def test_no_instance_at_all_still_writes_valid_geoparquet(tmp_path, demo_scene, tiny_model) -> None:
    image, _ = demo_scene
    clicks = tmp_path / "glass.csv"
    _csv(clicks, [(395, 5), (5, 295)])  # both on white glass
    out = tmp_path / "none.parquet"
    args = ["segment", "--slide", str(image), "--annotations", str(clicks), "--out", str(out)]
    assert main([*args, "--model", str(tiny_model), "--mpp", "0.5", "--threads", "1"]) == 0
    geo = json.loads(pq.read_schema(out).metadata[b"geo"])
    assert "bbox" not in geo["columns"]["geometry"]  # the spec wants 4 numbers or no key
    table = gpd.read_parquet(out)
    assert table["status"].tolist() == ["on_background"] * 2
    assert len(gpd.read_parquet(out, bbox=(0, 0, 10, 10))) == 0


def test_ctrl_c_prints_one_line_and_exits_130(tmp_path, monkeypatch, caplog) -> None:
    import nuclick_core.inference.run as run

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(run, "run_slide", interrupted)
    argv = ["segment", "--slide", "s.png", "--annotations", "a.csv"]
    assert main([*argv, "--out", str(tmp_path / "o.parquet")]) == 130
    assert "interrupted" in caplog.text and "Traceback" not in caplog.text


def test_marks_mixing_labelled_and_unlabelled_rows_are_written(tmp_path, demo_scene, tiny_model):
    """QuPath and ASAP exports often classify some points and not others (#13, defect 1)."""
    image, centres = demo_scene
    clicks = tmp_path / "mixed.csv"
    rows = [f"{x},{y},{'tumour' if k % 2 else ''}" for k, (x, y) in enumerate(centres)]
    clicks.write_text("x,y,label\n" + "\n".join(rows) + "\n")
    out = tmp_path / "mixed.parquet"
    argv = ["segment", "--slide", str(image), "--annotations", str(clicks), "--out", str(out)]
    assert main([*argv, "--model", str(tiny_model), "--mpp", "0.5", "--threads", "1"]) == 0
    labels = pq.read_table(out).sort_by("click_id").column("label").to_pylist()
    assert labels[1::2] == ["tumour"] * (len(centres) // 2)
    assert all(v is None for v in labels[0::2])


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ("--out=ANNOTATIONS", "is the --annotations input: writing it would destroy the input"),
        ("--out=SLIDE", "is the --slide input"),
        ("--geojson=OUT", "--out and --geojson are the same file"),
        ("--out=FILE/o.parquet", "is a file, not a folder"),
        ("--out=DIR", "is a folder; give a file path inside it"),
        ("--geojson=FILE/x/o.geojson", "is a file, not a folder"),
    ],
)
def test_bad_output_paths_stop_before_the_slide_is_read(
    tmp_path, demo_scene, monkeypatch, caplog, where, message
):
    """#13 defects 2 and 3: an output equal to an input destroyed it; an unwritable output
    failed only after the whole run."""
    import nuclick_core.inference.run as run

    def never(*args, **kwargs):
        raise AssertionError("the slide was read before the outputs were checked")

    monkeypatch.setattr(run, "run_slide", never)
    image, centres = demo_scene
    clicks = tmp_path / "c.csv"
    _csv(clicks, centres)
    (tmp_path / "FILE").write_text("mine")
    (tmp_path / "DIR").mkdir()
    before = {p: p.read_bytes() for p in (image, clicks, tmp_path / "FILE")}
    out = tmp_path / "o.parquet"
    places = {"ANNOTATIONS": clicks, "SLIDE": image, "OUT": out}
    flag, value = where.split("=")
    for name, path in places.items():
        value = value.replace(name, str(path))
    value = value if value.startswith("/") else str(tmp_path / value)
    argv = ["segment", "--slide", str(image), "--annotations", str(clicks), "--out", str(out)]
    argv += [flag, value]
    assert main(argv) == 2
    assert message in caplog.text
    assert {p: p.read_bytes() for p in before} == before
    assert not out.exists() or flag == "--out"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_output_folder_stops_before_the_run(tmp_path, demo_scene, caplog) -> None:
    image, centres = demo_scene
    clicks = tmp_path / "c.csv"
    _csv(clicks, centres)
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        argv = ["segment", "--slide", str(image), "--annotations", str(clicks)]
        assert main([*argv, "--out", str(locked / "o.parquet")]) == 2
        assert "cannot be written" in caplog.text
    finally:
        locked.chmod(0o700)


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--threads", "-1", "-1 must be at least 0"),
        ("--tile", "0", "0 must be at least 64"),
        ("--batch-size", "0", "0 must be at least 1"),
        ("--threads", "two", "'two' is not a whole number"),
    ],
)
def test_out_of_range_options_are_refused(tmp_path, capsys, flag, value, message) -> None:
    argv = ["segment", "--slide", "s.png", "--annotations", "a.csv"]
    with pytest.raises(SystemExit) as info:
        main([*argv, "--out", str(tmp_path / "o.parquet"), flag, value])
    assert info.value.code == 2 and message in capsys.readouterr().err


def test_a_network_with_known_output_gives_exact_statuses_and_areas(
    tmp_path, demo_scene, known_model
) -> None:
    """#13: through the real ONNX Runtime path, a stand-in network whose output is known makes
    every status and area an exact expectation, not a check behind an if."""
    image, centres = demo_scene
    clicks = tmp_path / "c.csv"
    glass = [(390.0, 10.0), (5.0, 290.0)]  # bright background
    _csv(clicks, [*map(tuple, centres), *glass, (-4.0, 10.0)])
    out = tmp_path / "o.parquet"
    argv = ["segment", "--slide", str(image), "--annotations", str(clicks), "--out", str(out)]
    assert main([*argv, "--model", str(known_model), "--mpp", "0.5", "--threads", "1"]) == 0
    table = gpd.read_parquet(out).sort_values("click_id")
    n = len(centres)
    want = ["ok"] * n + ["on_background"] * len(glass) + ["outside_slide"]
    assert table["status"].tolist() == want
    ok = table.iloc[:n]
    isolated = ok.iloc[[2, 5, 6, 7, 8, 11]]  # disks of radius 8 px with no neighbour
    assert np.allclose(isolated.geometry.area, np.pi * 8**2, rtol=0.2)
    assert shapely.intersection_all(ok.geometry.values[:2]).area == 0  # a touching pair split
