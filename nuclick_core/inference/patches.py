"""Plan click patches on the model's pixel grid and group them by slide tile.

The *grid* is the slide resampled to the model's mpp (see :mod:`nuclick_core.io.slides`). A click at
level-0 ``(x, y)`` lies in grid pixel ``(floor(x / f), floor(y / f))`` with ``f = model_mpp /
slide_mpp``; its patch is the ``P x P`` grid square with that pixel at ``(P/2, P/2)``. Clicks are
grouped by the tile of side ``tile`` grid pixels that holds them, and each tile's patches are cut
from one read of the grid region they cover.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from itertools import chain

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy.spatial import cKDTree

from nuclick_core.inference.signals import network_input, point_map


@dataclass(frozen=True)
class PatchPlan:
    """Patches for the clicks of one tile.

    click_index : int (K,) row indices into the click arrays.
    origin_uv : int (K, 2) grid (u, v) of each patch's top-left pixel.
    region : (u0, v0, width, height) grid region covering all K patches.
    row : the tile row of the plan's clicks (:func:`plan_tiles`); it only groups plans for
        :class:`LaterPatches`, so any grouping is correct, a row-major one keeps memory low.
    """

    click_index: np.ndarray
    origin_uv: np.ndarray
    region: tuple[int, int, int, int]
    row: int = 0


@dataclass(frozen=True)
class Reach:
    """Where the patches still to come lie, on the model grid: those of later tile rows have
    their tops at or below ``below``; the rest of the current tile row have their tops at or
    below ``row_top`` and their left edges at or right of ``row_left``."""

    below: float
    row_top: float
    row_left: float

    def clear_of(self, bottom: float, right: float) -> bool:
        """True when no patch still to come overlaps a box ending at grid row ``bottom`` and
        column ``right`` (exclusive): a patch reaches down and right of its top-left pixel."""
        return bottom <= self.below and (bottom <= self.row_top or right <= self.row_left)


#: No patch is still to come.
DONE = Reach(np.inf, np.inf, np.inf)


class LaterPatches:
    """The :class:`Reach` of the patches after the first ``done`` of ``plans`` (taken in order,
    row by row), from per-plan minima: a few numbers per plan, not per click."""

    def __init__(self, plans: list[PatchPlan]) -> None:
        self.plans = plans
        sizes = np.array([len(p.click_index) for p in plans], np.int64)
        self.starts = np.concatenate([[0], np.cumsum(sizes)])
        n = len(plans)
        #: whether plan j + 1 is in plan j's row
        self.row_goes_on = [j + 1 < n and plans[j + 1].row == plans[j].row for j in range(n)]
        # per plan: the minima over it and the later plans of its row, and over the later rows
        self.row_top, self.row_left, self.below = (np.full(n + 1, np.inf) for _ in range(3))
        for j in range(n - 1, -1, -1):
            same, uv = self.row_goes_on[j], plans[j].origin_uv
            top, left = uv[:, 1].min(), uv[:, 0].min()
            self.row_top[j] = min(top, self.row_top[j + 1]) if same else top
            self.row_left[j] = min(left, self.row_left[j + 1]) if same else left
            # the next plan starts a row: everything after this row begins there
            self.below[j] = (
                self.below[j + 1] if same else min(self.row_top[j + 1], self.below[j + 1])
            )

    def after(self, done: int) -> Reach:
        """The reach of the patches from the ``done``-th on (0-based, in plan order)."""
        if done >= self.starts[-1]:
            return DONE
        j = int(np.searchsorted(self.starts, done, side="right")) - 1
        rest = self.plans[j].origin_uv[done - int(self.starts[j]) :]
        top, left = float(rest[:, 1].min()), float(rest[:, 0].min())
        if self.row_goes_on[j]:
            top, left = min(top, self.row_top[j + 1]), min(left, self.row_left[j + 1])
        return Reach(float(self.below[j]), top, left)


def grid_pixels(level0_xy: np.ndarray, f: float) -> np.ndarray:
    """Grid pixel (u, v) int64 (N, 2) holding each level-0 point (x, y) float (N, 2)."""
    return np.floor(np.asarray(level0_xy, np.float64) / f).astype(np.int64)


def plan_tiles(click_uv: np.ndarray, *, patch_size: int, tile: int) -> Iterator[PatchPlan]:
    """Group clicks (grid pixels, int (N, 2)) by tile, in row-major tile order.

    Within a tile, clicks keep their input order.
    """
    if len(click_uv) == 0:
        return
    half = patch_size // 2
    tiles = click_uv // tile
    order = np.lexsort((np.arange(len(click_uv)), tiles[:, 0], tiles[:, 1]))
    keys = tiles[order]
    breaks = np.flatnonzero(np.any(np.diff(keys, axis=0) != 0, axis=1)) + 1
    for group in np.split(order, breaks):
        origins = click_uv[group] - half
        u0, v0 = origins.min(0)
        u1, v1 = origins.max(0) + patch_size
        region = (int(u0), int(v0), int(u1 - u0), int(v1 - v0))
        yield PatchPlan(group, origins, region, int(tiles[group[0], 1]))


class ExclusionIndex:
    """Finds the other clicks inside a patch (for the exclusion map)."""

    def __init__(self, click_uv: np.ndarray, ids: np.ndarray | None = None) -> None:
        # float64 and contiguous, so the tree holds these very positions rather than a copy
        # (grid pixels are integers, exact in float64)
        self.uv = np.ascontiguousarray(np.asarray(click_uv, np.float64).reshape(-1, 2))
        self.ids = np.arange(len(self.uv)) if ids is None else np.asarray(ids)
        self.tree = cKDTree(self.uv) if len(self.uv) else None

    def maps(self, ids: np.ndarray, origins_uv: np.ndarray, patch_size: int) -> np.ndarray:
        """float32 (K, P, P) exclusion maps of K patches (grid top-left pixels ``origins_uv``,
        int (K, 2)): 1 at the patch-local pixel of every click lying in the patch, except
        patch k's own click (id ``ids[k]``)."""
        p = patch_size
        out = np.zeros((len(ids), p, p), np.float32)
        if self.tree is None or len(ids) == 0:
            return out
        near = self.tree.query_ball_point(
            origins_uv + (p - 1) / 2.0, r=p * 0.7072, p=2.0, return_sorted=False
        )
        counts = np.fromiter(map(len, near), np.int64, len(near))
        j = np.fromiter(chain.from_iterable(near), np.int64, int(counts.sum()))
        k = np.repeat(np.arange(len(ids)), counts)
        local = self.uv[j] - origins_uv[k]
        keep = (self.ids[j] != np.asarray(ids)[k]) & np.all((local >= 0) & (local < p), axis=1)
        out[k[keep], local[keep, 1].astype(np.int64), local[keep, 0].astype(np.int64)] = 1.0
        return out


def build_inputs(
    region_rgb: np.ndarray,
    plan: PatchPlan,
    exclusion: ExclusionIndex,
    patch_size: int,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """5-channel network inputs float32 (K, 5, P, P) for a tile's patches, written into ``out``
    (rows of a batch) when given, all K at once.

    ``region_rgb`` is uint8 (H, W, 3) of the plan's grid region.
    """
    p, half = patch_size, patch_size // 2
    if out is None:
        out = np.empty((len(plan.click_index), 5, p, p), np.float32)
    if len(plan.click_index) == 0:
        return out
    local = plan.origin_uv - np.array(plan.region[:2])
    windows = sliding_window_view(region_rgb, (p, p), axis=(0, 1))  # (., ., 3, P, P)
    rgb = np.moveaxis(windows[local[:, 1], local[:, 0]], 1, -1)
    inclusion = point_map((p, p), np.array([[half, half]], np.float64))
    others = exclusion.maps(plan.click_index, plan.origin_uv, p)
    return network_input(rgb, inclusion, others, out=out)
