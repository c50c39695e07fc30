"""Promotion gate: the registry changes only when a candidate beats the current model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from nuclick_core.cli.main import main
from nuclick_core.errors import ConfigError, ModelError
from nuclick_core.evaluation.metrics import GLAND_FIGURES, HIGHER_IS_BETTER, METRICS
from nuclick_core.inference.models import load_card, read_registry
from nuclick_core.registry import decide, promote, rollback

SET = {"images": ["a", "b"], "mpp": 0.25, "format": "folder"}


def _model(models_dir, name, tiny_model):
    shutil.copytree(tiny_model, models_dir / name)
    card = json.loads((models_dir / name / "model.json").read_text())
    card["name"] = name
    (models_dir / name / "model.json").write_text(json.dumps(card))
    return models_dir / name


def _figures(model_dir, aji, data=SET):
    return {"main": {"aji": aji}, "data": data, "model": {"sha256": load_card(model_dir).sha256}}


@pytest.mark.parametrize(
    ("cand", "cur", "margin", "promoted"),
    [
        (0.80, 0.79, 0.005, True),
        (0.80, 0.798, 0.005, False),
        (0.79, 0.80, 0.0, False),
        (0.80, 0.80, 0.0, False),
    ],
)
def test_decide_margin(cand, cur, margin, promoted) -> None:
    d = decide(
        {"main": {"aji": cand}, "data": SET},
        {"main": {"aji": cur}, "data": SET},
        object_type="nucleus",
        candidate="new",
        current="old",
        margin=margin,
    )
    assert d.promoted is promoted
    assert ("beats" in d.reason) is promoted


@pytest.mark.parametrize(
    "other",
    [
        {**SET, "images": ["c"]},
        {**SET, "image_offset": [-0.5, -0.5]},  # the same images moved onto their labels
    ],
)
def test_different_evaluation_sets_are_not_compared(other) -> None:
    d = decide(
        {"main": {"aji": 0.99}, "data": SET},
        {"main": {"aji": 0.1}, "data": other},
        object_type="nucleus",
        candidate="new",
        current="old",
    )
    assert not d.promoted and "different sets" in d.reason


def test_an_explicit_zero_offset_is_the_same_set() -> None:
    d = decide(
        {"main": {"aji": 0.9}, "data": {**SET, "image_offset": [0.0, 0.0]}},
        {"main": {"aji": 0.1}, "data": SET},  # written before offsets were recorded
        object_type="nucleus",
        candidate="new",
        current="old",
    )
    assert d.promoted


def test_registry_changes_only_on_promotion_and_rolls_back(tmp_path, tiny_model) -> None:
    models = tmp_path / "models"
    models.mkdir()
    old = _model(models, "old", tiny_model)
    better = _model(models, "better", tiny_model)
    worse = _model(models, "worse", tiny_model)
    d = promote(old, _figures(old, 0.70), None, models_dir=models)
    assert d.promoted and read_registry(models)["current"] == {"nucleus": "old"}

    before = (models / "registry.json").read_bytes()
    d = promote(worse, _figures(worse, 0.69), _figures(old, 0.70), models_dir=models)
    assert not d.promoted
    reg = read_registry(models)
    assert reg["current"] == {"nucleus": "old"}
    assert (
        reg["history"][-1]["action"] == "reject" and "does not beat" in reg["history"][-1]["reason"]
    )
    assert json.loads(before)["current"] == reg["current"]

    d = promote(better, _figures(better, 0.75), _figures(old, 0.70), models_dir=models)
    assert d.promoted and read_registry(models)["current"] == {"nucleus": "better"}
    assert (models / "old" / "model.onnx").exists()  # kept for rollback
    assert rollback("nucleus", models_dir=models) == "old"
    assert read_registry(models)["current"] == {"nucleus": "old"}
    assert not list(models.glob(".*.tmp"))  # atomic writes leave nothing behind


def test_figures_of_another_model_are_refused(tmp_path, tiny_model) -> None:
    models = tmp_path / "models"
    models.mkdir()
    cand = _model(models, "cand", tiny_model)
    with pytest.raises(ModelError, match="sha256"):
        promote(
            cand,
            {"main": {"aji": 0.9}, "data": SET, "model": {"sha256": "0" * 64}},
            None,
            models_dir=models,
        )
    assert not (models / "registry.json").exists()


def test_promote_cli(tmp_path, tiny_model, caplog) -> None:
    models = tmp_path / "models"
    models.mkdir()
    cand = _model(models, "cand", tiny_model)
    figs = tmp_path / "cand.json"
    figs.write_text(json.dumps(_figures(cand, 0.8)))
    out = tmp_path / "decision.json"
    assert (
        main(
            [
                "promote",
                "--candidate",
                str(cand),
                "--candidate-figures",
                str(figs),
                "--models-dir",
                str(models),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert json.loads(out.read_text())["promoted"] is True
    assert "PROMOTED" in caplog.text


@pytest.mark.parametrize(
    ("cand", "cur", "promoted"),
    [(30.0, 40.0, True), (40.0, 30.0, False), (39.999, 40.0, False)],
)
def test_a_lower_is_better_metric_promotes_the_lower_value(cand, cur, promoted) -> None:
    """Object Hausdorff is a distance: the candidate must be lower by the margin."""
    d = decide(
        {"main": {"object_hausdorff": cand}, "data": SET},
        {"main": {"object_hausdorff": cur}, "data": SET},
        object_type="gland",
        candidate="new",
        current="old",
        metric="object_hausdorff",
        margin=0.005,
    )
    assert d.promoted is promoted, d.reason
    assert "lower is better" in d.reason


def test_unknown_metric_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown metric 'ajj'"):
        decide({"main": {}}, None, object_type="nucleus", candidate="a", current=None, metric="ajj")


def test_one_list_of_metric_names() -> None:
    """The gate, the reports and the config schema's enums follow metrics.HIGHER_IS_BETTER."""
    schema = yaml.safe_load(
        (Path(__file__).resolve().parents[1] / "workflow/schemas/config.schema.yaml").read_text()
    )
    enum = schema["properties"]["promote"]["properties"]["metric"]["enum"]
    per_object = schema["properties"]["train"]["additionalProperties"]["properties"]
    assert enum == per_object["promote_metric"]["enum"] == list(HIGHER_IS_BETTER)
    assert set(METRICS) == set(HIGHER_IS_BETTER)
    assert set(GLAND_FIGURES) == set(HIGHER_IS_BETTER)


