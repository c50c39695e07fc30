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


def parity(
    net: NuClick, onnx_path: Path, *, patch_size: int, batch: int = 3, seed: int = 0
) -> float:
    """Max absolute difference between PyTorch and ONNX Runtime probabilities on random input
    shaped like real input (RGB in [0, 1], sparse 0/1 maps)."""
    import onnxruntime as ort

    rng = np.random.default_rng(seed)
    x = rng.random((batch, 5, patch_size, patch_size), dtype=np.float32)
    x[:, 3:] = (rng.random((batch, 2, patch_size, patch_size)) > 0.995).astype(np.float32)
    with torch.inference_mode():
        want = torch.sigmoid(net.eval()(torch.from_numpy(x))).numpy()
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"input": x})[0]
    return float(np.abs(got - want).max())


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
        "exported": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "sha256": sha256_file(onnx_path),
        **(card_extra or {}),
    }
    write_text_atomic(out_dir / "model.json", json.dumps(card, indent=2) + "\n")
    return card
