"""Marks made from ground truth, as evaluation and the demo use them.

For nuclei and cells a click at each object's centroid (optionally jittered); for glands a
squiggle, the skeleton of the gland after thresholding its distance transform at its mean (the
middle of the training signal's range), joined into lines. Positions are level-0 (x, y) with the
pixel-corner origin of the click table.
"""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import shapely
from scipy import ndimage as ndi

from nuclick_core.inference.signals import gland_skeleton
from nuclick_core.io.annotations import click_table_from_points, squiggle_table

#: How evaluation marks are made from the ground truth, by kind (recorded in reports and cards).
MARKS = {
    "point": "clicks at the ground-truth centroids",
    "gland": "squiggles: skeletons of the ground-truth glands after thresholding their "
    "distance transform at its mean",
}


def centroid_clicks(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """GT object ids (K,) and their centroids as level-0 (x, y) (K, 2), pixel-corner origin."""
    ids = np.unique(labels)
    ids = ids[ids > 0]
    rc = np.array(ndi.center_of_mass(np.ones_like(labels), labels, ids)).reshape(-1, 2)
    return ids, rc[:, ::-1] + 0.5


def skeleton_lines(
    skeleton: np.ndarray, offset_xy: tuple[float, float] = (0.0, 0.0)
) -> shapely.Geometry:
    """A skeleton's pixels joined into lines (level-0 coordinates of pixel centres): a
    LineString or MultiLineString that rasterises back onto the skeleton."""
    rows, cols = np.nonzero(skeleton)
    xy = np.column_stack([cols, rows]) + 0.5 + np.asarray(offset_xy)
    half = np.array([0.5, 0.0])  # a lone pixel becomes a one-pixel segment
    if len(xy) == 1:
        return shapely.LineString([xy[0] - half, xy[0] + half])
    on = np.zeros((skeleton.shape[0] + 2, skeleton.shape[1] + 2), bool)
    on[1:-1, 1:-1] = skeleton
    edges: list[tuple[np.ndarray, np.ndarray]] = []
    r, c = rows + 1, cols + 1
    for dr, dc in ((0, 1), (1, 0), (1, 1), (1, -1)):
        hit = on[r + dr, c + dc]
        if dr and dc:  # a diagonal step only where no 4-connected path joins the two pixels
            hit &= ~on[r, c + dc] & ~on[r + dr, c]
        a = xy[hit]
        edges.extend(zip(a, a + np.array([dc, dr]), strict=True))
    if not edges:  # isolated pixels only
        edges = [(p - half, p + half) for p in xy]
    return shapely.line_merge(shapely.MultiLineString([list(e) for e in edges]))


#: Mark shifts of the robustness yardstick, by kind: how a person's marks differ from the
#: clean ones (centroid clicks, mean-distance skeletons).
MARK_SHIFTS = {
    "point": {"clicks_anywhere": "a click at a random pixel of each object, edges included"},
    "gland": {
        "stroke_long_axis": "a straight stroke along the gland's long axis, clipped to it",
        "stroke_half": "the middle half of that stroke",
        "stroke_wobbly": "the long-axis stroke wobbling sideways, clipped to the gland",
        "skeleton_partial": "the half of the skeleton on one side of the centroid",
    },
}


def _pixel_centres(mask: np.ndarray) -> np.ndarray:
    rows, cols = np.nonzero(mask)
    return np.column_stack([cols, rows]) + 0.5


def _axis_run(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Points every half pixel along the mask's long axis (through its centroid) that stay
    inside it (the run nearest the centroid), with the axis direction and its normal."""
    xy = _pixel_centres(mask)
    centre = xy.mean(0)
    cov = np.cov((xy - centre).T) if len(xy) > 2 else np.eye(2)
    _, evecs = np.linalg.eigh(cov)
    axis, normal = evecs[:, 1], evecs[:, 0]
    reach = float(np.abs((xy - centre) @ axis).max()) + 1.0
    ts = np.arange(-reach, reach + 0.25, 0.5)
    pts = centre + ts[:, None] * axis
    inside = _inside(mask, pts)
    if not inside.any():  # a curved gland around its centroid: the nearest pixel's line
        return xy[np.argmin(((xy - centre) ** 2).sum(1))][None], axis, normal
    runs = np.split(np.arange(len(ts)), np.flatnonzero(np.diff(inside.astype(int)) != 0) + 1)
    runs = [r for r in runs if inside[r[0]]]
    best = min(runs, key=lambda r: np.abs(ts[r]).min())
    return pts[best], axis, normal


def _inside(mask: np.ndarray, pts: np.ndarray) -> np.ndarray:
    c, r = np.floor(pts[:, 0]).astype(int), np.floor(pts[:, 1]).astype(int)
    ok = (r >= 0) & (r < mask.shape[0]) & (c >= 0) & (c < mask.shape[1])
    out = np.zeros(len(pts), bool)
    out[ok] = mask[r[ok], c[ok]]
    return out


def _line(pts: np.ndarray) -> shapely.LineString:
    if len(pts) == 1:
        return shapely.LineString([pts[0] - [0.5, 0.0], pts[0] + [0.5, 0.0]])
    return shapely.LineString(pts)


def gland_stroke(mask: np.ndarray, kind: str, rng: np.random.Generator) -> shapely.Geometry:
    """A hand-like squiggle for one gland (``mask``: bool, the gland's own frame), in the
    mask's pixel coordinates; ``kind`` is a key of ``MARK_SHIFTS["gland"]``."""
    if kind == "skeleton_partial":
        skel = gland_skeleton(mask)
        xy = _pixel_centres(skel)
        _, axis, _ = _axis_run(mask)
        side = (xy - xy.mean(0)) @ axis
        half = np.zeros_like(skel)
        keep = side <= np.median(side)
        half[np.floor(xy[keep, 1]).astype(int), np.floor(xy[keep, 0]).astype(int)] = True
        return skeleton_lines(half)
    run, axis, normal = _axis_run(mask)
    if kind == "stroke_long_axis":
        return _line(run[[0, -1]] if len(run) > 1 else run)
    if kind == "stroke_half":
        q = len(run) // 4
        part = run[q : len(run) - q] if len(run) >= 4 else run
        return _line(part[[0, -1]] if len(part) > 1 else part)
    if kind == "stroke_wobbly":
        width = float(np.abs((_pixel_centres(mask) - run.mean(0)) @ normal).max())
        t = np.arange(len(run)) * 0.5
        phase, period = rng.uniform(0, 2 * np.pi), max(len(run) * 0.5 / 2.0, 4.0)
        wobble = run + np.outer(0.3 * width * np.sin(2 * np.pi * t / period + phase), normal)
        inside = _inside(mask, wobble)
        pts = wobble[inside] if inside.sum() >= 2 else run
        return _line(pts)
    raise ValueError(f"unknown gland stroke {kind!r}; choose one of {list(MARK_SHIFTS['gland'])}")


def ground_truth_marks(
    labels: np.ndarray,
    object_type: str,
    *,
    jitter_sigma: float = 0.0,
    seed: int = 0,
    source: str = "ground truth",
    shift: str | None = None,
) -> tuple[gpd.GeoDataFrame, np.ndarray]:
    """The click table for ``labels`` and the level-0 (x, y) positions to draw: centroid clicks
    (nuclei, cells; jittered when asked) or skeleton squiggles (glands, one per object).

    ``shift`` names a mark shift of :data:`MARK_SHIFTS` instead (seeded by ``seed``).
    """
    kind = "gland" if object_type == "gland" else "point"
    if shift is not None and shift not in MARK_SHIFTS[kind]:
        raise ValueError(
            f"unknown {kind} mark shift {shift!r}; choose one of {list(MARK_SHIFTS[kind])}"
        )
    rng = np.random.default_rng(seed)
    if kind == "point":
        if shift == "clicks_anywhere":
            picks = []
            for k, sl in enumerate(ndi.find_objects(labels), 1):
                if sl is not None:
                    pixels = _pixel_centres(labels[sl] == k)
                    picks.append(pixels[rng.integers(len(pixels))] + [sl[1].start, sl[0].start])
            xy = np.array(picks, np.float64).reshape(-1, 2)
            return click_table_from_points(xy, object=object_type, source=source), xy
        _, xy = centroid_clicks(labels)
        if jitter_sigma > 0:
            xy = xy + np.random.default_rng(seed).normal(0.0, jitter_sigma, xy.shape)
        return click_table_from_points(xy, object=object_type, source=source), xy
    if jitter_sigma > 0:
        raise ValueError("click jitter applies to point marks, not to gland squiggles")
    lines, drawn = [], []
    for k, sl in enumerate(ndi.find_objects(labels), 1):
        if sl is None:
            continue
        mask, origin = labels[sl] == k, (sl[1].start, sl[0].start)
        if shift is None:
            skel = gland_skeleton(mask)
            lines.append(skeleton_lines(skel, origin))
            r, c = np.nonzero(skel)
            drawn.append(np.column_stack([c + sl[1].start, r + sl[0].start]) + 0.5)
            continue
        line = shapely.transform(gland_stroke(mask, shift, rng), lambda xy, o=origin: xy + o)
        lines.append(line)
        drawn.append(shapely.get_coordinates(shapely.segmentize(line, 1.0)))
    xy = np.concatenate(drawn) if drawn else np.zeros((0, 2))
    return squiggle_table(lines, source=source), xy
