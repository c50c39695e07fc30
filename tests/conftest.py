"""Shared fixtures: a tiny exported network (no trained weights) and a click-aware predictor
computed from the image, so tests need no download and no training."""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
from PIL import Image
from scipy import ndimage as ndi
from skimage.draw import disk

from nuclick_core.io.annotations import click_table_from_points


class DarknessPredictor:
    """A stand-in for the network: foreground = dark pixels, weighted by closeness to the
    inclusion point, suppressed near exclusion points. Deterministic function of the patch."""

    def __init__(self, patch_size: int = 64, sigma: float = 9.0) -> None:
        self.patch_size = patch_size
        self.sigma = sigma
        self.calls: list[int] = []

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        self.calls.append(len(batch))
        p = self.patch_size
        rows, cols = np.mgrid[0:p, 0:p]
        out = np.empty((len(batch), p, p), np.float32)
        for k, x in enumerate(batch):
            dark = 1.0 / (1.0 + np.exp((x[:3].mean(0) - 0.5) * 20.0))
            r, c = np.argwhere(x[3] > 0)[0]
            near = np.exp(-((rows - r) ** 2 + (cols - c) ** 2) / (2 * self.sigma**2))
            out[k] = dark * (0.3 + 0.7 * near)
            others = x[4] > 0
            if others.any():  # the exclusion channel counts: a bug there changes the output
                d = ndi.distance_transform_edt(~others)
                out[k] *= 1.0 - 0.9 * np.exp(-(d**2) / (2 * (self.sigma / 2) ** 2))
        return out


def disks_image(shape=(300, 400), centres=(), radius=8, seed=0) -> np.ndarray:
    """Light background with dark disks (RGB uint8), a little noise."""
    rng = np.random.default_rng(seed)
    img = np.full((*shape, 3), 225.0)
    for x, y in centres:
        rr, cc = disk((y, x), radius, shape=shape)
        img[rr, cc] = (70, 50, 120)
    img += rng.normal(0, 4, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def click_table(xy) -> gpd.GeoDataFrame:
    """A click table of points (the package's own builder)."""
    return click_table_from_points(np.asarray(xy, np.float64).reshape(-1, 2), source="test")


def export_tiny_model(
    model_dir: Path,
    *,
    object_type: str = "nucleus",
    mpp: float = 0.5,
    postprocess: dict | None = None,
) -> Path:
    """Export a width-0.0625 NuClick with random weights (64 px patches) and its card."""
    import torch

    from nuclick_core.io.files import sha256_file
    from nuclick_core.training.export import export_onnx
    from nuclick_core.training.network import NuClick

    model_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    export_onnx(NuClick(width=0.0625), model_dir / "model.onnx", patch_size=64)
    card = {
        "name": model_dir.name,
        "object_type": object_type,
        "patch_size": 64,
        "mpp": mpp,
        "postprocess": postprocess or {"threshold": 0.5, "min_size": 5, "min_hole": 10},
        "sha256": sha256_file(model_dir / "model.onnx"),
    }
    (model_dir / "model.json").write_text(json.dumps(card))
    return model_dir


def export_known_model(model_dir: Path, *, mpp: float = 0.5, sigma: float = 9.0) -> Path:
    """Export the stand-in network with known output as ONNX (64 px patches) and its card: the
    DarknessPredictor's rule in convolutions (foreground = dark pixels, weighted by closeness
    to the inclusion click, suppressed near exclusion clicks), so CLI and workflow tests can
    assert exact statuses and areas through the real ONNX Runtime path."""
    import torch

    from nuclick_core.io.files import sha256_file

    def kernel(s: float) -> torch.Tensor:
        r = int(3 * s)
        t = torch.arange(-r, r + 1, dtype=torch.float32)
        g = torch.exp(-(t[:, None] ** 2 + t[None, :] ** 2) / (2 * s**2))
        return g[None, None]

    class Known(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("near", kernel(sigma))
            self.register_buffer("far", kernel(sigma / 2))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            dark = torch.sigmoid((0.5 - x[:, :3].mean(1, keepdim=True)) * 20.0)
            pn, pf = self.near.shape[-1] // 2, self.far.shape[-1] // 2
            near = torch.nn.functional.conv2d(x[:, 3:4], self.near, padding=pn).clamp(max=1.0)
            far = torch.nn.functional.conv2d(x[:, 4:5], self.far, padding=pf).clamp(max=1.0)
            return dark * (0.3 + 0.7 * near) * (1.0 - 0.9 * far)

    model_dir.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(
        Known().eval(),
        (torch.zeros(2, 5, 64, 64),),
        str(model_dir / "model.onnx"),
        input_names=["input"],
        output_names=["prob"],
        dynamic_axes={"input": {0: "batch"}, "prob": {0: "batch"}},
        opset_version=17,
        dynamo=False,
    )
    card = {
        "name": model_dir.name,
        "object_type": "nucleus",
        "patch_size": 64,
        "mpp": mpp,
        "postprocess": {"threshold": 0.5, "min_size": 5, "min_hole": 10},
        "sha256": sha256_file(model_dir / "model.onnx"),
    }
    (model_dir / "model.json").write_text(json.dumps(card))
    return model_dir


@pytest.fixture(scope="session")
def known_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The stand-in network with known output, as an ONNX model folder."""
    pytest.importorskip("torch")
    return export_known_model(tmp_path_factory.mktemp("models") / "known")


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-weight nucleus model (64 px patches, 0.5 mpp); needs no training."""
    pytest.importorskip("torch")
    return export_tiny_model(tmp_path_factory.mktemp("models") / "tiny")


@pytest.fixture
def demo_scene(tmp_path: Path) -> tuple[Path, np.ndarray]:
    """A PNG with 12 dark disks (two touching pairs) and the disk centres."""
    centres = np.array(
        [
            [40, 40],
            [56, 40],
            [120, 60],
            [200, 80],
            [216, 80],
            [300, 50],
            [60, 200],
            [150, 180],
            [250, 220],
            [350, 250],
            [385, 285],
            [100, 120],
        ],
        np.float64,
    )
    path = tmp_path / "scene.png"
    Image.fromarray(disks_image(centres=centres)).save(path)
    return path, centres
