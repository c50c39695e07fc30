"""Private helpers of :mod:`nuclick_core.data.synth`: argument checks, blob geometry and placement,
and Beer-Lambert rendering. Not part of the public API; the scene functions are in ``synth``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi
from skimage.measure import find_contours


@dataclass(frozen=True)
class _Blob:
    """An ellipse with a wobbly boundary: radius(phi) = 1 + sum amps * cos(k * phi + phases)."""

    cy: float
    cx: float
    a: float
    b: float
    angle: float
    amps: np.ndarray
    phases: np.ndarray


# ---------------------------------------------------------------- argument checks
def _need(ok: bool, name: str, value: object, need: str) -> None:
    """Raise ValueError naming the argument, the value received and what it must be."""
    if not ok:
        raise ValueError(f"{name}={value!r} {need}")


def _size(size: tuple[int, int], minimum: int) -> tuple[int, int]:
    arr = np.asarray(size)
    ok = arr.shape == (2,) and arr.dtype.kind in "iuf" and np.all((arr % 1 == 0) & (arr >= minimum))
    _need(bool(ok), "size", size, f"must be two integers (height, width) >= {minimum}")
    return int(arr[0]), int(arr[1])


def _count(name: str, value: int) -> int:
    ok = isinstance(value, (int, np.integer)) and value >= 0
    _need(ok, name, value, f"must be a non-negative integer; pass e.g. {name}=10")
    return int(value)


def _pair(name: str, value: tuple[float, float], low: float) -> tuple[float, float]:
    arr = np.asarray(value, dtype=float) if np.ndim(value) == 1 else np.zeros(0)
    ok = arr.shape == (2,) and low <= arr[0] <= arr[1]
    _need(ok, name, value, f"must be a pair (low, high) with {low} <= low <= high; fix the bounds")
    return float(arr[0]), float(arr[1])


def _render_args(stain_jitter: float, blur_sigma: tuple[float, float], noise: float) -> None:
    _pair("blur_sigma", blur_sigma, 0.0)
    _unit(stain_jitter=stain_jitter, noise_sigma=noise)


def _unit(**values: float) -> None:
    for name, value in values.items():
        ok = isinstance(value, (int, float, np.number)) and 0 <= value <= 1
        _need(ok, name, value, "must lie in [0, 1]; pass a value in that range")


def _capacity(
    name: str, n: int, radii: tuple[float, float], hw: tuple[int, int], fill: float
) -> None:
    lo, hi = radii
    cover = n * np.pi * (lo * lo + lo * hi + hi * hi) / 3 / (hw[0] * hw[1])
    msg = f"objects of radius {radii} would cover {cover:.0%} of size={hw}, over {fill:.0%}"
    _need(cover <= fill, name, n, f"{msg}; lower {name} or radius_range, or enlarge size")


def _no_room(name: str, n: int, k: int, hw: tuple[int, int], tries: int) -> ValueError:
    msg = f"do not fit: object {k} found no free place in size={hw} after {tries} tries"
    return ValueError(f"{name}={n} {msg}; lower {name} or radius_range, or enlarge size")


# ---------------------------------------------------------------- geometry
def _draw_blob(
    rng: np.random.Generator, cy: float, cx: float, r: float, aspect: float, wobble: float, k: int
) -> _Blob:
    s = np.sqrt(rng.uniform(1.0, aspect))
    amps = wobble * rng.uniform(0.0, 1.0, k) / np.arange(2, 2 + k)
    return _Blob(cy, cx, r * s, r / s, rng.uniform(0, np.pi), amps, rng.uniform(0, 2 * np.pi, k))


def _field(
    blob: _Blob, hw: tuple[int, int], pad: float = 0.0, step: int = 1
) -> tuple[tuple[slice, slice], np.ndarray]:
    """Approximate signed distance (px, negative inside) to ``blob`` on its clipped bounding box."""
    ext = max(blob.a, blob.b) * (1 + blob.amps.sum()) + pad + 2
    r0, c0 = min(max(int(blob.cy - ext), 0), hw[0]), min(max(int(blob.cx - ext), 0), hw[1])
    r1 = max(min(int(blob.cy + ext) + 1, hw[0]), r0)
    c1 = max(min(int(blob.cx + ext) + 1, hw[1]), c0)
    yy, xx = np.ogrid[r0:r1:step, c0:c1:step]
    cos, sin = np.cos(blob.angle), np.sin(blob.angle)
    u = ((xx - blob.cx) * cos + (yy - blob.cy) * sin) / blob.a
    v = ((yy - blob.cy) * cos - (xx - blob.cx) * sin) / blob.b
    k, phi = np.arange(2, 2 + blob.amps.size)[:, None, None], np.arctan2(v, u)
    edge = 1 + (blob.amps[:, None, None] * np.cos(k * phi + blob.phases[:, None, None])).sum(0)
    dist = (np.hypot(u, v) - edge) * min(blob.a, blob.b)
    return (slice(r0, r1, step), slice(c0, c1, step)), dist


def _group_sizes(rng: np.random.Generator, n: int, fraction: float) -> list[int]:
    """Split ``n`` objects into touching groups of 2-4 (about ``fraction`` of them) and singles."""
    n_touch = max(round(n * fraction), 2) if fraction > 0 and n >= 2 else 0
    sizes: list[int] = []
    while n_touch - sum(sizes) >= 2:
        sizes.append(min(int(rng.integers(2, 5)), n_touch - sum(sizes)))
    if sum(sizes) < n_touch:
        sizes[-1] += 1
    return sizes + [1] * (n - sum(sizes))


def _place(
    rng: np.random.Generator,
    hw: tuple[int, int],
    sizes: list[int],
    radii: tuple[float, float],
    shape: tuple[float, float, int],
    name: str,
    *,
    tries: int,
    min_area: int,
) -> tuple[np.ndarray, list[_Blob]]:
    """Place groups of blobs (``shape`` = aspect, wobble, harmonics) claiming only free pixels.

    A group's first blob keeps a 2 px gap to everything, the others must touch the labels placed
    so far. Each blob ends as one 4-connected component of at least ``min_area`` px, holding at
    least 60 % of its shape; a blob that fails is redrawn, up to ``tries`` times.
    """
    labels, blobs = np.zeros(hw, np.int32), list[_Blob]()
    for size in sizes:
        group: list[_Blob] = []
        for j in range(size):
            for _ in range(tries):
                r = rng.uniform(*radii)
                cy, cx = rng.uniform(0, hw[0]), rng.uniform(0, hw[1])
                if j > 0:  # next to a random member of the group
                    anchor = group[int(rng.integers(len(group)))]
                    d = (np.sqrt(anchor.a * anchor.b) + r) * rng.uniform(0.75, 0.95)
                    t = rng.uniform(0, 2 * np.pi)
                    cy, cx = anchor.cy + d * np.sin(t), anchor.cx + d * np.cos(t)
                blob = _draw_blob(rng, cy, cx, r, *shape)
                sl, f = _field(blob, hw, pad=2.0)
                region, mask = labels[sl], f <= 0
                claim = mask & (region == 0)
                ok = claim.sum() >= max(min_area, 0.6 * mask.sum())
                ok = ok and (j > 0 or not region[f <= 2.0].any())
                ok = ok and ndi.label(claim)[1] == 1
                if ok and (j == 0 or (ndi.binary_dilation(claim) & (region > 0)).any()):
                    region[claim] = len(blobs) + 1
                    group.append(blob)
                    blobs.append(blob)
                    break
            else:
                raise _no_room(name, sum(sizes), len(blobs) + 1, hw, tries)
    return labels, blobs


def _centroids(labels: np.ndarray, n: int) -> np.ndarray:
    rc = ndi.center_of_mass(np.ones(labels.shape), labels, np.arange(1, n + 1)) if n else []
    return np.asarray(rc, dtype=np.float64).reshape(n, 2)[:, ::-1].copy()


def _enclosed(mask: np.ndarray) -> np.ndarray:
    """Background pixels of ``mask`` not 4-connected to the border of the array."""
    comps, _ = ndi.label(~mask)
    border = np.unique(np.concatenate([comps[0], comps[-1], comps[:, 0], comps[:, -1]]))
    return (comps > 0) & ~np.isin(comps, border)


def _gland(
    rng: np.random.Generator,
    hw: tuple[int, int],
    radii: tuple[float, float],
    rims: tuple[float, float],
    occupied: np.ndarray,
    hole: bool,
) -> tuple[tuple[slice, slice], np.ndarray, np.ndarray, np.ndarray, float] | None:
    """One try at a gland clear of ``occupied``: (slices, label mask, lumen, depth, rim) or None."""
    cy, cx = rng.uniform(0, hw[0]), rng.uniform(0, hw[1])
    blob = _draw_blob(rng, cy, cx, rng.uniform(*radii), 1.8, 0.3, 6)
    area = 0.4 * np.pi * blob.a * blob.b
    sl4, f4 = _field(blob, hw, step=4)  # cheap coarse check first
    inside = occupied[sl4][f4 <= 0]
    if inside.mean() > 0.1 or 16 * inside.size < area:
        return None
    sl, f = _field(blob, hw)
    claim = (f <= 0) & ~occupied[sl]
    if claim.sum() < max(0.9 * np.count_nonzero(f <= 0), area) or _enclosed(claim).any():
        return None
    depth = ndi.distance_transform_edt(claim)
    rim = rng.uniform(*rims)
    lumen = depth > rim
    lab = claim & ~lumen if hole else claim
    if ndi.label(lab)[1] != 1 or not lumen.any():
        return None
    if hole and np.count_nonzero(_enclosed(lab)) < lumen.sum():
        return None  # the lumen must be fully enclosed (not cut by the image border)
    return sl, lab, lumen, depth, rim


# ---------------------------------------------------------------- rendering
def _noise(rng: np.random.Generator, hw: tuple[int, int], sigma: float | tuple) -> np.ndarray:
    """Smoothed Gaussian noise with unit standard deviation (coarse grid for large ``sigma``)."""
    sig = np.broadcast_to(np.asarray(sigma, float), (2,))
    f = max(1, int(sig.min() // 2))
    field = ndi.gaussian_filter(rng.standard_normal((hw[0] // f + 2, hw[1] // f + 2)), sig / f)
    if f > 1:
        field = ndi.zoom(field, f, order=1, grid_mode=True, mode="nearest")
    field = field[: hw[0], : hw[1]]
    return (field - field.mean()) / (field.std() + 1e-12)


def _stains(rng: np.random.Generator, jitter: float, *vectors: np.ndarray) -> list[np.ndarray]:
    """Per-scene stain vectors: hue jitter (direction) and intensity jitter (length)."""
    out = []
    for vec in vectors:
        v = np.clip(vec + rng.normal(0, 0.3 * jitter, 3), 0.02, None)
        out.append(v / np.linalg.norm(v) * np.clip(1 + rng.normal(0, jitter), 0.5, 1.5))
    return out


def _render(
    rng: np.random.Generator,
    layers: list[tuple[np.ndarray, np.ndarray]],
    blur: tuple[float, float],
    noise: float,
) -> np.ndarray:
    """Beer-Lambert: sum of concentration x stain vector, to RGB, then blur and noise."""
    od = sum(np.clip(c, 0, None).astype(np.float32)[..., None] * v for c, v in layers)
    rgb = 10.0 ** -np.asarray(od, dtype=np.float32)
    sigma = rng.uniform(*blur)
    if sigma > 0:
        rgb = ndi.gaussian_filter(rgb, (sigma, sigma, 0))
    rgb = rgb + rng.normal(0, noise, rgb.shape)
    return np.round(np.clip(rgb, 0, 1) * 255).astype(np.uint8)


def _capsules(
    hw: tuple[int, int], pts: np.ndarray, dirs: np.ndarray, half: np.ndarray, width: np.ndarray
) -> np.ndarray:
    """Soft masks (0..1) of segments thickened by ``width`` px: spindle or round nuclei."""
    t = np.linspace(-1, 1, 11)
    seg = pts[:, None, :] + t[None, :, None] * half[:, None, None] * dirs[:, None, :]
    rc = np.rint(seg.reshape(-1, 2)).astype(int)
    ok = ((rc >= 0) & (rc < hw)).all(axis=1)
    if not ok.any():
        return np.zeros(hw)
    wmap = np.zeros(hw)
    wmap[rc[ok, 0], rc[ok, 1]] = np.repeat(width, t.size)[ok]
    dist, (ii, jj) = ndi.distance_transform_edt(wmap == 0, return_indices=True)
    return np.clip(wmap[ii, jj] + 0.5 - dist, 0, 1)


def _along(
    rng: np.random.Generator, depth: np.ndarray, level: float, spacing: float
) -> tuple[np.ndarray, np.ndarray]:
    """Points every ``spacing`` px on the ``level`` contour of ``depth``, with inward normals."""
    grad = np.gradient(depth)
    pts, dirs = [np.empty((0, 2))], [np.empty((0, 2))]
    for line in find_contours(depth, level):
        arc = np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(line, axis=0).T))])
        at = np.arange(rng.uniform(0, spacing), arc[-1], spacing)
        p = np.column_stack([np.interp(at, arc, line[:, 0]), np.interp(at, arc, line[:, 1])])
        ij = tuple(np.clip(np.rint(p).astype(int), 0, np.array(depth.shape) - 1).T)
        g = np.column_stack([grad[0][ij], grad[1][ij]])
        pts.append(p)
        dirs.append(g / np.maximum(np.hypot(*g.T), 1e-6)[:, None])
    return np.concatenate(pts), np.concatenate(dirs)
