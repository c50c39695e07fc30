"""Per-patch post-processing and overlap resolution."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from nuclick_core.inference.postprocess import PostprocessParams, clicked_object, fill_small_holes
from nuclick_core.inference.stitch import PatchInstance, resolve_overlaps
from nuclick_core.io.instances import hilbert_order

P = PostprocessParams(threshold=0.5, min_size=5, min_hole=10, click_tolerance=2.0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_keeps_the_clicked_component_only(dtype) -> None:
    prob = np.zeros((20, 20), dtype)
    prob[2:8, 2:8] = 0.9
    prob[10:18, 10:18] = 0.8
    prob[0, 19] = 0.99  # a speck under min_size
    mask, status = clicked_object(prob, (12, 12), P)
    assert status == "ok"
    assert mask.sum() == 64 and mask[10:18, 10:18].all()


def test_click_just_outside_takes_nearest_component_within_tolerance() -> None:
    prob = np.zeros((20, 20), np.float32)
    prob[5:10, 5:10] = 0.9
    mask, status = clicked_object(prob, (11, 7), P)  # 2 px below the square
    assert status == "ok" and mask.sum() == 25
    mask, status = clicked_object(prob, (15, 7), P)  # 6 px away
    assert status == "click_outside_mask" and not mask.any()


def test_empty_prediction_and_specks_only() -> None:
    assert clicked_object(np.zeros((8, 8), np.float32), (4, 4), P)[1] == "empty"
    prob = np.zeros((8, 8), np.float32)
    prob[4, 4] = 1.0
    assert clicked_object(prob, (4, 4), P)[1] == "empty"


def test_postprocessing_is_two_dimensional_per_patch() -> None:
    """A speck in one patch must not survive because a mask sits at the same x, y in another
    patch (the 3-D connectivity bug of the public implementations)."""
    a = np.zeros((16, 16), np.float32)
    a[4:12, 4:12] = 0.9
    b = np.zeros((16, 16), np.float32)
    b[4:12, 4:12] = 0.9
    b[0, 0] = 0.9  # speck
    ma, _ = clicked_object(a, (8, 8), P)
    mb, _ = clicked_object(b, (8, 8), P)
    assert not mb[0, 0] and ma.sum() == mb.sum() == 64


def test_small_holes_filled_large_kept() -> None:
    mask = np.ones((20, 20), bool)
    mask[3:5, 3:5] = False  # 4 px hole
    mask[8:16, 8:16] = False  # 64 px hole
    out = fill_small_holes(mask, 10)
    assert out[3:5, 3:5].all() and not out[8:16, 8:16].any()


def _inst(cid, r0, c0, mask, prob, click):
    return PatchInstance(cid, r0, c0, mask, np.asarray(prob, np.float32), click)


def test_contested_pixels_go_to_higher_probability_then_nearer_click() -> None:
    m = np.ones((4, 10), bool)
    a = _inst(0, 0, 0, m, np.full((4, 10), 0.8), (1, 1))
    b = _inst(1, 0, 5, m, np.full((4, 10), 0.9), (1, 13))
    out = resolve_overlaps([a, b])
    assert out[0][:, :5].all() and not out[0][:, 5:].any()  # b wins the overlap (0.9 > 0.8)
    assert out[1].all()
    # equal probability: each pixel to the nearer click
    b2 = _inst(1, 0, 5, m, np.full((4, 10), 0.8), (1, 13))
    out = resolve_overlaps([a, b2])
    owner = np.zeros(15, int)
    owner[:10] += out[0][1] * 1
    owner[5:] += out[1][1] * 2
    assert set(owner) == {1, 2}  # no pixel owned twice
    assert owner[6] == 1 and owner[8] == 2  # click columns 1 and 13: split at 7
    # equal probability and equal distance (column 7 is 6 from both clicks): the lower click id
    assert owner[7] == 1
    swapped = resolve_overlaps([_inst(5, 0, 0, m, np.full((4, 10), 0.8), (1, 1)),
                                _inst(2, 0, 5, m, np.full((4, 10), 0.8), (1, 13))])  # fmt: skip
    assert not swapped[5][:, 7].any() and swapped[2][:, 2].all()  # id 2 now takes column 7


def test_an_instance_that_loses_every_pixel_is_none() -> None:
    """What the engine writes as lost_to_neighbour (#13: it was never produced in a test)."""
    big = _inst(0, 0, 0, np.ones((10, 10), bool), np.full((10, 10), 0.9), (5, 5))
    small = _inst(1, 3, 3, np.ones((3, 3), bool), np.full((3, 3), 0.6), (4, 4))
    out = resolve_overlaps([big, small])
    assert out[1] is None and out[0].all()


def test_result_does_not_depend_on_order() -> None:
    rng = np.random.default_rng(3)
    insts = []
    for cid in range(6):
        r0, c0 = rng.integers(0, 12, 2)
        mask = rng.random((10, 10)) > 0.2
        mask[5, 5] = True
        insts.append(_inst(cid, int(r0), int(c0), mask, rng.random((10, 10)), (r0 + 5, c0 + 5)))
    ref = resolve_overlaps(insts)
    for perm in itertools.islice(itertools.permutations(insts), 0, 40, 7):
        got = resolve_overlaps(list(perm))
        for cid, m in ref.items():
            assert (m is None and got[cid] is None) or np.array_equal(m, got[cid])


def test_loser_keeps_only_its_click_component() -> None:
    # b's mask is a horizontal bar; a wins a column through its middle, cutting b in two
    mb = np.ones((3, 11), bool)
    b = _inst(1, 0, 0, mb, np.full((3, 11), 0.6), (1, 2))
    ma = np.ones((7, 1), bool)
    a = _inst(0, -2, 5, ma, np.full((7, 1), 0.9), (1, 5))
    out = resolve_overlaps([a, b])
    assert out[1][:, :5].all() and not out[1][:, 5:].any()


def test_hilbert_order_is_a_permutation_and_local() -> None:
    xy = np.array([[0, 0], [100, 100], [1, 1], [99, 99], [0, 100]], float)
    order = hilbert_order(xy)
    assert sorted(order) == list(range(5))
    pos = {int(k): i for i, k in enumerate(order)}
    assert abs(pos[0] - pos[2]) == 1 and abs(pos[1] - pos[3]) == 1


def test_a_squiggle_keeps_every_piece_it_touches() -> None:
    """A gland in two pieces along its squiggle stays whole, with or without neighbours."""
    mask = np.zeros((10, 30), bool)
    mask[2:8, 0:12] = True
    mask[2:8, 16:28] = True
    anchor = np.zeros_like(mask)
    anchor[5, 2:26] = True
    inst = PatchInstance(0, 0, 0, mask, np.full(mask.shape, 0.9, np.float32), (5, 2), anchor)
    out = resolve_overlaps([inst])
    assert out[0].sum() == mask.sum()
    # a point instance in the same situation keeps only the piece with its click
    point = PatchInstance(0, 0, 0, mask, np.full(mask.shape, 0.9, np.float32), (5, 2))
    assert resolve_overlaps([point])[0].sum() == 72


def test_components_kept_for_many_masks_at_once_equal_those_kept_one_by_one() -> None:
    """:func:`_keep_click_components` (masks labelled together on canvases) against
    :func:`_keep_click_component` per mask: masks in one piece and in several, clicks on a
    piece, on the background and outside the box, squiggle anchors touching some pieces or
    none, empty masks."""
    from scipy import ndimage as ndi

    from nuclick_core.inference.stitch import _keep_click_component, _keep_click_components

    rng = np.random.default_rng(12)
    cut, kinds = [], set()
    for k in range(400):
        h, w = (int(v) for v in rng.integers(1, 30, 2))
        mask = ndi.binary_opening(rng.random((h, w)) < rng.uniform(0.3, 0.9))
        if k % 25 == 0:
            mask[:] = False
        click = (int(rng.integers(-3, h + 3)), int(rng.integers(-3, w + 3)))
        anchor = rng.random((h, w)) < 0.05 if k % 4 == 0 else None
        inst = PatchInstance(k, 0, 0, mask, np.ones((h, w), np.float32), click, anchor)
        cut.append((mask, inst))
        kinds.add(min(ndi.label(mask)[1], 2))
    assert kinds == {0, 1, 2}
    got = _keep_click_components(cut)
    for (mask, inst), out in zip(cut, got, strict=True):
        want = _keep_click_component(mask, inst)
        assert (out is None) == (want is None)
        assert want is None or np.array_equal(out, want)


def _cut_pair_by_pair(instances, targets, rule):
    """The settlement loop the vectorised one replaced (the oracle): per target, per
    neighbour whose box overlaps, the pixels the neighbour wins are removed."""
    out = []
    for k in targets:
        inst = instances[k]
        mask = inst.mask.copy()
        for other in instances:
            if other is inst:
                continue
            r0, c0 = max(inst.row0, other.row0), max(inst.col0, other.col0)
            r1, c1 = min(inst.box[2], other.box[2]), min(inst.box[3], other.box[3])
            if r1 <= r0 or c1 <= c0:
                continue
            sa = (slice(r0 - other.row0, r1 - other.row0), slice(c0 - other.col0, c1 - other.col0))
            sb = (slice(r0 - inst.row0, r1 - inst.row0), slice(c0 - inst.col0, c1 - inst.col0))
            both = other.mask[sa] & inst.mask[sb]
            if rule == "later":
                win = np.full(both.shape, other.click_id > inst.click_id)
            else:
                rows, cols = np.arange(r0, r1)[:, None], np.arange(c0, c1)[None, :]
                da = (rows - other.click_rc[0]) ** 2 + (cols - other.click_rc[1]) ** 2
                db = (rows - inst.click_rc[0]) ** 2 + (cols - inst.click_rc[1]) ** 2
                pa, pb = other.prob[sa], inst.prob[sb]
                tie = (da < db) | ((da == db) & (other.click_id < inst.click_id))
                win = (pa > pb) | ((pa == pb) & tie)
            mask[sb] &= ~(both & win)
        out.append(mask)
    return out


@pytest.mark.parametrize("rule", ["ownership", "later"])
@pytest.mark.parametrize("pixels_at_once", [1 << 19, 50])
def test_overlaps_settled_at_once_equal_the_pair_by_pair_loop(
    rule, pixels_at_once, monkeypatch
) -> None:
    """:func:`_settle` (every overlap of every pair in one pass, or in chunks of a few pairs)
    against the loop it replaced, on crowded random instances: probabilities on a coarse scale
    and clicks on a lattice, so that ties in probability and in distance are common; boxes that
    only touch; instances outside the targets that still count as neighbours."""
    from nuclick_core.inference import stitch
    from nuclick_core.inference.stitch import _settle

    monkeypatch.setattr(stitch, "PIXELS_AT_ONCE", pixels_at_once)

    rng = np.random.default_rng(5)
    for trial in range(30):
        instances, ids = [], rng.permutation(1000)
        for k in range(int(rng.integers(1, 40))):
            h, w = (int(v) for v in rng.integers(1, 25, 2))
            r0, c0 = (int(v) for v in rng.integers(0, 60, 2))
            mask = rng.random((h, w)) < rng.uniform(0.2, 1.0)
            prob = rng.integers(0, 4, (h, w)) / 4.0
            click = (r0 + 2 * int(rng.integers(0, h // 2 + 1)), c0 + 2 * int(rng.integers(-1, w)))
            instances.append(_inst(int(ids[k]), r0, c0, mask, prob, click))
        if trial % 3:
            targets = sorted(rng.choice(len(instances), len(instances) // 2 + 1, replace=False))
        else:
            targets = list(range(len(instances)))
        got = _settle(instances, [int(t) for t in targets], rule, lambda cut: [m for m, _ in cut])
        want = _cut_pair_by_pair(instances, targets, rule)
        assert list(got) == [instances[t].click_id for t in targets]
        for mask, expected in zip(got.values(), want, strict=True):
            assert np.array_equal(mask, expected)
