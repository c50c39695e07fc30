"""The int8 variant of a click model (#14): calibrated on training patches, written with a card
that says so, run by ONNX Runtime like any model, close to the fp32 output."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("torch")
pytest.importorskip("onnxruntime.quantization")

from nuclick_core.data.synth import nuclei_scene
from nuclick_core.errors import ModelError
from nuclick_core.inference.models import load_card
from nuclick_core.inference.runtime import OnnxPredictor
from nuclick_core.training.quantize import calibration_patches, quantize_model
from tests.conftest import export_tiny_model


@pytest.fixture
def dataset(tmp_path):
    root = tmp_path / "data"
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    for k in range(3):
        s = nuclei_scene(size=(128, 128), n_nuclei=12, seed=k)
        Image.fromarray(s.image).save(root / "images" / f"t{k}.png")
        Image.fromarray(s.labels.astype(np.uint16)).save(root / "labels" / f"t{k}.png")
    return root


def test_calibration_patches_are_real_inputs_of_the_training_images(tmp_path, dataset) -> None:
    model = export_tiny_model(tmp_path / "m")
    x = calibration_patches(model, dataset, "folder", ["t2"], mpp=0.5, n=20, seed=0)
    assert x.shape == (20, 5, 64, 64) and x.dtype == np.float32
    assert (x[:, 3, 32, 32] == 1).all() and (x[:, 3].sum(axis=(1, 2)) == 1).all()  # the click
    assert (x[:, 4].sum(axis=(1, 2)) >= 1).mean() > 0.5  # other nuclei in the exclusion map
    assert x[:, :3].min() >= 0 and x[:, :3].max() <= 1
    again = calibration_patches(model, dataset, "folder", ["t2"], mpp=0.5, n=20, seed=0)
    assert np.array_equal(x, again)  # seeded


def test_quantized_model_runs_close_to_fp32_and_says_what_it_is(tmp_path, dataset) -> None:
    model = export_tiny_model(tmp_path / "m")
    out = tmp_path / "m-int8"
    card = quantize_model(
        model, out, data=dataset, fmt="folder", exclude=["t2"], mpp=0.5, patches=16
    )
    loaded = load_card(out)  # the card's sha256 is the written file's
    assert loaded.name == "m-int8" and card["quantized"]["from"] == "m"
    assert card["quantized"]["from_sha256"] == load_card(model).sha256
    assert card["quantized"]["calibration"]["patches"] == 16
    x = calibration_patches(model, dataset, "folder", [], mpp=0.5, n=8, seed=1)
    fp32 = OnnxPredictor(load_card(model), batch_size=8, threads=1)(x)
    int8 = OnnxPredictor(loaded, batch_size=8, threads=1)(x)
    assert int8.shape == fp32.shape
    assert np.abs(int8 - fp32).mean() < 0.05  # quantised, so not equal, but close


def test_gland_models_are_refused(tmp_path, dataset) -> None:
    model = export_tiny_model(tmp_path / "g", object_type="gland")
    with pytest.raises(ModelError, match="nucleus or cell"):
        quantize_model(model, tmp_path / "o", data=dataset, fmt="folder", exclude=[], mpp=0.5)


def test_fp16_variant_keeps_float32_io_and_stays_close(tmp_path) -> None:
    from nuclick_core.training.quantize import half_precision_model

    model = export_tiny_model(tmp_path / "m")
    card = half_precision_model(model, tmp_path / "m-fp16")
    assert card["quantized"]["from"] == "m" and "fp16" in card["quantized"]["method"]
    x = np.random.default_rng(2).random((4, 5, 64, 64), dtype=np.float32)
    fp32 = OnnxPredictor(load_card(model), batch_size=4, threads=1)(x)
    fp16 = OnnxPredictor(load_card(tmp_path / "m-fp16"), batch_size=4, threads=1)(x)
    assert fp16.dtype == np.float32
    assert np.abs(fp16 - fp32).max() < 0.02


def test_int8_without_calibration_data_is_refused(tmp_path) -> None:
    from nuclick_core.cli.main import main

    model = export_tiny_model(tmp_path / "m")
    assert main(["quantize", "--model", str(model), "--out", str(tmp_path / "q")]) == 2
    assert not (tmp_path / "q").exists()
