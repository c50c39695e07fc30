"""The robustness yardstick's shifted images and marks: deterministic, and what they claim."""

from __future__ import annotations

import numpy as np
import pytest
import shapely

from nuclick_core.data.labelled import LabelledImage
from nuclick_core.data.marks import MARK_SHIFTS, ground_truth_marks
from nuclick_core.data.shifts import (
    DESCRIPTIONS,
    IMAGE_SHIFTS,
    MPP_SHIFTS,
    hed_jitter,
    image_seed,
    shift_items,
)
from nuclick_core.data.synth import glands_scene, nuclei_scene


@pytest.fixture(scope="module")
def he_image() -> np.ndarray:
    return nuclei_scene(size=(96, 96), n_nuclei=10, seed=3).image


@pytest.mark.parametrize("name", list(IMAGE_SHIFTS))
def test_image_shifts_are_deterministic_and_change_the_image(name, he_image) -> None:
    item = [LabelledImage("tile-1", he_image, np.zeros(he_image.shape[:2], np.int32))]
    a, b = shift_items(item, name, seed=7), shift_items(item, name, seed=7)
    assert a[0].image.dtype == np.uint8 and a[0].image.shape == he_image.shape
    assert np.array_equal(a[0].image, b[0].image)
    assert a[0].labels is item[0].labels
    assert np.abs(a[0].image.astype(int) - he_image).mean() > 1.0, name
    assert name in DESCRIPTIONS


def test_hed_jitter_without_jitter_is_the_image(he_image) -> None:
    same = hed_jitter(he_image, image_seed("x", 0), scale=0.0, offset=0.0)
    assert np.array_equal(same, he_image)  # the optical-density round trip is exact


def test_hed_jitter_differs_between_images_and_seeds(he_image) -> None:
    a = hed_jitter(he_image, image_seed("a", 0))
    assert not np.array_equal(a, hed_jitter(he_image, image_seed("b", 0)))
    assert not np.array_equal(a, hed_jitter(he_image, image_seed("a", 1)))


def test_scale_shifts_are_described() -> None:
    assert set(MPP_SHIFTS) <= set(DESCRIPTIONS) and MPP_SHIFTS == {
        "mpp_minus_30": 0.7,
        "mpp_plus_30": 1.3,
    }


def test_clicks_anywhere_land_inside_their_objects() -> None:
    labels = nuclei_scene(size=(128, 128), n_nuclei=15, seed=1).labels
    table, xy = ground_truth_marks(labels, "nucleus", shift="clicks_anywhere", seed=5)
    ids = np.unique(labels)[1:]
    assert len(table) == len(ids)
    hit = labels[np.floor(xy[:, 1]).astype(int), np.floor(xy[:, 0]).astype(int)]
    assert np.array_equal(hit, ids)  # each click in its own object, in id order
    _, again = ground_truth_marks(labels, "nucleus", shift="clicks_anywhere", seed=5)
    assert np.array_equal(xy, again)


@pytest.mark.parametrize("shift", list(MARK_SHIFTS["gland"]))
def test_gland_strokes_stay_inside_their_gland(shift) -> None:
    labels = glands_scene(size=(400, 500), n_glands=3, seed=2).labels
    table, _ = ground_truth_marks(labels, "gland", shift=shift, seed=0)
    assert len(table) == len(np.unique(labels)) - 1
    for k, geom in enumerate(table.geometry, 1):
        pts = shapely.get_coordinates(shapely.segmentize(geom, 0.5))
        r, c = np.floor(pts[:, 1]).astype(int), np.floor(pts[:, 0]).astype(int)
        assert (labels[r, c] == k).mean() >= 0.97, (shift, k)


def test_half_stroke_is_half_the_long_axis_stroke() -> None:
    labels = glands_scene(size=(400, 500), n_glands=3, seed=2).labels
    full, _ = ground_truth_marks(labels, "gland", shift="stroke_long_axis")
    half, _ = ground_truth_marks(labels, "gland", shift="stroke_half")
    ratio = half.geometry.length.to_numpy() / full.geometry.length.to_numpy()
    assert np.all((ratio > 0.4) & (ratio < 0.6)), ratio


def test_unknown_mark_shift_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown point mark shift"):
        ground_truth_marks(np.ones((4, 4), np.int32), "nucleus", shift="stroke_half")
