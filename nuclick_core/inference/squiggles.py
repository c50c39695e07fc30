"""Squiggle-guided (gland) patches, as the paper describes.

A squiggle's patch is the square around its bounding box on the model grid, relaxed to the
model's patch size when smaller; when larger (box plus a margin for the gland beyond the
squiggle), the image and the squiggle maps are down-scaled to the patch size and the predicted
mask is scaled back up. The inclusion map is the rasterised squiggle; the exclusion map has one
pixel of each other squiggle in the patch.

Post-processing keeps the components the squiggle touches; a hole the squiggle crosses is filled,
a hole it goes around stays a hole (gland lumens), small holes are filled.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely
from scipy import ndimage as ndi
from skimage.transform import resize

from nuclick_core.inference.postprocess import PostprocessParams
from nuclick_core.inference.signals import network_input, point_map, polyline_map
from nuclick_core.io import status

_FOUR = ndi.generate_binary_structure(2, 1)
#: The patch side is the squiggle box's longer side times this factor (the gland reaches beyond
#: its squiggle); training must plan gland patches the same way.
BOX_MARGIN = 2.0


@dataclass(frozen=True)
class SquigglePatch:
    """Where one squiggle's patch lies on the model grid.

    origin_uv : grid (u, v) of the patch's top-left pixel.
    side : grid pixels the patch covers (>= the model's patch size).
    """

    origin_uv: tuple[int, int]
    side: int

    def scale(self, patch_size: int) -> float:
        """Patch pixels per grid pixel (1 when relaxed, < 1 when down-scaled)."""
        return patch_size / self.side


def grid_lines(geometry: shapely.Geometry, f: float) -> list[np.ndarray]:
    """The squiggle's parts as float (K, 2) grid coordinates (level-0 / f)."""
    parts = getattr(geometry, "geoms", [geometry])
    return [np.asarray(p.coords, np.float64)[:, :2] / f for p in parts]


def plan_squiggle(lines: list[np.ndarray], patch_size: int) -> SquigglePatch:
    """The patch square for a squiggle given in grid coordinates."""
    pts = np.vstack(lines)
    return plan_box(pts.min(0), pts.max(0), patch_size)


def plan_box(lo: np.ndarray, hi: np.ndarray, patch_size: int) -> SquigglePatch:
    """The patch square for a squiggle whose points span ``lo``..``hi`` (x, y) on the grid;
    shared by inference and training so both see glands at the same scale."""
    centre = (lo + hi) / 2.0
    side = max(patch_size, int(np.ceil(float((hi - lo).max()) * BOX_MARGIN)) + 1)
    origin = np.floor(centre - side / 2.0).astype(int)
    return SquigglePatch((int(origin[0]), int(origin[1])), side)


def squiggle_inputs(
    region_rgb: np.ndarray,
    lines: list[np.ndarray],
    other_points: np.ndarray,
    patch: SquigglePatch,
    patch_size: int,
) -> np.ndarray:
    """Network input float32 (5, P, P) for one squiggle.

    region_rgb : uint8 (side, side, 3) of the patch's grid region.
    lines : the squiggle in grid coordinates.
    other_points : float (M, 2) grid (x, y), one point of each other squiggle.
    """
    s = patch.scale(patch_size)
    rgb = region_rgb.astype(np.float32) / 255.0
    if patch.side != patch_size:
        rgb = resize(
            rgb, (patch_size, patch_size), order=1, anti_aliasing=True, preserve_range=True
        )
    origin = np.asarray(patch.origin_uv, np.float64)
    # grid pixel u covers [u, u+1); its centre maps to patch coordinate (u + 0.5 - origin) s - 0.5
    local = [(np.floor(ln) + 0.5 - origin) * s - 0.5 for ln in lines]
    inclusion = polyline_map((patch_size, patch_size), local)
    pts = (np.floor(other_points) + 0.5 - origin) * s - 0.5 if len(other_points) else other_points
    exclusion = point_map((patch_size, patch_size), np.asarray(pts).reshape(-1, 2))
    return network_input(rgb, inclusion, exclusion)


def squiggle_object(
    prob: np.ndarray, squiggle: np.ndarray, params: PostprocessParams
) -> tuple[np.ndarray, str]:
    """The gland's mask from probabilities and the rasterised squiggle (same frame).

    Parameters
    ----------
    prob : float32 (H, W) probabilities.
    squiggle : bool (H, W) squiggle pixels.

    Returns
    -------
    (mask, status) as :func:`nuclick_core.inference.postprocess.clicked_object`.
    """
    fg = prob > params.threshold
    labels, n = ndi.label(fg, structure=_FOUR)
    if n == 0:
        return np.zeros_like(fg), status.EMPTY
    sizes = np.bincount(labels.ravel())
    touched = np.unique(labels[squiggle])
    touched = touched[(touched > 0) & (sizes[touched] >= params.min_size)]
    if len(touched) == 0:
        return np.zeros_like(fg), status.CLICK_OUTSIDE_MASK
    mask = np.isin(labels, touched)
    holes, m = ndi.label(~mask, structure=_FOUR)
    if m:
        hole_sizes = np.bincount(holes.ravel())
        border = np.unique(np.concatenate([holes[0], holes[-1], holes[:, 0], holes[:, -1]]))
        fill = hole_sizes < params.min_hole
        fill[np.unique(holes[squiggle])] = True  # the squiggle crosses it: not a lumen
        fill[0] = False
        fill[border] = False
        mask |= fill[holes]
    return mask, status.OK


def upscale(prob: np.ndarray, side: int) -> np.ndarray:
    """Probabilities of a down-scaled patch back on the grid (side x side), bilinear."""
    if prob.shape[0] == side:
        return prob
    return resize(prob, (side, side), order=1, anti_aliasing=False, preserve_range=True).astype(
        np.float32
    )


def representative_points(
    lines_per_mark: list[list[np.ndarray]], patch: SquigglePatch, skip: int
) -> np.ndarray:
    """One grid point of each other squiggle that has a vertex inside the patch (its middle
    such vertex), for the exclusion map."""
    u0, v0 = patch.origin_uv
    out = []
    for k, lines in enumerate(lines_per_mark):
        if k == skip:
            continue
        pts = np.vstack(lines)
        inside = pts[
            (pts[:, 0] >= u0)
            & (pts[:, 0] < u0 + patch.side)
            & (pts[:, 1] >= v0)
            & (pts[:, 1] < v0 + patch.side)
        ]
        if len(inside):
            out.append(inside[len(inside) // 2])
    return np.array(out, np.float64).reshape(-1, 2)
