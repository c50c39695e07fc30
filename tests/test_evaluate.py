"""Evaluation through the engine, the experiments and the HTML report, on synthetic scenes."""

from __future__ import annotations

import json

import numpy as np

from nuclick_core.engine import ModelGeometry
from nuclick_core.evaluate import centroid_clicks, run_evaluation
from nuclick_core.postprocess import PostprocessParams
from nuclick_core.report import write_report
from nuclick_core.synth import nuclei_scene
from nuclick_core.trainset import LabelledImage
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
    figures["data"] = {"images": [i.name for i in items], "path": "synthetic"}
    figures["model"] = {"name": "darkness", "sha256": "0" * 64}
    report = tmp_path / "report.html"
    write_report(report, figures, results, items)
    text = report.read_text()
    assert "Table II" in text and "Table IX" in text and "Table X" in text
    assert text.count("data:image/png;base64,") == len(items)
    json.dumps(figures)  # every figure is JSON-ready
