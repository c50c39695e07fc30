"""Opening slides and reading regions on the model grid."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nuclick_core.errors import SlideError
from nuclick_core.io import slides
from nuclick_core.io.slides import best_level, open_slide, read_grid_region

tifffile = pytest.importorskip("tifffile")


def _pyramid(path: Path, img: np.ndarray, mpp: float | None = 0.25) -> Path:
    """A tiled pyramidal TIFF, one top-level page per level (OpenSlide's generic-tiff)."""
    with tifffile.TiffWriter(path) as tw:
        for d in (1, 2, 4):
            kwargs = {}
            if mpp is not None:
                kwargs = {
                    "resolution": (1e4 / mpp / d, 1e4 / mpp / d),
                    "resolutionunit": "CENTIMETER",
                }
            tw.write(
                img[::d, ::d], tile=(64, 64), photometric="rgb", subfiletype=int(d > 1), **kwargs
            )
    return path


@pytest.fixture
def smooth_image() -> np.ndarray:
    yy, xx = np.mgrid[0:256, 0:384]
    img = np.stack([xx % 256, yy % 256, (xx + yy) % 256], -1)
    return img.astype(np.uint8)


def test_openslide_pyramid_mpp_and_levels(tmp_path, smooth_image) -> None:
    slide = open_slide(_pyramid(tmp_path / "s.tif", smooth_image), fallback_mpp=0.5)
    assert (slide.width, slide.height) == (384, 256)
    assert slide.mpp == pytest.approx(0.25)
    assert slide.mpp_source == "slide"
    assert slide.level_downsamples == (1.0, 2.0, 4.0)
    assert best_level(slide, 2.0) == 1
    assert best_level(slide, 3.0) == 1
    assert best_level(slide, 0.5) == 0
    # at the slide's own mpp the read is an exact copy of level 0
    region = read_grid_region(slide, 10, 20, 50, 40, target_mpp=0.25)
    assert np.array_equal(region, smooth_image[20:60, 10:60])
    # at 4x the mpp it is level 2 copied exactly
    region = read_grid_region(slide, 3, 5, 20, 10, target_mpp=1.0)
    assert np.array_equal(region, smooth_image[::4, ::4][5:15, 3:23])
    slide.close()


def test_resampled_region_is_independent_of_the_window(tmp_path, smooth_image) -> None:
    slide = open_slide(_pyramid(tmp_path / "s.tif", smooth_image), fallback_mpp=0.5)
    whole = read_grid_region(slide, 0, 0, 120, 80, target_mpp=0.6)
    part = read_grid_region(slide, 37, 21, 40, 30, target_mpp=0.6)
    assert np.array_equal(whole[21:51, 37:77], part)
    slide.close()


@pytest.mark.parametrize("target_mpp", [0.125, 0.6])  # up- and down-sampled
def test_region_resampled_in_strips_equals_the_region_at_once(
    tmp_path, smooth_image, monkeypatch, target_mpp
) -> None:
    slide = open_slide(_pyramid(tmp_path / "s.tif", smooth_image), fallback_mpp=0.5)
    monkeypatch.setattr(slides, "RESAMPLE_STRIP", 10**6)
    at_once = read_grid_region(slide, -3, 7, 150, 141, target_mpp=target_mpp)
    for strip in (7, 64):
        monkeypatch.setattr(slides, "RESAMPLE_STRIP", strip)
        assert np.array_equal(read_grid_region(slide, -3, 7, 150, 141, target_mpp), at_once)
    slide.close()


def _map_coordinates_bilinear(src: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """The resampling ``read_grid_region`` used before it went separable (the oracle)."""
    from scipy import ndimage as ndi

    rr, cc = np.meshgrid(rows, cols, indexing="ij")
    src = src.astype(np.float32)
    buf = np.stack(
        [ndi.map_coordinates(src[..., k], [rr, cc], order=1, mode="nearest") for k in range(3)], -1
    )
    return np.clip(np.rint(buf), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("g", [0.499 / 0.25, 0.25 / 0.499, 1.24 / 0.499 / 2, 0.77, 1.3, 2.48])
@pytest.mark.parametrize("filtered", [False, True])
def test_separable_bilinear_gives_map_coordinates_numbers(g, filtered) -> None:
    """Every pixel equal, on integer images and on Gaussian-filtered (non-integer) ones."""
    from scipy import ndimage as ndi

    rng = np.random.default_rng(int(g * 1000) + filtered)
    for _ in range(3):
        src = rng.integers(0, 256, (90, 110, 3)).astype(np.uint8)
        if filtered:
            src = ndi.gaussian_filter(src.astype(np.float32), sigma=(0.7, 0.7, 0), mode="nearest")
        u0, v0 = rng.integers(0, 5, 2)
        n_rows = int((src.shape[0] - 4) / g) - 1
        n_cols = int((src.shape[1] - 4) / g) - 1
        rows = (np.arange(v0, v0 + n_rows) + 0.5) * g - 0.5 + 1.0
        cols = (np.arange(u0, u0 + n_cols) + 0.5) * g - 0.5 + 1.0
        rows, cols = rows[rows < src.shape[0] - 2], cols[cols < src.shape[1] - 2]
        assert np.array_equal(
            slides._bilinear(src, rows, cols), _map_coordinates_bilinear(src, rows, cols)
        )


def test_on_white_blends_only_what_is_not_opaque() -> None:
    rng = np.random.default_rng(3)
    rgba = rng.integers(0, 256, (40, 50, 4)).astype(np.uint8)
    rgba[:20, :, 3] = 255
    rgba[30:, :10, 3] = 0
    arr = rgba.astype(np.float32)
    alpha = arr[..., 3:4] / 255.0
    every_pixel = np.rint(arr[..., :3] * alpha + 255.0 * (1.0 - alpha)).astype(np.uint8)
    out = slides.on_white(rgba)
    assert np.array_equal(out, every_pixel)
    assert np.array_equal(out[:20], rgba[:20, :, :3]) and (out[30:, :10] == 255).all()
    assert np.array_equal(slides.on_white(rgba[:20]), rgba[:20, :, :3])  # all opaque


def test_openslide_region_outside_the_level_is_white(tmp_path, smooth_image) -> None:
    slide = open_slide(_pyramid(tmp_path / "s.tif", smooth_image), fallback_mpp=0.5)
    region = slide.read_level(0, -6, 250, 20, 10)
    assert (region[:, :6] == 255).all() and (region[6:] == 255).all()
    assert np.array_equal(region[:6, 6:], smooth_image[250:, :14])
    slide.close()


def test_outside_the_slide_is_white(tmp_path, smooth_image) -> None:
    path = tmp_path / "img.png"
    Image.fromarray(smooth_image).save(path)
    slide = open_slide(path, mpp=0.5, fallback_mpp=0.5)
    region = read_grid_region(slide, -5, -5, 10, 10, target_mpp=0.5)
    assert (region[:5] == 255).all() and (region[:, :5] == 255).all()
    assert np.array_equal(region[5:, 5:], smooth_image[:5, :5])


def test_plain_image_mpp_sources(tmp_path, smooth_image, caplog) -> None:
    path = tmp_path / "img.png"
    Image.fromarray(smooth_image).save(path)
    assert open_slide(path, mpp=0.3, fallback_mpp=0.5).mpp_source == "user"
    slide = open_slide(path, fallback_mpp=0.5)
    assert (slide.mpp, slide.mpp_source) == (0.5, "assumed")
    assert "no mpp" in caplog.text


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.svs", None, "does not exist"),
        ("garbage.svs", b"not a slide at all", "looks truncated or damaged"),
        ("garbage.xyz", b"not a slide at all", "not a slide format"),
        ("broken.png", b"\x89PNG\r\n\x1a\n garbage", "cannot read the image"),
    ],
)
def test_unreadable_slides_raise(tmp_path, name, content, message) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(SlideError, match=message):
        open_slide(path, fallback_mpp=0.5)


def test_bad_user_mpp(tmp_path, smooth_image) -> None:
    path = tmp_path / "img.png"
    Image.fromarray(smooth_image).save(path)
    with pytest.raises(SlideError, match="positive number"):
        open_slide(path, mpp=-1.0, fallback_mpp=0.5)


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16_bit_grey_images_are_scaled_not_clipped(tmp_path, suffix) -> None:
    """#13 defect 4: Pillow's RGB conversion clipped 16-bit grey to white, so every click
    became on_background."""
    grey16 = (np.arange(40 * 60).reshape(40, 60) * 27).astype(np.uint16)
    path = tmp_path / f"g16{suffix}"
    Image.fromarray(grey16).save(path)
    rgb = open_slide(path, mpp=0.5, fallback_mpp=0.5).read_level(0, 0, 0, 60, 40)
    want = np.round(grey16 / 257.0).astype(np.uint8)
    assert rgb.dtype == np.uint8 and rgb.shape == (40, 60, 3)
    assert np.array_equal(rgb[..., 0], want) and np.array_equal(rgb[..., 2], want)
    assert 0 < rgb.mean() < 250


def test_float_images_are_refused_with_the_fix(tmp_path) -> None:
    path = tmp_path / "f.tif"
    Image.fromarray(np.ones((8, 8), np.float32)).save(path)
    with pytest.raises(SlideError, match=r"f\.tif: a floating-point image"):
        open_slide(path, mpp=0.5, fallback_mpp=0.5)


@pytest.mark.parametrize("mpp", [1e-6, 0.001, 1e4])
def test_absurd_mpp_is_refused_before_any_read(tmp_path, mpp) -> None:
    """#13 defect 5: --mpp 1e-6 asked for 2.9 PiB."""
    path = tmp_path / "s.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(path)
    with pytest.raises(SlideError, match=r"s\.png: mpp .* \(given\) is outside 0\.01\.\.100"):
        open_slide(path, mpp=mpp, fallback_mpp=0.5)
