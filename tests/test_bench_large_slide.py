"""bench/large_slide.py at a tiny size (#14): the generated slide is a pyramidal TIFF that
OpenSlide opens with its mpp, its copies are the source flipped and turned, the clicks move
with them, and every click of both runs gets a row."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import openslide
import pytest
from PIL import Image

from nuclick_core.data.synth import nuclei_scene

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "large_slide.py"


def _module():
    spec = importlib.util.spec_from_file_location("large_slide", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_dihedral_points_follow_the_image() -> None:
    mod = _module()
    image = np.zeros((8, 8), int)
    image[1, 5] = 1  # pixel (row 1, col 5): centre (x, y) = (5.5, 1.5)
    for k in range(8):
        moved = mod.dihedral(image, k)
        (r,), (c,) = np.nonzero(moved)
        x, y = mod.dihedral_points(np.array([[5.5, 1.5]]), k, 8)[0]
        assert (x, y) == (c + 0.5, r + 0.5), k


def test_tiny_large_slide_run(tmp_path) -> None:
    scene = nuclei_scene(size=(256, 256), n_nuclei=25, seed=3)
    source = tmp_path / "tissue.png"
    Image.fromarray(scene.image).save(source)
    out = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--source",
            str(source),
            "--mpp",
            "0.5",
            "--copies",
            "2",
            "--scales",
            "1,2",
            "--threads",
            "1",
            "--dir",
            str(tmp_path / "b"),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    figures = json.loads(out.stdout)
    small, large = figures["runs"]
    assert large["clicks"] == 4 * small["clicks"] > 0
    for run in (small, large):
        assert sum(run["statuses"].values()) == run["clicks"] == run["patches"]
        assert run["peak_rss_mb"] > 50
    slide = openslide.OpenSlide(str(tmp_path / "b" / "tissue_mosaic_2x2.tif"))
    assert (
        slide.dimensions == (512, 512) and slide.level_count == 3
    )  # 1, 4, 16 (a 64th would be 4 px)
    assert float(slide.properties["openslide.mpp-x"]) == pytest.approx(0.5, rel=1e-3)
    level0 = np.asarray(slide.read_region((0, 0), 0, (512, 512)).convert("RGB"))
    mod = _module()
    for k in range(4):
        r, c = divmod(k, 2)
        copy = level0[r * 256 : (r + 1) * 256, c * 256 : (c + 1) * 256]
        assert np.array_equal(copy, mod.dihedral(scene.image, k))
