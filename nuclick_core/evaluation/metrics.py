"""Segmentation metrics on instance label images (pure functions behind checked inputs).

Every metric takes ``true`` and ``pred``: integer (H, W) label images, 0 = background, any
positive ids (not necessarily consecutive). All object pairings come from one sparse
contingency table of the two images, so no metric loops over the image once per object.

Conventions for degenerate inputs: when both images hold no object, every score is perfect
(1.0; Hausdorff 0.0). Ties in "best match" are broken by the lower id, after any
label-independent criterion named in the function's notes.

The GlaS object-level metrics (object Dice, object Hausdorff, detection F1, Hausdorff) live in
:mod:`nuclick_core.evaluation.object_metrics` and are re-exported here; :data:`METRICS` and
:func:`evaluate_all` cover them too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
from numpy.typing import ArrayLike
from scipy.optimize import linear_sum_assignment
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from nuclick_core.evaluation._overlap import Overlap, first_per_group, prepare
from nuclick_core.evaluation.object_metrics import (
    GLAS_FROM_OVERLAP,
    detection_f1,
    hausdorff,
    object_dice,
    object_hausdorff,
)

__all__ = [
    "GLAND_FIGURES",
    "HIGHER_IS_BETTER",
    "METRICS",
    "POINT_FIGURES",
    "aji",
    "aji_plus",
    "detection_f1",
    "dice",
    "evaluate_all",
    "figures_for",
    "hausdorff",
    "object_dice",
    "object_hausdorff",
    "panoptic_quality",
    "per_object_iou",
]


# ----------------------------------------------------------------------------- AJI
def _aji(ov: Overlap) -> float:
    if ov.true_area.size == ov.pred_area.size == 0:
        return 1.0
    total_true = int(ov.true_area.sum())
    if ov.inter.size == 0:
        return 0.0
    iou = ov.iou
    best = first_per_group(ov.rows, -iou, ov.cols)  # one pair per GT that overlaps anything
    c = int(ov.inter[best].sum())
    u = int(ov.union[best].sum()) + total_true - int(ov.true_area[ov.rows[best]].sum())
    used = np.zeros(ov.pred_area.size, bool)
    used[ov.cols[best]] = True
    u += int(ov.pred_area[~used].sum())
    return c / u


def aji(true: ArrayLike, pred: ArrayLike) -> float:
    """Aggregated Jaccard Index (Kumar et al. 2017, MoNuSeg definition).

    Each ground-truth object is paired with the prediction of maximal IoU among those it
    overlaps (ties: lower pred id); C and U add the pair's intersection and union. Ground-truth
    objects without overlap add their area to U, as does every prediction never picked. A
    prediction may be picked by several ground-truth objects (its pixels then count in several
    unions), as in the original.

    Parameters
    ----------
    true, pred : (H, W) integer ndarray
        Instance label images, 0 = background.

    Returns
    -------
    float
        C / U in [0, 1]; 1.0 when both images are empty, 0.0 when only one is.

    Raises
    ------
    ValueError
        If the inputs are not 2-D non-negative integer arrays of one shape.

    Examples
    --------
    >>> t = np.array([[1, 1, 0, 2]]); p = np.array([[5, 5, 5, 0]])
    >>> round(aji(t, p), 4)  # GT 1 <-> pred 5: C=2, U=3; GT 2 unmatched: U += 1
    0.5
    """
    return _aji(prepare(true, pred))


def _max_iou_matching(ov: Overlap) -> np.ndarray:
    """Pair indices of a one-to-one matching maximising the summed IoU."""
    n_t, n_p, n_pairs = ov.true_area.size, ov.pred_area.size, ov.inter.size
    if n_pairs == 0:
        return np.zeros(0, np.intp)
    graph = coo_matrix((np.ones(n_pairs), (ov.rows, n_t + ov.cols)), shape=(n_t + n_p,) * 2)
    _, comp = connected_components(graph, directed=False)
    pair_comp = comp[ov.rows]
    size = np.bincount(pair_comp)
    selected = [np.flatnonzero(size[pair_comp] == 1)]  # isolated pairs match trivially
    multi = np.flatnonzero(size[pair_comp] > 1)
    if multi.size:
        iou = ov.iou
        multi = multi[np.argsort(pair_comp[multi], kind="stable")]
        splits = np.flatnonzero(np.diff(pair_comp[multi])) + 1
        for idx in np.split(multi, splits):
            r_u, r_inv = np.unique(ov.rows[idx], return_inverse=True)
            c_u, c_inv = np.unique(ov.cols[idx], return_inverse=True)
            weight = np.zeros((r_u.size, c_u.size))
            weight[r_inv, c_inv] = iou[idx]
            pair_of = np.full((r_u.size, c_u.size), -1, np.intp)
            pair_of[r_inv, c_inv] = idx
            ri, ci = linear_sum_assignment(weight, maximize=True)
            chosen = pair_of[ri, ci]
            selected.append(chosen[chosen >= 0])
    return np.concatenate(selected)


def _aji_plus(ov: Overlap) -> float:
    if ov.true_area.size == ov.pred_area.size == 0:
        return 1.0
    m = _max_iou_matching(ov)
    c = int(ov.inter[m].sum())
    u = int(ov.union[m].sum())
    u += int(ov.true_area.sum() - ov.true_area[ov.rows[m]].sum())
    u += int(ov.pred_area.sum() - ov.pred_area[ov.cols[m]].sum())
    return c / u if u else 0.0


def aji_plus(true: ArrayLike, pred: ArrayLike) -> float:
    """AJI+ (Graham et al. 2019, HoVer-Net): AJI with a one-to-one matching.

    Pairs are chosen by ``scipy.optimize.linear_sum_assignment`` maximising the summed IoU over
    pairs with IoU > 0 (solved per connected group of overlapping objects). Unmatched objects on
    either side add their area to U.

    Parameters
    ----------
    true, pred : (H, W) integer ndarray
        Instance label images, 0 = background.

    Returns
    -------
    float
        C / U in [0, 1]; 1.0 when both images are empty.

    Examples
    --------
    >>> t = np.array([[1, 1, 2, 2]]); p = np.array([[3, 3, 3, 3]])
    >>> aji_plus(t, p)  # pred 3 matches GT 1 only: C=2, U=4 + |GT 2|=2
    0.3333333333333333
    """
    return _aji_plus(prepare(true, pred))


# ----------------------------------------------------------------------------- pixel / PQ
def _dice(ov: Overlap) -> float:
    denom = int(ov.true_area.sum() + ov.pred_area.sum())
    return 2.0 * int(ov.inter.sum()) / denom if denom else 1.0


def dice(true: ArrayLike, pred: ArrayLike) -> float:
    """Pixel Dice of the foregrounds ``true > 0`` and ``pred > 0`` (1.0 when both are empty).

    Parameters
    ----------
    true, pred : (H, W) integer ndarray
        Instance (or binary 0/1) label images.

    Returns
    -------
    float
        2|A∩B| / (|A| + |B|).

    Examples
    --------
    >>> dice(np.array([[1, 1, 0]]), np.array([[0, 7, 7]]))
    0.5
    """
    return _dice(prepare(true, pred))


def _pq(ov: Overlap) -> dict[str, float]:
    n_t, n_p = ov.true_area.size, ov.pred_area.size
    if n_t == 0 and n_p == 0:
        return {"pq": 1.0, "dq": 1.0, "sq": 1.0, "tp": 0, "fp": 0, "fn": 0}
    match = 2 * ov.inter > ov.union  # IoU > 0.5 in exact integer arithmetic
    tp = int(match.sum())
    fp, fn = n_p - tp, n_t - tp
    dq = tp / (tp + 0.5 * fp + 0.5 * fn)
    sq = float(ov.iou[match].mean()) if tp else 0.0
    return {"pq": dq * sq, "dq": dq, "sq": sq, "tp": tp, "fp": fp, "fn": fn}


def panoptic_quality(true: ArrayLike, pred: ArrayLike) -> dict[str, float]:
    """Panoptic quality (Kirillov et al. 2019) with matches at IoU > 0.5 (0.5 itself is not).

    Parameters
    ----------
    true, pred : (H, W) integer ndarray
        Instance label images, 0 = background.

    Returns
    -------
    dict
        ``pq`` = ``dq * sq``, ``dq`` = TP / (TP + FP/2 + FN/2), ``sq`` = mean IoU of matches
        (0.0 without matches), and the counts ``tp``, ``fp``, ``fn`` (ints). All scores are
        1.0 when both images are empty.

    Examples
    --------
    >>> panoptic_quality(np.array([[1, 1, 0]]), np.array([[2, 2, 2]]))["sq"]
    0.6666666666666666
    """
    return _pq(prepare(true, pred))


def per_object_iou(true: ArrayLike, pred: ArrayLike) -> np.ndarray:
    """Best IoU of each ground-truth object with any prediction (0.0 without overlap).

    Parameters
    ----------
    true, pred : (H, W) integer ndarray
        Instance label images, 0 = background.

    Returns
    -------
    (n_true,) float64 ndarray
        Ordered by ascending ground-truth id.

    Examples
    --------
    >>> per_object_iou(np.array([[4, 4, 0, 9]]), np.array([[1, 0, 0, 0]]))
    array([0.5, 0. ])
    """
    ov = prepare(true, pred)
    out = np.zeros(ov.true_area.size)
    np.maximum.at(out, ov.rows, ov.iou)
    return out


# ----------------------------------------------------------------------------- registry
#: Every figure an evaluation reports, and whether higher is better. This is the one list of
#: metric names: the reports, ``nuclick promote --metric``, the promotion gate and the config
#: schema's ``promote.metric`` enum (checked by a test) all follow it.
HIGHER_IS_BETTER: dict[str, bool] = {
    "aji": True,
    "aji_plus": True,
    "dice": True,
    "pq": True,
    "dq": True,
    "sq": True,
    "object_dice": True,
    "object_hausdorff": False,  # a distance in pixels
    "f1": True,
}
#: The figures reported for point marks (nuclei, cells); glands add the GlaS figures.
POINT_FIGURES = ("aji", "aji_plus", "dice", "pq", "dq", "sq")
GLAND_FIGURES = (*POINT_FIGURES, "object_dice", "object_hausdorff", "f1")


def figures_for(object_type: str) -> tuple[str, ...]:
    """The figure names evaluated for ``object_type``."""
    return GLAND_FIGURES if object_type == "gland" else POINT_FIGURES


_FROM_OVERLAP: dict[str, Callable[[Overlap], float]] = {
    "aji": _aji,
    "aji_plus": _aji_plus,
    "dice": _dice,
    "pq": lambda ov: _pq(ov)["pq"],
    "dq": lambda ov: _pq(ov)["dq"],
    "sq": lambda ov: _pq(ov)["sq"],
    **GLAS_FROM_OVERLAP,
}

METRICS: dict[str, Callable[[ArrayLike, ArrayLike], float]] = {
    "aji": aji,
    "aji_plus": aji_plus,
    "dice": dice,
    "pq": lambda true, pred: panoptic_quality(true, pred)["pq"],
    "dq": lambda true, pred: panoptic_quality(true, pred)["dq"],
    "sq": lambda true, pred: panoptic_quality(true, pred)["sq"],
    "object_dice": object_dice,
    "object_hausdorff": object_hausdorff,
    "f1": lambda true, pred: detection_f1(true, pred)["f1"],
}


def evaluate_all(
    true: ArrayLike, pred: ArrayLike, names: Iterable[str] | None = None
) -> dict[str, float]:
    """Compute several metrics of :data:`METRICS` from one shared contingency table.

    Parameters
    ----------
    true, pred : (H, W) integer ndarray
        Instance label images, 0 = background.
    names : iterable of str, optional
        Keys of :data:`METRICS`; all of them by default.

    Returns
    -------
    dict
        Metric name -> float, in the order requested.

    Raises
    ------
    ValueError
        For an unknown metric name, or invalid label images.

    Examples
    --------
    >>> t = np.array([[1, 1, 0, 2]])
    >>> evaluate_all(t, t, ["aji", "pq"])
    {'aji': 1.0, 'pq': 1.0}
    """
    wanted = list(METRICS) if names is None else list(names)
    unknown = [n for n in wanted if n not in _FROM_OVERLAP]
    if unknown:
        raise ValueError(f"unknown metric name(s) {unknown}; choose from {sorted(METRICS)}.")
    ov = prepare(true, pred)
    return {n: float(_FROM_OVERLAP[n](ov)) for n in wanted}
