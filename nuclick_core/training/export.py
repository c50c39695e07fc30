"""Export a trained network to ONNX with its model card, and check ONNX/PyTorch parity."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import numpy as np
import torch

from nuclick_core.errors import ModelError
from nuclick_core.io.files import atomic_path, sha256_file, write_text_atomic
from nuclick_core.training.network import NuClick, count_parameters

PARITY_TOLERANCE = 1e-4

#: Weights smaller than this in magnitude are written as 0. Training with weight decay leaves
#: many weights of unused channels decaying towards zero, down to denormal floats (28% of
#: nuclei-light-2's weights were); products with them are denormal too, and Intel CPUs compute
#: those tens of times slower (nuclei-light-2: 3.7 instead of 62 patches/s on one Xeon core).
#: A weight below 1e-20 times any activation is far below float32 resolution of the sums it
#: joins: the outputs do not change (checked bit for bit on the shipped models).
TINY_WEIGHT = 1e-20


class _WithSigmoid(torch.nn.Module):
    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.net(x))


def export_onnx(net: NuClick, path: Path, *, patch_size: int, opset: int = 17) -> None:
    """Write ``net`` (plus a final sigmoid) as ONNX with a dynamic batch axis.

    Input ``input`` float32 (N, 5, P, P); output ``prob`` float32 (N, 1, P, P).
    """
    net = net.eval()
    dummy = torch.zeros(2, 5, patch_size, patch_size)
    with atomic_path(path) as tmp:
        torch.onnx.export(
            _WithSigmoid(net).eval(),  # the exporter restores the mode it finds: keep eval
            (dummy,),
            str(tmp),
            input_names=["input"],
            output_names=["prob"],
            dynamic_axes={"input": {0: "batch"}, "prob": {0: "batch"}},
            opset_version=opset,
            dynamo=False,
        )


def zero_tiny_weights(onnx_path: Path, below: float = TINY_WEIGHT) -> int:
    """Rewrite the float32 initializers of ``onnx_path`` in place with every weight smaller
    than ``below`` in magnitude (denormals included) set to 0; the number of weights zeroed.
    Nothing else in the file changes."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(onnx_path))
    zeroed = 0
    for init in model.graph.initializer:
        w = numpy_helper.to_array(init)
        if w.dtype != np.float32:
            continue
        tiny = (w != 0) & (np.abs(w) < below)
        if tiny.any():
            zeroed += int(tiny.sum())
            init.CopyFrom(numpy_helper.from_array(np.where(tiny, np.float32(0), w), init.name))
    if zeroed:
        with atomic_path(onnx_path) as tmp:
            onnx.save(model, str(tmp))
    return zeroed


def _parity_input(patch_size: int, batch: int, seed: int) -> np.ndarray:
    """Random input shaped like real input (RGB in [0, 1], sparse 0/1 maps)."""
    rng = np.random.default_rng(seed)
    x = rng.random((batch, 5, patch_size, patch_size), dtype=np.float32)
    x[:, 3:] = (rng.random((batch, 2, patch_size, patch_size)) > 0.995).astype(np.float32)
    return x


