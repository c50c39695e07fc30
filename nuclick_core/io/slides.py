"""Open slides and read regions at a target resolution.

Whole-slide formats go through OpenSlide; plain PNG/JPEG/TIFF images that OpenSlide does not
open as slides are read whole with Pillow. Regions are addressed on the *target grid*: at a
target mpp ``m``, grid pixel ``(u, v)`` covers level-0 ``[u f, (u+1) f) x [v f, (v+1) f)`` with
``f = m / slide_mpp`` level-0 pixels per grid pixel. A region read this way depends only on the
grid pixels asked for, not on how a run splits the slide into tiles.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# openslide first: a library imported earlier may load another libopenslide (Debian's libvips
# brings libopenslide 3.4), which breaks the one openslide-bin ships.
import openslide
from PIL import Image
from scipy import ndimage as ndi

from nuclick_core.errors import SlideError

log = logging.getLogger(__name__)

PLAIN_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
#: Side (level pixels) of the fixed blocks read above level 0, and how many are cached.
LATTICE_BLOCK = 512
LATTICE_CACHE = 48


@dataclass
class Slide:
    """An open slide: level-0 size, mpp and where that mpp came from.

    ``mpp_source`` is ``"slide"`` (from the file's metadata), ``"user"`` (``--mpp`` or the
    sample sheet) or ``"assumed"`` (no mpp anywhere: the model's mpp was taken).
    """

    path: Path
    width: int
    height: int
    mpp: float
    mpp_source: str
    _osr: openslide.OpenSlide | None = None
    _pixels: np.ndarray | None = None
    _blocks: dict = field(default_factory=dict)
    #: A colour transform (uint8 RGB -> uint8 RGB) applied to every region read, such as a
    #: stain normalisation; None reads the pixels as they are.
    colour: Callable[[np.ndarray], np.ndarray] | None = None

    @property
    def level_downsamples(self) -> tuple[float, ...]:
        return tuple(self._osr.level_downsamples) if self._osr is not None else (1.0,)

    def read_level(self, level: int, col0: int, row0: int, width: int, height: int) -> np.ndarray:
        """RGB uint8 (height, width, 3) of level ``level`` pixels starting at (col0, row0) in that
        level's own pixel grid; outside the scanned area is white. :attr:`colour`, when set,
        transforms the pixels."""
        pixels = self._read_level(level, col0, row0, width, height)
        return pixels if self.colour is None else self.colour(pixels)

    def _read_level(self, level: int, col0: int, row0: int, width: int, height: int) -> np.ndarray:
        if self._osr is None:
            assert self._pixels is not None
            out = np.full((height, width, 3), 255, np.uint8)
            h, w = self._pixels.shape[:2]
            r0, c0 = max(row0, 0), max(col0, 0)
            r1, c1 = min(row0 + height, h), min(col0 + width, w)
            if r1 > r0 and c1 > c0:
                out[r0 - row0 : r1 - row0, c0 - col0 : c1 - col0] = self._pixels[r0:r1, c0:c1]
            return out
        if level == 0:
            return self._read_openslide(0, col0, row0, width, height)
        # Above level 0 OpenSlide places a region at level-0 integer coordinates, so a region's
        # pixels shift by a fraction of a pixel that depends on where it starts. Reading fixed
        # lattice blocks makes every pixel come out the same whatever region asks for it.
        b = LATTICE_BLOCK
        out = np.empty((height, width, 3), np.uint8)
        for by in range(row0 // b, (row0 + height - 1) // b + 1):
            for bx in range(col0 // b, (col0 + width - 1) // b + 1):
                block = self._lattice_block(level, bx, by)
                r0, c0 = max(row0, by * b), max(col0, bx * b)
                r1, c1 = min(row0 + height, (by + 1) * b), min(col0 + width, (bx + 1) * b)
                out[r0 - row0 : r1 - row0, c0 - col0 : c1 - col0] = block[
                    r0 - by * b : r1 - by * b, c0 - bx * b : c1 - bx * b
                ]
        return out

    def _lattice_block(self, level: int, bx: int, by: int) -> np.ndarray:
        key = (level, bx, by)
        cache = self._blocks
        if key in cache:
            cache[key] = cache.pop(key)  # most recently used last
            return cache[key]
        b = LATTICE_BLOCK
        block = self._read_openslide(level, bx * b, by * b, b, b)
        cache[key] = block
        while len(cache) > LATTICE_CACHE:
            cache.pop(next(iter(cache)))
        return block

    def _read_openslide(
        self, level: int, col0: int, row0: int, width: int, height: int
    ) -> np.ndarray:
        assert self._osr is not None
        d = self._osr.level_downsamples[level]
        try:
            rgba = self._osr.read_region(
                (int(round(col0 * d)), int(round(row0 * d))), level, (width, height)
            )
        except openslide.OpenSlideError as exc:
            raise SlideError(f"{self.path}: reading level {level} failed: {exc}") from exc
        return on_white(np.asarray(rgba))

    def close(self) -> None:
        if self._osr is not None:
            self._osr.close()


def on_white(rgba: np.ndarray) -> np.ndarray:
    """RGB uint8 of an RGBA uint8 array (OpenSlide's, not premultiplied) blended onto white.

    Only pixels that are not opaque (outside the scanned area, at its edge) are blended, in
    float32; an opaque one comes out unchanged, as the same formula gives it.
    """
    out = rgba[..., :3].copy()
    clear = rgba[..., 3] != 255
    if clear.any():
        part = rgba[clear].astype(np.float32)
        alpha = part[:, 3:4] / 255.0
        out[clear] = np.rint(part[:, :3] * alpha + 255.0 * (1.0 - alpha)).astype(np.uint8)
    return out


#: Whole-slide formats OpenSlide reads (not plain images): one it does not recognise is damaged.
SLIDE_SUFFIXES = (".svs", ".ndpi", ".vms", ".vmu", ".scn", ".mrxs", ".svslide", ".bif")

#: Microns per pixel a slide may have: beyond these a run would read absurd regions (--mpp 1e-6
#: asked for 2.9 PiB) or see a handful of pixels.
MPP_RANGE = (0.01, 100.0)


def _slide_mpp(osr: openslide.OpenSlide) -> float | None:
    try:
        x = float(osr.properties[openslide.PROPERTY_NAME_MPP_X])
        y = float(osr.properties[openslide.PROPERTY_NAME_MPP_Y])
    except (KeyError, ValueError):
        return None
    if not (x > 0 and y > 0 and math.isfinite(x) and math.isfinite(y)):
        return None
    if abs(x - y) / max(x, y) > 0.02:
        log.warning("pixels are not square (mpp-x %.4f, mpp-y %.4f); using their mean", x, y)
    return (x + y) / 2


def _rgb8(im: Image.Image, path: Path) -> np.ndarray:
    """The image as uint8 RGB. 16-bit grey (Pillow's ``I;16`` modes, or ``I`` holding 16-bit
    values) is scaled from its full range (value / 257); Pillow's own RGB conversion clips it,
    which turned every pixel white and every click into ``on_background``."""
    if im.mode.startswith("I;16") or im.mode == "I":
        grey = np.asarray(im)
        if grey.min() < 0 or grey.max() > 65535:
            raise SlideError(
                f"{path}: a {im.mode} image with values {grey.min()}..{grey.max()} outside the "
                "16-bit range; save it as 8-bit or 16-bit RGB or grey"
            )
        grey8 = np.round(grey.astype(np.float64) / 257.0).astype(np.uint8)
        return np.repeat(grey8[..., None], 3, axis=2)
    if im.mode == "F":
        raise SlideError(
            f"{path}: a floating-point image, whose intensity scale is unknown; save it as "
            "8-bit or 16-bit RGB or grey"
        )
    return np.asarray(im.convert("RGB"))


def open_slide(path: Path | str, *, mpp: float | None = None, fallback_mpp: float) -> Slide:
    """Open a whole-slide image or a plain image.

    Parameters
    ----------
    path : slide or image file.
    mpp : microns per level-0 pixel given by the user; overrides the file's value.
    fallback_mpp : taken (with a warning, ``mpp_source="assumed"``) when neither the user nor
        the file gives an mpp; normally the model's mpp.

    Raises
    ------
    SlideError
        The file is missing or neither OpenSlide nor Pillow can read it.
    """
    path = Path(path)
    if not path.exists():
        raise SlideError(f"slide {path} does not exist; check the path in the sample sheet")
    if mpp is not None and not (mpp > 0 and math.isfinite(mpp)):
        raise SlideError(f"mpp {mpp!r} for {path} must be a positive number of microns per pixel")
    osr = None
    try:
        if openslide.OpenSlide.detect_format(str(path)) is not None:
            osr = openslide.OpenSlide(str(path))
    except openslide.OpenSlideError as exc:
        raise SlideError(f"{path}: OpenSlide cannot read this slide: {exc}") from exc
    if osr is not None:
        file_mpp = _slide_mpp(osr)
        width, height = osr.dimensions
        pixels = None
    else:
        if path.suffix.lower() in SLIDE_SUFFIXES:
            raise SlideError(
                f"{path}: OpenSlide does not recognise this {path.suffix} file; it looks "
                "truncated or damaged (an interrupted copy?): copy it again from the scanner or "
                "archive and compare checksums"
            )
        if path.suffix.lower() not in PLAIN_SUFFIXES:
            raise SlideError(
                f"{path}: not a slide format OpenSlide knows and not a plain image "
                f"({', '.join(PLAIN_SUFFIXES)}); convert it to a pyramidal TIFF"
            )
        try:
            with Image.open(path) as im:
                pixels = _rgb8(im, path)
                dpi = im.info.get("dpi")
        except (OSError, ValueError, Image.DecompressionBombError) as exc:
            raise SlideError(
                f"{path}: cannot read the image ({exc}); for very large images write a tiled "
                "pyramidal TIFF (e.g. vips tiffsave --tile --pyramid) so OpenSlide can read it"
            ) from exc
        height, width = pixels.shape[:2]
        file_mpp = None
        if dpi and dpi[0] and float(dpi[0]) > 1000:  # a real microscope resolution, not 72 dpi
            file_mpp = 25400.0 / float(dpi[0])
    if mpp is not None:
        value, source = mpp, "user"
    elif file_mpp is not None:
        value, source = file_mpp, "slide"
    else:
        value, source = fallback_mpp, "assumed"
        log.warning(
            "%s has no mpp in its metadata and none was given (--mpp or the sample sheet's mpp "
            "column); assuming the model's %.4f um/px",
            path,
            fallback_mpp,
        )
    if not MPP_RANGE[0] <= value <= MPP_RANGE[1]:
        if osr is not None:
            osr.close()
        given = {"user": "given", "slide": "in the slide's metadata", "assumed": "assumed"}
        raise SlideError(
            f"{path}: mpp {value!r} ({given[source]}) is outside {MPP_RANGE[0]}..{MPP_RANGE[1]} "
            "um/px, which no microscope scan has (40x is about 0.25); give the slide's real mpp "
            "(--mpp or the sample sheet's mpp column)"
        )
    return Slide(path, int(width), int(height), float(value), source, osr, pixels)


def best_level(slide: Slide, factor: float) -> int:
    """The coarsest level whose downsample does not exceed ``factor`` (1% tolerance)."""
    best = 0
    for i, d in enumerate(slide.level_downsamples):
        if d <= factor * 1.01:
            best = i
    return best


#: Grid rows resampled at a time by :func:`read_grid_region`.
RESAMPLE_STRIP = 64


def read_grid_region(
    slide: Slide, u0: int, v0: int, width: int, height: int, target_mpp: float
) -> np.ndarray:
    """Read grid pixels ``[u0, u0+width) x [v0, v0+height)`` at ``target_mpp``.

    Returns
    -------
    uint8 (height, width, 3) RGB; white outside the slide.

    Resampling is bilinear from the best pyramid level, with a Gaussian pre-filter when
    shrinking. When the grid coincides with a level (same pixel size), pixels are copied exactly.
    """
    f = target_mpp / slide.mpp  # level-0 pixels per grid pixel
    level = best_level(slide, f)
    g = f / slide.level_downsamples[level]  # level pixels per grid pixel
    if abs(g - 1.0) < 1e-6:
        return slide.read_level(level, u0, v0, width, height)
    # Grid pixel centre (u + 0.5) maps to level pixel coordinate (u + 0.5) g - 0.5.
    cols = (np.arange(u0, u0 + width) + 0.5) * g - 0.5
    rows = (np.arange(v0, v0 + height) + 0.5) * g - 0.5
    sigma = max((g - 1.0) / 2.0, 0.0)
    margin = int(4 * sigma + 0.5) + 2  # gaussian_filter's kernel radius (truncate=4) + bilinear
    c_lo, r_lo = int(math.floor(cols[0])) - margin, int(math.floor(rows[0])) - margin
    c_hi, r_hi = int(math.ceil(cols[-1])) + margin + 1, int(math.ceil(rows[-1])) + margin + 1
    src = slide.read_level(level, c_lo, r_lo, c_hi - c_lo, r_hi - r_lo)
    if sigma > 0:
        src = ndi.gaussian_filter(src, sigma=(sigma, sigma, 0), mode="nearest", output=np.float32)
    return _bilinear(src, rows - r_lo, cols - c_lo)


def _bilinear(src: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """``src`` (H, W, 3) sampled bilinearly at ``rows x cols`` (all inside), rounded to uint8.

    The same numbers as ``ndi.map_coordinates(..., order=1)`` on each channel, which sums
    ``(s * w_row) * w_col`` over the four neighbours in float64, in raster order, and casts the
    sum to float32: the same products in the same order here. The grid is separable, so the
    weights are per-row and per-column vectors and the work is four gathers and eight
    multiplies over whole rows of ``width * 3`` values (5x faster than the per-point path).
    Built a strip of ``RESAMPLE_STRIP`` output rows at a time: the float64 buffers of a 1,152 px
    tile would otherwise take some 100 MB per reader thread for a 4 MB result.
    """
    c0 = np.floor(cols).astype(np.intp)
    r0 = np.floor(rows).astype(np.intp)
    wc1 = np.repeat(cols - c0, 3)
    wc0 = np.repeat(1.0 - (cols - c0), 3)
    wr1 = rows - r0
    wr0 = 1.0 - wr1
    flat = src.reshape(src.shape[0], -1)
    left = (c0[:, None] * 3 + np.arange(3)).ravel()  # flat (column, channel) of each value
    out = np.empty((len(rows), len(cols) * 3), np.uint8)
    for top in range(0, len(rows), RESAMPLE_STRIP):
        part = slice(top, top + RESAMPLE_STRIP)
        lo, hi = int(r0[part][0]), int(r0[part][-1]) + 2
        near = flat[lo:hi, left].astype(np.float64)
        far = flat[lo:hi, left + 3].astype(np.float64)
        i = r0[part] - lo
        w0, w1 = wr0[part, None], wr1[part, None]
        v = near[i] * w0 * wc0
        v += far[i] * w0 * wc1
        v += near[i + 1] * w1 * wc0
        v += far[i + 1] * w1 * wc1
        v32 = v.astype(np.float32)
        np.rint(v32, out=v32)
        out[part] = np.clip(v32, 0, 255, out=v32)
    return out.reshape(len(rows), len(cols), 3)