def _robust(clean: float, shifted: dict[str, float]) -> dict:
    return {
        "main": {"aji": clean},
        "robustness": {k: {"aji": v} for k, v in shifted.items()},
        "data": SET,
    }


@pytest.mark.parametrize(
    ("cand", "cur", "promoted", "why"),
    [
        # a small clean-set loss, large gains under shift: robust, promoted
        ((0.745, {"blur": 0.70, "jpeg": 0.72}), (0.75, {"blur": 0.60, "jpeg": 0.70}), True, "mean"),
        # a clean-set gain, but a collapse under one shift: brittle, not promoted
        (
            (0.78, {"blur": 0.55, "jpeg": 0.78}),
            (0.75, {"blur": 0.60, "jpeg": 0.70}),
            False,
            "worst set blur",
        ),
        # gains everywhere but under the margin on average
        (
            (0.752, {"blur": 0.602, "jpeg": 0.702}),
            (0.75, {"blur": 0.60, "jpeg": 0.70}),
            False,
            "mean",
        ),
    ],
)
def test_gate_compares_clean_and_shifted_sets_together(cand, cur, promoted, why) -> None:
    d = decide(
        _robust(*cand),
        _robust(*cur),
        object_type="nucleus",
        candidate="new",
        current="old",
        margin=0.005,
        max_drop=0.02,
    )
    assert d.promoted is promoted, d.reason
    assert why in d.reason and "2 shifted sets" in d.reason
    assert set(d.per_set) == {"clean", "blur", "jpeg"}


def test_without_shifted_sets_on_both_sides_the_clean_set_decides() -> None:
    d = decide(
        _robust(0.76, {"blur": 0.2}),
        {"main": {"aji": 0.75}, "data": SET},
        object_type="nucleus",
        candidate="new",
        current="old",
    )
    assert d.promoted and d.per_set is None


def test_rollback_edges(tmp_path, tiny_model) -> None:
    """Nothing to roll back to, a second rollback, a deleted model folder (#13)."""
    models = tmp_path / "models"
    models.mkdir()
    a, b, c = (_model(models, n, tiny_model) for n in ("a", "b", "c"))
    with pytest.raises(ModelError, match="no earlier nucleus model"):
        rollback("nucleus", models_dir=models)  # no registry at all
    promote(a, _figures(a, 0.70), None, models_dir=models)
    with pytest.raises(ModelError, match="no earlier nucleus model"):
        rollback("nucleus", models_dir=models)  # a is the first promoted
    promote(b, _figures(b, 0.75), _figures(a, 0.70), models_dir=models)
    promote(c, _figures(c, 0.80), _figures(b, 0.75), models_dir=models)
    assert rollback("nucleus", models_dir=models) == "b"
    assert rollback("nucleus", models_dir=models) == "a"  # one promotion further back
    with pytest.raises(ModelError, match="no earlier nucleus model"):
        rollback("nucleus", models_dir=models)
    assert read_registry(models)["current"] == {"nucleus": "a"}
    promote(b, _figures(b, 0.75), _figures(a, 0.70), models_dir=models)
    shutil.rmtree(a)
    with pytest.raises(ModelError, match="previous model a is no longer in"):
        rollback("nucleus", models_dir=models)
    assert read_registry(models)["current"] == {"nucleus": "b"}


def test_a_gain_exactly_at_the_margin_promotes() -> None:
    d = decide(
        {"main": {"aji": 0.75}, "data": SET},
        {"main": {"aji": 0.5}, "data": SET},
        object_type="nucleus",
        candidate="new",
        current="old",
        margin=0.25,
    )
    assert d.promoted, d.reason
