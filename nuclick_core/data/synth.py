"""Synthetic H&E-like scenes with exact instance labels, deterministic per seed.

`nuclei_scene` (nuclei, some in touching clumps), `cells_scene` (blood smear: labelled white
cells among red cells) and `glands_scene` (colon-like glands, some labelled as annuli). Images
follow a Beer-Lambert stain model, so ``skimage.color.rgb2hed`` behaves much as on real slides.
They are the test suite's data and may be mixed into training.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage as ndi

from nuclick_core.data.synth_draw import (
    _along,
    _capacity,
    _capsules,
    _centroids,
    _count,
    _draw_blob,
    _field,
    _gland,
    _group_sizes,
    _need,
    _no_room,
    _noise,
    _pair,
    _place,
    _render,
    _render_args,
    _size,
    _stains,
    _unit,
)

_H = np.array([0.65, 0.70, 0.29])  # haematoxylin optical density per unit stain (R, G, B)
_E = np.array([0.22, 0.80, 0.56])  # eosin
_RBC = np.array([0.10, 0.70, 0.60])  # red cells in a Romanowsky-stained smear
_TRIES = 200  # placement attempts per object before giving up
MIN_AREA = 12  # smallest object (pixels) a nuclei or cells scene may contain


@dataclass(frozen=True, eq=False)
class Scene:
    """A synthetic image with exact instance labels.

    ``image`` is uint8 (H, W, 3) RGB; ``labels`` int32 (H, W) with ids 1..N in placement order
    and 0 for background; ``centroids`` float64 (N, 2) holds the (x, y) centroid of object
    ``k + 1`` in row ``k``, computed from ``labels``; ``kind`` is "nuclei", "cells" or "glands".
    """

    image: np.ndarray
    labels: np.ndarray
    centroids: np.ndarray
    kind: str


@dataclass(frozen=True, eq=False)
class GlandScene(Scene):
    """A glands scene; ``holes[k]`` is True when gland ``k + 1`` excludes its lumen (annulus)."""

    holes: tuple[bool, ...] = ()


# ---------------------------------------------------------------- scenes
_COMMON = """seed : int
        Seed of the random generator; equal seeds give identical scenes.
    stain_jitter : float
        Per-scene variation of stain hue and intensity, in [0, 1].
    blur_sigma : (float, float)
        Range of the Gaussian blur (pixels) drawn per scene.
    noise_sigma : float
        Standard deviation of the additive Gaussian noise (intensity in [0, 1])."""


def nuclei_scene(
    *,
    size: tuple[int, int] = (256, 256),
    n_nuclei: int = 40,
    seed: int = 0,
    radius_range: tuple[float, float] = (4.0, 9.0),
    clump_fraction: float = 0.3,
    stain_jitter: float = 0.1,
    blur_sigma: tuple[float, float] = (0.5, 1.2),
    noise_sigma: float = 0.02,
) -> Scene:
    """Haematoxylin-stained nuclei with chromatin texture on a textured eosin background.

    Parameters
    ----------
    size : (int, int)
        Image height and width, each at least 32.
    n_nuclei : int
        Number of labelled nuclei (wobbly ellipses).
    radius_range : (float, float)
        Range of the nuclei's mean radius in pixels (low at least 2).
    clump_fraction : float
        Fraction of nuclei placed in touching (never overlapping) clumps of 2-4.
    {common}

    Returns
    -------
    Scene
        ``kind == "nuclei"``.

    Raises
    ------
    ValueError
        If an argument is out of range or the nuclei do not fit into ``size``.

    Examples
    --------
    >>> scene = nuclei_scene(size=(64, 64), n_nuclei=5, seed=1)
    >>> scene.image.shape, int(scene.labels.max()), scene.centroids.shape
    ((64, 64, 3), 5, (5, 2))
    """
    hw, n = _size(size, 32), _count("n_nuclei", n_nuclei)
    radii = _pair("radius_range", radius_range, 2.0)
    _render_args(stain_jitter, blur_sigma, noise_sigma)
    _unit(clump_fraction=clump_fraction)
    _capacity("n_nuclei", n, radii, hw, 0.35)
    rng = np.random.default_rng(seed)
    sizes = _group_sizes(rng, n, clump_fraction)
    labels, _ = _place(
        rng, hw, sizes, radii, (1.8, 0.15, 4), "n_nuclei", tries=_TRIES, min_area=MIN_AREA
    )
    h_vec, e_vec = _stains(rng, stain_jitter, _H, _E)
    pad = np.pad(labels, 1, mode="edge")
    nbrs = [pad[:-2, 1:-1], pad[2:, 1:-1], pad[1:-1, :-2], pad[1:-1, 2:]]
    fg = labels > 0
    edge = fg & np.any([b != labels for b in nbrs], axis=0)
    seam = fg & np.any([(b != labels) & (b > 0) for b in nbrs], axis=0)  # between two nuclei
    rim = np.exp(-ndi.distance_transform_edt(~edge) / 1.2)  # darker nuclear membrane
    level = rng.uniform(0.6, 1.1, n + 1)[labels]
    h = fg * level * (0.75 + 0.2 * _noise(rng, hw, 0.8) + 0.35 * rim) * np.where(seam, 0.55, 1)
    e = 0.32 * (1 + 0.2 * _noise(rng, hw, 1.5) + 0.15 * _noise(rng, hw, 8.0))
    gaps = np.clip(_noise(rng, hw, 12.0) - 1.0, 0, 1)  # loose, pale tissue
    e *= (1 - 0.7 * gaps) * np.where(fg, 0.45, 1.0)
    h += 0.05 * (1 + 0.3 * _noise(rng, hw, 3.0)) * (1 - gaps)
    image = _render(rng, [(h, h_vec), (e, e_vec)], blur_sigma, noise_sigma)
    return Scene(image, labels, _centroids(labels, n), "nuclei")


def cells_scene(
    *,
    size: tuple[int, int] = (256, 256),
    n_cells: int = 12,
    seed: int = 0,
    radius_range: tuple[float, float] = (12.0, 25.0),
    touch_fraction: float = 0.3,
    red_radius: tuple[float, float] = (7.0, 10.0),
    red_density: float = 0.8,
    stain_jitter: float = 0.1,
    blur_sigma: tuple[float, float] = (0.5, 1.2),
    noise_sigma: float = 0.02,
) -> Scene:
    """A blood smear: labelled white cells among unlabelled red cells on a pale background.

    Parameters
    ----------
    size : (int, int)
        Image height and width, each at least 64.
    n_cells : int
        Number of white cells, each labelled whole (cytoplasm and lobed or round nucleus).
    radius_range : (float, float)
        Range of the white cells' radius in pixels (low at least 4).
    touch_fraction : float
        Fraction of white cells placed touching another white cell.
    red_radius : (float, float)
        Range of the red cells' radius in pixels (low at least 2).
    red_density : float
        How densely red cells pack the free space, in [0, 1].
    {common}

    Returns
    -------
    Scene
        ``kind == "cells"``.

    Raises
    ------
    ValueError
        If an argument is out of range or the white cells do not fit into ``size``.

    Examples
    --------
    >>> scene = cells_scene(size=(128, 128), n_cells=3, seed=2)
    >>> sorted(int(k) for k in set(scene.labels.ravel()))
    [0, 1, 2, 3]
    """
    hw, n = _size(size, 64), _count("n_cells", n_cells)
    radii, red = _pair("radius_range", radius_range, 4.0), _pair("red_radius", red_radius, 2.0)
    _render_args(stain_jitter, blur_sigma, noise_sigma)
    _unit(touch_fraction=touch_fraction, red_density=red_density)
    _capacity("n_cells", n, radii, hw, 0.45)
    rng = np.random.default_rng(seed)
    sizes = _group_sizes(rng, n, touch_fraction)
    labels, blobs = _place(
        rng, hw, sizes, radii, (1.15, 0.05, 3), "n_cells", tries=_TRIES, min_area=MIN_AREA
    )
    h_vec, e_vec, r_vec = _stains(rng, stain_jitter, _H, _E, _RBC)
    fg = labels > 0
    h = 0.015 * (1 + 0.3 * _noise(rng, hw, 20.0))
    e = 0.04 * (1 + 0.3 * _noise(rng, hw, 20.0))
    for k, blob in enumerate(blobs, start=1):  # 60 % lobed (neutrophil), 40 % round nucleus
        r, lobed, turn = np.sqrt(blob.a * blob.b), rng.random() < 0.6, rng.uniform(0, 2 * np.pi)
        n_lobes = int(rng.integers(2, 5)) if lobed else 1
        dist, lobe_r = (0.38 * r, 0.3 * r) if lobed else (0.12 * r, 0.68 * r)
        for i in range(n_lobes):
            t = turn + i * 1.5 * np.pi / n_lobes
            cy, cx = blob.cy + dist * np.sin(t), blob.cx + dist * np.cos(t)
            sl, f = _field(_draw_blob(rng, cy, cx, lobe_r, 1.3, 0.12, 3), hw)
            inside = (f <= 0) & (labels[sl] == k)
            h[sl][inside], e[sl][inside] = rng.uniform(0.8, 1.1), 0.08
        cyto = (labels == k) & (h < 0.5)
        h[cyto], e[cyto] = (0.06, 0.12) if lobed else (0.2, 0.03)
    h = np.where(fg, h * (1 + 0.12 * _noise(rng, hw, 1.0)), h)
    step = 2 * red[1] * (1.3 - 0.6 * red_density)  # red cells: a jittered hexagonal lattice
    yy, xx = np.mgrid[0 : hw[0] + step : step * 0.866, 0 : hw[1] + step : step]
    xx = xx + (np.arange(len(yy)) % 2)[:, None] * step / 2
    centres = (
        np.column_stack([yy.ravel(), xx.ravel()]) + rng.uniform(-0.3, 0.3, (yy.size, 2)) * step
    )
    centres = centres[rng.random(len(centres)) < 0.6 + 0.4 * red_density]
    ij = tuple(np.clip(centres.astype(int), 0, np.array(hw) - 1).T)
    free = ndi.distance_transform_edt(~fg)[ij] > 0.7 * red[0]
    rbc = np.zeros(hw)
    for cy, cx in centres[free]:
        rr = rng.uniform(*red)
        sl, f = _field(_draw_blob(rng, cy, cx, rr, 1.15, 0.05, 3), hw, pad=2.0)
        pallor = 1 - 0.6 * np.exp(-(((f + rr) / (0.5 * rr)) ** 2))  # paler centre
        rbc[sl] += 0.32 / (1 + np.exp(f / 0.7)) * pallor
    rbc[fg] = 0
    image = _render(rng, [(h, h_vec), (e, e_vec), (rbc, r_vec)], blur_sigma, noise_sigma)
    return Scene(image, labels, _centroids(labels, n), "cells")


def glands_scene(
    *,
    size: tuple[int, int] = (512, 512),
    n_glands: int = 6,
    seed: int = 0,
    hole_fraction: float = 0.5,
    radius_range: tuple[float, float] = (40.0, 110.0),
    rim_width: tuple[float, float] = (15.0, 30.0),
    stain_jitter: float = 0.1,
    blur_sigma: tuple[float, float] = (0.5, 1.2),
    noise_sigma: float = 0.02,
) -> GlandScene:
    """Colon-like glands: epithelium with basal nuclei around a pale lumen, in pink stroma.

    Glands never overlap; two may touch. A gland with a hole is labelled as an annulus: its
    lumen is background (0) fully enclosed by the gland. Other glands include their lumen.

    Parameters
    ----------
    size : (int, int)
        Image height and width, each at least 64.
    n_glands : int
        Number of labelled glands.
    hole_fraction : float
        Fraction of glands (rounded) whose label excludes the lumen.
    radius_range : (float, float)
        Range of the glands' mean radius in pixels; low at least ``rim_width[1]``.
    rim_width : (float, float)
        Range of the epithelium's width in pixels (low at least 3).
    {common}

    Returns
    -------
    GlandScene
        ``kind == "glands"``; ``holes[k]`` is True when gland ``k + 1`` is an annulus.

    Raises
    ------
    ValueError
        If an argument is out of range or the glands do not fit into ``size``.

    Examples
    --------
    >>> scene = glands_scene(size=(256, 256), n_glands=2, radius_range=(40, 50), seed=3)
    >>> len(scene.holes), int(scene.labels.max())
    (2, 2)
    """
    hw, n = _size(size, 64), _count("n_glands", n_glands)
    rims = _pair("rim_width", rim_width, 3.0)
    radii = _pair("radius_range", radius_range, rims[1])
    _render_args(stain_jitter, blur_sigma, noise_sigma)
    _unit(hole_fraction=hole_fraction)
    _capacity("n_glands", n, radii, hw, 0.55)
    rng = np.random.default_rng(seed)
    holes = np.zeros(n, bool)
    holes[rng.permutation(n)[: round(hole_fraction * n)]] = True
    labels, lumen, occupied = np.zeros(hw, np.int32), np.zeros(hw, bool), np.zeros(hw, bool)
    none = (np.empty((0, 2)), np.empty((0, 2)))
    nuclei, goblets = [none], [none]  # (points, inward normals): epithelial nuclei, goblet cells
    for k in range(1, n + 1):
        got = None
        for _ in range(_TRIES):
            if (got := _gland(rng, hw, radii, rims, occupied, bool(holes[k - 1]))) is not None:
                break
        if got is None:
            raise _no_room("n_glands", n, k, hw, _TRIES)
        sl, lab, lum, depth, rim = got
        labels[sl][lab] = k
        lumen[sl] |= lum
        occupied[sl] |= depth > 0
        offset = np.array([sl[0].start, sl[1].start])
        for out, level, spacing in ((nuclei, 5.0, 5.5), (goblets, 0.55 * rim, 8.0)):
            p, d = _along(rng, depth, level, spacing * rng.uniform(0.9, 1.1))
            out.append((p + offset + rng.normal(0, 0.5, p.shape), d))
    h_vec, e_vec = _stains(rng, stain_jitter, _H, _E)
    epi = occupied & ~lumen
    mix = 1 / (1 + np.exp(-2 * _noise(rng, hw, 40.0)))  # fibre direction varies slowly
    fibre = mix * _noise(rng, hw, (0.8, 5.0)) + (1 - mix) * _noise(rng, hw, (5.0, 0.8))
    clefts = np.clip(_noise(rng, hw, 10.0) - 1.5, 0, 1)
    texture = 0.12 * fibre + 0.12 * _noise(rng, hw, 1.5) + 0.15 * _noise(rng, hw, 30.0)
    e = np.where(epi, 0.25 * (1 + 0.15 * _noise(rng, hw, 2.0)), 0.26 * (1 + texture))
    h = np.where(epi, 0.12 * (1 + 0.2 * _noise(rng, hw, 2.0)), 0.03 + 0.015 * _noise(rng, hw, 2))
    e, h = np.where(lumen, 0.05, e * (1 - 0.8 * clefts)), np.where(lumen, 0.01, h)
    p, d = (np.concatenate(x) for x in zip(*goblets, strict=True))
    goblet = _capsules(hw, p, d, np.zeros(len(p)), np.full(len(p), 3.5)) * epi
    e, h = e * (1 - 0.6 * goblet), h * (1 - 0.3 * goblet)
    m = int(np.count_nonzero(~occupied) / 400)  # stromal nuclei: 60 % spindles, 40 % round
    t, spindle = rng.uniform(0, np.pi, m), rng.random(m) < 0.6
    nuclei.append((rng.uniform(0, 1, (m, 2)) * hw, np.column_stack([np.sin(t), np.cos(t)])))
    p, d = (np.concatenate(x) for x in zip(*nuclei, strict=True))
    half = np.concatenate([rng.uniform(2.5, 4.0, len(p) - m), rng.uniform(3.0, 6.0, m) * spindle])
    width = np.concatenate([np.full(len(p) - m, 2.0), np.where(spindle, 1.8, 3.0)])
    nuc = _capsules(hw, p, d, half, width) * (epi | ~occupied)
    h = h + nuc * (0.9 + 0.15 * _noise(rng, hw, 0.8))
    image = _render(rng, [(h, h_vec), (e * (1 - 0.5 * nuc), e_vec)], blur_sigma, noise_sigma)
    holes_t = tuple(bool(x) for x in holes)
    return GlandScene(image, labels, _centroids(labels, n), "glands", holes_t)


for _func in (nuclei_scene, cells_scene, glands_scene):
    _func.__doc__ = (_func.__doc__ or "").replace("{common}", _COMMON)


def scene_to_png(
    scene: Scene, image_path: str | os.PathLike, label_path: str | os.PathLike
) -> None:
    """Write ``scene.image`` as an RGB PNG and ``scene.labels`` as a 16-bit label PNG.

    Raises
    ------
    ValueError
        If the labels do not fit into 16 bits.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> scene_to_png(nuclei_scene(size=(32, 32), n_nuclei=2), d / "im.png", d / "lab.png")
    """
    low, high = int(scene.labels.min(initial=0)), int(scene.labels.max(initial=0))
    msg = "lies outside 0..65535 of a 16-bit label PNG; relabel or split the scene"
    _need(low >= 0 and high <= 65535, "scene.labels", f"{low}..{high}", msg)
    Image.fromarray(np.ascontiguousarray(scene.image, dtype=np.uint8)).save(
        image_path, format="PNG"
    )
    Image.fromarray(scene.labels.astype(np.uint16)).save(label_path, format="PNG")
