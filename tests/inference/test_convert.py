"""nuclick convert (#15): generated tiles with ground-truth centroid points become a training
folder whose label images score what nuclick evaluate reports, and which trains."""

from __future__ import annotations

import csv
import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from nuclick_core.cli.main import main
from nuclick_core.data.labelled import LabelledImage
from nuclick_core.data.marks import centroid_clicks
from nuclick_core.data.synth import nuclei_scene
from nuclick_core.evaluation.evaluate import evaluate_model, score_labels
from nuclick_core.inference.models import load_card

NAMES = ("t0", "t1", "t2")


@pytest.fixture
def tiles(tmp_path):
    """Three generated tiles, their ground truth, and one point CSV per tile (centroids)."""
    images, points = tmp_path / "images", tmp_path / "points"
    images.mkdir()
    points.mkdir()
    items = []
    for k, name in enumerate(NAMES):
        s = nuclei_scene(size=(160, 160), n_nuclei=14, seed=20 + k, radius_range=(5.0, 9.0))
        Image.fromarray(s.image).save(images / f"{name}.png")
        _, xy = centroid_clicks(s.labels)
        with open(points / f"{name}.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["x", "y"])
            w.writerows(xy.tolist())
        items.append(LabelledImage(name, s.image, s.labels))
    return images, points, items


def test_converted_labels_score_what_evaluate_reports(tmp_path, tiles, known_model) -> None:
    images, points, items = tiles
    out = tmp_path / "out"
    argv = ["convert", "--images", str(images), "--points", str(points), "--out", str(out)]
    assert main([*argv, "--model", str(known_model), "--mpp", "0.5", "--threads", "1"]) == 0
    ajis = []
    for item in items:
        with Image.open(out / "labels" / f"{item.name}.png") as im:
            labels = np.array(im).astype(np.int32)
        assert labels.shape == item.labels.shape
        ajis.append(score_labels(item.labels.astype(np.int32), labels)["aji"])
    figures, _ = evaluate_model(
        load_card(known_model),
        items,
        mpp=0.5,
        data={},
        threads=1,
        experiments=False,
        baselines=False,
        robustness=False,
        progress=lambda _: None,
    )
    assert round(float(np.mean(ajis)), 3) == round(figures["main"]["aji"], 3)
    assert figures["main"]["aji"] > 0.3  # the stand-in segments the nuclei
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["images"] == 3 and manifest["model"]["name"] == "known"
    assert manifest["clicks"] == sum(len(np.unique(i.labels)) - 1 for i in items)
    with open(out / "manifest.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["image"] for r in rows] == [f"{n}.png" for n in NAMES]
    assert sorted(p.name for p in (out / "images").iterdir()) == [f"{n}.png" for n in NAMES]
    assert len(list((out / "instances").glob("*.parquet"))) == 3
    summary = (out / "summary.html").read_text()
    assert "Conversion of 3 images" in summary and all(f"{n}.png" in summary for n in NAMES)


def test_a_converted_folder_trains(tmp_path, tiles, known_model) -> None:
    pytest.importorskip("torch")
    images, points, _ = tiles
    out = tmp_path / "out"
    argv = ["convert", "--images", str(images), "--points", str(points), "--out", str(out)]
    assert main([*argv, "--model", str(known_model), "--mpp", "0.5", "--threads", "1"]) == 0
    ckpt = tmp_path / "ckpt"
    train = ["train", "--data", str(out), "--format", "folder", "--val-names", "t2"]
    train += ["--epochs", "1", "--steps-per-epoch", "2", "--batch-size", "2", "--patch-size", "64"]
    assert main([*train, "--width", "0.0625", "--threads", "1", "--out", str(ckpt)]) == 0
    assert (ckpt / "best.pt").exists()


def test_one_points_table_with_an_image_column(tmp_path, tiles, known_model) -> None:
    images, points, _ = tiles
    rows = []
    for name in NAMES[:2]:  # t2 has no points: converted with an empty label image
        for x, y in pd.read_csv(points / f"{name}.csv").to_numpy():
            label = "lymphocyte" if len(rows) % 3 == 0 else "tumour"
            rows.append({"image": f"{name}.png", "x": x, "y": y, "label": label})
    table = tmp_path / "points.csv"
    pd.DataFrame(rows).to_csv(table, index=False)
    out = tmp_path / "out"
    argv = ["convert", "--images", str(images), "--points", str(table), "--out", str(out)]
    assert main([*argv, "--model", str(known_model), "--mpp", "0.5", "--threads", "1"]) == 0
    with Image.open(out / "labels" / "t2.png") as im:
        assert not np.array(im).any()
    inst = pd.read_parquet(out / "instances" / "t0.parquet")
    assert set(inst["label"]) == {"tumour", "lymphocyte"}
    # class maps: the class index of the instance at each pixel, one vocabulary for all images
    classes = json.loads((out / "classes.json").read_text())
    assert classes == {"0": "background", "1": "lymphocyte", "2": "tumour"}
    with Image.open(out / "labels" / "t0.png") as a, Image.open(out / "classes" / "t0.png") as b:
        labels, class_map = np.array(a), np.array(b)
    for row in inst[inst["status"] == "ok"].itertuples():
        want = 1 if row.label == "lymphocyte" else 2
        assert (class_map[labels == row.instance_id] == want).all()
    assert (class_map[labels == 0] == 0).all()
    with Image.open(out / "classes" / "t2.png") as im:
        assert not np.array(im).any()


def test_bad_points_tables_name_the_problem(tmp_path, tiles, known_model, caplog) -> None:
    images, _, _ = tiles
    table = tmp_path / "points.csv"
    pd.DataFrame([{"image": "nope.png", "x": 1, "y": 2}]).to_csv(table, index=False)
    argv = [
        "convert",
        "--images",
        str(images),
        "--points",
        str(table),
        "--out",
        str(tmp_path / "o"),
    ]
    assert main([*argv, "--model", str(known_model), "--mpp", "0.5"]) == 2
    assert "nope.png" in caplog.text
    pd.DataFrame([{"image": "t0.png", "x": "abc", "y": 2}]).to_csv(table, index=False)
    assert main([*argv, "--model", str(known_model), "--mpp", "0.5"]) == 2
    assert "row 1: x 'abc' is not a finite number" in caplog.text


def test_shards_then_finish_equal_one_conversion(tmp_path, tiles, known_model, caplog) -> None:
    """Two shards converted apart and finished together give the same labels, review column
    and manifest totals as one conversion of all images."""
    images, points, _ = tiles
    common = ["--images", str(images), "--points", str(points)]
    common += ["--model", str(known_model), "--mpp", "0.5", "--threads", "1"]
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    assert main(["convert", *common, "--out", str(whole)]) == 0
    for k in (0, 1):
        assert main(["convert", *common, "--out", str(parts), "--shard", f"{k}/2"]) == 0
    assert not (parts / "manifest.json").exists()
    assert main(["convert", "--finish", "3", "--out", str(parts)]) == 2  # a shard is missing
    assert "0-of-3.json is missing: shard 0 of 3" in caplog.text
    assert main(["convert", "--finish", "2", "--out", str(parts)]) == 0
    a = json.loads((whole / "manifest.json").read_text())
    b = json.loads((parts / "manifest.json").read_text())
    assert a["instances_by_status"] == b["instances_by_status"] and a["to_check"] == b["to_check"]
    assert [r["image"] for r in b["per_image"]] == [f"{n}.png" for n in NAMES]
    for name in NAMES:
        for sub, suffix in (("labels", ".png"), ("instances", ".parquet")):
            assert (whole / sub / f"{name}{suffix}").exists()
        ta = pd.read_parquet(whole / "instances" / f"{name}.parquet")
        tb = pd.read_parquet(parts / "instances" / f"{name}.parquet")
        assert ta["review"].tolist() == tb["review"].tolist()
        assert np.array_equal(
            np.array(Image.open(whole / "labels" / f"{name}.png")),
            np.array(Image.open(parts / "labels" / f"{name}.png")),
        )
    assert (parts / "summary.html").exists()
    with pytest.raises(SystemExit) as info:  # the parser refuses K >= N
        main(["convert", "--out", str(parts), "--shard", "2/2", *common])
    assert info.value.code == 2


def test_consep_layout_converts_like_the_project_csv(tmp_path, tiles, known_model) -> None:
    """CoNSeP's Labels/*.mat (inst_centroid, inst_type) read directly: the same label images as
    the CSV centroids, and the type ids as classes."""
    from scipy.io import savemat
    from scipy.ndimage import center_of_mass

    images, points, items = tiles
    mats = tmp_path / "Labels"
    mats.mkdir()
    for item in items:
        ids = np.unique(item.labels)[1:]
        rc = np.array(center_of_mass(np.ones_like(item.labels), item.labels, ids))
        savemat(mats / f"{item.name}.mat", {"inst_centroid": rc[:, ::-1], "inst_type": ids % 2 + 1})
    runs = {}
    for name, source in (("csv", points), ("mat", mats)):
        out = tmp_path / name
        argv = ["convert", "--images", str(images), "--points", str(source), "--out", str(out)]
        assert main([*argv, "--model", str(known_model), "--mpp", "0.5", "--threads", "1"]) == 0
        runs[name] = out
    for item in items:
        name = f"{item.name}.png"
        with (
            Image.open(runs["csv"] / "labels" / name) as a,
            Image.open(runs["mat"] / "labels" / name) as b,
        ):
            np.testing.assert_array_equal(np.array(a), np.array(b))
    assert json.loads((runs["mat"] / "classes.json").read_text()) == {
        "0": "background",
        "1": "1",
        "2": "2",
    }
