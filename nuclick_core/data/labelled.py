"""The labelled image shared by datasets, training samplers and evaluation, and cropping helpers."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nuclick_core.io.slides import Slide


@dataclass(frozen=True)
class LabelledImage:
    """An RGB image (H, W, 3) uint8 with its instance labels (H, W) int (0 = background)."""

    name: str
    image: np.ndarray
    labels: np.ndarray


def crop(array: np.ndarray, row0: int, col0: int, size: int, fill: float) -> np.ndarray:
    """Crop ``size`` x ``size`` at (row0, col0), filling outside the array with ``fill``."""
    h, w = array.shape[:2]
    out = np.full((size, size, *array.shape[2:]), fill, dtype=array.dtype)
    r0, c0 = max(row0, 0), max(col0, 0)
    r1, c1 = min(row0 + size, h), min(col0 + size, w)
    if r1 > r0 and c1 > c0:
        out[r0 - row0 : r1 - row0, c0 - col0 : c1 - col0] = array[r0:r1, c0:c1]
    return out


def memory_slide(item: LabelledImage, mpp: float) -> Slide:
    """An in-memory slide over a labelled image."""
    h, w = item.labels.shape
    return Slide(Path(item.name), w, h, mpp, "user", None, item.image)
