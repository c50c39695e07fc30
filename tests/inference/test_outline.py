"""Pixel-edge outlines traced along the grid, and the cropped post-processing, checked against
the slower implementations they replaced (#14): the union of pixel boxes and the full-patch
post-processing, kept here as oracles."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage as ndi
from shapely import affinity

from nuclick_core.inference.outline import mask_outline, mask_outlines
from nuclick_core.inference.postprocess import (
    PostprocessParams,
    clicked_object,
    clicked_object_box,
    fill_small_holes,
)

_FOUR = ndi.generate_binary_structure(2, 1)


def union_of_pixel_boxes(mask: np.ndarray, row0: int, col0: int, f: float):
    """The outline as the engine computed it before #14: a GEOS union of one box per row run."""
    padded = np.pad(mask, ((0, 0), (1, 1)))
    diff = np.diff(padded.astype(np.int8), axis=1)
    rs, cs = np.nonzero(diff == 1)
    _, ce = np.nonzero(diff == -1)
    geom = shapely.union_all(shapely.box(cs + col0, rs + row0, ce + col0, rs + row0 + 1))
    geom = shapely.simplify(geom, 0)
    if f != 1.0:
        geom = affinity.scale(geom, xfact=f, yfact=f, origin=(0, 0))
    return geom


def same_geometry(a, b) -> bool:
    """Equal vertex for vertex once both are put in shapely's normal form."""
    return shapely.normalize(a).equals_exact(shapely.normalize(b), 0.0)


def test_polygon_is_exact_pixel_outline_with_holes() -> None:
    mask = np.zeros((6, 6), bool)
    mask[1:5, 1:5] = True
    mask[2:4, 2:4] = False
    poly = mask_outline(mask, 10, 20, 1.0)
    assert poly.geom_type == "Polygon" and poly.is_valid
    assert poly.area == 12 and len(poly.interiors) == 1
    assert poly.bounds == (21.0, 11.0, 25.0, 15.0)
    scaled = mask_outline(mask, 10, 20, 2.0)
    assert scaled.area == 48 and scaled.bounds == (42.0, 22.0, 50.0, 30.0)
    square = mask_outline(np.ones((4, 4), bool))
    assert len(square.exterior.coords) == 5  # four corners and the closing one: no extra vertex
    assert mask_outline(np.zeros((3, 3), bool)).is_empty


def test_pixels_touching_at_a_corner() -> None:
    """One component pinched at a corner: one polygon whose hole touches its shell there. Two
    components touching at a corner: two polygons. Both as GEOS writes the union."""
    pinched = np.array(
        [
            [1, 1, 1, 0],
            [1, 0, 0, 1],
            [1, 0, 0, 1],
            [1, 1, 1, 1],
        ],
        bool,
    )
    poly = mask_outline(pinched)
    assert poly.geom_type == "Polygon" and poly.is_valid and len(poly.interiors) == 1
    assert same_geometry(poly, union_of_pixel_boxes(pinched, 0, 0, 1.0))
    apart = np.array([[1, 0], [0, 1]], bool)
    two = mask_outline(apart)
    assert two.geom_type == "MultiPolygon" and len(two.geoms) == 2 and two.is_valid
    assert same_geometry(two, union_of_pixel_boxes(apart, 0, 0, 1.0))


def test_equal_to_the_union_of_pixel_boxes_on_random_masks() -> None:
    """3,000 seeded random masks, sparse to dense (many components, holes, islands in holes,
    corner touches), at random offsets and scales: the traced outline is the union's, vertex for
    vertex."""
    rng = np.random.default_rng(14)
    checked = 0
    for k in range(3000):
        h, w = rng.integers(1, 16, 2)
        mask = rng.random((h, w)) < rng.uniform(0.1, 0.95)
        if k % 3 == 0:  # blobs: smoother shapes like real masks, with some holes
            mask = ndi.binary_opening(mask, _FOUR) | ndi.binary_closing(mask, _FOUR)
        if not mask.any():
            continue
        row0, col0 = (int(v) for v in rng.integers(-200, 200, 2))
        f = float(rng.choice([1.0, 0.5, 2.0, 1.7]))
        traced = mask_outline(mask, row0, col0, f)
        assert traced.is_valid
        assert same_geometry(traced, union_of_pixel_boxes(mask, row0, col0, f)), mask.astype(int)
        checked += 1
    assert checked > 2500


