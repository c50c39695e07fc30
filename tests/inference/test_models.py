"""Model cards and ONNX files that a run cannot use are refused with the file and the fix
(#13, defect 6), never with a traceback from deep inside the run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from nuclick_core.errors import ModelError
from nuclick_core.inference.models import load_card
from nuclick_core.io.files import sha256_file


def _copy(tiny_model: Path, tmp_path: Path) -> Path:
    model = tmp_path / "m"
    shutil.copytree(tiny_model, model)
    return model


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("mpp", 0, "mpp 0.0 must be a positive number"),
        ("mpp", "abc", "lacks or mistypes a field"),
        ("mpp", float("nan"), "mpp nan must be a positive number"),
        ("patch_size", 100, "patch_size 100 must be a positive multiple of 32"),
        ("patch_size", 0, "patch_size 0 must be a positive multiple of 32"),
        ("object_type", "mitosis", "object_type 'mitosis' must be one of"),
    ],
)
def test_card_values_a_run_cannot_use_are_refused(
    tiny_model, tmp_path, field, value, message
) -> None:
    model = _copy(tiny_model, tmp_path)
    card = json.loads((model / "model.json").read_text())
    card[field] = value
    (model / "model.json").write_text(json.dumps(card))
    with pytest.raises(ModelError, match=r"model\.json") as info:
        load_card(model)
    assert message in str(info.value)


def test_a_corrupt_onnx_file_whose_hash_matches_its_card_is_a_clear_error(
    tiny_model, tmp_path
) -> None:
    from nuclick_core.inference.runtime import OnnxPredictor

    model = _copy(tiny_model, tmp_path)
    onnx = model / "model.onnx"
    onnx.write_bytes(onnx.read_bytes()[:500])  # truncated, as by an interrupted copy
    card = json.loads((model / "model.json").read_text())
    card["sha256"] = sha256_file(onnx)
    (model / "model.json").write_text(json.dumps(card))
    with pytest.raises(ModelError, match=r"model\.onnx: ONNX Runtime cannot load it"):
        OnnxPredictor(load_card(model), threads=1)
