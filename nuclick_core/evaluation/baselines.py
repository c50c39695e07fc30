"""Classical seeded segmentation fed the same clicks as NuClick (paper tables II and III).

Every baseline takes an RGB ``uint8`` image (H, W, 3) and seeds as a float (N, 2) array of
(x, y) pixel coordinates (x along columns; a seed sets pixel ``[rint(y), rint(x)]``, as in
:mod:`nuclick_core.inference.signals`). It returns ``int32`` (H, W) instance labels: instance
``k + 1`` belongs to seed ``k``, 0 is background, and instances never overlap. Each instance is one
4-connected component, the one containing its seed where possible (else its largest one). When
two seeds fall on the same pixel, the first keeps it and the later one's instance is empty.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike
from scipy import ndimage as ndi
from skimage.color import rgb2gray, rgb2hed
from skimage.filters import gaussian, sobel, threshold_otsu
from skimage.measure import label as cc_label
from skimage.morphology import disk
from skimage.segmentation import morphological_chan_vese, watershed

__all__ = [
    "BASELINES",
    "active_contour_baseline",
    "region_growing_baseline",
    "watershed_baseline",
]


def _check_inputs(image: ArrayLike, seeds: ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validate; return the image and the seeds' integer (rows, cols)."""
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(
            f"image must be RGB with shape (H, W, 3); got shape {img.shape}. Drop an alpha "
            "channel with image[..., :3] or stack a grayscale image into three channels."
        )
    if img.dtype != np.uint8:
        raise ValueError(
            f"image must be uint8; got {img.dtype}. Convert with skimage.util.img_as_ubyte."
        )
    xy = np.asarray(seeds, dtype=np.float64)
    if xy.size == 0:
        xy = xy.reshape(0, 2)
    if xy.ndim != 2 or xy.shape[1] != 2:
        raise ValueError(f"seeds must be a float array (N, 2) of (x, y); got shape {xy.shape}.")
    h, w = img.shape[:2]
    with np.errstate(invalid="ignore"):
        cols, rows = np.rint(xy[:, 0]), np.rint(xy[:, 1])
        bad = ~np.isfinite(xy).all(axis=1) | (cols < 0) | (cols >= w) | (rows < 0) | (rows >= h)
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"seed {k} (x={xy[k, 0]}, y={xy[k, 1]}) lies outside the image (width {w}, height "
            f"{h}); seeds are (x, y) pixel coordinates of this image, x along columns, with "
            f"-0.5 <= x < {w - 0.5} and -0.5 <= y < {h - 0.5}."
        )
    return img, rows.astype(np.intp), cols.astype(np.intp)


def _check_option(name: str, value: float, low: float) -> None:
    if not value >= low:
        raise ValueError(f"{name} must be at least {low}; got {value!r}.")


