"""Training augmentations: the NuClick paper's (flips, brightness, contrast, sharpness,
hue/saturation, Gaussian noise) and, as options, stain, quality and scale variety (:class:`Variety`)
built on the shifts of :mod:`nuclick_core.data.shifts`.

Geometric transforms apply to the image and every map alike; photometric ones to the image only.
Images are float32 (H, W, 3) in [0, 1]; maps are (H, W).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage as ndi
from skimage.color import hsv2rgb, rgb2hsv

from nuclick_core.data.shifts import (
    gaussian_blur,
    grayscale,
    hed_jitter,
    hue_saturation,
    jpeg,
    unsharp,
)


def flip_rotate(arrays: list[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
    """Apply one random element of the dihedral group (flips and 90-degree turns) to all arrays."""
    k = int(rng.integers(4))
    flip = bool(rng.integers(2))
    out = []
    for a in arrays:
        a = np.rot90(a, k, axes=(0, 1))
        if flip:
            a = a[:, ::-1]
        out.append(np.ascontiguousarray(a))
    return out


def photometric(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random brightness, contrast, sharpness, hue/saturation and Gaussian noise (each p=0.5)."""
    img = image.astype(np.float32, copy=True)
    if rng.random() < 0.5:
        img += rng.uniform(-0.1, 0.1)
    if rng.random() < 0.5:
        mean = img.mean()
        img = (img - mean) * rng.uniform(0.75, 1.25) + mean
    if rng.random() < 0.5:
        blurred = ndi.gaussian_filter(img, sigma=(1.0, 1.0, 0))
        img = img + rng.uniform(-0.6, 1.0) * (img - blurred)
    if rng.random() < 0.5:
        hsv = rgb2hsv(np.clip(img, 0, 1))
        hsv[..., 0] = (hsv[..., 0] + rng.uniform(-0.04, 0.04)) % 1.0
        hsv[..., 1] = np.clip(hsv[..., 1] * rng.uniform(0.7, 1.3), 0, 1)
        img = hsv2rgb(hsv).astype(np.float32)
    if rng.random() < 0.5:
        img += rng.normal(0.0, rng.uniform(0.0, 0.04), img.shape).astype(np.float32)
    return np.clip(img, 0.0, 1.0)


@dataclass(frozen=True)
class Variety:
    """Augmentations beyond the paper's, for slides from other labs and scanners; all off by
    default, and when off they draw nothing from the generator (runs stay reproducible).

    stain : probability of a stain shift: HED jitter (Tellez et al., scikit-image's stain
        vectors; factors within +-30%, offsets within +-0.05) or, one time in four, a partial
        desaturation towards grayscale.
    quality : probability of a quality loss: a Gaussian blur (sigma 0.3 to 1.5 px) or a JPEG
        round trip (quality 30 to 90), half each.
    scale : a patch is cut at a side up to ``1 + scale`` times larger or smaller than the
        patch (log-uniform) and resized to it, so objects appear at other magnifications.
    hue : probability of a strong hue and saturation shift (hue turned up to +-0.1 of the circle,
        saturation times 0.5 to 1.5): stains other than H&E, such as the purples of blood-smear
        stains.
    sharpen : probability of an unsharp mask (sigma 1 px, amount 0.5 to 2): scanners that
        sharpen, and images resampled down from a higher magnification.
    """

    stain: float = 0.0
    quality: float = 0.0
    scale: float = 0.0
    hue: float = 0.0
    sharpen: float = 0.0

    def appearance(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """uint8 (H, W, 3) -> uint8 (H, W, 3) with the drawn stain and quality shifts."""
        if self.stain and rng.random() < self.stain:
            if rng.random() < 0.25:
                gray = grayscale(image).astype(np.float32)
                mix = rng.uniform(0.5, 1.0)
                image = np.clip(np.rint(mix * gray + (1 - mix) * image), 0, 255).astype(np.uint8)
            else:
                image = hed_jitter(image, rng)
        if self.quality and rng.random() < self.quality:
            if rng.random() < 0.5:
                image = gaussian_blur(image, sigma=float(rng.uniform(0.3, 1.5)))
            else:
                image = jpeg(image, quality=int(rng.integers(30, 91)))
        if self.hue and rng.random() < self.hue:
            image = hue_saturation(
                image, hue=float(rng.uniform(-0.1, 0.1)), saturation=float(rng.uniform(0.5, 1.5))
            )
        if self.sharpen and rng.random() < self.sharpen:
            image = unsharp(image, amount=float(rng.uniform(0.5, 2.0)))
        return image

    def side(self, patch_size: int, rng: np.random.Generator) -> int:
        """The side of the region to cut for one patch (``patch_size`` when scale is off)."""
        if not self.scale:
            return patch_size
        factor = np.exp(rng.uniform(-np.log1p(self.scale), np.log1p(self.scale)))
        return max(int(round(patch_size * factor)), 8)


def resize_patch(arrays: list[np.ndarray], size: int, *, masks: int) -> list[np.ndarray]:
    """Resize square float arrays (H, W) or (H, W, C) to ``size``: bilinear with Pillow (whose
    filter widens when shrinking, so it anti-aliases), the last ``masks`` arrays then back to
    0/1 at 0.5. Pillow takes 0.1 ms a channel here, scikit-image's resize 1.6 ms."""
    out = []
    for k, a in enumerate(arrays):
        if a.shape[0] == size:
            out.append(a)
            continue
        planes = a[..., None] if a.ndim == 2 else a
        r = np.stack(
            [
                np.asarray(
                    Image.fromarray(
                        np.ascontiguousarray(planes[..., c], np.float32), mode="F"
                    ).resize((size, size), Image.Resampling.BILINEAR)
                )
                for c in range(planes.shape[2])
            ],
            axis=2,
        )
        r = r[..., 0] if a.ndim == 2 else r
        out.append((r > 0.5).astype(np.float32) if k >= len(arrays) - masks else r)
    return out