@settings(max_examples=80, deadline=None)
@given(
    st.integers(1, 12).flatmap(
        lambda h: st.integers(1, 12).flatmap(
            lambda w: st.lists(st.booleans(), min_size=h * w, max_size=h * w).map(
                lambda bits: np.array(bits, bool).reshape(h, w)
            )
        )
    ),
    st.integers(-50, 50),
    st.integers(-50, 50),
    st.sampled_from([1.0, 2.0, 0.5]),
)
def test_polygon_of_any_mask_covers_exactly_its_pixels(mask, row0, col0, f) -> None:
    """Fuzzing the geometry conversion (#13): the outline of any mask, however ragged, is a
    valid geometry whose area is the pixel count and which contains every pixel centre and no
    other."""
    geom = mask_outline(mask, row0, col0, f)
    if not mask.any():
        assert geom.is_empty
        return
    assert geom.is_valid
    assert geom.area == pytest.approx(mask.sum() * f * f)
    rows, cols = np.mgrid[: mask.shape[0], : mask.shape[1]]
    centres = shapely.points((cols + col0 + 0.5) * f, (rows + row0 + 0.5) * f)
    assert np.array_equal(shapely.contains(geom, centres), mask)


def full_patch_clicked_object(prob, click_rc, params):
    """The post-processing before #14: three labellings of the whole patch."""
    fg = prob > params.threshold
    labels, n = ndi.label(fg, structure=_FOUR)
    if n == 0:
        return np.zeros_like(fg), "empty"
    sizes = np.bincount(labels.ravel())
    big = sizes >= params.min_size
    big[0] = False
    if not big.any():
        return np.zeros_like(fg), "empty"
    r, c = click_rc
    target = labels[r, c] if big[labels[r, c]] else 0
    if target == 0:
        radius = int(np.ceil(params.click_tolerance))
        r0, c0 = max(r - radius, 0), max(c - radius, 0)
        window = labels[r0 : r + radius + 1, c0 : c + radius + 1]
        rr, cc = np.nonzero(big[window])
        if len(rr) == 0:
            return np.zeros_like(fg), "click_outside_mask"
        d2 = (rr + r0 - r) ** 2 + (cc + c0 - c) ** 2
        k = np.lexsort((window[rr, cc], d2))[0]
        if d2[k] > params.click_tolerance**2:
            return np.zeros_like(fg), "click_outside_mask"
        target = window[rr[k], cc[k]]
    return fill_small_holes(labels == target, params.min_hole), "ok"


def test_cropped_post_processing_equals_the_full_patch_one() -> None:
    """Smoothed random probability maps (objects touching the border, holes of every size,
    clicks on and beside objects): the same status and mask, and the box is the mask's
    bounding box."""
    rng = np.random.default_rng(7)
    params = PostprocessParams(threshold=0.5, min_size=8, min_hole=12, click_tolerance=3.0)
    statuses = set()
    for k in range(600):
        size = int(rng.choice([16, 32, 48]))
        prob = ndi.gaussian_filter(rng.random((size, size)), float(rng.uniform(0.8, 3.0)))
        prob = (prob - prob.min()) / (np.ptp(prob) + 1e-9)
        if k % 10 == 0:  # nothing above the threshold
            prob *= 0.45
        prob = prob.astype(np.float32)
        click = (int(rng.integers(0, size)), int(rng.integers(0, size)))
        want, want_status = full_patch_clicked_object(prob, click, params)
        crop, (r0, c0), got_status = clicked_object_box(prob, click, params)
        assert got_status == want_status
        statuses.add(got_status)
        full, _ = clicked_object(prob, click, params)
        assert np.array_equal(full, want)
        if crop is None:
            assert not want.any()
            continue
        rows, cols = np.nonzero(want)
        assert (r0, c0) == (rows.min(), cols.min())
        assert crop.shape == (rows.max() + 1 - r0, cols.max() + 1 - c0)
    assert statuses == {"ok", "empty", "click_outside_mask"}


def _disk(size: int, radius: float, centre: tuple[float, float], p: float = 0.9) -> np.ndarray:
    rr, cc = np.mgrid[:size, :size]
    return np.where((rr - centre[0]) ** 2 + (cc - centre[1]) ** 2 <= radius**2, p, 0.0)


