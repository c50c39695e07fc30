"""A training recipe: the one description of a training run, validated here for every caller.

``nuclick train`` builds a :class:`TrainRecipe` from its flags, from ``--recipe JSON`` (what the
workflow's train rule passes: the config's ``train.<object>`` mapping) or both (flags win);
:func:`nuclick_core.training.run.train_from_recipe` runs it. The defaults here are the config
schema's (``workflow/schemas/config.schema.yaml``, checked by a test). This module imports no
torch, so the CLI can build its parser from it.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from nuclick_core.data.datasets import FORMATS
from nuclick_core.errors import ConfigError
from nuclick_core.io.status import OBJECTS

#: How the weighted BCE of equation 1 is normalised (see training.train.nuclick_loss).
BCE_NORMS = ("pixels", "weights")
#: Dataset formats a recipe may name: the image datasets plus segmented cells (canvases).
RECIPE_FORMATS = (*FORMATS, "cells")
#: Keys of the config's ``train.<object>`` that other steps use (export, evaluation, the gate);
#: accepted in a recipe and ignored by training.
OTHER_STEPS_KEYS = (
    "mpp",
    "card",
    "threshold",
    "min_size",
    "min_hole",
    "click_tolerance",
    "promote_metric",
)


@dataclass(frozen=True)
class TrainRecipe:
    """Everything that decides what a training run learns (not where or how fast it runs)."""

    data: str
    val_names: tuple[str, ...]
    object: str = "nucleus"
    format: str = "folder"
    width: float = 0.25
    patch_size: int = 128
    batch_size: int = 16
    epochs: int = 14
    steps_per_epoch: int = 450
    lr: float = 3e-3
    weight_decay: float = 5e-5
    seed: int = 0
    val_objects: int = 512
    click_inner: float = 0.3
    near_miss: float = 0.0
    near_miss_px: float = 5.0
    downscale: float = 1.0
    image_offset: tuple[float, float] = (0.0, 0.0)
    alpha_max: float | None = None
    bce_norm: str = "pixels"
    stain_aug: float = 0.0
    quality_aug: float = 0.0
    scale_aug: float = 0.0
    hue_aug: float = 0.0
    sharpen_aug: float = 0.0
    canvas_variety: float = 0.0
    gland_strokes: float = 0.0
    canvases: int = 400
    init: str | None = None

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], *, where: str = "recipe") -> TrainRecipe:
        """A recipe from a mapping (JSON, YAML config, CLI flags), checked key by key.

        Raises
        ------
        ConfigError
            Naming ``where``, the key, the value that arrived and what it should be.
        """
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(values) - set(known) - set(OTHER_STEPS_KEYS))
        if unknown:
            raise ConfigError(
                f"{where}: unknown key(s) {unknown}; a training recipe takes "
                f"{', '.join(sorted(known))} (and {', '.join(OTHER_STEPS_KEYS)} for later steps)"
            )
        missing = [n for n in ("data", "val_names") if n not in values]
        if missing:
            raise ConfigError(
                f"{where}: missing {missing}; name the dataset and its validation images"
            )
        kwargs = {name: _check(name, values[name], where) for name in known if name in values}
        recipe = cls(**kwargs)
        recipe._check_ranges(where)
        return recipe

    def _check_ranges(self, where: str) -> None:
        rules = [
            (self.object in OBJECTS, "object", f"one of {', '.join(OBJECTS)}"),
            (self.format in RECIPE_FORMATS, "format", f"one of {', '.join(RECIPE_FORMATS)}"),
            (len(self.val_names) > 0, "val_names", "at least one validation image"),
            (self.width > 0, "width", "positive"),
            (self.patch_size >= 32, "patch_size", "at least 32"),
            (self.batch_size >= 1, "batch_size", "at least 1"),
            (self.epochs >= 1, "epochs", "at least 1"),
            (self.steps_per_epoch >= 1, "steps_per_epoch", "at least 1"),
            (self.lr > 0, "lr", "positive"),
            (self.val_objects >= 1, "val_objects", "at least 1"),
            (0 <= self.click_inner <= 1, "click_inner", "in [0, 1]"),
            (0 <= self.near_miss <= 1, "near_miss", "in [0, 1]"),
            (self.near_miss_px > 0, "near_miss_px", "positive"),
            (self.downscale >= 1, "downscale", "at least 1"),
            (self.alpha_max is None or self.alpha_max >= 1, "alpha_max", "at least 1"),
            (self.bce_norm in BCE_NORMS, "bce_norm", f"one of {', '.join(BCE_NORMS)}"),
            (0 <= self.stain_aug <= 1, "stain_aug", "a probability in [0, 1]"),
            (0 <= self.quality_aug <= 1, "quality_aug", "a probability in [0, 1]"),
            (
                0 <= self.scale_aug <= 1,
                "scale_aug",
                "in [0, 1] (0.3: patches 1.3x larger or smaller)",
            ),
            (0 <= self.hue_aug <= 1, "hue_aug", "a probability in [0, 1]"),
            (0 <= self.sharpen_aug <= 1, "sharpen_aug", "a probability in [0, 1]"),
            (0 <= self.canvas_variety <= 1, "canvas_variety", "a fraction in [0, 1]"),
            (0 <= self.gland_strokes <= 1, "gland_strokes", "a probability in [0, 1]"),
            (self.canvases >= 1, "canvases", "at least 1"),
        ]
        for ok, name, need in rules:
            if not ok:
                raise ConfigError(f"{where}: {name} = {getattr(self, name)!r} must be {need}")
        if self.format == "cells" and (self.downscale != 1 or self.image_offset != (0.0, 0.0)):
            raise ConfigError(
                f"{where}: downscale and image_offset apply to image datasets, not to format cells"
            )


def read_recipe_json(text: str, *, where: str = "--recipe") -> dict[str, Any]:
    """The mapping of a recipe given as JSON text, or as the path of a JSON file (checked by
    :meth:`TrainRecipe.from_mapping` once merged with any flags)."""
    if not text.lstrip().startswith("{") and Path(text).is_file():
        where, text = text, Path(text).read_text()
    try:
        values = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        example = '{"data": "DIR", "val_names": ["img1"]}'
        raise ConfigError(
            f"{where}: not valid JSON ({exc}); pass an object such as '{example}'"
        ) from None
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: a recipe is a JSON object, not {type(values).__name__}")
    return values


def _check(name: str, value: Any, where: str) -> Any:
    """``value`` converted to the type of recipe field ``name``, or a ConfigError."""

    def bad(need: str) -> ConfigError:
        return ConfigError(f"{where}: {name} = {value!r} must be {need}")

    if name in ("data", "object", "format", "bce_norm"):
        if not isinstance(value, str) or not value:
            raise bad("a non-empty string")
        return value
    if name == "init":
        if value is not None and not isinstance(value, str):
            raise bad("a checkpoint, a model.onnx, a model folder or name, or null")
        return value
    if name == "val_names":
        if isinstance(value, str):
            value = [v for v in value.split(",") if v]
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise bad("a list of image names")
        return tuple(value)
    if name == "image_offset":
        if (
            not isinstance(value, (list, tuple))
            or len(value) != 2
            or not all(_is_number(v) for v in value)
        ):
            raise bad("[dx, dy] in pixels")
        return (float(value[0]), float(value[1]))
    if name == "alpha_max" and value is None:
        return None
    kind = {f.name: f.type for f in fields(TrainRecipe)}[name]
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad("an integer")
        return value
    if not _is_number(value):
        raise bad("a number")
    return float(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value)


def recipe_defaults() -> dict[str, Any]:
    """The default of every recipe key that has one (JSON-ready)."""
    out = {}
    for f in fields(TrainRecipe):
        if f.default is not dataclasses.MISSING:
            out[f.name] = list(f.default) if isinstance(f.default, tuple) else f.default
    return out
