"""Synthetic scenes: determinism, the label contract, touching objects, colour, gland holes."""

from __future__ import annotations

import doctest
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage as ndi
from skimage.color import rgb2gray, rgb2hed

from nuclick_core.data import synth
from nuclick_core.data.synth import GlandScene, Scene, cells_scene, glands_scene, nuclei_scene

SMALL: dict[str, Callable[..., Scene]] = {
    "nuclei": lambda seed=0, **kw: nuclei_scene(size=(96, 128), n_nuclei=15, seed=seed, **kw),
    "cells": lambda seed=0, **kw: cells_scene(size=(128, 112), n_cells=5, seed=seed, **kw),
    "glands": lambda seed=0, **kw: glands_scene(
        size=(224, 256),
        n_glands=3,
        radius_range=(35.0, 55.0),
        rim_width=(8.0, 14.0),
        seed=seed,
        **kw,
    ),
}
COUNTS = {"nuclei": 15, "cells": 5, "glands": 3}


def touching_pairs(labels: np.ndarray) -> set[tuple[int, int]]:
    """Pairs of distinct labels that are 4-neighbours somewhere."""
    pairs: set[tuple[int, int]] = set()
    for a, b in ((labels[:-1], labels[1:]), (labels[:, :-1], labels[:, 1:])):
        hit = (a != b) & (a > 0) & (b > 0)
        pairs |= {(min(p), max(p)) for p in zip(a[hit].tolist(), b[hit].tolist(), strict=True)}
    return pairs


@pytest.fixture(scope="module", params=sorted(SMALL))
def scene(request: pytest.FixtureRequest) -> Scene:
    return SMALL[request.param](seed=3)