def test_batch_post_processing_equals_the_per_patch_one(monkeypatch) -> None:
    """:func:`centre_objects` against :func:`clicked_object_box` patch by patch: objects that
    fit the first window, the second, neither; holes; clicks beside an object, on one too
    small, on the glass; smoothed random maps. Objects fitting a window never take the
    per-patch path."""
    import nuclick_core.inference.postprocess as pp

    size = 64
    c = size // 2
    rng = np.random.default_rng(11)
    ring = _disk(size, 12, (c, c)) - _disk(size, 3, (c + 6, c - 1))  # a hole of 29 pixels
    probs = [
        _disk(size, r, (c + dr, c + dc)) for r in (3, 6, 11, 20) for dr, dc in [(0, 0), (2, -3)]
    ]
    probs += [ring, _disk(size, 12, (c + 5, c)) - _disk(size, 1.5, (c + 6, c))]  # small hole
    probs += [_disk(size, 5, (c + 3, c + 3)), _disk(size, 1, (c, c)) + _disk(size, 6, (c, c + 9))]
    probs += [np.zeros((size, size)), _disk(size, 6, (5, 5))]
    for _ in range(40):
        field = ndi.gaussian_filter(rng.random((size, size)), float(rng.uniform(0.8, 3.0)))
        probs.append((field - field.min()) / (np.ptp(field) + 1e-9))
    batch = np.stack(probs).astype(np.float32)
    fallbacks = []
    per_patch = pp.clicked_object_box

    def counted(prob, click_rc, p):
        fallbacks.append(1)
        return per_patch(prob, click_rc, p)

    # min_hole: the ring's hole (29 pixels) is filled, not filled (it must be smaller), and
    # larger than the background around a window's object (that is never a hole)
    for min_hole in (12, 29, 30, 2000):
        params = PostprocessParams(threshold=0.5, min_size=8, min_hole=min_hole)
        fallbacks.clear()
        monkeypatch.setattr(pp, "clicked_object_box", counted)
        got = pp.centre_objects(batch, params)
        monkeypatch.undo()
        assert 0 < len(fallbacks) < len(batch) - 8
        for k, prob in enumerate(batch):
            mask, corner, st = per_patch(prob, (c, c), params)
            assert (got[k][1], got[k][2]) == (corner, st), (min_hole, k)
            assert (got[k][0] is None) == (mask is None), (min_hole, k)
            assert mask is None or np.array_equal(got[k][0], mask), (min_hole, k)
    fitting = np.stack([_disk(size, r, (c, c)) for r in (2.5, 4, 7, 10)]).astype(np.float32)
    fallbacks.clear()
    params = PostprocessParams(threshold=0.5, min_size=8, min_hole=12)
    monkeypatch.setattr(pp, "clicked_object_box", counted)
    assert [st for _, _, st in pp.centre_objects(fitting, params)] == ["ok"] * 4
    assert not fallbacks


@pytest.mark.parametrize("width", [40, 4096])
def test_outlines_traced_together_equal_those_traced_one_by_one(width) -> None:
    """600 seeded random masks (holes, islands, corner touches, several components, empty
    ones) on canvases narrow (many canvases, a mask wider than one) and wide: each outline is
    :func:`mask_outline`'s, vertex for vertex once normalised, and in the input order."""
    rng = np.random.default_rng(15)
    items = []
    for k in range(600):
        h, w = (int(v) for v in rng.integers(1, 30, 2))
        mask = rng.random((h, w)) < rng.uniform(0.05, 0.95)
        if k % 3 == 0:
            mask = ndi.binary_opening(mask, _FOUR) | ndi.binary_closing(mask, _FOUR)
        if k % 40 == 0:
            mask[:] = False
        items.append((mask, int(rng.integers(-300, 300)), int(rng.integers(-300, 300))))
    kinds = set()
    for f in (1.0, 1.7):
        for (mask, row0, col0), got in zip(items, mask_outlines(items, f, width), strict=True):
            want = mask_outline(mask, row0, col0, f)
            assert same_geometry(got, want), (mask.astype(int), row0, col0, f)
            kinds.add((want.geom_type, len(getattr(want, "interiors", [])) > 0, want.is_empty))
    assert {("Polygon", True, False), ("MultiPolygon", False, False)} <= kinds
    assert ("Polygon", False, True) in kinds
    assert mask_outlines([], 2.0) == []
