"""Guiding signals and the network input: inclusion and exclusion maps, the 5-channel input
(:func:`network_input`, the one place it is built), and training-time click and squiggle sampling.

All maps are float32 (H, W) in patch-local pixel coordinates (x right, y down, pixel centres at
integer coordinates). A click at (x, y) sets pixel ``[round(y), round(x)]``.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage.draw import line as draw_line
from skimage.morphology import skeletonize


def point_map(shape: tuple[int, int], xy: np.ndarray) -> np.ndarray:
    """Rasterise points into a 0/1 map.

    Parameters
    ----------
    shape : (H, W)
    xy : float array (N, 2) of patch-local (x, y); points outside the patch are ignored.

    Returns
    -------
    float32 (H, W) map with 1 at each point's nearest pixel.

    Example
    -------
    >>> point_map((4, 4), np.array([[1.2, 2.7]]))[3, 1]
    1.0
    """
    out = np.zeros(shape, np.float32)
    if len(xy) == 0:
        return out
    ij = np.rint(np.asarray(xy, np.float64)[:, ::-1]).astype(np.int64)
    keep = (ij[:, 0] >= 0) & (ij[:, 0] < shape[0]) & (ij[:, 1] >= 0) & (ij[:, 1] < shape[1])
    out[ij[keep, 0], ij[keep, 1]] = 1.0
    return out


def polyline_map(shape: tuple[int, int], lines: list[np.ndarray]) -> np.ndarray:
    """Rasterise polylines (each float (K, 2) of patch-local x, y) into a 0/1 map, clipped."""
    out = np.zeros(shape, np.float32)
    for pts in lines:
        ij = np.rint(np.asarray(pts, np.float64)[:, ::-1]).astype(np.int64)
        if len(ij) == 1:
            segs = [np.stack([ij[0], ij[0]])]
        else:
            segs = [ij[k : k + 2] for k in range(len(ij) - 1)]
        for (r0, c0), (r1, c1) in segs:
            rr, cc = draw_line(int(r0), int(c0), int(r1), int(c1))
            keep = (rr >= 0) & (rr < shape[0]) & (cc >= 0) & (cc < shape[1])
            out[rr[keep], cc[keep]] = 1.0
    return out


def sample_click(mask: np.ndarray, rng: np.random.Generator, *, inner: float = 0.3) -> np.ndarray:
    """Sample one click inside ``mask``, away from its boundary.

    A pixel is drawn uniformly among those whose distance to the boundary is at least
    ``inner`` times the object's maximum inscribed distance (the paper samples from the
    distance transform so clicks fall inside, not on the edge).

    Parameters
    ----------
    mask : bool (H, W), one object.
    rng : numpy Generator.
    inner : fraction of the maximum distance a click must keep from the boundary.

    Returns
    -------
    float64 (2,) array (x, y) in the mask's pixel frame.
    """
    dist = ndi.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    if dist.max() <= 0:
        raise ValueError("cannot sample a click from an empty mask")
    ys, xs = np.nonzero(dist >= inner * dist.max())
    k = rng.integers(len(xs))
    return np.array([xs[k], ys[k]], np.float64)


def network_input(
    rgb: np.ndarray,
    inclusion: np.ndarray,
    exclusion: np.ndarray,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """The network's 5-channel input, built here and nowhere else (inference and training), for
    one patch or a batch of them (leading axes, broadcast between the arguments).

    Parameters
    ----------
    rgb : uint8 (..., H, W, 3), scaled by 1/255, or float (..., H, W, 3) already in [0, 1].
    inclusion : float (..., H, W) map of the mark being segmented (click or squiggle).
    exclusion : float (..., H, W) map of the other marks; pixels the inclusion map marks are
        cleared (a mark is never its own neighbour).

    out : float32 (..., 5, H, W) to write into (a batch's rows), or None for a new array.

    Returns
    -------
    float32 (..., 5, H, W): R, G, B, inclusion, exclusion.

    Example
    -------
    >>> x = network_input(np.full((4, 4, 3), 255, np.uint8), np.eye(4), np.ones((4, 4)))
    >>> x.shape, float(x[0, 0, 0]), float(x[4, 0, 0]), float(x[4, 0, 1])
    ((5, 4, 4), 1.0, 0.0, 1.0)
    """
    if out is None:
        lead = np.broadcast_shapes(rgb.shape[:-1], inclusion.shape, exclusion.shape)
        out = np.empty((*lead[:-2], 5, *lead[-2:]), np.float32)
    channels = np.moveaxis(rgb, -1, -3)
    if rgb.dtype == np.uint8:
        np.divide(channels, np.float32(255.0), out=out[..., :3, :, :])
    else:
        out[..., :3, :, :] = channels
    out[..., 3, :, :] = inclusion
    out[..., 4, :, :] = exclusion
    np.copyto(out[..., 4, :, :], np.float32(0), where=inclusion > 0)
    return out


def gland_skeleton(mask: np.ndarray, *, rng: np.random.Generator | None = None) -> np.ndarray:
    """A gland's squiggle, as in the paper: the morphological skeleton of ``mask`` after
    thresholding its distance transform at tau.

    With ``rng`` (training) tau is drawn from [0, mu + sigma] (mu, sigma: mean and standard
    deviation of the distance inside the mask), anew each time; without it tau is mu (the
    evaluation squiggle, the middle of the training range).

    Returns
    -------
    bool (H, W) skeleton; never empty for a non-empty mask.
    """
    dist = ndi.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    inside = dist[mask]
    if inside.size == 0:
        raise ValueError("cannot draw a squiggle for an empty mask")
    tau = rng.uniform(0.0, inside.mean() + inside.std()) if rng is not None else inside.mean()
    core = dist > tau
    if not core.any():
        core = dist >= dist.max()
    skel = skeletonize(core)
    return skel if skel.any() else core
