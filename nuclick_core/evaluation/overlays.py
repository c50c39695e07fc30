"""Instance outlines and clicks drawn on a slide region (PNG previews, run reports)."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import shapely
from shapely import affinity
from skimage.segmentation import find_boundaries

from nuclick_core.io import status
from nuclick_core.io.annotations import read_annotations
from nuclick_core.io.instances import label_mask, read_instances
from nuclick_core.io.slides import open_slide, read_grid_region


def instance_overlay(
    rgb: np.ndarray,
    instances,
    clicks_xy: np.ndarray,
    *,
    origin: tuple[int, int] = (0, 0),
    downsample: float = 1.0,
) -> np.ndarray:
    """Instance outlines (yellow) and clicks (red: instance ok, blue: none) on ``rgb``.

    Parameters
    ----------
    rgb : uint8 (H, W, 3), the level-0 region at ``origin`` (x, y) read at ``downsample``.
    instances : instance table (one row per click, same order as ``clicks_xy``).
    clicks_xy : float (N, 2) level-0 click positions.
    """
    h, w = rgb.shape[:2]
    ox, oy = origin
    shifted = instances.copy()
    shifted["geometry"] = [
        affinity.translate(g, -ox, -oy) if g is not None else None
        for g in instances.geometry.values
    ]
    labels = label_mask(
        shifted, int(np.ceil(w * downsample)), int(np.ceil(h * downsample)), downsample=downsample
    )[:h, :w]
    out = rgb.copy()
    out[find_boundaries(labels, mode="inner")] = (255, 230, 0)
    ok = (instances["status"] == status.OK).to_numpy()
    cols = np.floor((clicks_xy[:, 0] - ox) / downsample).astype(int)
    rows = np.floor((clicks_xy[:, 1] - oy) / downsample).astype(int)
    for r, c, good in zip(rows, cols, ok, strict=True):
        if 0 <= r < h and 0 <= c < w:
            out[max(r - 1, 0) : r + 2, max(c - 1, 0) : c + 2] = (
                (230, 0, 0) if good else (0, 90, 255)
            )
    return out


def slide_overlay(
    slide: Path | str,
    instances: Path | str,
    annotations: Path | str,
    *,
    region: tuple[int, int, int, int] | None = None,
    downsample: float = 1.0,
    max_side: int | None = None,
    mpp: float | None = None,
) -> np.ndarray:
    """uint8 (H, W, 3): :func:`instance_overlay` of an instance table on its slide.

    ``region`` is (x, y, w, h) in level-0 pixels (default: the whole slide); the region is read
    at ``downsample``, or coarser so that its longer side fits ``max_side``.
    """
    table = read_instances(Path(instances)).sort_values("click_id")
    clicks = read_annotations(Path(annotations))
    opened = open_slide(slide, mpp=mpp, fallback_mpp=0.25)
    try:
        x, y, w, h = region if region else (0, 0, opened.width, opened.height)
        d = max(downsample, max(w, h) / max_side) if max_side else downsample
        rgb = read_grid_region(
            opened, int(x / d), int(y / d), int(w / d), int(h / d), target_mpp=opened.mpp * d
        )
    finally:
        opened.close()
    xy = np.column_stack(
        [shapely.get_x(clicks.geometry.values), shapely.get_y(clicks.geometry.values)]
    )
    return instance_overlay(
        rgb, gpd.GeoDataFrame(table.reset_index(drop=True)), xy, origin=(x, y), downsample=d
    )
