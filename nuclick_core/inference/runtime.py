"""Models on disk and ONNX Runtime sessions.

A model is a folder ``models/<name>/`` with ``model.onnx`` and ``model.json`` (its card). The
registry ``models/registry.json`` names the current model per object type. Inference needs only
ONNX Runtime, never torch.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from nuclick_core.errors import ModelError
from nuclick_core.inference.postprocess import PostprocessParams

log = logging.getLogger(__name__)

MODELS_DIR = Path(os.environ.get("NUCLICK_MODELS", Path(__file__).resolve().parents[2] / "models"))


#: (quarter turns, horizontal flip) for test-time augmentation, identity first.
DIHEDRAL = (
    (0, False),
    (0, True),
    (2, False),
    (2, True),
    (1, False),
    (1, True),
    (3, False),
    (3, True),
)


class Predictor(Protocol):
    """Maps a batch of 5-channel patches to foreground probabilities.

    ``__call__`` takes float32 (N, 5, P, P) and returns float32 (N, P, P) in [0, 1].
    """

    patch_size: int

    def __call__(self, batch: np.ndarray) -> np.ndarray: ...


@dataclass
class ModelCard:
    """What ``model.json`` says about a model (the fields inference needs, plus the rest)."""

    name: str
    path: Path
    object_type: str
    patch_size: int
    mpp: float
    postprocess: PostprocessParams
    sha256: str
    tta: int = 1
    raw: dict = field(default_factory=dict)


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def registry_path(models_dir: Path = MODELS_DIR) -> Path:
    return models_dir / "registry.json"


def read_registry(models_dir: Path = MODELS_DIR) -> dict:
    path = registry_path(models_dir)
    if not path.exists():
        return {"current": {}, "history": []}
    return json.loads(path.read_text())


def resolve_model(
    name_or_path: str | None, object_type: str, models_dir: Path = MODELS_DIR
) -> Path:
    """The model folder for ``name_or_path`` (a folder, a name under ``models_dir``) or, when
    None, the registry's current model for ``object_type``."""
    if name_or_path is None:
        current = read_registry(models_dir).get("current", {})
        if object_type not in current:
            raise ModelError(
                f"no current model for object type {object_type!r} in {registry_path(models_dir)};"
                " pass --model NAME_OR_PATH or promote a model"
            )
        name_or_path = current[object_type]
    candidate = Path(name_or_path)
    if candidate.is_file() and candidate.name == "model.onnx":
        candidate = candidate.parent
    if not (candidate / "model.json").exists():
        candidate = models_dir / str(name_or_path)
    if not (candidate / "model.json").exists() or not (candidate / "model.onnx").exists():
        raise ModelError(
            f"model {name_or_path!r} not found: need a folder with model.onnx and model.json "
            f"(looked in {Path(name_or_path)} and {models_dir / str(name_or_path)})"
        )
    return candidate


def load_card(model_dir: Path, *, verify: bool = True) -> ModelCard:
    """Read ``model.json``; with ``verify`` check the ONNX file's sha256 against it."""
    raw = json.loads((model_dir / "model.json").read_text())
    try:
        card = ModelCard(
            name=raw["name"],
            path=model_dir,
            object_type=raw["object_type"],
            patch_size=int(raw["patch_size"]),
            mpp=float(raw["mpp"]),
            postprocess=PostprocessParams(**raw["postprocess"]),
            sha256=raw["sha256"],
            tta=int(raw.get("inference", {}).get("tta", 1)),
            raw=raw,
        )
    except (KeyError, TypeError) as exc:
        raise ModelError(f"{model_dir / 'model.json'} lacks or mistypes a field: {exc}") from exc
    if verify and sha256_of(model_dir / "model.onnx") != card.sha256:
        raise ModelError(
            f"{model_dir / 'model.onnx'} does not match the sha256 in its model.json; "
            "re-export the model or restore the file"
        )
    return card


