"""GlaS object-level metrics (Sirinukunwattana et al. 2017) on instance label images.

Object Dice, object Hausdorff and detection F1, plus the pixel-set Hausdorff distance they build
on. Inputs and conventions are those of :mod:`nuclick_core.evaluation.metrics`, which re-exports
every public name here and includes these metrics in its registry (``METRICS``, ``evaluate_all``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import ArrayLike
from scipy import ndimage as ndi
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import maximum_bipartite_matching

from nuclick_core.evaluation._overlap import Overlap, best_by_overlap, prepare


# ----------------------------------------------------------------------------- Hausdorff
def _hausdorff_masks(a: np.ndarray, b: np.ndarray) -> float:
    """Symmetric Hausdorff distance between the pixel sets of two boolean masks."""
    has_a, has_b = bool(a.any()), bool(b.any())
    if not (has_a or has_b):
        return 0.0
    if not (has_a and has_b):
        return float("inf")
    rr = np.flatnonzero((a | b).any(axis=1))
    cc = np.flatnonzero((a | b).any(axis=0))
    crop = (slice(rr[0], rr[-1] + 1), slice(cc[0], cc[-1] + 1))
    a, b = a[crop], b[crop]
    to_b = ndi.distance_transform_edt(~b)  # distance of every pixel to the nearest b pixel
    to_a = ndi.distance_transform_edt(~a)
    return float(max(to_b[a].max(), to_a[b].max()))


def hausdorff(mask_a: ArrayLike, mask_b: ArrayLike) -> float:
    """Symmetric Hausdorff distance (pixels) between the pixel sets of two masks.

    Exact on the full pixel sets (not only boundaries), from Euclidean distance transforms of
    the two masks' joint bounding box.

    Parameters
    ----------
    mask_a, mask_b : (H, W) bool or integer ndarray
        Masks of one shape; nonzero pixels belong to the set.

    Returns
    -------
    float
        0.0 when both are empty, ``inf`` when exactly one is.

    Examples
    --------
    >>> a = np.zeros((5, 5), bool); a[1, 1] = True
    >>> b = np.zeros((5, 5), bool); b[1, 1] = b[4, 1] = True
    >>> hausdorff(a, b)
    3.0
    """
    a, b = np.asarray(mask_a), np.asarray(mask_b)
    got = f"got mask_a {a.shape} {a.dtype} and mask_b {b.shape} {b.dtype}"
    if a.ndim != 2 or a.shape != b.shape:
        raise ValueError(f"masks must be 2-D arrays of one shape; {got}.")
    for m in (a, b):
        if not (m.dtype == bool or np.issubdtype(m.dtype, np.integer)):
            raise ValueError(f"masks must be boolean or integer; {got}. Threshold them first.")
    return _hausdorff_masks(a != 0, b != 0)


# ----------------------------------------------------------------------------- GlaS
def _object_dice(ov: Overlap) -> float:
    n_t, n_p = ov.true_area.size, ov.pred_area.size
    if n_t == 0 or n_p == 0:
        return 1.0 if n_t == n_p else 0.0
    score = 0.0
    for for_true, own, other in (
        (True, ov.true_area, ov.pred_area),
        (False, ov.pred_area, ov.true_area),
    ):
        best, inter = best_by_overlap(ov, for_true=for_true)
        partner = np.where(best >= 0, other[best], 0)
        d = np.where(best >= 0, 2.0 * inter / (own + partner), 0.0)
        score += 0.5 * float((own * d).sum() / own.sum())
    return score


def object_dice(true: ArrayLike, pred: ArrayLike) -> float:
    """Object-level Dice (GlaS, Sirinukunwattana et al. 2017).

    ``0.5 * [sum_i g_i Dice(G_i, S*(G_i)) + sum_j s_j Dice(G*(S_j), S_j)]`` with area weights
    ``g_i = |G_i| / sum|G|`` and ``s_j = |S_j| / sum|S|``. The partner is the object of maximal
    overlap (ties: larger Dice, then lower id); objects overlapping nothing score 0.

    Parameters
    ----------
    true, pred : (H, W) integer ndarray
        Instance label images, 0 = background.

    Returns
    -------
    float
        In [0, 1]; 1.0 when both images are empty, 0.0 when exactly one is.

    Examples
    --------
    >>> object_dice(np.array([[1, 1, 0, 0]]), np.array([[3, 3, 0, 4]]))
    0.8333333333333333
    """
    return _object_dice(prepare(true, pred))


def _object_hausdorff(ov: Overlap) -> float:
    n_t, n_p = ov.true_area.size, ov.pred_area.size
    if n_t == 0 or n_p == 0:
        return 0.0 if n_t == n_p else float("inf")
    boxes = []
    for lab in (ov.true_lab, ov.pred_lab):
        sl = ndi.find_objects(lab)
        boxes.append(np.array([(s[0].start, s[0].stop, s[1].start, s[1].stop) for s in sl]))
    cache: dict[tuple[int, int], float] = {}

    def pair(i: int, j: int) -> float:
        if (i, j) not in cache:
            lo = np.minimum(boxes[0][i], boxes[1][j])
            hi = np.maximum(boxes[0][i], boxes[1][j])
            crop = (slice(lo[0], hi[1]), slice(lo[2], hi[3]))
            cache[i, j] = _hausdorff_masks(ov.true_lab[crop] == i + 1, ov.pred_lab[crop] == j + 1)
        return cache[i, j]

    def nearest(k: int, *, for_true: bool) -> float:
        own, other = (boxes[0], boxes[1]) if for_true else (boxes[1], boxes[0])
        # Any point set's Hausdorff distance is at least its bounding boxes' largest edge shift.
        bound = np.abs(other - own[k]).max(axis=1)
        best = float("inf")
        for m in np.argsort(bound, kind="stable"):
            if bound[m] >= best:
                break
            best = min(best, pair(k, int(m)) if for_true else pair(int(m), k))
        return best

    score = 0.0
    for for_true, own in ((True, ov.true_area), (False, ov.pred_area)):
        best, _ = best_by_overlap(ov, for_true=for_true)
        h = np.empty(own.size)
        for k, m in enumerate(best):
            if m < 0:
                h[k] = nearest(k, for_true=for_true)
            else:
                h[k] = pair(k, int(m)) if for_true else pair(int(m), k)
        score += 0.5 * float((own * h).sum() / own.sum())
    return score


def object_hausdorff(true: ArrayLike, pred: ArrayLike) -> float:
    """Object-level Hausdorff distance (GlaS, Sirinukunwattana et al. 2017).

    Weighted like :func:`object_dice`, with :func:`hausdorff` in place of Dice. An object that
    overlaps nothing is compared with the object of the other image nearest to it in Hausdorff
    distance (found by branch and bound on bounding boxes).

    Parameters
    ----------
    true, pred : (H, W) integer ndarray
        Instance label images, 0 = background.

    Returns
    -------
    float
        Distance in pixels (lower is better); 0.0 when both images are empty, ``inf`` when
        exactly one is.

    Examples
    --------
    >>> object_hausdorff(np.array([[1, 1, 0, 0]]), np.array([[0, 2, 0, 0]]))
    1.0
    """
    return _object_hausdorff(prepare(true, pred))


def _detection(ov: Overlap) -> dict[str, float]:
    n_t, n_p = ov.true_area.size, ov.pred_area.size
    qual = 2 * ov.inter >= ov.pred_area[ov.cols]  # at least half the prediction lies in G
    tp = 0
    if qual.any():
        graph = csr_matrix(
            (np.ones(int(qual.sum())), (ov.cols[qual], ov.rows[qual])), shape=(n_p, n_t)
        )
        tp = int((maximum_bipartite_matching(graph, perm_type="column") >= 0).sum())
    fp, fn = n_p - tp, n_t - tp
    empty = 1.0 if n_t == n_p == 0 else 0.0
    return {
        "f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else empty,
        "precision": tp / (tp + fp) if tp + fp else empty,
        "recall": tp / (tp + fn) if tp + fn else empty,
        "tp": tp,
        "fp": fp,
        "fn": fn,
    }


def detection_f1(true: ArrayLike, pred: ArrayLike) -> dict[str, float]:
    """Object detection F1 (GlaS).

    A prediction is a true positive when at least 50% of its area lies in one ground-truth
    object, each ground-truth object being matched at most once (a maximum matching, so the
    count does not depend on label order); other predictions are false positives and unmatched
    ground-truth objects false negatives.

    Parameters
    ----------
    true, pred : (H, W) integer ndarray
        Instance label images, 0 = background.

    Returns
    -------
    dict
        ``f1``, ``precision``, ``recall`` and counts ``tp``, ``fp``, ``fn``. A ratio with a zero
        denominator is 1.0 when both images are empty, else 0.0.

    Examples
    --------
    >>> detection_f1(np.array([[1, 1, 0, 0]]), np.array([[2, 0, 0, 3]]))["f1"]
    0.6666666666666666
    """
    return _detection(prepare(true, pred))


#: The metrics of this module as functions of a shared contingency table, keyed as in
#: :data:`nuclick_core.evaluation.metrics.METRICS`.
GLAS_FROM_OVERLAP: dict[str, Callable[[Overlap], float]] = {
    "object_dice": _object_dice,
    "object_hausdorff": _object_hausdorff,
    "f1": lambda ov: _detection(ov)["f1"],
}
