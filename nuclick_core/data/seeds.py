"""A simple nucleus seed detector, used to make the demo's click files reproducibly.

It stands in for the nucleus detector a user would run: peaks of the smoothed haematoxylin
density (colour deconvolution), at least a nucleus radius apart, above an Otsu threshold
computed over tissue (glass excluded). It is
deliberately plain; NuClick then turns each seed into a mask.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import ndimage as ndi
from skimage.color import rgb2hed
from skimage.feature import peak_local_max
from skimage.filters import threshold_otsu

from nuclick_core.io.slides import open_slide, read_grid_region


def detect_nucleus_seeds(
    rgb: np.ndarray, *, mpp: float, radius_um: float = 3.0, min_distance_um: float = 4.0
) -> np.ndarray:
    """Nucleus seed points in an RGB image.

    Parameters
    ----------
    rgb : uint8 (H, W, 3) H&E image.
    mpp : microns per pixel of ``rgb``.
    radius_um : typical nucleus radius; sets the smoothing.
    min_distance_um : minimum distance between two seeds.

    Returns
    -------
    float64 (N, 2) seed (x, y) in ``rgb`` pixel coordinates (pixel centres), sorted by row then
    column.

    Example
    -------
    >>> img = np.full((64, 64, 3), 235, np.uint8); img[28:36, 28:36] = (60, 40, 120)
    >>> detect_nucleus_seeds(img, mpp=0.5).round().tolist()
    [[31.0, 31.0]]
    """
    hema = rgb2hed(rgb)[..., 0]
    sigma = radius_um / mpp / 2.0
    smooth = ndi.gaussian_filter(hema, sigma)
    if np.ptp(smooth) == 0:
        return np.zeros((0, 2))
    tissue = rgb.min(axis=2) < 200  # glass is bright in every channel
    level = threshold_otsu(smooth[tissue] if tissue.sum() > 100 else smooth)
    peaks = peak_local_max(
        smooth,
        min_distance=max(1, int(round(min_distance_um / mpp))),
        threshold_abs=level,
        exclude_border=False,
    )
    order = np.lexsort((peaks[:, 1], peaks[:, 0]))
    return peaks[order][:, ::-1].astype(np.float64)


def slide_seeds(slide: Path | str, *, mpp: float | None = None) -> np.ndarray:
    """Seeds of a whole slide (read at level 0) as level-0 (x, y) pixel centres, float (N, 2);
    ``mpp`` overrides the slide's own (0.25 is assumed when neither exists)."""
    opened = open_slide(slide, mpp=mpp, fallback_mpp=0.25)
    try:
        rgb = read_grid_region(opened, 0, 0, opened.width, opened.height, target_mpp=opened.mpp)
    finally:
        opened.close()
    return detect_nucleus_seeds(rgb, mpp=opened.mpp) + 0.5
