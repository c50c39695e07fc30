"""Optional stain normalisation at inference: the colours of a slide moved to those of the
model's training images by Reinhard's method (Reinhard et al. 2001: each CIELAB channel's mean
and spread over the tissue matched to a target's), with scikit-image's LAB conversion.

The slide's statistics come from one overview of the whole slide (a pyramid level of at most
:data:`OVERVIEW_SIDE` pixels a side), so every tile is moved by the same transform and no seam
appears between tiles. The target is the model card's ``inference.stain_target`` (LAB mean and
standard deviation over its training images' tissue); ``inference.stain_normalise`` says
whether a run normalises by default (``nuclick segment --stain-normalise`` overrides it).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from skimage.color import lab2rgb, rgb2lab

from nuclick_core.errors import ModelError
from nuclick_core.inference.models import ModelCard
from nuclick_core.io.slides import Slide

#: Pixels lighter than this CIELAB lightness are glass or background, not tissue.
TISSUE_L = 90.0
#: Longest side, in pixels, of the overview a slide's statistics are measured on.
OVERVIEW_SIDE = 2048
CHOICES = ("card", "on", "off")

LabStats = tuple[np.ndarray, np.ndarray]


def lab_stats(rgb: np.ndarray) -> LabStats:
    """LAB mean and standard deviation over the tissue (L < :data:`TISSUE_L`) of uint8 RGB
    pixels (H, W, 3); over all pixels when fewer than 100 are tissue."""
    lab = rgb2lab(rgb)
    tissue = lab[..., 0] < TISSUE_L
    pixels = lab[tissue] if tissue.sum() > 100 else lab.reshape(-1, 3)
    return pixels.mean(0), np.maximum(pixels.std(0), 1e-6)


def reinhard(rgb: np.ndarray, source: LabStats, target: LabStats) -> np.ndarray:
    """uint8 RGB whose LAB channels, measured ``source``, are moved to ``target``."""
    lab = rgb2lab(rgb)
    moved = (lab - source[0]) / source[1] * target[1] + target[0]
    return np.clip(np.rint(lab2rgb(moved) * 255.0), 0, 255).astype(np.uint8)


def slide_overview(slide: Slide, side: int = OVERVIEW_SIDE) -> np.ndarray:
    """The whole slide as uint8 RGB of at most about ``side`` pixels a side (the finest pyramid
    level that small, then every k-th pixel)."""
    downs = slide.level_downsamples
    level = len(downs) - 1
    for i, d in enumerate(downs):
        if max(slide.width, slide.height) / d <= side:
            level = i
            break
    d = downs[level]
    w, h = int(np.ceil(slide.width / d)), int(np.ceil(slide.height / d))
    step = max(1, int(np.ceil(max(w, h) / side)))
    rows = []
    for r0 in range(0, h, 512 * step):  # strips, so a large level is never read whole
        strip = slide.read_level(level, 0, r0, w, min(512 * step, h - r0))
        rows.append(strip[::step, ::step])
    return np.concatenate(rows, axis=0)


def card_target(card: ModelCard) -> LabStats:
    """The model's stain target (``inference.stain_target``: ``lab_mean`` and ``lab_std``)."""
    target = card.raw.get("inference", {}).get("stain_target")
    try:
        mean = np.asarray(target["lab_mean"], float)
        std = np.asarray(target["lab_std"], float)
        if mean.shape != (3,) or std.shape != (3,) or not (std > 0).all():
            raise ValueError
    except (TypeError, KeyError, ValueError) as exc:
        raise ModelError(
            f"{card.path / 'model.json'}: stain normalisation needs inference.stain_target "
            '{"lab_mean": [L, a, b], "lab_std": [L, a, b]} (the LAB mean and spread over its '
            "training images' tissue); add it to the card or run with --stain-normalise off"
        ) from exc
    return mean, std


def wants_normalisation(card: ModelCard, choice: str) -> bool:
    """Whether a run normalises: ``choice`` ``on``/``off``, or ``card`` for the card's
    ``inference.stain_normalise`` (default false)."""
    if choice not in CHOICES:
        raise ValueError(f"stain normalisation must be one of {CHOICES}, got {choice!r}")
    if choice == "card":
        return bool(card.raw.get("inference", {}).get("stain_normalise", False))
    return choice == "on"


def normaliser(slide: Slide, target: LabStats) -> Callable[[np.ndarray], np.ndarray]:
    """The colour transform that moves this slide's tissue statistics to ``target``."""
    source = lab_stats(slide_overview(slide))
    return lambda rgb: reinhard(rgb, source, target)