def allotted_cpus() -> int:
    """CPUs this process may use (affinity, which SLURM and cgroups set), not the machine's."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class OnnxPredictor:
    """ONNX Runtime session with a fixed batch size (the last batch is padded).

    Parameters
    ----------
    card : the model card.
    batch_size : patches per run.
    threads : intra-op threads; 0 means the CPUs allotted to this job.
    provider : ``"auto"`` (CUDA when available), ``"cuda"``, ``"tensorrt"`` or ``"cpu"``.
    tta : test-time augmentation views (1, 2, 4 or 8 flips/turns, averaged); None: the card's.
    """

    def __init__(
        self,
        card: ModelCard,
        *,
        batch_size: int = 16,
        threads: int = 0,
        provider: str = "auto",
        tta: int | None = None,
    ) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ModelError(
                "onnxruntime is not installed: pip install 'nuclick-wsi[cpu]' or '[gpu]'"
            ) from exc
        if batch_size < 1:
            raise ModelError(f"batch size must be at least 1, got {batch_size}")
        self.tta = card.tta if tta is None else tta
        if self.tta not in (1, 2, 4, 8):
            raise ModelError(f"test-time augmentation must be 1, 2, 4 or 8 views, got {self.tta}")
        self.card = card
        self.patch_size = card.patch_size
        self.batch_size = batch_size
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or allotted_cpus()
        opts.inter_op_num_threads = 1
        # The slide reader runs beside inference: idle ORT threads must not spin on its CPUs.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        available = ort.get_available_providers()
        wanted: list = []
        if provider == "tensorrt":
            if "TensorrtExecutionProvider" not in available:
                raise ModelError(
                    f"provider 'tensorrt' requested but ONNX Runtime offers only {available}; "
                    "install TensorRT for onnxruntime-gpu or use --provider cuda"
                )
            wanted.append("TensorrtExecutionProvider")
        if provider in ("auto", "cuda", "tensorrt") and "CUDAExecutionProvider" in available:
            wanted.append(("CUDAExecutionProvider", {"cudnn_conv_algo_search": "HEURISTIC"}))
        if provider in ("cuda", "tensorrt") and not wanted:
            raise ModelError(
                f"provider {provider!r} requested but ONNX Runtime offers only {available}; "
                "install onnxruntime-gpu (extra 'gpu') on a GPU node or use --provider cpu"
            )
        if len(wanted) and hasattr(ort, "preload_dlls"):
            try:  # lets pip's nvidia-* wheels supply CUDA and cuDNN when present
                ort.preload_dlls()
            except Exception as exc:
                log.debug("onnxruntime.preload_dlls failed: %s", exc)
        wanted.append("CPUExecutionProvider")
        self.session = ort.InferenceSession(
            str(card.path / "model.onnx"), sess_options=opts, providers=wanted
        )
        used = self.session.get_providers()
        if provider in ("cuda", "tensorrt") and used[0] == "CPUExecutionProvider":
            raise ModelError(
                f"CUDA could not be loaded (session providers: {used}). Check that the node's "
                "CUDA and cuDNN match the installed onnxruntime-gpu, that only onnxruntime-gpu "
                "(not also onnxruntime) is installed, and LD_LIBRARY_PATH; or use --provider cpu"
            )
        if len(wanted) > 1 and used[0] == "CPUExecutionProvider":
            log.warning("CUDA is offered by onnxruntime but could not be loaded; running on CPU")
        self.providers = used
        self.input_name = self.session.get_inputs()[0].name
        log.info("ONNX Runtime providers %s, %d threads", used, opts.intra_op_num_threads)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """Probabilities float32 (N, P, P); with test-time augmentation, the mean over the
        first ``tta`` dihedral transforms (each undone before averaging)."""
        if self.tta == 1:
            return self._run(batch)
        total = np.zeros((len(batch), self.patch_size, self.patch_size), np.float32)
        for k, flip in DIHEDRAL[: self.tta]:
            x = np.rot90(batch, k, axes=(2, 3))
            x = x[..., ::-1] if flip else x
            y = self._run(np.ascontiguousarray(x))
            y = y[..., ::-1] if flip else y
            total += np.rot90(y, -k, axes=(1, 2))
        return total / np.float32(self.tta)

    def _run(self, batch: np.ndarray) -> np.ndarray:
        n = len(batch)
        if n == 0:
            return np.zeros((0, self.patch_size, self.patch_size), np.float32)
        out = []
        for k in range(0, n, self.batch_size):
            part = batch[k : k + self.batch_size]
            if len(part) < self.batch_size:
                pad = np.zeros((self.batch_size - len(part), *part.shape[1:]), np.float32)
                part = np.concatenate([part, pad])
            prob = self.session.run(None, {self.input_name: part.astype(np.float32)})[0]
            out.append(prob[: min(self.batch_size, n - k), 0])
        return np.concatenate(out)
