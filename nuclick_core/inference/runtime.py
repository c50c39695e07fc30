"""The network at inference: the :class:`Predictor` protocol and its ONNX Runtime implementation.

Sessions get their thread count from the CPUs allotted to the job (not the machine's), a fixed
batch shape (the last batch is padded) and, when asked, test-time augmentation over flips and
turns. Inference needs only ONNX Runtime, never torch. Model folders and cards are read by
:mod:`nuclick_core.inference.models`.
"""

from __future__ import annotations

import logging
import os
from typing import Protocol

import numpy as np

from nuclick_core.errors import ModelError
from nuclick_core.inference.models import ModelCard

log = logging.getLogger(__name__)


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
        try:
            self.session = ort.InferenceSession(
                str(card.path / "model.onnx"), sess_options=opts, providers=wanted
            )
        except Exception as exc:  # InvalidProtobuf, Fail, ...: ONNX Runtime's own types
            raise ModelError(
                f"{card.path / 'model.onnx'}: ONNX Runtime cannot load it ({type(exc).__name__}: "
                f"{str(exc)[:200]}); the file is damaged or not an ONNX model (its sha256 matches "
                "the card, so the card was written for this file): re-export the model"
            ) from exc
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
