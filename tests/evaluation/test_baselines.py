"""Classical seeded baselines on a synthetic image of dark disks drawn here."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from skimage.draw import disk

from nuclick_core.evaluation.baselines import (
    BASELINES,
    active_contour_baseline,
    region_growing_baseline,
    watershed_baseline,
)

RADIUS = 8
# (x, y) disk centres; disks 2 and 3 touch (centres 16 px apart, radius 8).
CENTRES = np.array([[15.0, 15.0], [50.0, 14.0], [20.0, 45.0], [36.0, 45.0], [60.0, 48.0]])
# Smallest IoU per disk achieved with this image (fixed noise seed): watershed 0.83, region
# growing 0.94, active contour 0.92; thresholds leave a little room.
MIN_IOU = {"watershed": 0.8, "region_growing": 0.9, "active_contour": 0.9}


def synthetic(seed: int = 0, noise: float = 10.0) -> tuple[np.ndarray, np.ndarray]:
    """Haematoxylin-coloured disks on a light pink background with Gaussian noise."""
    rng = np.random.default_rng(seed)
    shape = (64, 80)
    img = np.empty((*shape, 3))
    img[:] = (235, 215, 230)
    truth = np.zeros(shape, np.int32)
    for k, (x, y) in enumerate(CENTRES):
        rr, cc = disk((y, x), RADIUS, shape=shape)
        truth[rr, cc] = k + 1
        img[rr, cc] = (90, 60, 140)
    img += rng.normal(0.0, noise, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8), truth


IMAGE, TRUTH = synthetic()


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_recovers_each_disk(name: str) -> None:
    labels = BASELINES[name](IMAGE, CENTRES)
    assert labels.dtype == np.int32
    assert labels.shape == IMAGE.shape[:2]
    assert set(np.unique(labels)) == set(range(len(CENTRES) + 1))
    for k, (x, y) in enumerate(CENTRES):
        assert labels[int(y), int(x)] == k + 1
        a, b = k + 1 == TRUTH, labels == k + 1
        iou = (a & b).sum() / (a | b).sum()
        assert iou > MIN_IOU[name], f"{name}: disk {k} IoU {iou:.3f}"


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_touching_disks_are_split_along_the_contact(name: str) -> None:
    labels = BASELINES[name](IMAGE, CENTRES)
    # Disks 2 and 3 meet at x = 28. Region growing and active contour split within a pixel of
    # it; watershed follows the gradient and puts about 6% of disk 2 past it.
    left = np.nonzero(labels == 3)[1]
    right = np.nonzero(labels == 4)[1]
    assert (left > 28).mean() < 0.1
    assert (right < 28).mean() < 0.1


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_seed_outside_the_image(name: str) -> None:
    f = BASELINES[name]
    seeds = np.array([[10.0, 10.0], [5.0, 3.0], [80.0, 5.0]])  # width 80: x = 80 is outside
    with pytest.raises(ValueError, match=r"seed 2 \(x=80\.0, y=5\.0\) lies outside the image "):
        f(IMAGE, seeds)
    with pytest.raises(ValueError, match=r"seed 0 \(x=3\.0, y=-1\.0\)"):
        f(IMAGE, np.array([[3.0, -1.0]]))
    with pytest.raises(ValueError, match=r"seed 1 \(x=nan, y=4\.0\)"):
        f(IMAGE, np.array([[3.0, 1.0], [np.nan, 4.0]]))


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_bad_image_and_seed_arrays(name: str) -> None:
    f = BASELINES[name]
    with pytest.raises(ValueError, match=r"RGB with shape \(H, W, 3\); got shape \(64, 80\)"):
        f(IMAGE[..., 0], CENTRES)
    with pytest.raises(ValueError, match="must be uint8; got float64"):
        f(IMAGE / 255.0, CENTRES)
    with pytest.raises(ValueError, match=r"\(N, 2\) of \(x, y\); got shape \(3,\)"):
        f(IMAGE, np.array([1.0, 2.0, 3.0]))


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_no_seeds_and_shared_seed(name: str) -> None:
    f = BASELINES[name]
    empty = f(IMAGE, np.zeros((0, 2)))
    assert empty.dtype == np.int32
    assert not empty.any()
    # Two seeds on one pixel: the first keeps the object, the second gets an empty instance.
    labels = f(IMAGE, np.array([[15.0, 15.0], [15.2, 14.9]]))
    assert (labels == 1).sum() > 100
    assert not (labels == 2).any()


def test_region_growing_respects_iterations() -> None:
    labels = region_growing_baseline(IMAGE, CENTRES[:1], iterations=2)
    rr, cc = np.nonzero(labels == 1)
    assert (np.abs(rr - 15) + np.abs(cc - 15)).max() <= 2
    assert (labels == 1).sum() == 13  # the whole city-block ball of radius 2 is dark


def test_region_growing_tolerance_zero_keeps_only_the_seed() -> None:
    labels = region_growing_baseline(IMAGE, CENTRES, tolerance=0.0)
    assert (labels > 0).sum() == len(CENTRES)


def test_active_contour_stays_in_its_window() -> None:
    labels = active_contour_baseline(IMAGE, CENTRES[:1], window=10)
    rr, cc = np.nonzero(labels == 1)
    assert rr.min() >= 10 and rr.max() < 20 and cc.min() >= 10 and cc.max() < 20


def test_watershed_options() -> None:
    gray = watershed_baseline(IMAGE, CENTRES, channel="gray")
    a, b = TRUTH == 1, gray == 1
    assert (a & b).sum() / (a | b).sum() > 0.8
    with pytest.raises(ValueError, match="channel must be 'hematoxylin' or 'gray'; got 'eosin'"):
        watershed_baseline(IMAGE, CENTRES, channel="eosin")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("f", "option", "message"),
    [
        (region_growing_baseline, {"iterations": -1}, "iterations must be at least 0; got -1"),
        (region_growing_baseline, {"tolerance": -0.1}, "tolerance must be at least 0"),
        (active_contour_baseline, {"radius": 0}, "radius must be at least 1; got 0"),
        (active_contour_baseline, {"window": 6}, "window must be at least 7; got 6"),
        (watershed_baseline, {"sigma": float("nan")}, "sigma must be at least 0; got nan"),
    ],
)
def test_options_out_of_range(
    f: Callable[..., np.ndarray], option: dict[str, float], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        f(IMAGE, CENTRES, **option)


def test_registry_holds_the_functions() -> None:
    expected: dict[str, Callable[..., np.ndarray]] = {
        "watershed": watershed_baseline,
        "region_growing": region_growing_baseline,
        "active_contour": active_contour_baseline,
    }
    assert expected == BASELINES
