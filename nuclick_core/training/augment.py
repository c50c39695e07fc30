"""Training augmentations from the NuClick paper: flips, brightness, contrast, sharpness,
hue/saturation and Gaussian noise.

Geometric transforms apply to the image and every map alike; photometric ones to the image only.
Images are float32 (H, W, 3) in [0, 1]; maps are (H, W).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage.color import hsv2rgb, rgb2hsv


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
