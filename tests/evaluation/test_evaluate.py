"""Evaluation through the engine, the experiments and the HTML report, on synthetic scenes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import shapely
from scipy import ndimage as ndi
from skimage.draw import disk

from nuclick_core.data.labelled import LabelledImage
from nuclick_core.data.marks import centroid_clicks, ground_truth_marks, skeleton_lines
from nuclick_core.data.synth import nuclei_scene
from nuclick_core.errors import AnnotationError
from nuclick_core.evaluation.evaluate import run_evaluation, shifted_sets
from nuclick_core.evaluation.report import write_report
from nuclick_core.inference.engine import ModelGeometry
from nuclick_core.inference.postprocess import PostprocessParams
from nuclick_core.inference.signals import gland_skeleton, polyline_map
from nuclick_core.io.annotations import squiggle_table
from tests.conftest import DarknessPredictor


def test_centroid_clicks_in_pixel_corner_coordinates() -> None:
    labels = np.zeros((10, 10), np.int32)
    labels[2:5, 6:9] = 7
    ids, xy = centroid_clicks(labels)
    assert ids.tolist() == [7]
    assert xy.tolist() == [[7.5, 3.5]]  # pixel (3, 7) has its centre at x 7.5, y 3.5


def test_evaluation_figures_and_report(tmp_path) -> None:
    items = []
    for seed in range(2):
        s = nuclei_scene(size=(160, 160), n_nuclei=18, seed=seed, clump_fraction=0.0)
        items.append(LabelledImage(f"synth{seed}", s.image, s.labels))
    geom = ModelGeometry(64, 0.5, PostprocessParams(threshold=0.5, min_size=5, min_hole=10))
    figures, results = run_evaluation(
        items, DarknessPredictor(64, sigma=6.0), geom, mpp=0.5, progress=lambda _: None
    )
    main = figures["main"]
    assert set(figures) >= {
        "main",
        "per_image",
        "jitter",
        "exclusion_off",
        "last_click_wins",
        "baselines",
    }
    assert main["objects"] == sum(len(np.unique(i.labels)) - 1 for i in items)
    assert 0.5 < main["aji"] <= 1.0 and 0.5 < main["dice"] <= 1.0
    # larger click jitter cannot help this click-centred predictor much
    assert figures["jitter"]["10.0"]["aji"] <= main["aji"] + 0.02
    assert set(figures["baselines"]) == {"watershed", "region_growing", "active_contour"}
    # the robustness yardstick: every shifted set, each scored over the same objects
    assert list(figures["robustness"]) == shifted_sets("nucleus")
    assert "clicks_anywhere" in figures["robustness"] and "stroke_half" not in figures["robustness"]
    for name, shifted in figures["robustness"].items():
        assert shifted["objects"] == main["objects"], name
    # a dark-pixel predictor reads colour: grayscale keeps its contrast, a lower declared mpp
    # shows it smaller objects than the clicks' patches expect, but it still finds them
    assert figures["robustness"]["grayscale"]["aji"] > 0.5
    assert figures["robustness"]["mpp_minus_30"]["aji"] != main["aji"]
    figures["data"] = {"images": [i.name for i in items], "path": "synthetic"}
    figures["model"] = {"name": "darkness", "sha256": "0" * 64}
    report = tmp_path / "report.html"
    write_report(report, figures, results, items)
    text = report.read_text()
    assert "Table II" in text and "Table IX" in text and "Table X" in text
    assert "Robustness: shifted images, scales and marks" in text and "JPEG at quality 30" in text
    assert text.count("data:image/png;base64,") == len(items)
    json.dumps(figures)  # every figure is JSON-ready


def _glands_labels() -> np.ndarray:
    """Two glands: a disk and an annulus (its lumen is background), far apart."""
    labels = np.zeros((200, 260), np.int32)
    rr, cc = disk((70, 70), 45, shape=labels.shape)
    labels[rr, cc] = 1
    rr, cc = disk((120, 190), 50, shape=labels.shape)
    labels[rr, cc] = 2
    rr, cc = disk((120, 190), 18, shape=labels.shape)
    labels[rr, cc] = 0
    return labels


def test_skeleton_lines_rasterise_back_onto_the_skeleton() -> None:
    mask = _glands_labels() == 2
    skel = gland_skeleton(mask)
    lines = skeleton_lines(skel, (3.0, 5.0))
    assert lines.geom_type in ("LineString", "MultiLineString")
    parts = getattr(lines, "geoms", [lines])
    drawn = polyline_map((210, 270), [np.asarray(ln.coords) - 0.5 for ln in parts]) > 0
    assert np.array_equal(np.argwhere(drawn), np.argwhere(skel) + np.array([5, 3]))
    # the annulus's squiggle stays in the gland and goes around the lumen
    assert not (skel & ~mask).any()
    assert ndi.binary_fill_holes(skel)[120, 190]


def test_ground_truth_squiggles_one_per_gland_inside_it() -> None:
    labels = _glands_labels()
    table, xy = ground_truth_marks(labels, "gland")
    assert table["kind"].tolist() == ["squiggle", "squiggle"]
    assert table["object"].tolist() == ["gland", "gland"]
    rows, cols = np.floor(xy[:, 1]).astype(int), np.floor(xy[:, 0]).astype(int)
    assert (labels[rows, cols] > 0).all()
    with pytest.raises(ValueError, match="not to gland squiggles"):
        ground_truth_marks(labels, "gland", jitter_sigma=3.0)
    with pytest.raises(AnnotationError, match="squiggle 1 is Point"):
        squiggle_table([shapely.Point(1, 1)], source="t")


def test_gland_evaluation_reports_glas_figures(tmp_path) -> None:
    labels = _glands_labels()
    image = np.where(labels[..., None] > 0, (90, 40, 110), (240, 235, 240)).astype(np.uint8)
    items = [LabelledImage("glands", image, labels)]
    geom = ModelGeometry(256, 1.0, PostprocessParams(0.5, 20, 8), mark="squiggle")
    figures, results = run_evaluation(
        items, _DarkPredictor(), geom, mpp=1.0, object_type="gland", progress=lambda _: None
    )
    main = figures["main"]
    assert main["objects"] == 2 and main["ok"] == 2
    assert main["f1"] == 1.0 and main["object_dice"] > 0.97
    assert main["object_hausdorff"] <= 2.0
    assert "jitter" not in figures and "baselines" not in figures
    assert set(figures) >= {"exclusion_off", "last_click_wins"}
    assert list(figures["robustness"]) == shifted_sets("gland")
    assert figures["robustness"]["stroke_long_axis"]["ok"] == 2
    figures["data"] = {"images": ["glands"], "path": "synthetic"}
    figures["model"] = {"name": "dark", "sha256": "0" * 64, "object_type": "gland"}
    write_report(tmp_path / "r.html", figures, results, items)
    text = (tmp_path / "r.html").read_text()
    assert "object_dice" in text and "GlaS test A" in text and "squiggles" in text
    assert text.count("data:image/png;base64,") == 1
    write_report(tmp_path / "r.html", figures, results, items, overlays=False)
    text = (tmp_path / "r.html").read_text()
    assert "data:image/png" not in text and "licence does not allow" in text


class _DarkPredictor:
    """Foreground = dark pixels, whatever the maps say."""

    patch_size = 256

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return (batch[:, :3].mean(1) < 0.5).astype(np.float32)


def test_evaluate_cli_records_the_image_offset(tmp_path, capsys) -> None:
    pytest.importorskip("torch")
    from nuclick_core.cli.main import main
    from nuclick_core.data.synth import scene_to_png
    from tests.conftest import export_tiny_model

    (tmp_path / "data" / "images").mkdir(parents=True)
    (tmp_path / "data" / "labels").mkdir()
    scene = nuclei_scene(size=(96, 96), n_nuclei=6, seed=4)
    scene_to_png(scene, tmp_path / "data/images/a.png", tmp_path / "data/labels/a.png")
    model = export_tiny_model(tmp_path / "models" / "tiny")
    out = tmp_path / "eval.json"
    args = ["evaluate", "--model", str(model), "--data", str(tmp_path / "data"), "--mpp", "0.5"]
    args += ["--no-experiments", "--no-baselines", "--threads", "1", "--out", str(out)]
    assert main([*args, "--image-offset=-0.5,-0.25"]) == 0
    assert json.loads(out.read_text())["data"]["image_offset"] == [-0.5, -0.25]
    with pytest.raises(SystemExit):
        main([*args, "--image-offset", "half"])
    assert (
        "--image-offset takes DX,DY in pixels, e.g. -0.5,-0.5; got 'half'"
        in capsys.readouterr().err
    )
