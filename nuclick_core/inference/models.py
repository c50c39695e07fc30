"""Models on disk: folders, their cards and the registry's current model per object type.

A model is a folder ``models/<name>/`` with ``model.onnx`` and ``model.json`` (its card: object
type, patch size, mpp, post-processing, sha256 of the ONNX file, training and evaluation
records). ``models/registry.json`` names the current model per object type; the promotion
decisions that change it live in :mod:`nuclick_core.registry`.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from nuclick_core.errors import ModelError
from nuclick_core.inference.postprocess import PostprocessParams
from nuclick_core.io.files import read_json_object, sha256_file
from nuclick_core.io.status import OBJECTS

MODELS_DIR = Path(os.environ.get("NUCLICK_MODELS", Path(__file__).resolve().parents[2] / "models"))


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


def registry_path(models_dir: Path = MODELS_DIR) -> Path:
    return models_dir / "registry.json"


def _read_json(path: Path, what: str) -> dict:
    return read_json_object(path, fix=f"restore the {what} from version control", error=ModelError)


def read_registry(models_dir: Path = MODELS_DIR) -> dict:
    """The registry: ``current`` (object type -> model name) and ``history`` (decisions)."""
    path = registry_path(models_dir)
    if not path.exists():
        return {"current": {}, "history": []}
    return _read_json(path, "model registry")


def current_models(models_dir: Path = MODELS_DIR) -> dict[str, str]:
    """Object type -> the registry's current model name (empty when there is no registry)."""
    return dict(read_registry(models_dir).get("current", {}))


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


def _check_card(card: ModelCard, where: Path) -> None:
    """Values a run cannot use are refused here, naming the field, not deep in the run."""
    problems = []
    if not (math.isfinite(card.mpp) and card.mpp > 0):
        problems.append(f"mpp {card.mpp!r} must be a positive number of microns per pixel")
    if card.patch_size < 32 or card.patch_size % 32:
        problems.append(
            f"patch_size {card.patch_size} must be a positive multiple of 32 (the network pools "
            "five times)"
        )
    if card.object_type not in OBJECTS:
        problems.append(f"object_type {card.object_type!r} must be one of {list(OBJECTS)}")
    if card.tta < 1:
        problems.append(f"inference.tta {card.tta} must be at least 1")
    if not 0 < card.postprocess.threshold < 1:
        problems.append(f"postprocess.threshold {card.postprocess.threshold!r} must lie in (0, 1)")
    if problems:
        raise ModelError(f"{where}: " + "; ".join(problems) + "; fix the card or re-export")


def load_card(model_dir: Path, *, verify: bool = True) -> ModelCard:
    """Read ``model.json``; with ``verify`` check the ONNX file's sha256 against it."""
    raw = _read_json(model_dir / "model.json", "model card")
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
    except (KeyError, TypeError, ValueError, OverflowError) as exc:
        raise ModelError(f"{model_dir / 'model.json'} lacks or mistypes a field: {exc}") from exc
    _check_card(card, model_dir / "model.json")
    if verify and sha256_file(model_dir / "model.onnx") != card.sha256:
        raise ModelError(
            f"{model_dir / 'model.onnx'} does not match the sha256 in its model.json; "
            "re-export the model or restore the file"
        )
    return card
