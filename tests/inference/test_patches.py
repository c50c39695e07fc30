"""Tile plans and the reach of the patches still to come (what lets the engine settle early)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from nuclick_core.inference.patches import (
    DONE,
    ExclusionIndex,
    LaterPatches,
    PatchPlan,
    build_inputs,
    plan_tiles,
)
from nuclick_core.inference.signals import network_input, point_map

P = 32


def _later_origins(plans: list[PatchPlan], done: int) -> np.ndarray:
    return np.concatenate([p.origin_uv for p in plans])[done:]


def _check_sound(plans: list[PatchPlan]) -> None:
    """Wherever ``after(done)`` says a box is clear, no later patch starts above and left of
    its lower right corner (a patch reaches down and right of its origin)."""
    later = LaterPatches(plans)
    n = sum(len(p.click_index) for p in plans)
    corners = np.stack(np.meshgrid(np.arange(-40, 700, 23), np.arange(-40, 700, 23)), -1)
    for done in range(n + 1):
        reach = later.after(done)
        origins = _later_origins(plans, done)
        for bottom, right in corners.reshape(-1, 2):
            if reach.clear_of(bottom, right):
                reaching = (origins[:, 1] < bottom) & (origins[:, 0] < right)
                assert not reaching.any(), (done, bottom, right)
        for u, v in origins:  # a box ending just past a later patch's origin is reached
            assert not reach.clear_of(v + 1, u + 1), (done, u, v)
    assert later.after(n) == DONE


@settings(max_examples=40, deadline=None)
@given(
    uv=st.lists(st.tuples(st.integers(0, 600), st.integers(0, 600)), min_size=1, max_size=60),
    tile=st.sampled_from([48, 100, 256]),
)
def test_the_reach_of_later_patches_is_sound_on_row_major_plans(uv, tile) -> None:
    plans = list(plan_tiles(np.array(uv), patch_size=P, tile=tile))
    assert [p.row for p in plans] == sorted(p.row for p in plans)
    _check_sound(plans)


@settings(max_examples=25, deadline=None)
@given(
    uv=st.lists(st.tuples(st.integers(0, 600), st.integers(0, 600)), min_size=1, max_size=40),
    seed=st.integers(0, 2**16),
)
def test_the_reach_is_sound_for_plans_in_any_order_and_grouping(uv, seed) -> None:
    rng = np.random.default_rng(seed)
    plans = list(plan_tiles(np.array(uv), patch_size=P, tile=100))
    order = rng.permutation(len(plans))
    plans = [
        PatchPlan(plans[k].click_index, plans[k].origin_uv, plans[k].region, int(rng.integers(3)))
        for k in order
    ]
    _check_sound(plans)


def test_within_a_tile_row_the_left_part_is_clear_before_the_row_ends() -> None:
    # two tile rows of four tiles, one click in the middle of each tile
    uv = np.array([[50 + 100 * c, 50 + 100 * r] for r in range(2) for c in range(4)])
    plans = list(plan_tiles(uv, patch_size=P, tile=100))
    later = LaterPatches(plans)
    reach = later.after(2)  # the first two tiles of the first row are done
    # a box in the first tile, ending above the second row's patches, is clear...
    assert reach.clear_of(bottom=60, right=70)
    # ...one under the third tile's patch is not, nor one reaching the second row's patches
    assert not reach.clear_of(bottom=60, right=250)
    assert not reach.clear_of(bottom=140, right=70)


def _one_patch_at_a_time(region, plan, exclusion, p):
    """The input building before it was vectorised (#14): one patch, its exclusion map from
    the clicks a ball query finds, through :func:`network_input`, in turn."""
    out = np.empty((len(plan.click_index), 5, p, p), np.float32)
    u0, v0 = plan.region[:2]
    inclusion = point_map((p, p), np.array([[p // 2, p // 2]], np.float64))
    for k, (idx, origin) in enumerate(zip(plan.click_index, plan.origin_uv, strict=True)):
        near = exclusion.tree.query_ball_point(origin + (p - 1) / 2.0, r=p * 0.7072)
        local = np.array(
            [exclusion.uv[j] - origin for j in near if exclusion.ids[j] != idx]
        ).reshape(-1, 2)
        local = local[np.all((local >= 0) & (local < p), axis=1)]
        rgb = region[origin[1] - v0 : origin[1] - v0 + p, origin[0] - u0 : origin[0] - u0 + p]
        network_input(rgb, inclusion, point_map((p, p), local), out=out[k])
    return out


def test_inputs_built_for_a_whole_tile_equal_those_built_patch_by_patch() -> None:
    """Clustered clicks (several on one pixel, clicks just outside a patch, clicks of other
    tiles, some not segmented but excluded): the batch inputs are bit-identical."""
    rng = np.random.default_rng(5)
    uv = np.concatenate([rng.integers(0, 300, (80, 2)), rng.integers(100, 130, (40, 2))])
    uv[5] = uv[6]  # two clicks on one pixel: each is the other's exclusion, cleared at centre
    keep = np.ones(len(uv), bool)
    keep[::7] = False  # outside the slide, say: excluded but not segmented
    exclusion = ExclusionIndex(uv, np.arange(len(uv)))
    region_rgb = rng.integers(0, 256, (400, 400, 3), dtype=np.uint8)
    checked = 0
    for plan in plan_tiles(uv[keep], patch_size=P, tile=100):
        plan = PatchPlan(np.flatnonzero(keep)[plan.click_index], plan.origin_uv, plan.region)
        u0, v0, w, h = plan.region  # may start left of or above the image: pad like a reader
        region = np.pad(region_rgb, ((P, 0), (P, 0), (0, 0)))[
            v0 + P : v0 + P + h, u0 + P : u0 + P + w
        ]
        got = build_inputs(region, plan, exclusion, P)
        want = _one_patch_at_a_time(region, plan, exclusion, P)
        assert np.array_equal(got, want)
        checked += int(got[:, 4].sum() > 0)
    assert checked >= 3  # the exclusion maps were not all empty
