"""Training branch on synthetic data: signals, a few steps, resume, export with parity."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage as ndi

torch = pytest.importorskip("torch")

from nuclick_core.data.synth import nuclei_scene  # noqa: E402
from nuclick_core.errors import ModelError  # noqa: E402
from nuclick_core.inference.models import load_card  # noqa: E402
from nuclick_core.inference.signals import gland_skeleton, sample_click  # noqa: E402
from nuclick_core.training.click_patches import (  # noqa: E402
    ClickPatchSampler,
    LabelledImage,
    index_objects,
    near_miss_click,
)
from nuclick_core.training.export import export_model  # noqa: E402
from nuclick_core.training.train import TrainConfig, train  # noqa: E402


def _items(n: int = 2) -> list[LabelledImage]:
    out = []
    for seed in range(n):
        s = nuclei_scene(size=(128, 128), n_nuclei=14, seed=seed)
        out.append(LabelledImage(f"synth{seed}", s.image, s.labels))
    return out


def test_click_is_sampled_inside_away_from_the_boundary() -> None:
    mask = np.zeros((30, 30), bool)
    mask[5:25, 5:25] = True
    rng = np.random.default_rng(0)
    for _ in range(50):
        x, y = sample_click(mask, rng)
        # at least 30% of the max distance (10) from the background, i.e. 3 px: pixels 7..22
        assert 7 <= x <= 22 and 7 <= y <= 22


def test_gland_signal_is_a_skeleton_inside_the_mask() -> None:
    rr, cc = np.mgrid[0:60, 0:80]
    mask = ((rr - 30) / 25.0) ** 2 + ((cc - 40) / 38.0) ** 2 <= 1  # an ellipse
    rng = np.random.default_rng(1)
    sizes = set()
    for _ in range(10):
        sk = gland_skeleton(mask, rng=rng)
        assert sk.any() and not (sk & ~mask).any()
        sizes.add(int(sk.sum()))
    assert len(sizes) > 1  # a new tau each time


def test_sampler_patches_are_consistent() -> None:
    sampler = ClickPatchSampler(_items(1), patch_size=64)
    rng = np.random.default_rng(0)
    x, y, others = sampler.batch(np.arange(4), rng)
    assert x.shape == (4, 5, 64, 64) and y.shape == others.shape == (4, 1, 64, 64)
    assert x.dtype == np.float32 and x[:, :3].min() >= 0 and x[:, :3].max() <= 1
    for k in range(4):
        assert x[k, 3].sum() == 1  # one inclusion click
        r, c = np.argwhere(x[k, 3] > 0)[0]
        assert y[k, 0, r, c] == 1  # ... inside the target
        assert not (y[k] * others[k]).any()
    # near misses: every click on background, and the target is still the object
    misses = ClickPatchSampler(_items(1), patch_size=64, near_miss=1.0, augment=False)
    x, y, _ = misses.batch(np.arange(6), rng)
    for k in range(6):
        r, c = np.argwhere(x[k, 3] > 0)[0]
        assert y[k, 0, r, c] == 0 and y[k, 0].sum() > 0
    # validation patches: click at the centroid, no augmentation, deterministic
    a = sampler.fixed_batch(np.arange(3))
    b = sampler.fixed_batch(np.arange(3))
    assert all(np.array_equal(p, q) for p, q in zip(a, b, strict=True))


def test_a_few_steps_resume_and_export(tmp_path) -> None:
    items = _items(2)
    sampler = ClickPatchSampler(items[:1], patch_size=64)
    val = ClickPatchSampler(items[1:], patch_size=64, augment=False).fixed_batch(np.arange(6))
    cfg = TrainConfig(
        width=0.0625, patch_size=64, batch_size=4, epochs=1, steps_per_epoch=3, threads=1, lr=1e-3
    )

    def draw(rng, n):
        return sampler.batch(rng.integers(len(sampler), size=n), rng)

    ckpt = tmp_path / "ckpt"
    lines: list[str] = []
    best = train(cfg, draw, val, ckpt, progress=lines.append)
    assert best.exists() and (ckpt / "last.pt").exists()
    assert any("patches/s" in ln and "ETA" in ln for ln in lines)
    history = json.loads((ckpt / "history.json").read_text())
    assert len(history) == 1 and 0.0 <= history[0]["val_dice"] <= 1.0
    # resume: a second epoch continues from the checkpoint
    cfg.epochs = 2
    lines.clear()
    train(cfg, draw, val, ckpt, progress=lines.append)
    assert lines[0].startswith("resumed") and "epoch 1" in lines[0]
    assert len(json.loads((ckpt / "history.json").read_text())) == 2
    state = torch.load(ckpt / "last.pt", weights_only=False)
    assert {"model", "optimizer", "scheduler", "epoch", "config"} <= set(state)

    # fine-tuning: weights from the best checkpoint, a fresh optimiser in a new folder
    lines.clear()
    tuned = train(cfg, draw, val, tmp_path / "tuned", init=best, progress=lines.append)
    assert lines[0].startswith("initialised from") and tuned.exists()
    # a checkpoint of half the width starts a wider network (function-preserving widening) ...
    lines.clear()
    wide = TrainConfig(**{**cfg.__dict__, "width": 2 * cfg.width, "epochs": 1})
    train(wide, draw, val, tmp_path / "wide", init=best, progress=lines.append)
    assert "widened from width 0.0625 to 0.125" in lines[0]
    assert torch.load(tmp_path / "wide" / "last.pt", weights_only=False)["config"]["width"] == 0.125
    # ... and any other width is refused with the fix
    four = TrainConfig(**{**cfg.__dict__, "width": 4 * cfg.width})
    with pytest.raises(ModelError, match=r"network width 0\.0625 cannot start a width-0\.25"):
        train(four, draw, val, tmp_path / "four", init=best, progress=lines.append)

    card = export_model(
        best,
        tmp_path / "m",
        name="m",
        mpp=0.5,
        postprocess={"threshold": 0.5, "min_size": 5, "min_hole": 10},
    )
    assert card["parity_max_abs_diff"] <= 1e-4
    loaded = load_card(tmp_path / "m")
    assert loaded.patch_size == 64 and loaded.object_type == "nucleus"


def test_near_miss_lands_beside_its_object_not_a_neighbour() -> None:
    labels = np.zeros((40, 60), np.int32)
    labels[10:20, 10:20] = 1
    labels[10:20, 24:34] = 2  # 4 px gap: the first 2 px are nearer to object 1
    labels[30:40, 50:60] = 3
    ref = next(
        r
        for r in index_objects([LabelledImage("a", np.zeros((40, 60, 3), np.uint8), labels)])
        if r.label == 1
    )
    target = labels == 1
    dist = ndi.distance_transform_edt(~target)
    seen = set()
    for seed in range(300):
        x, y = near_miss_click(labels, ref, 3.0, np.random.default_rng(seed)).astype(int)
        assert labels[y, x] == 0 and 0 < dist[y, x] <= 3.0
        assert x < 22 or not (10 <= y < 20)  # never in the half of the gap nearer object 2
        seen.add((x, y))
    assert len(seen) > 50  # drawn around the whole object, not one spot
    full = np.ones((10, 10), np.int32)  # no background anywhere: no near miss
    ref_full = index_objects([LabelledImage("f", np.zeros((10, 10, 3), np.uint8), full)])[0]
    assert near_miss_click(full, ref_full, 3.0, np.random.default_rng(0)) is None


def test_variety_off_draws_nothing_and_changes_nothing() -> None:
    from nuclick_core.training.augment import Variety

    items = _items(1)
    plain = ClickPatchSampler(items, patch_size=64)
    off = ClickPatchSampler(items, patch_size=64, variety=Variety())
    a = plain.batch(np.arange(5), np.random.default_rng(3))
    b = off.batch(np.arange(5), np.random.default_rng(3))
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def test_variety_shifts_stain_quality_and_scale() -> None:
    from nuclick_core.training.augment import Variety

    items = _items(1)
    wide = ClickPatchSampler(
        items, patch_size=64, variety=Variety(stain=1.0, quality=1.0, scale=0.5)
    )
    plain = ClickPatchSampler(items, patch_size=64)
    x, y, others = wide.batch(np.arange(8), np.random.default_rng(4))
    assert x.shape == (8, 5, 64, 64) and y.shape == others.shape == (8, 1, 64, 64)
    assert x[:, :3].min() >= 0 and x[:, :3].max() <= 1
    for k in range(8):
        assert x[k, 3].sum() == 1  # one click, in the (resized) target
        r, c = np.argwhere(x[k, 3] > 0)[0]
        assert abs(r - 32) <= 2 and abs(c - 32) <= 2
        assert not (y[k] * others[k]).any()
    _, y0, _ = plain.batch(np.arange(8), np.random.default_rng(4))
    areas = y.sum((1, 2, 3)) / np.maximum(y0.sum((1, 2, 3)), 1)
    assert areas.min() < 0.95 or areas.max() > 1.05  # objects drawn at other scales


def test_hue_and_sharpen_variety() -> None:
    from nuclick_core.data.shifts import unsharp
    from nuclick_core.training.augment import Variety

    flat = np.full((16, 16, 3), (200, 120, 160), np.uint8)
    assert np.array_equal(unsharp(flat, amount=2.0), flat)  # nothing to sharpen on a flat image
    edge = np.zeros((16, 16, 3), np.uint8)
    edge[:, 8:] = 200
    sharp = unsharp(edge, amount=1.0).astype(int)
    assert sharp[:, 8].min() > 200 and sharp[:, 7].max() == 0  # overshoot on the bright side
    rng = np.random.default_rng(5)
    image = np.random.default_rng(0).integers(40, 220, (32, 32, 3)).astype(np.uint8)
    before = rng.bit_generator.state
    assert np.array_equal(Variety().appearance(image, rng), image)
    assert rng.bit_generator.state == before  # off: nothing drawn
    hued = Variety(hue=1.0).appearance(image, np.random.default_rng(1))
    sharpened = Variety(sharpen=1.0).appearance(image, np.random.default_rng(1))
    assert not np.array_equal(hued, image) and not np.array_equal(sharpened, image)
    assert sharpened.astype(float).std() > image.astype(float).std()  # more contrast at edges


def test_gland_training_strokes_lie_in_their_gland() -> None:
    from nuclick_core.data.synth import glands_scene
    from nuclick_core.training.gland_patches import GlandPatchSampler

    s = glands_scene(size=(400, 500), n_glands=3, seed=2)
    items = [LabelledImage("g", s.image, s.labels)]
    sampler = GlandPatchSampler(items, patch_size=128, strokes=1.0)
    x, y, _ = sampler.batch(np.arange(len(sampler)).repeat(3), np.random.default_rng(0))
    for k in range(len(x)):
        drawn = x[k, 3] > 0
        assert drawn.sum() >= 2
        assert (y[k, 0][drawn] > 0).mean() > 0.9


def test_a_run_killed_and_resumed_ends_where_an_uninterrupted_run_ends(tmp_path) -> None:
    """#13: resuming from last.pt (optimiser, schedule, epoch) gives the same weights and
    history as a run that was never stopped."""
    items = _items(2)
    sampler = ClickPatchSampler(items[:1], patch_size=64)
    val = ClickPatchSampler(items[1:], patch_size=64, augment=False).fixed_batch(np.arange(4))
    cfg = TrainConfig(
        width=0.0625, patch_size=64, batch_size=2, epochs=2, steps_per_epoch=2, threads=1, lr=1e-3
    )
    calls = {"n": 0}

    def draw(rng, n):
        return sampler.batch(rng.integers(len(sampler), size=n), rng)

    def killed_in_epoch_2(rng, n):
        calls["n"] += 1
        if calls["n"] > cfg.steps_per_epoch:
            raise KeyboardInterrupt  # the job is killed after epoch 1's checkpoint
        return draw(rng, n)

    whole = tmp_path / "whole"
    train(cfg, draw, val, whole, progress=lambda _: None)
    parts = tmp_path / "parts"
    with pytest.raises(KeyboardInterrupt):
        train(cfg, killed_in_epoch_2, val, parts, progress=lambda _: None)
    train(cfg, draw, val, parts, progress=lambda _: None)
    a = torch.load(whole / "last.pt", weights_only=False)
    b = torch.load(parts / "last.pt", weights_only=False)
    assert a["history"] == b["history"] and len(a["history"]) == 2
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
