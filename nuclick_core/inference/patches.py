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

import numpy as np
from scipy.spatial import cKDTree

from nuclick_core.inference.signals import network_input, point_map


@dataclass(frozen=True)
class PatchPlan:
    """Patches for the clicks of one tile.

    click_index : int (K,) row indices into the click arrays.
    origin_uv : int (K, 2) grid (u, v) of each patch's top-left pixel.
    region : (u0, v0, width, height) grid region covering all K patches.
    """

    click_index: np.ndarray
    origin_uv: np.ndarray
    region: tuple[int, int, int, int]


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
        yield PatchPlan(group, origins, (int(u0), int(v0), int(u1 - u0), int(v1 - v0)))


class ExclusionIndex:
    """Finds the other clicks inside a patch (for the exclusion map)."""

    def __init__(self, click_uv: np.ndarray, ids: np.ndarray | None = None) -> None:
        self.uv = np.asarray(click_uv).reshape(-1, 2)
        self.ids = np.arange(len(self.uv)) if ids is None else np.asarray(ids)
        self.tree = cKDTree(self.uv) if len(self.uv) else None

    def others(self, index: int, origin_uv: np.ndarray, patch_size: int) -> np.ndarray:
        """Patch-local (x, y) of every click except the one with id ``index`` whose pixel lies in
        the patch."""
        if self.tree is None:
            return np.zeros((0, 2))
        centre = origin_uv + (patch_size - 1) / 2.0
        near = self.tree.query_ball_point(centre, r=patch_size * 0.7072, p=2.0)
        near = np.array([j for j in near if self.ids[j] != index], np.int64)
        if len(near) == 0:
            return np.zeros((0, 2))
        local = self.uv[near] - origin_uv
        inside = np.all((local >= 0) & (local < patch_size), axis=1)
        return local[inside].astype(np.float64)


def build_inputs(
    region_rgb: np.ndarray,
    plan: PatchPlan,
    exclusion: ExclusionIndex,
    patch_size: int,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """5-channel network inputs float32 (K, 5, P, P) for a tile's patches, written into ``out``
    (rows of a batch) when given.

    ``region_rgb`` is uint8 (H, W, 3) of the plan's grid region.
    """
    u0, v0 = plan.region[:2]
    half = patch_size // 2
    if out is None:
        out = np.empty((len(plan.click_index), 5, patch_size, patch_size), np.float32)
    size = (patch_size, patch_size)
    inclusion = point_map(size, np.array([[half, half]], np.float64))
    for k, (idx, origin) in enumerate(zip(plan.click_index, plan.origin_uv, strict=True)):
        c0, r0 = origin[0] - u0, origin[1] - v0
        rgb = region_rgb[r0 : r0 + patch_size, c0 : c0 + patch_size]
        others = point_map(size, exclusion.others(int(idx), origin, patch_size))
        network_input(rgb, inclusion, others, out=out[k])
    return out
