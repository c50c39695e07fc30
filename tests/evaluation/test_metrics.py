"""Metrics on tiny inline label images; expected values are worked out by hand in comments."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.spatial.distance import directed_hausdorff

from nuclick_core.evaluation.metrics import (
    METRICS,
    aji,
    aji_plus,
    detection_f1,
    dice,
    evaluate_all,
    hausdorff,
    object_dice,
    object_hausdorff,
    panoptic_quality,
    per_object_iou,
)

DTYPES = [np.uint8, np.uint16, np.int32, np.int64]

# fmt: off
# Two GT objects (areas 4 and 4) under one prediction covering both (area 10).
MERGE_TRUE = [[1, 1, 0, 2, 2],
              [1, 1, 0, 2, 2]]
MERGE_PRED = [[7, 7, 7, 7, 7],
              [7, 7, 7, 7, 7]]

# GT 3 (area 4) half covered by pred 5 (area 2): IoU exactly 2/4; GT 9 and pred 20 overlap nothing.
LONE_TRUE = [[3, 3, 0, 0, 0, 0],
             [3, 3, 0, 0, 9, 0],
             [0, 0, 0, 0, 0, 0]]
LONE_PRED = [[0, 5, 0, 0, 0, 0],
             [0, 5, 0, 0, 0, 0],
             [0, 0, 0, 0, 0, 20]]
# fmt: on


def arr(rows: list[list[int]], dtype: type = np.int32) -> np.ndarray:
    return np.array(rows, dtype=dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_merge_aji_differs_from_aji_plus(dtype: type) -> None:
    t, p = arr(MERGE_TRUE, dtype), arr(MERGE_PRED, dtype)
    # AJI: both GTs pick pred 7 (IoU 4/10 each): C = 4 + 4, U = 10 + 10 -> 0.4.
    assert aji(t, p) == pytest.approx(0.4)
    # AJI+: pred 7 matches one GT only: C = 4, U = 10 + 4 (the other GT) -> 2/7.
    assert aji_plus(t, p) == pytest.approx(4 / 14)
    # Foreground: 8 GT pixels, 10 predicted, all 8 shared -> 16/18.
    assert dice(t, p) == pytest.approx(16 / 18)
    # IoU 0.4 < 0.5: no match; 1 FP, 2 FN.
    assert panoptic_quality(t, p) == {"pq": 0.0, "dq": 0.0, "sq": 0.0, "tp": 0, "fp": 1, "fn": 2}
    # Each GT: Dice(G, pred 7) = 8/14 (weights 1/2); pred 7's best GT (tie -> GT 1): 8/14.
    assert object_dice(t, p) == pytest.approx(8 / 14)
    # Pred 7 has only 4 of its 10 pixels in one GT (< 50%): FP.
    f1 = detection_f1(t, p)
    assert (f1["tp"], f1["fp"], f1["fn"], f1["f1"]) == (0, 1, 2, 0.0)
    np.testing.assert_allclose(per_object_iou(t, p), [0.4, 0.4])


@pytest.mark.parametrize("dtype", DTYPES)
def test_unmatched_on_both_sides_with_sparse_ids(dtype: type) -> None:
    t, p = arr(LONE_TRUE, dtype), arr(LONE_PRED, dtype)
    # Pair (3, 5): C = 2, U = 4; GT 9 adds 1, unused pred 20 adds 1 -> 2/6, for AJI and AJI+.
    assert aji(t, p) == pytest.approx(1 / 3)
    assert aji_plus(t, p) == pytest.approx(1 / 3)
    assert dice(t, p) == pytest.approx(2 * 2 / (5 + 3))
    # Object Dice: GT side (4 * 2/3 + 1 * 0) / 5 = 8/15; pred side (2 * 2/3 + 1 * 0) / 3 = 4/9.
    assert object_dice(t, p) == pytest.approx(0.5 * (8 / 15 + 4 / 9))
    # Pred 5 lies wholly in GT 3 -> TP; pred 20 FP; GT 9 FN.
    assert detection_f1(t, p) == {
        "f1": 0.5,
        "precision": 0.5,
        "recall": 0.5,
        "tp": 1,
        "fp": 1,
        "fn": 1,
    }
    # Ascending GT ids: GT 3 -> 0.5, GT 9 -> 0.
    np.testing.assert_allclose(per_object_iou(t, p), [0.5, 0.0])


def test_object_hausdorff_by_hand() -> None:
    t, p = arr(LONE_TRUE), arr(LONE_PRED)
    # H(GT 3, pred 5) = 1 (pixel (0, 0) to (0, 1)).
    # GT 9 at (1, 4) overlaps nothing; nearest pred by Hausdorff: pred 20 at (2, 5), sqrt(2)
    # (pred 5 would give max(3, sqrt(10))). GT side: (4 * 1 + 1 * sqrt 2) / 5.
    # Pred 20 overlaps nothing; nearest GT is GT 9 (sqrt 2; GT 3 gives sqrt 29).
    # Pred side: (2 * 1 + 1 * sqrt 2) / 3.
    expected = 0.5 * ((4 + math.sqrt(2)) / 5 + (2 + math.sqrt(2)) / 3)
    assert object_hausdorff(t, p) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("true", "pred", "tp"),
    [
        ([[1, 1, 0]], [[2, 0, 0]], 0),  # IoU 1/2 exactly: not a match
        ([[1, 1, 1, 1, 0]], [[0, 2, 2, 2, 2]], 1),  # IoU 3/5 > 0.5: a match
        ([[1, 1, 1, 1, 0, 0]], [[0, 0, 2, 2, 2, 2]], 0),  # IoU 2/6
    ],
)
def test_pq_threshold_is_strict(true: list[list[int]], pred: list[list[int]], tp: int) -> None:
    assert panoptic_quality(arr(true), arr(pred))["tp"] == tp


def test_pq_by_hand() -> None:
    t = arr([[1, 1, 1, 0, 2, 2, 0]])
    p = arr([[4, 4, 0, 0, 6, 6, 8]])
    # (1, 4): IoU 2/3; (2, 6): IoU 1; pred 8 FP. DQ = 2 / (2 + 0.5) = 0.8, SQ = 5/6.
    r = panoptic_quality(t, p)
    assert (r["tp"], r["fp"], r["fn"]) == (2, 1, 0)
    assert r["dq"] == pytest.approx(0.8)
    assert r["sq"] == pytest.approx(5 / 6)
    assert r["pq"] == pytest.approx(2 / 3)


@pytest.mark.parametrize(
    ("true", "pred", "counts"),
    [
        ([[1, 0]], [[5, 5]], (1, 0, 0)),  # exactly half of pred 5 lies in GT 1: TP
        ([[1, 0, 0]], [[5, 5, 5]], (0, 1, 1)),  # a third: FP, and GT 1 is missed
        ([[1, 1, 1, 1]], [[2, 2, 3, 3]], (1, 1, 0)),  # GT 1 is matched once only
        # Pred 2 is half in GT 1 and half in GT 4; pred 3 only in GT 1: a maximum matching
        # gives pred 2 -> GT 4 and pred 3 -> GT 1 whatever the label order.
        ([[1, 1, 4, 0]], [[3, 2, 2, 0]], (2, 0, 0)),
    ],
)
def test_detection_f1_rules(
    true: list[list[int]], pred: list[list[int]], counts: tuple[int, int, int]
) -> None:
    r = detection_f1(arr(true), arr(pred))
    assert (r["tp"], r["fp"], r["fn"]) == counts


def test_hausdorff_masks() -> None:
    a = np.zeros((6, 6), bool)
    b = np.zeros((6, 6), bool)
    assert hausdorff(a, b) == 0.0
    a[0, 0] = True
    assert hausdorff(a, b) == math.inf
    b[0, 0] = b[3, 4] = True
    assert hausdorff(a, b) == 5.0
    assert hausdorff(b, a) == 5.0
    # An object inside a ring: distance from the ring's far side, not from its boundary.
    ring = np.zeros((9, 9), np.uint8)
    ring[1:8, 1:8] = 1
    ring[2:7, 2:7] = 0
    dot = np.zeros((9, 9), np.uint8)
    dot[4, 4] = 1
    assert hausdorff(ring, dot) == pytest.approx(math.hypot(3, 3))


def test_empty_images() -> None:
    z = np.zeros((3, 3), np.int32)
    one = z.copy()
    one[1, 1] = 4
    both = evaluate_all(z, z)
    assert both == {
        "aji": 1.0,
        "aji_plus": 1.0,
        "dice": 1.0,
        "pq": 1.0,
        "dq": 1.0,
        "sq": 1.0,
        "object_dice": 1.0,
        "object_hausdorff": 0.0,
        "f1": 1.0,
    }
    for t, p in ((z, one), (one, z)):
        r = evaluate_all(t, p)
        assert r["object_hausdorff"] == math.inf
        del r["object_hausdorff"]
        assert r == dict.fromkeys(r, 0.0)
    assert per_object_iou(z, one).shape == (0,)


def test_huge_ids_match_small_ids() -> None:
    t, p = arr(LONE_TRUE, np.int64), arr(LONE_PRED, np.int64)
    big_t = np.where(t > 0, t + 2**40, 0)
    big_p = np.where(p > 0, p * 2**35, 0)
    assert evaluate_all(big_t, big_p) == evaluate_all(t, p)


def test_evaluate_all_matches_registry() -> None:
    t, p = arr(MERGE_TRUE), arr(MERGE_PRED)
    r = evaluate_all(t, p)
    assert list(r) == list(METRICS)
    for name, f in METRICS.items():
        assert r[name] == pytest.approx(f(t, p))
    assert list(evaluate_all(t, p, ["pq", "aji"])) == ["pq", "aji"]
    with pytest.raises(ValueError, match=r"unknown metric name\(s\) \['ajj'\]; choose from"):
        evaluate_all(t, p, ["ajj"])


@pytest.mark.parametrize(
    ("true", "pred", "message"),
    [
        (np.zeros((3, 3), np.int32), np.zeros((3, 4), np.int32), r"same shape.*\(3, 3\).*\(3, 4\)"),
        (np.zeros((2, 3, 3), np.int32), np.zeros((2, 3, 3), np.int32), r"2-D.*\(2, 3, 3\)"),
        (np.zeros((3, 3)), np.zeros((3, 3), np.int32), r"true must have an integer dtype.*float64"),
        (np.zeros((3, 3), np.int32), np.zeros((3, 3), bool), r"pred must.*bool.*skimage.measure"),
        (np.zeros((3, 3), np.int32), np.full((3, 3), -1), r"pred holds negative labels \(min -1\)"),
    ],
)
def test_invalid_inputs(true: np.ndarray, pred: np.ndarray, message: str) -> None:
    for f in (*METRICS.values(), per_object_iou, panoptic_quality, detection_f1):
        with pytest.raises(ValueError, match=message):
            f(true, pred)


def test_hausdorff_rejects_bad_masks() -> None:
    with pytest.raises(ValueError, match=r"\(3, 3\) bool and mask_b \(3, 2\) bool"):
        hausdorff(np.zeros((3, 3), bool), np.zeros((3, 2), bool))
    with pytest.raises(ValueError, match=r"boolean or integer.*float64"):
        hausdorff(np.zeros((3, 3)), np.zeros((3, 3), bool))


# ----------------------------------------------------------------------------- properties
labels_2d = arrays(
    np.int32, st.tuples(st.integers(1, 7), st.integers(1, 7)), elements=st.integers(0, 5)
)


def permute_ids(labels: np.ndarray, seed: int) -> np.ndarray:
    """Give each positive id a new distinct, non-consecutive id; keep 0."""
    rng = np.random.default_rng(seed)
    lut = np.zeros(labels.max() + 1, np.int64)
    lut[1:] = rng.choice(np.arange(1, 1000), size=labels.max(), replace=False)
    return lut[labels]


@settings(max_examples=60, deadline=None)
@given(labels_2d, st.integers(0, 2**16))
def test_self_comparison_is_perfect(x: np.ndarray, seed: int) -> None:
    y = permute_ids(x, seed)
    r = evaluate_all(x, y)
    assert r == {
        "aji": 1.0,
        "aji_plus": 1.0,
        "dice": 1.0,
        "pq": 1.0,
        "dq": 1.0,
        "sq": 1.0,
        "object_dice": 1.0,
        "object_hausdorff": 0.0,
        "f1": 1.0,
    }
    assert np.all(per_object_iou(x, y) == 1.0)


@settings(max_examples=60, deadline=None)
@given(labels_2d, st.data())
def test_relabelling_invariance(t: np.ndarray, data: st.DataObject) -> None:
    p = data.draw(arrays(np.int32, t.shape, elements=st.integers(0, 5)))
    s1, s2 = data.draw(st.integers(0, 2**16)), data.draw(st.integers(0, 2**16))
    # Metrics whose value cannot depend on how ties are broken (AJI's can, by design).
    names = ["dice", "pq", "object_dice", "f1"]
    assert evaluate_all(permute_ids(t, s1), permute_ids(p, s2), names) == pytest.approx(
        evaluate_all(t, p, names)
    )


def reference_aji(t: np.ndarray, p: np.ndarray) -> float:
    """Direct per-object loops (Kumar et al.): ties to the lower pred id."""
    c = u = 0
    used: set[int] = set()
    pred_ids = [j for j in np.unique(p) if j]
    for i in (i for i in np.unique(t) if i):
        g = t == i
        best, best_iou = None, 0.0
        for j in pred_ids:
            s = p == j
            iou = (g & s).sum() / (g | s).sum()
            if iou > best_iou:
                best, best_iou = j, iou
        if best is None:
            u += g.sum()
        else:
            c += (g & (p == best)).sum()
            u += (g | (p == best)).sum()
            used.add(best)
    u += sum((p == j).sum() for j in pred_ids if j not in used)
    return c / u if u else 1.0


def reference_object_hausdorff(t: np.ndarray, p: np.ndarray) -> float:
    def h(a: np.ndarray, b: np.ndarray) -> float:
        pa, pb = np.argwhere(a), np.argwhere(b)
        return max(directed_hausdorff(pa, pb)[0], directed_hausdorff(pb, pa)[0])

    def side(x: np.ndarray, y: np.ndarray) -> float:
        xs, ys = [i for i in np.unique(x) if i], [j for j in np.unique(y) if j]
        total = sum((x == i).sum() for i in xs)
        out = 0.0
        # Best overlap (ties: smaller partner, then lower id); else the nearest by Hausdorff.
        for i in xs:
            g = x == i
            over = [((g & (y == j)).sum(), -(y == j).sum(), -j) for j in ys]
            k = max(range(len(ys)), key=lambda m: over[m])
            d = h(g, y == ys[k]) if over[k][0] else min(h(g, y == j) for j in ys)
            out += g.sum() / total * d
        return out

    return 0.5 * (side(t, p) + side(p, t))


@settings(max_examples=40, deadline=None)
@given(labels_2d, st.data())
def test_agrees_with_direct_implementation(t: np.ndarray, data: st.DataObject) -> None:
    p = data.draw(arrays(np.int32, t.shape, elements=st.integers(0, 5)))
    assert aji(t, p) == pytest.approx(reference_aji(t, p))
    if t.any() and p.any():
        assert object_hausdorff(t, p) == pytest.approx(reference_object_hausdorff(t, p))
