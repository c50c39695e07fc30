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


def ground_truth_marks(
    labels: np.ndarray,
    object_type: str,
    *,
    jitter_sigma: float = 0.0,
    seed: int = 0,
    source: str = "ground truth",
) -> tuple[gpd.GeoDataFrame, np.ndarray]:
    """The click table for ``labels`` and the level-0 (x, y) positions to draw: centroid clicks
    (nuclei, cells; jittered when asked) or skeleton squiggles (glands, one per object)."""
    if object_type != "gland":
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
        skel = gland_skeleton(labels[sl] == k)
        lines.append(skeleton_lines(skel, (sl[1].start, sl[0].start)))
        r, c = np.nonzero(skel)
        drawn.append(np.column_stack([c + sl[1].start, r + sl[0].start]) + 0.5)
    xy = np.concatenate(drawn) if drawn else np.zeros((0, 2))
    return squiggle_table(lines, source=source), xy
