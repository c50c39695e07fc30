"""Network weights as fp16 chunks of bounded size, and back to a training checkpoint.

A lent GPU machine returns at most 8 files of 16 MiB each, 64 MiB in all. A run there writes
its weights with :func:`save_chunks` (floating-point tensors as fp16, the serialised state split
into ``weights.NNN`` files plus ``weights.json``: sha256 of every chunk, the training config,
history); :func:`assemble_checkpoint` turns them back, here, into a checkpoint that
``nuclick export`` takes. fp16 keeps 11 significant bits: the exported ONNX model is checked for
parity against the assembled weights, not against the GPU's.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import torch

from nuclick_core.errors import ModelError
from nuclick_core.io.files import sha256_bytes, write_bytes_atomic, write_text_atomic

MIB = 1 << 20
MANIFEST = "weights.json"


def fp16_bytes(state: dict[str, torch.Tensor]) -> int:
    """Bytes the state takes with its floating-point tensors in fp16 (before serialisation)."""
    return sum(
        t.numel() * (2 if t.is_floating_point() else t.element_size()) for t in state.values()
    )


def save_chunks(
    state: dict[str, torch.Tensor],
    out_dir: Path,
    *,
    config: dict,
    history: list | None = None,
    chunk_mib: float = 16.0,
    max_total_mib: float = 60.0,
) -> dict:
    """Write ``state`` (a state dict) as fp16 chunks of at most ``chunk_mib`` MiB under
    ``out_dir`` and return the manifest (also written as ``weights.json``).

    Raises
    ------
    ModelError
        When the serialised weights exceed ``max_total_mib`` (the manifest needs room too).
    """
    half = {
        k: (v.detach().half() if v.is_floating_point() else v.detach()).cpu()
        for k, v in state.items()
    }
    buf = io.BytesIO()
    torch.save(half, buf)
    data = buf.getvalue()
    if len(data) > max_total_mib * MIB:
        raise ModelError(
            f"fp16 weights take {len(data) / MIB:.1f} MiB, over the {max_total_mib} MiB that can "
            "come back; train a narrower network (width 0.5 is 33 MiB)"
        )
    size = int(chunk_mib * MIB)
    out_dir.mkdir(parents=True, exist_ok=True)
    chunks = []
    for k in range(0, len(data), size):
        name = f"weights.{k // size:03d}"
        part = data[k : k + size]
        write_bytes_atomic(out_dir / name, part)
        chunks.append({"file": name, "bytes": len(part), "sha256": sha256_bytes(part)})
    manifest = {
        "format": "torch state dict, floating-point tensors as fp16, split into chunks",
        "bytes": len(data),
        "chunks": chunks,
        "config": config,
        "history": history or [],
    }
    write_text_atomic(out_dir / MANIFEST, json.dumps(manifest, indent=1) + "\n")
    return manifest


def load_chunks(folder: Path) -> tuple[dict[str, torch.Tensor], dict]:
    """The fp32 state dict and the manifest of the chunks in ``folder``, every chunk checked."""
    path = folder / MANIFEST
    if not path.is_file():
        raise ModelError(f"{folder} holds no {MANIFEST}; is it the output of a device run?")
    manifest = json.loads(path.read_text())
    parts = []
    for chunk in manifest["chunks"]:
        file = folder / chunk["file"]
        if not file.is_file():
            raise ModelError(f"{file} is missing; copy every weights.NNN file of the run")
        data = file.read_bytes()
        if sha256_bytes(data) != chunk["sha256"]:
            raise ModelError(f"{file} does not match its sha256 in {MANIFEST}; copy it again")
        parts.append(data)
    state = torch.load(io.BytesIO(b"".join(parts)), map_location="cpu", weights_only=True)
    return {k: (v.float() if v.is_floating_point() else v) for k, v in state.items()}, manifest


def assemble_checkpoint(folder: Path, out: Path) -> Path:
    """A training checkpoint (``nuclick export --checkpoint``) from a device run's chunks."""
    state, manifest = load_chunks(folder)
    history = manifest.get("history", [])
    best = max((h.get("val_dice", -1.0) for h in history), default=-1.0)
    checkpoint = {
        "model": state,
        "config": manifest["config"],
        "epoch": max(len(history) - 1, 0),
        "best": best,
        "history": history,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    torch.save(checkpoint, buf)
    write_bytes_atomic(out, buf.getvalue())
    return out