def _place_seeds(shape: tuple[int, int], rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """int32 image with ``k + 1`` at seed k; on a shared pixel the first seed wins."""
    out = np.zeros(shape, np.int32)
    flat = rows * shape[1] + cols
    _, first = np.unique(flat, return_index=True)  # first seed on each pixel
    out.ravel()[flat[first]] = first + 1
    return out


def _keep_seed_components(labels: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Keep per instance the 4-connected component holding its seed (else its largest one)."""
    comp = cc_label(labels, background=0, connectivity=1)
    n_comp = int(comp.max())
    if n_comp == 0:
        return labels.astype(np.int32)
    inst = np.zeros(n_comp + 1, np.int64)
    inst[comp.ravel()] = labels.ravel()
    size = np.bincount(comp.ravel(), minlength=n_comp + 1)
    ids = np.arange(1, n_comp + 1)
    order = np.lexsort((-size[1:], inst[1:]))
    first = np.ones(order.size, bool)
    first[1:] = inst[1:][order][1:] != inst[1:][order][:-1]
    largest = np.zeros(rows.size + 1, np.int64)
    largest[inst[1:][order][first]] = ids[order][first]
    at_seed = comp[rows, cols]
    own = (at_seed > 0) & (inst[at_seed] == np.arange(1, rows.size + 1))
    keep = np.zeros(n_comp + 1, bool)
    keep[np.where(own, at_seed, largest[1:])] = True
    keep[0] = False
    return np.where(keep[comp], labels, 0).astype(np.int32)


def watershed_baseline(
    image: ArrayLike,
    seeds: ArrayLike,
    *,
    sigma: float = 2.0,
    channel: Literal["hematoxylin", "gray"] = "hematoxylin",
    background_margin: int = 1,
) -> np.ndarray:
    """Marker-controlled watershed from the seeds.

    The foreground is an Otsu threshold of the (smoothed) haematoxylin channel of
    ``skimage.color.rgb2hed``, or of the inverted grayscale. Markers are the seeds plus one
    background marker on pixels farther than ``background_margin`` from the foreground; the
    flooded relief is the Sobel gradient of the Gaussian-smoothed grayscale. Each seed's basin
    is then restricted to the foreground.

    Parameters
    ----------
    image : (H, W, 3) uint8 ndarray
        RGB image.
    seeds : (N, 2) float array
        Seed (x, y) pixel coordinates.
    sigma : float, optional
        Gaussian smoothing (pixels) before the gradient and the threshold; 2 keeps chromatin
        texture at 40x from splitting a nucleus into basins.
    channel : {"hematoxylin", "gray"}, optional
        Image channel thresholded for the foreground.
    background_margin : int, optional
        Gap (pixels) between the foreground and the background marker.

    Returns
    -------
    (H, W) int32 ndarray
        Instance ``k + 1`` for seed ``k``, 0 background.

    Raises
    ------
    ValueError
        For a non-RGB or non-uint8 image, malformed seeds, a seed outside the image, an
        unknown ``channel`` or a negative option.

    Examples
    --------
    >>> img = np.full((32, 32, 3), 230, np.uint8); img[8:20, 8:20] = (90, 60, 140)
    >>> lab = watershed_baseline(img, np.array([[13.0, 13.0]]))
    >>> 130 <= int((lab == 1).sum()) <= 150  # the 12 x 12 square, corners rounded by smoothing
    True
    """
    img, rows, cols = _check_inputs(image, seeds)
    _check_option("sigma", sigma, 0)
    _check_option("background_margin", background_margin, 0)
    if channel not in ("hematoxylin", "gray"):
        raise ValueError(f"channel must be 'hematoxylin' or 'gray'; got {channel!r}.")
    n = rows.size
    if n == 0:
        return np.zeros(img.shape[:2], np.int32)
    gray = rgb2gray(img)
    relief = sobel(gaussian(gray, sigma=sigma))
    stain = rgb2hed(img)[..., 0] if channel == "hematoxylin" else 1.0 - gray
    stain = gaussian(stain, sigma=sigma)
    # A flat image has no contrast to threshold: the seeds then share the whole image.
    fg = stain > threshold_otsu(stain) if np.ptp(stain) > 0 else np.ones(stain.shape, bool)
    markers = _place_seeds(gray.shape, rows, cols)
    far = ~ndi.binary_dilation(fg, structure=disk(background_margin)) if background_margin else ~fg
    markers[far & (markers == 0)] = n + 1
    lab = watershed(relief, markers).astype(np.int32)
    lab[(lab > n) | ~fg] = 0
    return _keep_seed_components(lab, rows, cols)


def region_growing_baseline(
    image: ArrayLike,
    seeds: ArrayLike,
    *,
    iterations: int = 30,
    tolerance: float = 0.1,
    sigma: float = 0.5,
) -> np.ndarray:
    """Seeded region growing on the smoothed grayscale, all regions in parallel.

    Each iteration, a free pixel joins a 4-connected neighbouring region when its intensity is
    within ``tolerance`` of that region's running mean; a pixel claimed by several regions goes
    to the one whose mean is closest (ties: lower instance). Taken pixels are never released.

    Parameters
    ----------
    image : (H, W, 3) uint8 ndarray
        RGB image.
    seeds : (N, 2) float array
        Seed (x, y) pixel coordinates.
    iterations : int, optional
        Growth steps (a region reaches at most this city-block distance from its seed).
    tolerance : float, optional
        Largest accepted |intensity - region mean|, intensity in [0, 1].
    sigma : float, optional
        Gaussian smoothing (pixels) of the grayscale; 0 disables it.

    Returns
    -------
    (H, W) int32 ndarray
        Instance ``k + 1`` for seed ``k``, 0 background.

    Raises
    ------
    ValueError
        For a non-RGB or non-uint8 image, malformed seeds, a seed outside the image or an
        option out of range.

    Examples
    --------
    >>> img = np.full((32, 32, 3), 230, np.uint8); img[8:20, 8:20] = 60
    >>> lab = region_growing_baseline(img, np.array([[13.0, 13.0]]), sigma=0)
    >>> int((lab == 1).sum())
    144
    """
    img, rows, cols = _check_inputs(image, seeds)
    _check_option("iterations", iterations, 0)
    _check_option("tolerance", tolerance, 0)
    _check_option("sigma", sigma, 0)
    gray = rgb2gray(img)
    if sigma > 0:
        gray = gaussian(gray, sigma=sigma)
    lab = _place_seeds(gray.shape, rows, cols)
    n = rows.size
    sums = np.bincount(lab.ravel(), weights=gray.ravel(), minlength=n + 1)
    counts = np.bincount(lab.ravel(), minlength=n + 1).astype(np.float64)
    h, w = gray.shape
    for _ in range(iterations if n else 0):
        mean = sums / np.maximum(counts, 1.0)
        padded = np.pad(lab, 1)
        best = np.zeros_like(lab)
        best_diff = np.full(gray.shape, np.inf)
        free = lab == 0
        for dr, dc in ((-1, 0), (1, 0), (0, -1), (0, 1)):
            nb = padded[1 + dr : 1 + dr + h, 1 + dc : 1 + dc + w]
            diff = np.abs(gray - mean[nb])
            better = (diff < best_diff) | ((diff == best_diff) & (nb < best))
            take = free & (nb > 0) & (diff <= tolerance) & better
            best[take] = nb[take]
            best_diff[take] = diff[take]
        new = best > 0
        if not new.any():
            break
        lab[new] = best[new]
        sums += np.bincount(best[new], weights=gray[new], minlength=n + 1)
        counts += np.bincount(best[new], minlength=n + 1)
    return _keep_seed_components(lab, rows, cols)


def active_contour_baseline(
    image: ArrayLike,
    seeds: ArrayLike,
    *,
    radius: int = 3,
    iterations: int = 40,
    window: int = 64,
    smoothing: int = 1,
    sigma: float = 1.0,
) -> np.ndarray:
    """Morphological Chan–Vese active contour from a small disk at each seed.

    For each seed, ``skimage.segmentation.morphological_chan_vese`` runs on the smoothed
    grayscale of a ``window`` x ``window`` crop centred on the seed (clipped at the image
    border), started from a disk of ``radius`` pixels; the component containing the seed is
    kept. A pixel claimed by several seeds goes to the nearest of them (Euclidean).

    Parameters
    ----------
    image : (H, W, 3) uint8 ndarray
        RGB image.
    seeds : (N, 2) float array
        Seed (x, y) pixel coordinates.
    radius : int, optional
        Radius of the initial disk.
    iterations : int, optional
        Chan–Vese iterations (the contour moves about one pixel per iteration).
    window : int, optional
        Side of the local window (pixels).
    smoothing : int, optional
        Smoothing steps per iteration of the morphological Chan–Vese.
    sigma : float, optional
        Gaussian smoothing (pixels) of the grayscale; 0 disables it.

    Returns
    -------
    (H, W) int32 ndarray
        Instance ``k + 1`` for seed ``k``, 0 background.

    Raises
    ------
    ValueError
        For a non-RGB or non-uint8 image, malformed seeds, a seed outside the image or an
        option out of range.

    Examples
    --------
    >>> img = np.full((32, 32, 3), 230, np.uint8); img[8:20, 8:20] = 60
    >>> lab = active_contour_baseline(img, np.array([[13.0, 13.0]]))
    >>> 130 <= int((lab == 1).sum()) <= 150
    True
    """
    img, rows, cols = _check_inputs(image, seeds)
    _check_option("radius", radius, 1)
    _check_option("iterations", iterations, 0)
    _check_option("window", window, 2 * radius + 1)
    _check_option("sigma", sigma, 0)
    gray = rgb2gray(img)
    if sigma > 0:
        gray = gaussian(gray, sigma=sigma)
    h, w = gray.shape
    lab = np.zeros((h, w), np.int32)
    nearest = np.full((h, w), np.inf)
    half = window // 2
    for k, (r, c) in enumerate(zip(rows.tolist(), cols.tolist(), strict=True)):
        r0, r1 = max(r - half, 0), min(r - half + window, h)
        c0, c1 = max(c - half, 0), min(c - half + window, w)
        rr, cc = np.ogrid[r0 - r : r1 - r, c0 - c : c1 - c]
        dist = np.sqrt(rr * rr + cc * cc)
        init = (dist <= radius).astype(np.int8)
        level = morphological_chan_vese(
            gray[r0:r1, c0:c1], iterations, init_level_set=init, smoothing=smoothing
        ).astype(bool)
        comp, _ = ndi.label(level)
        if comp[r - r0, c - c0]:
            level = comp == comp[r - r0, c - c0]
        win = (slice(r0, r1), slice(c0, c1))
        take = level & (dist < nearest[win])
        lab[win][take] = k + 1
        nearest[win][take] = dist[take]
    return _keep_seed_components(lab, rows, cols)


BASELINES: dict[str, Callable[..., np.ndarray]] = {
    "watershed": watershed_baseline,
    "region_growing": region_growing_baseline,
    "active_contour": active_contour_baseline,
}
