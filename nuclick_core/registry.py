"""The model registry and the promotion gate for scheduled retraining.

``models/registry.json`` holds ``current`` (object type -> model name) and ``history`` (every
decision, promoted or not, with its reason and figures). A candidate replaces the current model
only when both were evaluated on the same evaluation set and the candidate beats the current
model by the configured margin on the chosen metric, in the metric's own direction (higher AJI,
Dice, PQ, object Dice, F1; lower object Hausdorff, see
:data:`nuclick_core.evaluation.metrics.HIGHER_IS_BETTER`). The registry is rewritten atomically
(:func:`nuclick_core.io.files.atomic_path`) and model folders are never deleted, so a rollback is
a registry change only.

May import: ``nuclick_core.evaluation``, ``nuclick_core.inference``, ``nuclick_core.io`` and
``nuclick_core.errors`` (never ``training`` or ``cli``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from nuclick_core.errors import ConfigError, ModelError
from nuclick_core.evaluation.metrics import HIGHER_IS_BETTER
from nuclick_core.inference.models import load_card, read_registry, registry_path
from nuclick_core.io.files import read_json_object, write_text_atomic


@dataclass(frozen=True)
class Decision:
    promoted: bool
    object_type: str
    candidate: str
    current: str | None
    metric: str
    candidate_value: float | None
    current_value: float | None
    margin: float
    reason: str
    #: direction-adjusted difference per set (clean and each shifted set), when compared so
    per_set: dict[str, float] | None = None


def _write_registry(models_dir: Path, registry: dict) -> None:
    write_text_atomic(registry_path(models_dir), json.dumps(registry, indent=2) + "\n")


def read_figures(path: Path | str) -> dict:
    """The figures JSON written by ``nuclick evaluate``."""
    return read_json_object(path, fix="run nuclick evaluate to write it", error=ModelError)


def _sets(figures: dict, metric: str) -> dict[str, float] | None:
    """``metric`` on the clean set and each shifted set, or None without shifted sets."""
    shifted = figures.get("robustness")
    if not shifted or metric not in figures.get("main", {}):
        return None
    out = {"clean": float(figures["main"][metric])}
    for name, values in shifted.items():
        if metric not in values:
            return None
        out[name] = float(values[metric])
    return out


def _evaluation_set(figures: dict) -> tuple:
    data = figures.get("data", {})
    offset = tuple(data.get("image_offset", (0.0, 0.0)))
    return (tuple(data.get("images", [])), data.get("mpp"), data.get("format"), offset)


def decide(
    candidate_figures: dict,
    current_figures: dict | None,
    *,
    object_type: str,
    candidate: str,
    current: str | None,
    metric: str = "aji",
    margin: float = 0.005,
    max_drop: float = 0.02,
) -> Decision:
    """Whether ``candidate`` should replace ``current``; pure, no disk access.

    ``*_figures`` are the JSON figures written by ``nuclick evaluate`` (``main`` holds the
    headline metrics, ``robustness`` the shifted sets; ``data`` names the evaluation set).

    The rule, when both figures hold the same shifted sets: the candidate wins when its gain on
    ``metric`` (in the metric's direction), averaged over the clean set and every shifted set,
    is at least ``margin``, and it loses no more than ``max_drop`` on any one set. So a robust
    model is not rejected for a small clean-set loss, and a brittle one (a collapse on one
    shift) is not promoted for a clean-set gain. Without shifted sets on both sides (figures
    from before the yardstick), the clean set alone is compared, by ``margin``.
    """
    if metric not in HIGHER_IS_BETTER:
        raise ConfigError(f"unknown metric {metric!r}; choose one of {', '.join(HIGHER_IS_BETTER)}")
    sign = 1.0 if HIGHER_IS_BETTER[metric] else -1.0  # gains are measured in the good direction
    cand_value = candidate_figures.get("main", {}).get(metric)
    if cand_value is None:
        raise ModelError(f"candidate figures have no main.{metric}; run nuclick evaluate first")

    def make(promoted: bool, reason: str, cur_value: float | None = None) -> Decision:
        return Decision(
            promoted, object_type, candidate, current, metric, cand_value, cur_value, margin, reason
        )

    if current is None:
        return make(True, f"no current {object_type} model: the candidate becomes current")
    if current_figures is None:
        return make(
            False,
            f"no evaluation of the current model {current}; evaluate it on the "
            "same set before promoting",
        )
    cur_value = current_figures.get("main", {}).get(metric)
    if cur_value is None:
        return make(False, f"current model's figures have no main.{metric}")
    if _evaluation_set(candidate_figures) != _evaluation_set(current_figures):
        return make(
            False,
            "candidate and current were evaluated on different sets "
            f"({_evaluation_set(candidate_figures)} vs "
            f"{_evaluation_set(current_figures)}); figures are not comparable",
            cur_value,
        )
    direction = "higher" if sign > 0 else "lower"
    cand_sets, cur_sets = _sets(candidate_figures, metric), _sets(current_figures, metric)
    if cand_sets and cur_sets and cand_sets.keys() == cur_sets.keys():
        per_set = {k: sign * (cand_sets[k] - cur_sets[k]) for k in cand_sets}
        gain = sum(per_set.values()) / len(per_set)
        worst = min(per_set, key=lambda k: per_set[k])
        summary = (
            f"{metric} over the clean and {len(per_set) - 1} shifted sets: mean gain "
            f"{gain:+.4f} ({direction} is better; margin {margin}), worst set {worst} "
            f"{per_set[worst]:+.4f} (allowed {-max_drop:+.4f})"
        )
        promoted = gain >= margin and gain > 0 and per_set[worst] >= -max_drop
        verdict = "beats the current model" if promoted else "does not beat the current model"
        return dataclasses.replace(
            make(promoted, f"{verdict}: {summary}", cur_value), per_set=per_set
        )
    gain = sign * (cand_value - cur_value)
    if gain >= margin and gain > 0:
        return make(
            True,
            f"{metric} {cand_value:.4f} beats the current {cur_value:.4f} by "
            f"{gain:+.4f} ({direction} is better; margin {margin})",
            cur_value,
        )
    return make(
        False,
        f"{metric} {cand_value:.4f} does not beat the current {cur_value:.4f} by "
        f"the margin {margin} (gain {gain:+.4f}; {direction} is better)",
        cur_value,
    )


def promote(
    candidate_dir: Path,
    candidate_figures: dict,
    current_figures: dict | None,
    *,
    models_dir: Path,
    metric: str = "aji",
    margin: float = 0.005,
    max_drop: float = 0.02,
) -> Decision:
    """Apply :func:`decide` and record it; the registry's ``current`` changes only on promotion.

    The candidate must live in ``models_dir`` (the registry names models, not paths) and its
    figures must be of this very model (sha256).
    """
    card = load_card(candidate_dir)
    if candidate_dir.resolve().parent != models_dir.resolve():
        raise ModelError(f"candidate {candidate_dir} must be a folder directly under {models_dir}")
    if candidate_figures.get("model", {}).get("sha256") != card.sha256:
        raise ModelError(
            f"the candidate figures are not of {candidate_dir} (sha256 differs); "
            "evaluate this model"
        )
    registry = read_registry(models_dir)
    current = registry.get("current", {}).get(card.object_type)
    if current is not None and current_figures is not None:
        cur_card = load_card(models_dir / current, verify=False)
        if current_figures.get("model", {}).get("sha256") != cur_card.sha256:
            raise ModelError(f"the current-model figures are not of {current} (sha256 differs)")
    decision = decide(
        candidate_figures,
        current_figures,
        object_type=card.object_type,
        candidate=candidate_dir.name,
        current=current,
        metric=metric,
        margin=margin,
        max_drop=max_drop,
    )
    registry.setdefault("current", {})
    registry.setdefault("history", [])
    if decision.promoted:
        registry["current"][card.object_type] = candidate_dir.name
    registry["history"].append(
        {
            "time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "action": "promote" if decision.promoted else "reject",
            **asdict(decision),
        }
    )
    _write_registry(models_dir, registry)
    return decision


def rollback(object_type: str, *, models_dir: Path) -> str:
    """Undo the last promotion not yet undone: make the model that was current before it current
    again (a second rollback goes one promotion further back)."""
    registry = read_registry(models_dir)
    current = registry.get("current", {}).get(object_type)
    before: list[str | None] = []  # the model each standing promotion replaced
    for h in registry.get("history", []):
        if h.get("object_type") != object_type:
            continue
        if h.get("action") == "promote":
            before.append(h.get("current"))
        elif h.get("action") == "rollback" and before:
            before.pop()
    if not before or before[-1] is None:
        raise ModelError(
            f"no earlier {object_type} model to roll back to ({current} is the first promoted); "
            "promote another model instead"
        )
    previous = before[-1]
    if not (models_dir / previous / "model.onnx").exists():
        raise ModelError(f"previous model {previous} is no longer in {models_dir}")
    registry["current"][object_type] = previous
    registry["history"].append(
        {
            "time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "action": "rollback",
            "object_type": object_type,
            "candidate": previous,
            "current": current,
            "reason": f"rolled back from {current} to {previous}",
        }
    )
    _write_registry(models_dir, registry)
    return previous
