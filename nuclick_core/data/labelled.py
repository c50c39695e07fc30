"""The labelled image shared by datasets, training samplers and evaluation: its type, crops,
scale and alignment transforms, and an in-memory slide over it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage as ndi
from skimage.transform import resize

from nuclick_core.errors import DatasetError

if TYPE_CHECKING:  # OpenSlide is not needed to train (a GPU node may lack it)
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
    from nuclick_core.io.slides import Slide

    return Slide(Path(item.name), w, h, mpp, "user", None, item.image)


def downscale(items: list[LabelledImage], factor: float) -> list[LabelledImage]:
    """The images shrunk by ``factor`` (anti-aliased) with their labels (nearest neighbour).

    Used to train at a coarser grid than the data's own, e.g. glands at 1.24 um/px from GlaS at
    0.62 um/px; an object that vanishes at the coarser grid simply drops out.
    """
    if factor == 1:
        return items
    if factor < 1:
        raise DatasetError(f"downscale factor {factor} is below 1; give 1 or more")
    out = []
    for it in items:
        h, w = it.labels.shape
        shape = (max(round(h / factor), 1), max(round(w / factor), 1))
        image = resize(it.image, shape, order=1, anti_aliasing=True, preserve_range=True)
        labels = resize(it.labels, shape, order=0, anti_aliasing=False, preserve_range=True)
        out.append(
            LabelledImage(
                it.name,
                np.clip(np.rint(image), 0, 255).astype(np.uint8),
                labels.astype(it.labels.dtype),
            )
        )
    return out


def shift_images(items: list[LabelledImage], dx: float, dy: float) -> list[LabelledImage]:
    """The images' content moved by (``dx``, ``dy``) pixels (cubic spline resampling), labels
    unchanged: lines up images with labels that were rasterised off by a fraction of a pixel.

    MoNuSeg's labels, as distributed here, sit on average 0.21 px left of and 0.57 px above the
    nuclei they outline (``bench/label_alignment.py`` measures it); ``shift_images(items, -0.5,
    -0.5)`` moves the nuclei onto them to within about 0.3 px. A network trained with flips
    and rotations cannot learn such an offset (a flip reverses it), so training on misaligned
    pairs blurs the boundaries it learns.
    """
    if dx == 0 and dy == 0:
        return items
    if max(abs(dx), abs(dy)) > 4:
        raise DatasetError(f"image offset ({dx}, {dy}) px is over 4 px; is it in pixels?")
    out = []
    for it in items:
        moved = ndi.shift(it.image.astype(np.float32), (dy, dx, 0), order=3, mode="nearest")
        image = np.clip(np.rint(moved), 0, 255).astype(np.uint8)
        out.append(LabelledImage(it.name, image, it.labels))
    return out
