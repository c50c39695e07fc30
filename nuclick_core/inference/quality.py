"""Per-instance quality flags of a converted dataset: which masks to review before training on
them.

- ``score``: the mean foreground probability over the mask (the instance table's own);
- ``stability``: the mean IoU between the mask from the click and the masks from the same click
  moved by ``JITTER_UM`` in ``JITTER_VIEWS`` directions (0 when a moved click finds nothing); a
  click on an object's edge, between two objects or on background gives masks that change when
  the click moves a little;
- ``area_outlier``: the instance's area is far from the dataset's (robust z-score of log area,
  median and MAD over every ok instance of the run, beyond ``AREA_Z``);
- ``review``: ``check`` when the status is not ok, the stability is below ``MIN_STABILITY``, the
  score below ``MIN_SCORE`` or the area an outlier; else ``ok``.
"""

from __future__ import annotations

import numpy as np
import shapely

from nuclick_core.io import status

JITTER_UM = 1.0
JITTER_VIEWS = 4
MIN_STABILITY = 0.65
MIN_SCORE = 0.5
AREA_Z = 3.5


def jittered_xy(xy: np.ndarray, mpp: float, k: int) -> np.ndarray:
    """The clicks ``xy`` (level-0, (N, 2)) moved by :data:`JITTER_UM` in direction k of
    :data:`JITTER_VIEWS` (diagonals first, so no move lies along the pixel grid only)."""
    angle = 2 * np.pi * (k + 0.5) / JITTER_VIEWS
    return xy + (JITTER_UM / mpp) * np.array([np.cos(angle), np.sin(angle)])


def mask_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of two arrays of geometries (None: empty), elementwise."""
    a = np.array([g if g is not None else shapely.Polygon() for g in a], dtype=object)
    b = np.array([g if g is not None else shapely.Polygon() for g in b], dtype=object)
    inter = shapely.area(shapely.intersection(a, b))
    union = shapely.area(a) + shapely.area(b) - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def stability(base: np.ndarray, moved: list[np.ndarray]) -> np.ndarray:
    """Mean IoU of the base masks with the masks from each set of moved clicks."""
    if not moved:
        return np.full(len(base), np.nan)
    return np.mean([mask_iou(base, m) for m in moved], axis=0)


def area_outliers(area: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """bool: the ok instances whose log area lies beyond :data:`AREA_Z` robust standard
    deviations (1.4826 MAD) of the ok instances' median."""
    out = np.zeros(len(area), bool)
    if ok.sum() < 5:
        return out
    log_area = np.log(np.maximum(area[ok], 1e-12))
    median = np.median(log_area)
    mad = 1.4826 * np.median(np.abs(log_area - median))
    if mad == 0:
        return out
    out[ok] = np.abs(log_area - median) / mad > AREA_Z
    return out


def review(
    statuses: np.ndarray, score: np.ndarray, stab: np.ndarray, outlier: np.ndarray
) -> np.ndarray:
    """``"ok"`` or ``"check"`` per instance, by the rule of the module docstring."""
    ok = statuses == status.OK
    good = ok & ~outlier & (np.nan_to_num(score) >= MIN_SCORE)
    good &= np.isnan(stab) | (stab >= MIN_STABILITY)
    return np.where(good, "ok", "check")
