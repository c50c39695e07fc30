"""Shifted versions of labelled images: the colours, stains, sharpness, compression and scale of
other labs and scanners, for a robustness yardstick (evaluation) and for augmentation (training).

Every shift is a pure function of the image and a seed: the same image and seed give the same
result, so an evaluation set's shifted copies are fixed. Stain handling uses scikit-image's
colour-deconvolution vectors (``hed_from_rgb``, Ruifrok and Johnston's H&E-DAB) and
CIELAB conversion; JPEG goes through Pillow's encoder.

The image shifts of the yardstick (:data:`IMAGE_SHIFTS`):

- ``stain_hed``: each HED channel scaled and offset at random, as Tellez et al. (2018) jitter
  stains (``hed_jitter``; factors within +-30%, offsets within +-0.05 stain units);
- ``hue_saturation``: hue turned by 0.05 of the circle and saturation cut to 60%;
- ``stain_normalised``: Reinhard normalisation (LAB mean and spread) to a fixed H&E reference;
- ``grayscale``: the luminance on all three channels;
- ``blur``: a Gaussian of sigma 1.5 pixels (a slide out of focus);
- ``jpeg``: JPEG at quality 30.

Scale shifts (the declared mpp 30% below or above the true one) change the mpp the engine is
told, not the pixels: see :data:`MPP_SHIFTS`.
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Callable

import numpy as np
from PIL import Image
from scipy import ndimage as ndi
from skimage.color import hed_from_rgb, hsv2rgb, rgb2hsv, rgb_from_hed

from nuclick_core.data.labelled import LabelledImage
from nuclick_core.inference.stain import lab_stats, reinhard

#: LAB mean and standard deviation over tissue (L < 90) of an H&E tile, the stain-normalisation
#: target: the average over the 30 MoNuSeg training tiles in ../shared/data (measured with the
#: code of reinhard_normalise at every second pixel; 54.4, 28.2, -12.8 and 16.5, 7.5, 7.3).
REFERENCE_LAB = (np.array([54.4, 28.2, -12.8]), np.array([16.5, 7.5, 7.3]))


def _to_uint8(rgb01: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(np.asarray(rgb01) * 255.0), 0, 255).astype(np.uint8)


def hed_jitter(
    image: np.ndarray, rng: np.random.Generator, *, scale: float = 0.3, offset: float = 0.05
) -> np.ndarray:
    """Stain jitter in HED space (Tellez et al. 2018): every channel c becomes
    ``c * U(1 - scale, 1 + scale) + U(-offset, offset)``.

    Parameters
    ----------
    image : uint8 (H, W, 3) RGB.
    rng : the jitter's draws (3 factors and 3 offsets).

    Returns
    -------
    uint8 (H, W, 3).
    """
    # Optical density with the +1 of 8-bit data, unmixed with scikit-image's H&E-DAB vectors and
    # mixed back without clipping, so zero jitter returns the image exactly (rgb2hed clips
    # negative stain amounts, which moves some colours by up to 20 levels).
    od = -np.log((image.astype(np.float64) + 1.0) / 256.0)
    stains = od @ hed_from_rgb
    factors = rng.uniform(1.0 - scale, 1.0 + scale, 3)
    offsets = rng.uniform(-offset, offset, 3)
    od = (stains * factors + offsets) @ rgb_from_hed
    return np.clip(np.rint(256.0 * np.exp(-od) - 1.0), 0, 255).astype(np.uint8)


def hue_saturation(image: np.ndarray, *, hue: float = 0.05, saturation: float = 0.6) -> np.ndarray:
    """uint8 RGB with the hue turned by ``hue`` (fraction of the circle) and the saturation
    multiplied by ``saturation``."""
    hsv = rgb2hsv(image)
    hsv[..., 0] = (hsv[..., 0] + hue) % 1.0
    hsv[..., 1] = np.clip(hsv[..., 1] * saturation, 0.0, 1.0)
    return _to_uint8(hsv2rgb(hsv))


def reinhard_normalise(
    image: np.ndarray, reference: tuple[np.ndarray, np.ndarray] = REFERENCE_LAB
) -> np.ndarray:
    """uint8 RGB whose LAB channels have the reference's mean and standard deviation
    (Reinhard et al. 2001), computed over the tissue (pixels darker than glass): the same
    transform as inference's optional stain normalisation, with the image's own statistics."""
    return reinhard(image, lab_stats(image), reference)


def grayscale(image: np.ndarray) -> np.ndarray:
    """uint8 RGB with the luminance (ITU-R 601 weights) on every channel."""
    y = image.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    return np.repeat(np.clip(np.rint(y), 0, 255).astype(np.uint8)[..., None], 3, axis=2)


def gaussian_blur(image: np.ndarray, *, sigma: float = 1.5) -> np.ndarray:
    """uint8 RGB blurred by a Gaussian of ``sigma`` pixels."""
    out = ndi.gaussian_filter(image.astype(np.float32), sigma=(sigma, sigma, 0))
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def unsharp(image: np.ndarray, *, sigma: float = 1.0, amount: float = 1.0) -> np.ndarray:
    """uint8 RGB sharpened by an unsharp mask: ``image + amount * (image - blurred)``."""
    img = image.astype(np.float32)
    out = img + amount * (img - ndi.gaussian_filter(img, sigma=(sigma, sigma, 0)))
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def jpeg(image: np.ndarray, *, quality: int = 30) -> np.ndarray:
    """uint8 RGB after a JPEG round trip at ``quality``."""
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=quality)
    buf.seek(0)
    with Image.open(buf) as im:
        return np.asarray(im.convert("RGB"))


#: name -> shift(image, rng) for the robustness yardstick; rng is seeded per image.
IMAGE_SHIFTS: dict[str, Callable[[np.ndarray, np.random.Generator], np.ndarray]] = {
    "stain_hed": hed_jitter,
    "hue_saturation": lambda im, rng: hue_saturation(im),
    "stain_normalised": lambda im, rng: reinhard_normalise(im),
    "grayscale": lambda im, rng: grayscale(im),
    "blur": lambda im, rng: gaussian_blur(im),
    "jpeg": lambda im, rng: jpeg(im),
}
#: name -> factor on the mpp the engine is told: a declared mpp 30% below (above) the true one
#: makes objects look 0.7 (1.3) times their size to the model, as a scanner or a metadata
#: error at another magnification would.
MPP_SHIFTS = {"mpp_minus_30": 0.7, "mpp_plus_30": 1.3}


#: What each image or scale shift does, for reports and cards.
DESCRIPTIONS = {
    "stain_hed": "HED stain jitter (Tellez et al.): each stain scaled by up to 30%, offset",
    "hue_saturation": "hue turned by 18 degrees, saturation cut to 60%",
    "stain_normalised": "Reinhard-normalised to a fixed H&E reference",
    "grayscale": "luminance only",
    "blur": "Gaussian blur, sigma 1.5 px (out of focus)",
    "jpeg": "JPEG at quality 30",
    "mpp_minus_30": "declared mpp 30% below the true one (objects look 0.7x as large)",
    "mpp_plus_30": "declared mpp 30% above the true one (objects look 1.3x as large)",
}


def image_seed(name: str, seed: int) -> np.random.Generator:
    """A generator fixed by the image's name and ``seed`` (crc32, stable across runs)."""
    return np.random.default_rng([seed, zlib.crc32(name.encode())])


def shift_items(items: list[LabelledImage], shift: str, *, seed: int = 0) -> list[LabelledImage]:
    """The images with the image shift ``shift`` applied (labels unchanged), deterministic."""
    fn = IMAGE_SHIFTS[shift]
    return [
        LabelledImage(it.name, fn(it.image, image_seed(it.name, seed)), it.labels) for it in items
    ]
