"""The training recipe: one validated description, the same defaults as the config schema."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from nuclick_core.cli.main import main
from nuclick_core.errors import ConfigError
from nuclick_core.training import run as training_run
from nuclick_core.training.recipe import (
    OTHER_STEPS_KEYS,
    RECIPE_FORMATS,
    TrainRecipe,
    read_recipe_json,
    recipe_defaults,
)

REPO = Path(__file__).resolve().parents[2]
SCHEMA = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
RECIPE_SCHEMA = SCHEMA["properties"]["train"]["additionalProperties"]["properties"]


def test_schema_defaults_are_the_recipe_defaults() -> None:
    defaults = recipe_defaults()
    schema_defaults = {k: v["default"] for k, v in RECIPE_SCHEMA.items() if "default" in v}
    for key, value in schema_defaults.items():
        if key in defaults:
            assert defaults[key] == value, key
    assert set(RECIPE_SCHEMA["format"]["enum"]) == set(RECIPE_FORMATS)
    # every schema key is a recipe key or one the later steps use
    assert set(RECIPE_SCHEMA) <= set(defaults) | {"data", "val_names"} | set(OTHER_STEPS_KEYS)


def test_the_shipped_recipes_are_valid() -> None:
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    for name, values in config["train"].items():
        recipe = TrainRecipe.from_mapping(values, where=f"train.{name}")
        assert recipe.val_names == tuple(values["val_names"])


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"data": "d", "val_names": ["a"], "epoch": 3}, "unknown key(s) ['epoch']"),
        ({"data": "d"}, "missing ['val_names']"),
        ({"data": "d", "val_names": ["a"], "epochs": 2.5}, "epochs = 2.5 must be an integer"),
        ({"data": "d", "val_names": ["a"], "lr": "fast"}, "lr = 'fast' must be a number"),
        ({"data": "d", "val_names": ["a"], "near_miss": 2}, "near_miss = 2.0 must be in [0, 1]"),
        ({"data": "d", "val_names": [], "epochs": 1}, "val_names = () must be at least one"),
        ({"data": "d", "val_names": ["a"], "image_offset": [1]}, "image_offset = [1] must be"),
        ({"data": "d", "val_names": ["a"], "format": "coco"}, "format = 'coco' must be one of"),
        (
            {"data": "d", "val_names": ["a"], "format": "cells", "downscale": 2},
            "not to format cells",
        ),
    ],
)
def test_bad_recipes_name_the_key_and_the_fix(values, message) -> None:
    with pytest.raises(ConfigError, match=None) as info:
        TrainRecipe.from_mapping(values, where="config.yaml train.nucleus")
    assert message in str(info.value) and "config.yaml train.nucleus" in str(info.value)


def test_recipe_json_from_text_or_file(tmp_path) -> None:
    values = {"data": "d", "val_names": ["a"]}
    path = tmp_path / "r.json"
    path.write_text(json.dumps(values))
    assert read_recipe_json(json.dumps(values)) == read_recipe_json(str(path)) == values
    with pytest.raises(ConfigError, match="not valid JSON"):
        read_recipe_json("{data")
    with pytest.raises(ConfigError, match="a JSON object, not list"):
        read_recipe_json("[1]")


def test_cli_flags_override_the_recipe(tmp_path, monkeypatch) -> None:
    seen = {}

    def fake(recipe, out, **kwargs):
        seen.update(recipe=recipe, out=out, **kwargs)
        return out / "best.pt"

    monkeypatch.setattr(training_run, "train_from_recipe", fake)
    recipe = {"data": "d", "val_names": ["a", "b"], "epochs": 3, "mpp": 0.25, "card": "c.json"}
    flags = ["--epochs", "5", "--lr", "1e-3", "--out", str(tmp_path), "--threads", "1"]
    code = main(["train", "--recipe", json.dumps(recipe), *flags])
    assert code == 0
    got = seen["recipe"]
    assert (got.epochs, got.lr, got.val_names, got.data) == (5, 1e-3, ("a", "b"), "d")
    assert got.steps_per_epoch == recipe_defaults()["steps_per_epoch"]
    assert seen["threads"] == 1


def test_cli_train_without_data_is_a_clear_error(tmp_path, caplog) -> None:
    assert main(["train", "--val-names", "a", "--out", str(tmp_path)]) == 2
    assert "missing ['data']" in caplog.text


def test_train_runs_a_recipe_from_json_end_to_end(tmp_path) -> None:
    """The train rule's call: nuclick train --recipe JSON on a folder dataset."""
    pytest.importorskip("torch")
    import torch

    from nuclick_core.data.synth import nuclei_scene, scene_to_png

    for name, seed in (("a", 0), ("b", 1)):
        (tmp_path / "data" / "images").mkdir(parents=True, exist_ok=True)
        (tmp_path / "data" / "labels").mkdir(exist_ok=True)
        scene_to_png(
            nuclei_scene(size=(96, 96), n_nuclei=8, seed=seed),
            tmp_path / "data" / "images" / f"{name}.png",
            tmp_path / "data" / "labels" / f"{name}.png",
        )
    recipe = {
        "data": str(tmp_path / "data"),
        "format": "folder",
        "val_names": ["b"],
        "width": 0.0625,
        "patch_size": 64,
        "batch_size": 2,
        "epochs": 1,
        "steps_per_epoch": 2,
        "val_objects": 4,
        "image_offset": [-0.5, -0.5],
        "mpp": 0.25,  # for export, ignored by training
    }
    out = tmp_path / "ckpt"
    assert main(["train", "--recipe", json.dumps(recipe), "--threads", "1", "--out", str(out)]) == 0
    state = torch.load(out / "best.pt", map_location="cpu", weights_only=False)
    cfg = state["config"]
    assert (cfg["width"], cfg["patch_size"], cfg["steps_per_epoch"]) == (0.0625, 64, 2)
    assert cfg["extra"]["train_images"] == ["a"] and cfg["extra"]["val_images"] == ["b"]
    assert cfg["extra"]["image_offset"] == [-0.5, -0.5]
