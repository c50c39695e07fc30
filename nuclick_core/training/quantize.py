"""Lower-precision variants of a model: int8 for CPUs, calibrated on training patches, and fp16
for GPUs.

ONNX Runtime's static quantisation (QDQ format: int8 weights per output channel, uint8
activations, min-max ranges) calibrated on the network's real inputs: patches cut around the
ground-truth objects of labelled images, built exactly as at inference (the same planning, the
same input builder, the object's centroid as the click, the other objects' as exclusion). The
variant is written as a new model folder whose card says what was done and from what; it is
opt-in (``--model NAME-int8``) and goes through ``nuclick evaluate`` like any model.

The fp16 variant (weights and activations in half precision, input and output kept float32 so
the engine feeds it unchanged) halves the memory traffic of a GPU's convolutions; on a CPU,
ONNX Runtime runs it, but slower than fp32.
"""

from __future__ import annotations

import json
import platform
from pathlib import Path

import numpy as np

from nuclick_core.data.datasets import read_dataset
from nuclick_core.data.labelled import memory_slide
from nuclick_core.data.marks import centroid_clicks
from nuclick_core.errors import ModelError
from nuclick_core.inference.models import load_card
from nuclick_core.inference.patches import ExclusionIndex, PatchPlan, build_inputs, grid_pixels
from nuclick_core.inference.producers import Grid
from nuclick_core.io.files import atomic_path, sha256_file, write_text_atomic
from nuclick_core.io.slides import read_grid_region


def calibration_patches(
    card_dir: Path, data: Path, fmt: str, exclude: list[str], *, mpp: float, n: int, seed: int
) -> np.ndarray:
    """``n`` network inputs float32 (n, 5, P, P) around ground-truth objects of the images
    not named in ``exclude`` (the validation images); objects drawn at random, seeded; images
    at ``mpp``, read at the model's."""
    card = load_card(card_dir)
    p = card.patch_size
    items = [item for item in read_dataset(data, fmt, None) if item.name not in set(exclude)]
    if not items:
        raise ModelError(f"{data}: no labelled images to calibrate on")
    rng = np.random.default_rng(seed)
    picks: list[tuple[int, int]] = []  # (item index, object index)
    xys = []
    for k, item in enumerate(items):
        _, xy = centroid_clicks(item.labels)
        xys.append(xy)
        picks.extend((k, j) for j in range(len(xy)))
    if not picks:
        raise ModelError(f"{data}: the labelled images hold no objects to calibrate on")
    chosen = [picks[i] for i in rng.choice(len(picks), size=min(n, len(picks)), replace=False)]
    out = np.empty((len(chosen), 5, p, p), np.float32)
    for row, (k, j) in enumerate(chosen):
        slide = memory_slide(items[k], mpp)
        grid = Grid.of(slide, card.mpp)
        uv = grid_pixels(xys[k], grid.f)
        origin = uv[j] - p // 2
        u0, v0 = int(origin[0]), int(origin[1])
        region = read_grid_region(slide, u0, v0, p, p, target_mpp=card.mpp)
        plan = PatchPlan(np.array([j]), origin[None], (u0, v0, p, p))
        build_inputs(
            region, plan, ExclusionIndex(uv, np.arange(len(uv))), p, out=out[row : row + 1]
        )
    return out


def quantize_model(
    model_dir: Path,
    out_dir: Path,
    *,
    data: Path,
    fmt: str,
    exclude: list[str],
    mpp: float,
    patches: int = 256,
    seed: int = 0,
) -> dict:
    """Write ``out_dir`` (model.onnx, model.json): ``model_dir``'s model quantised to int8,
    calibrated on ``patches`` patches of ``data``. Returns the new card."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    card = load_card(model_dir)
    if card.object_type == "gland":
        raise ModelError(
            f"{model_dir}: quantisation is calibrated on click patches; use a nucleus or cell model"
        )
    x = calibration_patches(model_dir, data, fmt, exclude, mpp=mpp, n=patches, seed=seed)

    class Batches(CalibrationDataReader):
        def __init__(self) -> None:
            self.k = 0

        def get_next(self) -> dict | None:
            if self.k >= len(x):
                return None
            self.k += 16
            return {"input": x[self.k - 16 : self.k]}

    out_dir.mkdir(parents=True, exist_ok=True)
    pre = out_dir / ".model.pre.onnx"
    try:
        quant_pre_process(str(model_dir / "model.onnx"), str(pre))
        with atomic_path(out_dir / "model.onnx") as tmp:
            quantize_static(
                str(pre),
                str(tmp),
                Batches(),
                quant_format=QuantFormat.QDQ,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                per_channel=True,
            )
    finally:
        pre.unlink(missing_ok=True)
    return _variant_card(
        model_dir,
        out_dir,
        {
            "method": "ONNX Runtime static quantisation, QDQ: int8 weights per channel, uint8 "
            "activations, min-max calibration",
            "calibration": {
                "data": str(data),
                "format": fmt,
                "excluded_images": exclude,
                "mpp": mpp,
                "patches": len(x),
                "seed": seed,
            },
        },
    )


def half_precision_model(model_dir: Path, out_dir: Path) -> dict:
    """Write ``out_dir`` (model.onnx, model.json): ``model_dir``'s model in fp16 with float32
    input and output. Returns the new card."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(model_dir / "model.onnx")), keep_io_types=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_dir / "model.onnx") as tmp:
        onnx.save(model, str(tmp))
    return _variant_card(
        model_dir,
        out_dir,
        {
            "method": "fp16 weights and activations (onnxruntime.transformers.float16), "
            "float32 input and output",
        },
    )


def _variant_card(model_dir: Path, out_dir: Path, done: dict) -> dict:
    """Write ``out_dir/model.json`` for the variant just written to ``out_dir/model.onnx``:
    the source card with the new name and sha256, ``quantized`` saying what was done to which
    model, and no figures (those of the source are not the variant's). Returns it."""
    import onnxruntime as ort

    source = load_card(model_dir)
    raw = json.loads((model_dir / "model.json").read_text())
    raw.update(
        name=out_dir.name,
        sha256=sha256_file(out_dir / "model.onnx"),
        quantized={
            **done,
            "from": source.name,
            "from_sha256": source.sha256,
            "onnxruntime": f"{ort.__version__} ({platform.machine()})",
        },
    )
    raw.pop("evaluation", None)
    raw.pop("robustness", None)
    write_text_atomic(out_dir / "model.json", json.dumps(raw, indent=2) + "\n")
    return raw
