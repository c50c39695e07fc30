"""The committed models: every folder in models/ loads, its ONNX file matches the sha256 of its
card, ONNX Runtime runs it at the card's patch size, and the registry names only these."""

from __future__ import annotations

import numpy as np
import pytest

from nuclick_core.inference.models import MODELS_DIR, load_card, read_registry
from nuclick_core.inference.runtime import OnnxPredictor

SHIPPED = sorted(p.parent.name for p in MODELS_DIR.glob("*/model.json"))


def test_there_are_shipped_models_and_the_registry_names_only_them() -> None:
    assert SHIPPED, f"no models under {MODELS_DIR}"
    current = read_registry(MODELS_DIR)["current"]
    assert set(current) == {"nucleus", "cell", "gland"}
    assert set(current.values()) <= set(SHIPPED)
    for object_type, name in current.items():
        assert load_card(MODELS_DIR / name).object_type == object_type


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_model_matches_its_card_and_runs(name: str) -> None:
    card = load_card(MODELS_DIR / name)  # verifies the sha256
    predictor = OnnxPredictor(card, threads=1)
    p = card.patch_size
    x = np.zeros((1, 5, p, p), np.float32)
    x[0, :3] = 0.8
    x[0, 3, p // 2, p // 2] = 1.0
    prob = predictor(x)
    assert prob.shape == (1, p, p)
    assert np.isfinite(prob).all() and prob.min() >= 0.0 and prob.max() <= 1.0
