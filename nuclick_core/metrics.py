"""Segmentation metrics on instance label images (pure functions behind checked inputs).

Every metric takes ``true`` and ``pred``: integer (H, W) label images, 0 = background, any
positive ids (not necessarily consecutive). All object pairings come from one sparse
contingency table of the two images, so no metric loops over the image once per object.

Conventions for degenerate inputs: when both images hold no object, every score is perfect
(1.0; Hausdorff 0.0). Ties in "best match" are broken by the lower id, after any
label-independent criterion named in the function's notes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy import ndimage as ndi
from scipy.optimize import linear_sum_assignment
from scipy.sparse import coo_matrix, csr_matrix
from scipy.sparse.csgraph import connected_components, maximum_bipartite_matching


# ----------------------------------------------------------------------------- inputs
def _check_labels(true: ArrayLike, pred: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
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
class _Overlap:
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


def _overlap(true: np.ndarray, pred: np.ndarray) -> _Overlap:
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
    return _Overlap(tl, pl, tarea, parea, rows, cols, inter.astype(np.int64))


def _prepare(true: ArrayLike, pred: ArrayLike) -> _Overlap:
    return _overlap(*_check_labels(true, pred))


def _first_per_group(groups: np.ndarray, *keys: np.ndarray) -> np.ndarray:
    """Pair index of the first pair of each group after sorting by ``keys`` (primary first)."""
    order = np.lexsort((*keys[::-1], groups))
    g = groups[order]
    first = np.ones(g.size, bool)
    first[1:] = g[1:] != g[:-1]
    return order[first]


def _best_by_overlap(ov: _Overlap, *, for_true: bool) -> tuple[np.ndarray, np.ndarray]:
    """Per object: partner index of maximal intersection (then larger Dice, lower id), or -1."""
    own, other = (ov.rows, ov.cols) if for_true else (ov.cols, ov.rows)
    other_area = ov.pred_area if for_true else ov.true_area
    n = ov.true_area.size if for_true else ov.pred_area.size
    best = np.full(n, -1, np.intp)
    inter = np.zeros(n, np.int64)
    if ov.inter.size:
        sel = _first_per_group(own, -ov.inter, other_area[other], other)
        best[own[sel]] = other[sel]
        inter[own[sel]] = ov.inter[sel]
    return best, inter


# ----------------------------------------------------------------------------- AJI
def _aji(ov: _Overlap) -> float:
    if ov.true_area.size == ov.pred_area.size == 0:
        return 1.0
    total_true = int(ov.true_area.sum())
    if ov.inter.size == 0:
        return 0.0
    iou = ov.iou
    best = _first_per_group(ov.rows, -iou, ov.cols)  # one pair per GT that overlaps anything
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
    return _aji(_prepare(true, pred))


def _max_iou_matching(ov: _Overlap) -> np.ndarray:
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


def _aji_plus(ov: _Overlap) -> float:
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
    return _aji_plus(_prepare(true, pred))


# ----------------------------------------------------------------------------- pixel / PQ
def _dice(ov: _Overlap) -> float:
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
    return _dice(_prepare(true, pred))


def _pq(ov: _Overlap) -> dict[str, float]:
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
    return _pq(_prepare(true, pred))


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
def _object_dice(ov: _Overlap) -> float:
    n_t, n_p = ov.true_area.size, ov.pred_area.size
    if n_t == 0 or n_p == 0:
        return 1.0 if n_t == n_p else 0.0
    score = 0.0
    for for_true, own, other in (
        (True, ov.true_area, ov.pred_area),
        (False, ov.pred_area, ov.true_area),
    ):
        best, inter = _best_by_overlap(ov, for_true=for_true)
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
    return _object_dice(_prepare(true, pred))


def _object_hausdorff(ov: _Overlap) -> float:
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
        best, _ = _best_by_overlap(ov, for_true=for_true)
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
    return _object_hausdorff(_prepare(true, pred))


def _detection(ov: _Overlap) -> dict[str, float]:
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
    return _detection(_prepare(true, pred))


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
    ov = _prepare(true, pred)
    out = np.zeros(ov.true_area.size)
    np.maximum.at(out, ov.rows, ov.iou)
    return out


# ----------------------------------------------------------------------------- registry
_FROM_OVERLAP: dict[str, Callable[[_Overlap], float]] = {
    "aji": _aji,
    "aji_plus": _aji_plus,
    "dice": _dice,
    "pq": lambda ov: _pq(ov)["pq"],
    "object_dice": _object_dice,
    "object_hausdorff": _object_hausdorff,
    "f1": lambda ov: _detection(ov)["f1"],
}

METRICS: dict[str, Callable[[ArrayLike, ArrayLike], float]] = {
    "aji": aji,
    "aji_plus": aji_plus,
    "dice": dice,
    "pq": lambda true, pred: panoptic_quality(true, pred)["pq"],
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
    ov = _prepare(true, pred)
    return {n: float(_FROM_OVERLAP[n](ov)) for n in wanted}