def _onnx_prob(onnx_path: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    return sess.run(None, {"input": x})[0]


def parity(
    net: NuClick, onnx_path: Path, *, patch_size: int, batch: int = 3, seed: int = 0
) -> float:
    """Max absolute difference between PyTorch and ONNX Runtime probabilities on random input
    shaped like real input."""
    x = _parity_input(patch_size, batch, seed)
    with torch.inference_mode():
        want = torch.sigmoid(net.eval()(torch.from_numpy(x))).numpy()
    return float(np.abs(_onnx_prob(onnx_path, x) - want).max())


def zero_tiny_weights_in_model(model_dir: Path, below: float = TINY_WEIGHT) -> dict:
    """:func:`zero_tiny_weights` on a model folder's ``model.onnx`` (a model exported before
    export did it), checked: ONNX Runtime's probabilities before and after may differ by at
    most :data:`PARITY_TOLERANCE`, or nothing is written. The card gets the new sha256, and
    records the old one and what was done. Returns the card."""
    from nuclick_core.inference.models import load_card

    load_card(model_dir)  # the file must be the card's (sha256) before it is rewritten
    onnx_path = model_dir / "model.onnx"
    card = json.loads((model_dir / "model.json").read_text())
    trial = model_dir / ".model.onnx.zeroed"
    try:
        trial.write_bytes(onnx_path.read_bytes())
        zeroed = zero_tiny_weights(trial, below)
        x = _parity_input(card["patch_size"], 3, 0)
        diff = float(np.abs(_onnx_prob(trial, x) - _onnx_prob(onnx_path, x)).max())
        if diff > PARITY_TOLERANCE:
            raise ModelError(
                f"{onnx_path}: zeroing weights below {below:g} changes the output by {diff:.2e} "
                f"(more than {PARITY_TOLERANCE:.0e}); the model was left as it was"
            )
        if zeroed == 0:
            return card
        before = card["sha256"]
        os.replace(trial, onnx_path)
    finally:
        trial.unlink(missing_ok=True)
    card["tiny_weights"] = {
        "zeroed": zeroed,
        "below": below,
        "output_max_abs_diff": diff,
        "sha256_before": before,
    }
    card["sha256"] = sha256_file(onnx_path)
    write_text_atomic(model_dir / "model.json", json.dumps(card, indent=2) + "\n")
    return card


def export_model(
    checkpoint: Path,
    out_dir: Path,
    *,
    name: str,
    mpp: float,
    postprocess: dict,
    card_extra: dict | None = None,
) -> dict:
    """Export a training checkpoint to ``out_dir/model.onnx`` and ``out_dir/model.json``.

    Raises ModelError when ONNX/PyTorch parity exceeds :data:`PARITY_TOLERANCE`.
    Returns the card.
    """
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    cfg = state["config"]
    net = NuClick(width=cfg["width"])
    net.load_state_dict(state["model"])
    out_dir.mkdir(parents=True, exist_ok=True)
    onnx_path = out_dir / "model.onnx"
    # exported beside the target and checked before it replaces anything: a failed export
    # leaves the folder (and a model already in it) as it was
    trial = out_dir / ".model.onnx.export"
    try:
        export_onnx(net, trial, patch_size=cfg["patch_size"])
        zeroed = zero_tiny_weights(trial)
        diff = parity(net, trial, patch_size=cfg["patch_size"])
        if diff > PARITY_TOLERANCE:
            raise ModelError(
                f"{checkpoint}: ONNX/PyTorch parity {diff:.2e} exceeds {PARITY_TOLERANCE:.0e}; "
                f"nothing was written to {out_dir} (check the onnx and onnxruntime versions)"
            )
        os.replace(trial, onnx_path)
    finally:
        trial.unlink(missing_ok=True)
    card = {
        "name": name,
        "architecture": "NuClick (Koohbanani, Jahanifar et al. 2020)",
        "width": cfg["width"],
        "parameters": count_parameters(net),
        "object_type": cfg["object_type"],
        "patch_size": cfg["patch_size"],
        "mpp": mpp,
        "input": {
            "layout": "NCHW float32",
            "channels": ["R", "G", "B", "inclusion", "exclusion"],
            "scaling": "RGB / 255 in [0, 1]; maps 0/1",
            "output": "prob: sigmoid foreground probability (N, 1, P, P)",
        },
        "postprocess": postprocess,
        "training": {
            "config": cfg,
            "epochs_run": state["epoch"] + 1,
            "best_val_dice": state["best"],
            "history": state["history"],
        },
        "parity_max_abs_diff": diff,
        "tiny_weights": {"zeroed": zeroed, "below": TINY_WEIGHT},
        "exported": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "sha256": sha256_file(onnx_path),
        **(card_extra or {}),
    }
    write_text_atomic(out_dir / "model.json", json.dumps(card, indent=2) + "\n")
    return card
