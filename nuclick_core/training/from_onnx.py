"""A trainable network from a shipped ``model.onnx``: fine-tuning without the training checkpoint.

The project commits exported models, never checkpoints, so a scheduled retrain (or a user's
fine-tune on their own slides) starts from the ONNX file. Export folds each batch norm into the
convolution before it (weight scaled, bias added), so the weights come back exactly but the
batch norms do not: each is set to the identity (scale 1, shift = the folded bias, running mean
0, running variance 1 - eps) and frozen, so training updates its scale and shift but never
replaces the folded statistics with a batch's. A network read this way computes what the ONNX
file computes (:func:`nuclick_core.training.export.parity` checks it in the tests).

Convolutions are matched to modules by the scope names the exporter writes
(``/net/enc2/enc2.0/conv2/conv2.0/Conv`` is ``enc2.0.conv2.0``), and every tensor's shape is
checked, so a file from another architecture is refused with a message, not loaded half-way.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from nuclick_core.errors import ModelError
from nuclick_core.training.network import NuClick


def _module_path(node_name: str) -> str:
    """``/net/enc2/enc2.0/conv2/conv2.0/Conv`` -> ``enc2.0.conv2.0`` (without the wrapper)."""
    parts: list[str] = []
    last = ""
    for seg in node_name.strip("/").split("/")[:-1]:
        parts.append(seg[len(last) + 1 :] if last and seg.startswith(last + ".") else seg)
        last = seg
    if not parts or parts[0] != "net":
        raise ValueError(node_name)
    return ".".join(parts[1:])


def onnx_file(path: Path) -> Path:
    """``path`` itself, or ``path/model.onnx`` for a model folder."""
    return path / "model.onnx" if path.is_dir() else path


def net_from_onnx(path: Path) -> NuClick:
    """The NuClick network whose export is ``path`` (a ``model.onnx`` or its folder), with its
    batch norms frozen (see the module docstring). Raises ModelError naming the file when it is
    not a NuClick export."""
    import onnx
    from onnx import numpy_helper

    path = onnx_file(path)
    try:
        graph = onnx.load(str(path)).graph
    except Exception as exc:  # onnx raises DecodeError, OSError, ... for a bad file
        raise ModelError(f"{path}: not a readable ONNX file ({exc}); re-export the model") from exc
    tensors = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:  # the exporter shares equal tensors through Identity nodes
        if node.op_type == "Identity" and node.input[0] in tensors:
            tensors[node.output[0]] = tensors[node.input[0]]
    convs = [n for n in graph.node if n.op_type in ("Conv", "ConvTranspose")]
    if not convs or convs[0].input[1] not in tensors:
        raise ModelError(f"{path}: no convolution weights found; not a NuClick export")
    width = tensors[convs[0].input[1]].shape[0] / 64
    net = NuClick(width=width)
    modules = dict(net.named_modules())
    params = net.state_dict()
    loaded: set[str] = set()

    def put(key: str, value: np.ndarray) -> None:
        if key not in params or tuple(params[key].shape) != value.shape:
            raise ModelError(
                f"{path}: tensor for {key} has shape {value.shape}, the width-{width} network "
                "wants " + (str(tuple(params[key].shape)) if key in params else "no such tensor")
            )
        params[key] = torch.from_numpy(np.array(value, dtype=np.float32))
        loaded.add(key)

    for node in convs:
        try:
            where = _module_path(node.name)
        except ValueError:
            raise ModelError(f"{path}: node {node.name!r} is not in a NuClick scope") from None
        weight, bias = (tensors.get(name) for name in node.input[1:3])
        if weight is None:
            raise ModelError(f"{path}: node {node.name} has no stored weight")
        put(f"{where}.weight", weight)
        if isinstance(modules.get(where), torch.nn.Conv2d) and modules[where].bias is None:
            # a folded conv -> batch norm: the batch norm is the next module of the Sequential
            bn = where.rsplit(".", 1)[0] + "." + str(int(where.rsplit(".", 1)[1]) + 1)
            if not isinstance(modules.get(bn), torch.nn.BatchNorm2d) or bias is None:
                raise ModelError(f"{path}: {node.name} does not fold a batch norm")
            eps = modules[bn].eps
            put(f"{bn}.weight", np.ones_like(bias))
            put(f"{bn}.bias", bias)
            put(f"{bn}.running_mean", np.zeros_like(bias))
            put(f"{bn}.running_var", np.full_like(bias, 1.0 - eps))
            loaded.add(f"{bn}.num_batches_tracked")
        elif bias is not None:
            put(f"{where}.bias", bias)
    missing = sorted(set(params) - loaded)
    if missing:
        raise ModelError(f"{path}: no weights for {', '.join(missing[:5])}; not a NuClick export")
    net.load_state_dict(params)
    net.freeze_batch_norm()
    return net
