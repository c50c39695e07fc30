"""Cell training canvases as the NuClick paper built them: segmented white blood cells blended
onto a background of red cells, many of them touching.

Inputs are single-cell images with masks (WBC dataset 1: ``images/NNN.png`` with
``masks/NNN.png``, 0 background, 128 cytoplasm, 255 nucleus; the cell is ``mask > 64``). The
background is tiled from the cell-free parts of those images (which show red cells); each cell
is augmented (rotation, scale, elastic deformation, colour) and pasted with a feathered edge,
half of them pushed against an earlier cell until they touch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage as ndi
from skimage.color import hsv2rgb, rgb2hsv
from skimage.transform import rotate

from nuclick_core.data.labelled import LabelledImage
from nuclick_core.errors import DatasetError


@dataclass(frozen=True)
class CellCutout:
    """One segmented cell: RGB uint8 (H, W, 3) and its bool mask (H, W)."""

    name: str
    image: np.ndarray
    mask: np.ndarray


def read_cells(root: Path) -> list[CellCutout]:
    """Read a WBC-style folder (``images/*.png`` + ``masks/*.png``, cell = mask > 64)."""
    img_dir, mask_dir = Path(root) / "images", Path(root) / "masks"
    if not img_dir.is_dir() or not mask_dir.is_dir():
        raise DatasetError(f"{root}: expected sub-folders images/ and masks/")
    cells = []
    for path in sorted(img_dir.glob("*.png")):
        mpath = mask_dir / path.name
        if not mpath.exists():
            raise DatasetError(f"{path}: no mask {mpath}")
        with Image.open(path) as im, Image.open(mpath) as m:
            image, mask = np.array(im.convert("RGB")), np.array(m.convert("L")) > 64
        if image.shape[:2] != mask.shape:
            raise DatasetError(f"{path}: image {image.shape[:2]} and mask {mask.shape} differ")
        if mask.sum() < 20:
            raise DatasetError(f"{mpath}: the cell mask is empty")
        cells.append(CellCutout(path.stem, image, mask))
    if not cells:
        raise DatasetError(f"{img_dir} holds no .png image")
    return cells


def _background(
    cells: list[CellCutout],
    size: int,
    rng: np.random.Generator,
    *,
    zoom: float = 1.0,
    thin: float = 0.0,
) -> np.ndarray:
    """Float (size, size, 3) in [0, 1]: one cell image with its cell filled in from the nearest
    cell-free pixels (leaving red cells and plasma), mirror-tiled to the canvas size.

    ``zoom`` resizes that image first (below 1: more, smaller red cells per area); ``thin`` in
    [0, 1] fades the red cells towards the plasma (the image's brightest tenth), as in the thin
    end of a smear."""
    cell = cells[rng.integers(len(cells))]
    if zoom != 1.0:
        cell = CellCutout(
            cell.name,
            np.clip(ndi.zoom(cell.image.astype(np.float32), (zoom, zoom, 1), order=1), 0, 255),
            ndi.zoom(cell.mask.astype(np.float32), zoom, order=1) > 0.5,
        )
    hole = ndi.binary_dilation(cell.mask, iterations=4)
    if hole.all():
        return np.full((size, size, 3), 0.92, np.float32)
    _, (iy, ix) = ndi.distance_transform_edt(hole, return_indices=True)
    filled = cell.image[iy, ix].astype(np.float32) / 255.0
    filled = np.where(hole[..., None], ndi.gaussian_filter(filled, (2, 2, 0)), filled)
    h, w = hole.shape
    reps = (int(np.ceil(size / h)) + 1, int(np.ceil(size / w)) + 1)
    tiles = [
        [filled[:: 1 - 2 * (a % 2), :: 1 - 2 * (b % 2)] for b in range(reps[1])]
        for a in range(reps[0])
    ]
    out = np.concatenate([np.concatenate(row, axis=1) for row in tiles], axis=0)
    y, x = (
        int(rng.integers(0, out.shape[0] - size + 1)),
        int(rng.integers(0, out.shape[1] - size + 1)),
    )
    out = out[y : y + size, x : x + size]
    if thin:
        plasma = np.quantile(out.reshape(-1, 3), 0.9, axis=0)
        out = (1 - thin) * out + thin * plasma
    return out


def _augment(cell: CellCutout, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Rotated, scaled, elastically deformed and colour-jittered copy (float image, bool mask)."""
    rows, cols = np.nonzero(cell.mask)
    pad = 4
    sl = (
        slice(max(rows.min() - pad, 0), rows.max() + pad + 1),
        slice(max(cols.min() - pad, 0), cols.max() + pad + 1),
    )
    img, mask = cell.image[sl].astype(np.float32) / 255.0, cell.mask[sl].astype(np.float32)
    scale = rng.uniform(0.8, 1.2)
    img = ndi.zoom(img, (scale, scale, 1), order=1)
    mask = ndi.zoom(mask, scale, order=1)
    angle = rng.uniform(0, 360)
    img = rotate(img, angle, resize=True, order=1, mode="constant", cval=0.0)
    mask = rotate(mask, angle, resize=True, order=1, mode="constant", cval=0.0)
    h, w = mask.shape
    dy, dx = (ndi.gaussian_filter(rng.normal(0, 1, (h, w)), 6) * 40 for _ in range(2))
    yy, xx = np.mgrid[0:h, 0:w]
    coords = [yy + dy, xx + dx]
    img = np.stack([ndi.map_coordinates(img[..., k], coords, order=1) for k in range(3)], -1)
    mask = ndi.map_coordinates(mask, coords, order=1) > 0.5
    hsv = rgb2hsv(np.clip(img, 0, 1))
    hsv[..., 0] = (hsv[..., 0] + rng.uniform(-0.03, 0.03)) % 1.0
    hsv[..., 1] = np.clip(hsv[..., 1] * rng.uniform(0.8, 1.2), 0, 1)
    hsv[..., 2] = np.clip(hsv[..., 2] * rng.uniform(0.9, 1.1), 0, 1)
    labels, n = ndi.label(mask)
    if n > 1:  # deformation may detach a sliver: keep the cell body
        mask = labels == np.argmax(np.bincount(labels.ravel())[1:]) + 1
    return hsv2rgb(hsv).astype(np.float32), mask


def _place(
    labels: np.ndarray, mask: np.ndarray, rng: np.random.Generator, touch: bool
) -> tuple[int, int] | None:
    """Top-left (row, col) where ``mask`` fits without overlapping ``labels``; when ``touch``,
    slid towards an existing cell until it touches it."""
    size = labels.shape[0]
    h, w = mask.shape
    if h >= size or w >= size:
        return None
    taken = labels > 0
    for _ in range(60):
        r, c = int(rng.integers(0, size - h)), int(rng.integers(0, size - w))
        if touch and taken.any():
            ys, xs = np.nonzero(taken)
            k = rng.integers(len(ys))
            ty, tx = ys[k] - h // 2, xs[k] - w // 2
            steps = max(abs(ty - r), abs(tx - c)) + 1  # one pixel at a time: ends touching
            best = None
            for t in np.linspace(0.0, 1.0, steps):
                rr = int(np.clip(round(r + (ty - r) * t), 0, size - h))
                cc = int(np.clip(round(c + (tx - c) * t), 0, size - w))
                if (taken[rr : rr + h, cc : cc + w] & mask).any():
                    break
                best = (rr, cc)
            if best is not None:
                return best
        elif not (taken[r : r + h, c : c + w] & mask).any():
            return r, c
    return None


def build_canvas(
    cells: list[CellCutout],
    *,
    size: int = 256,
    n_cells: int = 6,
    seed: int = 0,
    touch_fraction: float = 0.5,
    variety: bool = False,
) -> LabelledImage:
    """One canvas (RGB uint8, int32 labels) of up to ``n_cells`` augmented cells.

    With ``variety`` the crowding varies from canvas to canvas: 2 to ``2 * n_cells`` cells, a
    touching fraction of 0.2 to 0.9, red cells zoomed 0.6 to 1.6 times and, one canvas in three,
    faded by up to 80% towards the plasma. Without it nothing of this is drawn, so the canvases
    of earlier recipes stay the same."""
    if not cells:
        raise ValueError("cells is empty: give at least one segmented cell")
    rng = np.random.default_rng(seed)
    zoom, thin = 1.0, 0.0
    if variety:
        n_cells = int(rng.integers(2, 2 * n_cells + 1))
        touch_fraction = float(rng.uniform(0.2, 0.9))
        zoom = float(np.exp(rng.uniform(np.log(0.6), np.log(1.6))))
        thin = float(rng.uniform(0.0, 0.8)) if rng.random() < 1 / 3 else 0.0
    canvas = _background(cells, size, rng, zoom=zoom, thin=thin)
    labels = np.zeros((size, size), np.int32)
    next_id = 1
    for _ in range(n_cells):
        img, mask = _augment(cells[rng.integers(len(cells))], rng)
        spot = _place(labels, mask, rng, touch=rng.random() < touch_fraction)
        if spot is None:
            continue
        r, c = spot
        h, w = mask.shape
        free = mask & (labels[r : r + h, c : c + w] == 0)
        alpha = np.clip(ndi.gaussian_filter(free.astype(np.float32), 0.8) * 1.5, 0, 1)[..., None]
        alpha = np.where(free[..., None], np.maximum(alpha, 0.85), alpha * 0.5)
        canvas[r : r + h, c : c + w] = alpha * img + (1 - alpha) * canvas[r : r + h, c : c + w]
        labels[r : r + h, c : c + w][free] = next_id
        next_id += 1
    rgb = np.clip(np.rint(canvas * 255.0), 0, 255).astype(np.uint8)
    return LabelledImage(f"canvas{seed}", rgb, labels)


def build_canvases(
    cells: list[CellCutout],
    count: int,
    *,
    seed: int = 0,
    size: int = 256,
    n_cells: int = 6,
    variety: float = 0.0,
) -> list[LabelledImage]:
    """``count`` canvases, deterministic per ``seed``; a fraction ``variety`` of them (every
    k-th, evenly spread) with varied crowding (see :func:`build_canvas`)."""
    return [
        build_canvas(
            cells,
            size=size,
            n_cells=n_cells,
            seed=seed * 100003 + k,
            variety=variety > 0 and int((k + 1) * variety) > int(k * variety),
        )
        for k in range(count)
    ]


VALIDATION_SEED = 10_000  # validation canvases never share a seed with training canvases


def split_cells(
    cells: list[CellCutout], val_names: list[str], root: Path
) -> tuple[list[CellCutout], list[CellCutout]]:
    """(training cells, held-out cells named in ``val_names``); an unknown name is an error."""
    unknown = sorted(set(val_names) - {c.name for c in cells})
    if unknown:
        raise DatasetError(f"{root}: {unknown} are not cells of this folder (images/NAME.png)")
    return [c for c in cells if c.name not in val_names], [c for c in cells if c.name in val_names]


def validation_canvases(
    val_cells: list[CellCutout], count: int, *, seed: int = 0, size: int = 512
) -> list[LabelledImage]:
    """The fixed validation canvases of held-out cells (the same for training and evaluation:
    canvas k depends only on ``seed`` and k, not on ``count``)."""
    return build_canvases(val_cells, count, seed=VALIDATION_SEED + seed, size=size, n_cells=10)