@pytest.mark.parametrize("kind", sorted(SMALL))
def test_same_seed_same_scene_other_seed_differs(kind: str) -> None:
    a, b, c = SMALL[kind](seed=7), SMALL[kind](seed=7), SMALL[kind](seed=8)
    for field in ("image", "labels", "centroids"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert getattr(a, "holes", None) == getattr(b, "holes", None)
    assert not np.array_equal(a.image, c.image)
    assert not np.array_equal(a.labels, c.labels)


def test_image_dtype_and_shape(scene: Scene) -> None:
    assert scene.image.dtype == np.uint8
    assert scene.image.shape == (*scene.labels.shape, 3)
    assert scene.image.std() > 5  # not a flat image
    assert scene.kind in SMALL


def test_label_contract(scene: Scene) -> None:
    n = COUNTS[scene.kind]
    assert scene.labels.dtype == np.int32
    np.testing.assert_array_equal(np.unique(scene.labels), np.arange(n + 1))
    for k in range(1, n + 1):
        mask = scene.labels == k
        assert ndi.label(mask)[1] == 1, f"object {k} is not one 4-connected component"
        assert mask.sum() >= synth.MIN_AREA
    assert scene.centroids.dtype == np.float64
    assert scene.centroids.shape == (n, 2)
    for k, (x, y) in enumerate(scene.centroids, start=1):
        rows, cols = np.nonzero(scene.labels == k)
        np.testing.assert_allclose((x, y), (cols.mean(), rows.mean()), atol=1e-9)


@pytest.mark.parametrize("seed", range(4))
def test_clumped_nuclei_touch_isolated_ones_do_not(seed: int) -> None:
    clumped = SMALL["nuclei"](seed=seed, clump_fraction=0.5)
    assert touching_pairs(clumped.labels)
    alone = SMALL["nuclei"](seed=seed, clump_fraction=0.0)
    assert not touching_pairs(alone.labels)


def test_some_white_cells_touch() -> None:
    assert touching_pairs(cells_scene(seed=1, touch_fraction=0.5).labels)


@pytest.mark.parametrize("kind", ["nuclei", "cells"])
def test_objects_are_darker_and_more_haematoxylin_than_background(kind: str) -> None:
    s = SMALL[kind](seed=1)
    fg = s.labels > 0
    gray, hema = rgb2gray(s.image), rgb2hed(s.image)[..., 0]
    assert gray[fg].mean() < gray[~fg].mean() - 0.1
    assert hema[fg].mean() > hema[~fg].mean()


def test_red_cells_are_not_labelled() -> None:
    s = cells_scene(seed=2)
    rgb = s.image.astype(int)
    reddish = (rgb[..., 0] - rgb[..., 1] > 50) & (s.labels == 0)
    assert reddish.mean() > 0.1


@pytest.mark.parametrize("seed", range(3))
def test_gland_holes_are_enclosed_background(seed: int) -> None:
    s = glands_scene(seed=seed)
    assert isinstance(s, GlandScene)
    assert s.holes.count(True) == 3  # round(0.5 * 6)
    for k, hole in enumerate(s.holes, start=1):
        mask = s.labels == k
        inside = ndi.binary_fill_holes(mask) & ~mask
        if hole:
            assert inside.sum() > 50
            assert np.all(s.labels[inside] == 0)
        else:
            assert not inside.any()


@pytest.mark.parametrize(("fraction", "expected"), [(0.0, False), (1.0, True)])
def test_hole_fraction_extremes(fraction: float, expected: bool) -> None:
    assert SMALL["glands"](seed=0, hole_fraction=fraction).holes == (expected,) * 3


def test_gland_lumen_is_paler_than_epithelium() -> None:
    s = SMALL["glands"](seed=2, hole_fraction=1.0)
    gray = rgb2gray(s.image)
    lumen = ndi.binary_fill_holes(s.labels > 0) & (s.labels == 0)
    assert gray[lumen].mean() > gray[s.labels > 0].mean() + 0.1


def test_no_objects() -> None:
    s = nuclei_scene(size=(40, 40), n_nuclei=0)
    assert not s.labels.any()
    assert s.centroids.shape == (0, 2)


@pytest.mark.parametrize(
    ("func", "kwargs", "match"),
    [
        (nuclei_scene, {"size": (-5, 64)}, r"size=\(-5, 64\)"),
        (nuclei_scene, {"size": (64,)}, r"size=\(64,\)"),
        (nuclei_scene, {"n_nuclei": -1}, "n_nuclei=-1"),
        (nuclei_scene, {"n_nuclei": 2.5}, "n_nuclei=2.5"),
        (nuclei_scene, {"size": (40, 40), "n_nuclei": 200}, "n_nuclei=200.*enlarge size"),
        (nuclei_scene, {"radius_range": (9.0, 4.0)}, "radius_range"),
        (nuclei_scene, {"clump_fraction": 1.5}, "clump_fraction=1.5"),
        (nuclei_scene, {"blur_sigma": (-1.0, 1.0)}, "blur_sigma"),
        (nuclei_scene, {"noise_sigma": -0.1}, "noise_sigma"),
        (cells_scene, {"n_cells": 100}, "n_cells=100"),
        (cells_scene, {"red_radius": (1.0, 3.0)}, "red_radius"),
        (cells_scene, {"touch_fraction": -0.5}, "touch_fraction"),
        (glands_scene, {"size": (32, 32)}, "size"),
        (glands_scene, {"n_glands": 40}, "n_glands=40"),
        (glands_scene, {"radius_range": (10.0, 20.0)}, "radius_range"),
        (glands_scene, {"hole_fraction": 2}, "hole_fraction=2"),
        (glands_scene, {"stain_jitter": 3.0}, "stain_jitter=3.0"),
    ],
)
def test_invalid_arguments_raise_value_error(
    func: Callable[..., Scene], kwargs: dict, match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        func(**kwargs)


@pytest.mark.parametrize(("func", "name"), [(nuclei_scene, "n_nuclei"), (glands_scene, "n_glands")])
def test_placement_failure_is_a_value_error(
    monkeypatch: pytest.MonkeyPatch, func: Callable[..., Scene], name: str
) -> None:
    monkeypatch.setattr(synth, "_TRIES", 1)  # one try per object: some object finds no place
    with pytest.raises(ValueError, match=f"{name}=.* do not fit: object .* enlarge size"):
        func()


def test_scene_to_png_round_trip(tmp_path: Path) -> None:
    s = SMALL["nuclei"](seed=4)
    synth.scene_to_png(s, tmp_path / "im.png", tmp_path / "lab.png")
    with Image.open(tmp_path / "im.png") as im, Image.open(tmp_path / "lab.png") as lab:
        assert im.mode == "RGB"
        np.testing.assert_array_equal(np.asarray(im), s.image)
        np.testing.assert_array_equal(np.asarray(lab).astype(np.int32), s.labels)


def test_scene_to_png_rejects_labels_beyond_uint16(tmp_path: Path) -> None:
    s = SMALL["nuclei"](seed=4)
    big = Scene(s.image, s.labels * 70000, s.centroids, s.kind)
    with pytest.raises(ValueError, match="65535"):
        synth.scene_to_png(big, tmp_path / "im.png", tmp_path / "lab.png")


def test_docstring_examples_run() -> None:
    result = doctest.testmod(synth, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 4
    assert result.failed == 0
