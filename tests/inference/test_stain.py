"""Optional stain normalisation at inference: Reinhard's transform from a slide overview to the
card's target, chosen by the card or the flag, recorded in the provenance."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from nuclick_core.data.shifts import reinhard_normalise
from nuclick_core.errors import ModelError
from nuclick_core.inference.models import load_card
from nuclick_core.inference.run import run_slide
from nuclick_core.inference.stain import (
    card_target,
    lab_stats,
    normaliser,
    reinhard,
    slide_overview,
    wants_normalisation,
)
from nuclick_core.io.slides import open_slide


def _tissue(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = np.full((96, 128, 3), 235, np.uint8)
    img[20:80, 10:110] = rng.integers(0, 40, (60, 100, 3)) + np.array([160, 80, 150])
    return img


def test_reinhard_moves_the_tissue_statistics_to_the_target() -> None:
    img = _tissue()
    target = (np.array([50.0, 30.0, -10.0]), np.array([12.0, 6.0, 5.0]))
    out = reinhard(img, lab_stats(img), target)
    mean, std = lab_stats(out)
    assert np.allclose(mean, target[0], atol=1.5) and np.allclose(std, target[1], atol=1.5)
    same = reinhard(img, lab_stats(img), lab_stats(img))  # its own statistics: no change
    assert np.abs(same.astype(int) - img).max() <= 1
    assert np.array_equal(reinhard_normalise(img, target), out)  # the yardstick's shift


def test_slide_overview_and_the_slide_wide_transform(tmp_path) -> None:
    path = tmp_path / "s.png"
    Image.fromarray(np.tile(_tissue(), (30, 20, 1))).save(path)  # 2,880 x 2,560
    slide = open_slide(path, mpp=0.5, fallback_mpp=0.5)
    view = slide_overview(slide, side=1000)
    assert max(view.shape[:2]) <= 1000 and view.shape[0] == int(np.ceil(2880 / 3))
    target = (np.array([50.0, 30.0, -10.0]), np.array([12.0, 6.0, 5.0]))
    raw = slide.read_level(0, 0, 0, 128, 96)
    slide.colour = normaliser(slide, target)
    tile = slide.read_level(0, 0, 0, 128, 96)
    assert not np.array_equal(tile, raw)
    far = slide.read_level(0, 128 * 7, 96 * 11, 128, 96)  # every tile: the same transform
    assert np.array_equal(tile, far)


def test_the_card_and_the_flag_decide(tmp_path, demo_scene, tiny_model) -> None:
    model = tmp_path / "tiny"
    shutil.copytree(tiny_model, model)
    card = load_card(model)
    assert not wants_normalisation(card, "card") and wants_normalisation(card, "on")
    with pytest.raises(ModelError, match=r"inference\.stain_target"):
        card_target(card)
    image, centres = demo_scene
    clicks = tmp_path / "c.csv"
    clicks.write_text("x,y\n" + "".join(f"{x},{y}\n" for x, y in centres))
    kw = dict(model=str(model), mpp=0.5, threads=1, progress_every=0)
    with pytest.raises(ModelError, match="stain-normalise off"):
        run_slide(image, clicks, stain_normalise="on", **kw)
    raw = json.loads((model / "model.json").read_text())
    raw.setdefault("inference", {})["stain_target"] = {
        "lab_mean": [60.0, 20.0, -5.0],
        "lab_std": [10.0, 5.0, 5.0],
    }
    raw["inference"]["stain_normalise"] = True
    (model / "model.json").write_text(json.dumps(raw))
    on = run_slide(image, clicks, **kw)  # the card says on
    off = run_slide(image, clicks, stain_normalise="off", **kw)
    assert on.provenance["config"]["stain_normalise"]["target_lab"][0] == [60.0, 20.0, -5.0]
    assert off.provenance["config"]["stain_normalise"] is False
    assert len(on.table) == len(off.table) == len(centres)
