"""Shared machinery of the label-image metrics: input checks and the sparse contingency table.

Private to :mod:`nuclick_core.evaluation.metrics` and
:mod:`nuclick_core.evaluation.object_metrics`. Objects are
numbered 0..n-1 in ascending order of their ids; a pair of objects appears in the table when
their intersection is positive.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike


def check_labels(true: ArrayLike, pred: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    t, p = np.asarray(true), np.asarray(pred)
    got = f"got true {t.shape} {t.dtype} and pred {p.shape} {p.dtype}"
    if t.ndim != 2 or p.ndim != 2:
        raise ValueError(f"label images must be 2-D (H, W); {got}. Pass one channel/plane.")
    if t.shape != p.shape:
        raise ValueError(f"true and pred must have the same shape; {got}. Crop or pad one.")
    for name, a in (("true", t), ("pred", p)):
        if not np.issubdtype(a.dtype, np.integer):
            raise ValueError(
                f"{name} must have an integer dtype; {got}. Convert a binary mask with "
                "skimage.measure.label, or cast integral floats with .astype(np.int32)."
            )
        if a.size and np.issubdtype(a.dtype, np.signedinteger) and a.min() < 0:
            raise ValueError(
                f"{name} holds negative labels (min {a.min()}); {got}. Use 0 for background "
                "and positive ids for objects."
            )
    return t, p


def _compact(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Map positive ids in ascending order to 1..n: (labels (intp), areas (n,) int64)."""
    flat = labels.ravel()
    max_id = int(flat.max()) if flat.size else 0
    if max_id <= 4 * flat.size + 1024:  # dense lookup table: O(size), no sort
        flat = flat.astype(np.intp, copy=False)
        counts = np.bincount(flat, minlength=1)
        ids = np.flatnonzero(counts[1:]) + 1
        lut = np.zeros(counts.size, np.intp)
        lut[ids] = np.arange(1, ids.size + 1)
        return lut[flat].reshape(labels.shape), counts[ids].astype(np.int64)
    ids, inv, counts = np.unique(flat, return_inverse=True, return_counts=True)
    inv = inv.reshape(labels.shape).astype(np.intp)
    if ids[0] == 0:
        return inv, counts[1:].astype(np.int64)
    return inv + 1, counts.astype(np.int64)


@dataclass(frozen=True)
class Overlap:
    """Sparse contingency table: object indices are 0-based; pairs have intersection > 0."""

    true_lab: np.ndarray  # (H, W) intp, 0 background, object k has label k + 1
    pred_lab: np.ndarray
    true_area: np.ndarray  # (n_true,) int64
    pred_area: np.ndarray
    rows: np.ndarray  # (n_pairs,) true object index
    cols: np.ndarray  # (n_pairs,) pred object index
    inter: np.ndarray  # (n_pairs,) int64

    @property
    def union(self) -> np.ndarray:
        return self.true_area[self.rows] + self.pred_area[self.cols] - self.inter

    @property
    def iou(self) -> np.ndarray:
        return self.inter / self.union


def _overlap(true: np.ndarray, pred: np.ndarray) -> Overlap:
    tl, tarea = _compact(true)
    pl, parea = _compact(pred)
    both = (tl > 0) & (pl > 0)
    width = parea.size + 1
    keys = tl[both] * width + pl[both]
    if (tarea.size + 1) * width <= 4 * true.size + 1024:
        counts = np.bincount(keys, minlength=1)
        uniq = np.flatnonzero(counts)
        inter = counts[uniq]
    else:
        uniq, inter = np.unique(keys, return_counts=True)
    rows, cols = uniq // width - 1, uniq % width - 1
    return Overlap(tl, pl, tarea, parea, rows, cols, inter.astype(np.int64))


def prepare(true: ArrayLike, pred: ArrayLike) -> Overlap:
    return _overlap(*check_labels(true, pred))


def first_per_group(groups: np.ndarray, *keys: np.ndarray) -> np.ndarray:
    """Pair index of the first pair of each group after sorting by ``keys`` (primary first)."""
    order = np.lexsort((*keys[::-1], groups))
    g = groups[order]
    first = np.ones(g.size, bool)
    first[1:] = g[1:] != g[:-1]
    return order[first]


def best_by_overlap(ov: Overlap, *, for_true: bool) -> tuple[np.ndarray, np.ndarray]:
    """Per object: partner index of maximal intersection (then larger Dice, lower id), or -1."""
    own, other = (ov.rows, ov.cols) if for_true else (ov.cols, ov.rows)
    other_area = ov.pred_area if for_true else ov.true_area
    n = ov.true_area.size if for_true else ov.pred_area.size
    best = np.full(n, -1, np.intp)
    inter = np.zeros(n, np.int64)
    if ov.inter.size:
        sel = first_per_group(own, -ov.inter, other_area[other], other)
        best[own[sel]] = other[sel]
        inter[own[sel]] = ov.inter[sel]
    return best, inter
