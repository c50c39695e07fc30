"""Evaluate a model on images with ground truth, through the same engine users run.

Marks come from the ground truth (:mod:`nuclick_core.data.marks`): for nuclei and cells a click
at each object's centroid (optionally jittered); for glands a skeleton squiggle. Every image is
segmented by :func:`nuclick_core.inference.engine.segment_clicks`, the instance polygons are
rasterised back to a label image and compared with the ground truth. Figures are per-image
means (the MoNuSeg convention for AJI; GlaS also averages object Dice per image).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np

from nuclick_core.data.cell_canvases import read_cells, split_cells, validation_canvases
from nuclick_core.data.datasets import read_dataset
from nuclick_core.data.labelled import LabelledImage, memory_slide, shift_images
from nuclick_core.data.marks import MARK_SHIFTS, MARKS, ground_truth_marks
from nuclick_core.data.shifts import IMAGE_SHIFTS, MPP_SHIFTS, shift_items
from nuclick_core.errors import NuclickError
from nuclick_core.evaluation import metrics
from nuclick_core.inference.engine import ModelGeometry, segment_clicks
from nuclick_core.inference.models import ModelCard
from nuclick_core.inference.runtime import OnnxPredictor, Predictor
from nuclick_core.inference.stain import LabStats, card_target, normaliser, wants_normalisation
from nuclick_core.io import status
from nuclick_core.io.files import write_text_atomic
from nuclick_core.io.instances import label_mask
from nuclick_core.io.slides import Slide


@dataclass
class ImageResult:
    name: str
    figures: dict[str, float]
    pred: np.ndarray  # int32 (H, W) predicted labels (value = GT object index + 1)
    clicks: np.ndarray  # float (N, 2) level-0 (x, y) clicks used (glands: squiggle pixels)


def evaluate_image(
    item: LabelledImage,
    segment: Callable[[Slide, gpd.GeoDataFrame], gpd.GeoDataFrame],
    *,
    mpp: float,
    object_type: str = "nucleus",
    jitter_sigma: float = 0.0,
    seed: int = 0,
    mark_shift: str | None = None,
) -> ImageResult:
    """Segment one image from ground-truth marks (or their ``mark_shift``, see
    :data:`nuclick_core.data.marks.MARK_SHIFTS`) and score it against its labels."""
    marks, xy = ground_truth_marks(
        item.labels,
        object_type,
        jitter_sigma=jitter_sigma,
        seed=seed,
        source=f"{item.name} ground truth",
        shift=mark_shift,
    )
    table = segment(memory_slide(item, mpp), marks)
    pred = label_mask(table, item.labels.shape[1], item.labels.shape[0]).astype(np.int32)
    figures = {
        **score_labels(item.labels.astype(np.int32), pred, object_type),
        "objects": float(len(marks)),
        "ok": float((table["status"] == status.OK).sum()),
    }
    return ImageResult(item.name, figures, pred, xy)


def model_segmenter(
    predictor: Predictor,
    geom: ModelGeometry,
    *,
    batch_size: int = 16,
    exclusion: bool = True,
    overlap: str = "resolve",
    stain_target: LabStats | None = None,
) -> Callable[[Slide, gpd.GeoDataFrame], gpd.GeoDataFrame]:
    """A ``segment(slide, clicks)`` callable running the engine with these settings; with a
    ``stain_target`` each slide (image) is stain-normalised to it first."""

    def segment(slide: Slide, clicks: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
        if stain_target is not None:
            slide.colour = normaliser(slide, stain_target)
        return segment_clicks(
            slide,
            clicks,
            predictor,
            geom,
            batch_size=batch_size,
            exclusion=exclusion,
            overlap=overlap,
        ).table

    return segment


def mean_figures(results: list[ImageResult]) -> dict[str, float]:
    """Per-image mean of every figure (counts are summed)."""
    keys = results[0].figures.keys() if results else ()
    out = {}
    for k in keys:
        values = [r.figures[k] for r in results]
        out[k] = float(np.sum(values)) if k in ("objects", "ok") else float(np.mean(values))
    return out


JITTER_SIGMAS = {"nucleus": (1.0, 3.0, 5.0, 10.0), "cell": (5.0, 10.0, 25.0, 50.0)}


def baseline_segmenter(name: str) -> Callable[[LabelledImage, np.ndarray], np.ndarray]:
    """``run(item, clicks_xy) -> labels`` for a classical baseline fed the same clicks."""
    from nuclick_core.evaluation.baselines import BASELINES

    fn = BASELINES[name]

    def run(item: LabelledImage, xy: np.ndarray) -> np.ndarray:
        # baselines take pixel-index coordinates (x, y) of the seed pixel
        return fn(item.image, np.floor(xy))

    return run


#: Seed of the shifted sets (image jitter, random clicks, wobbly strokes): fixed, so a candidate
#: and the current model see the same shifted images and marks.
ROBUSTNESS_SEED = 7


def shifted_sets(object_type: str) -> list[str]:
    """The robustness yardstick's shifted sets for ``object_type``: image shifts, scale
    shifts, then the mark shifts of its kind of mark."""
    kind = "gland" if object_type == "gland" else "point"
    return [*IMAGE_SHIFTS, *MPP_SHIFTS, *MARK_SHIFTS[kind]]


def score_labels(true: np.ndarray, pred: np.ndarray, object_type: str = "nucleus") -> dict:
    """The figures of :func:`nuclick_core.evaluation.metrics.figures_for` ``object_type`` (AJI,
    AJI+, Dice, PQ/DQ/SQ; for glands also the GlaS object Dice, object Hausdorff and detection
    F1), from one shared contingency table."""
    return metrics.evaluate_all(true, pred, metrics.figures_for(object_type))


def run_evaluation(
    items: list[LabelledImage],
    predictor: Predictor,
    geom: ModelGeometry,
    *,
    mpp: float,
    object_type: str = "nucleus",
    batch_size: int = 16,
    experiments: bool = True,
    baselines: bool = True,
    robustness: bool = True,
    progress: Callable[[str], None] = print,
    stain_target: LabStats | None = None,
) -> tuple[dict, dict[str, list[ImageResult]]]:
    """Every figure of the evaluation report (the model's runs stain-normalised to
    ``stain_target`` when given).

    Returns
    -------
    (figures, results): ``figures`` is JSON-ready: ``main`` (centroid clicks, exclusion on,
    overlap resolution), ``per_image``, and when asked ``baselines``, ``jitter`` (by sigma),
    ``exclusion_off``, ``last_click_wins``, ``robustness`` (by shift, see
    :mod:`nuclick_core.evaluation.robustness`); ``results`` keeps the images' predictions per
    experiment for figures.
    """
    figures: dict = {}
    results: dict[str, list[ImageResult]] = {}

    def run(
        key: str,
        *,
        on: list[LabelledImage] | None = None,
        mpp_factor: float = 1.0,
        exclusion: bool = True,
        overlap: str = "resolve",
        **kw: Any,
    ) -> dict[str, float]:
        """Mean figures of one experiment: the engine with these settings over ``on`` (default:
        the clean images), the slide's mpp declared ``mpp_factor`` times too large."""
        seg = model_segmenter(
            predictor,
            geom,
            batch_size=batch_size,
            exclusion=exclusion,
            overlap=overlap,
            stain_target=stain_target,
        )
        res = [
            evaluate_image(it, seg, mpp=mpp * mpp_factor, object_type=object_type, **kw)
            for it in (items if on is None else on)
        ]
        results[key] = res
        out = mean_figures(res)
        progress(f"{key}: " + ", ".join(f"{k} {v:.4f}" for k, v in out.items()))
        return out

    figures["main"] = run("main")
    figures["per_image"] = {r.name: r.figures for r in results["main"]}
    if experiments:
        sigmas = JITTER_SIGMAS.get(object_type, ())  # glands: squiggles, no click jitter
        if sigmas:
            figures["jitter"] = {
                str(s): run(f"jitter_{s:g}", jitter_sigma=s, seed=1) for s in sigmas
            }
        figures["exclusion_off"] = run("exclusion_off", exclusion=False)
        figures["last_click_wins"] = run("last_click_wins", overlap="last_wins")
    if robustness:
        figures["robustness"] = {}
        for name in shifted_sets(object_type):
            if name in IMAGE_SHIFTS:
                out = run(f"shift_{name}", on=shift_items(items, name, seed=ROBUSTNESS_SEED))
            elif name in MPP_SHIFTS:
                out = run(f"shift_{name}", mpp_factor=MPP_SHIFTS[name])
            else:
                out = run(f"shift_{name}", mark_shift=name, seed=ROBUSTNESS_SEED)
            figures["robustness"][name] = out
    if baselines and object_type != "gland":  # the classical baselines take point seeds
        figures["baselines"] = {}
        for name in ("watershed", "region_growing", "active_contour"):
            seg_b = baseline_segmenter(name)
            per = []
            for it, main in zip(items, results["main"], strict=True):
                pred = seg_b(it, main.clicks)
                per.append(
                    ImageResult(
                        it.name,
                        score_labels(it.labels.astype(np.int32), pred, object_type),
                        pred,
                        main.clicks,
                    )
                )
            results[f"baseline_{name}"] = per
            figures["baselines"][name] = mean_figures(per)
            progress(
                f"baseline {name}: "
                + ", ".join(f"{k} {v:.4f}" for k, v in figures["baselines"][name].items())
            )
    return figures, results


def evaluation_items(
    data: Path,
    fmt: str,
    names: list[str] | None,
    *,
    image_offset: tuple[float, float] = (0.0, 0.0),
    canvases: int = 60,
    patch_size: int = 128,
) -> list[LabelledImage]:
    """The labelled images an evaluation runs on: the named images of a dataset (moved by
    ``image_offset`` onto their labels), or for ``fmt="cells"`` validation canvases blended
    from the held-out cells ``names``."""
    if fmt == "cells":
        if not names:
            raise NuclickError("--format cells needs --names: the held-out cells to blend")
        if image_offset != (0.0, 0.0):
            raise NuclickError("--image-offset applies to image datasets, not to --format cells")
        _, val_cells = split_cells(read_cells(data), names, data)
        return validation_canvases(val_cells, canvases, size=2 * patch_size)
    return shift_images(read_dataset(data, fmt, names), *image_offset)


def evaluate_model(
    card: ModelCard,
    items: list[LabelledImage],
    *,
    mpp: float,
    data: dict,
    batch_size: int = 16,
    threads: int = 0,
    tta: int | None = None,
    threshold: float | None = None,
    experiments: bool = True,
    baselines: bool = True,
    robustness: bool = True,
    command: str = "",
    progress: Callable[[str], None] = print,
    stain_normalise: str = "card",
) -> tuple[dict, dict[str, list[ImageResult]]]:
    """Every figure of a model's evaluation report on ``items``, with what was evaluated
    (``model``, ``data`` as given, ``inference`` settings, ``command``, ``seconds``);
    ``stain_normalise`` as for ``nuclick segment`` (each image normalised on its own)."""
    t0 = time.perf_counter()
    predictor = OnnxPredictor(card, batch_size=batch_size, threads=threads, tta=tta)
    target = card_target(card) if wants_normalisation(card, stain_normalise) else None
    geom = ModelGeometry.from_card(card)
    if threshold is not None:
        geom = dataclasses.replace(
            geom, postprocess=dataclasses.replace(geom.postprocess, threshold=threshold)
        )
    figures, results = run_evaluation(
        items,
        predictor,
        geom,
        mpp=mpp,
        object_type=card.object_type,
        batch_size=batch_size,
        experiments=experiments,
        baselines=baselines,
        robustness=robustness,
        progress=progress,
        stain_target=target,
    )
    figures["inference"] = {
        "tta": predictor.tta,
        "threshold": geom.postprocess.threshold,
        "stain_normalise": target is not None,
    }
    figures["model"] = {
        "name": card.name,
        "sha256": card.sha256,
        "path": str(card.path),
        "object_type": card.object_type,
    }
    figures["data"] = data
    figures["command"] = command
    figures["seconds"] = time.perf_counter() - t0
    return figures, results


def record_in_card(card: ModelCard, figures: dict) -> None:
    """Write the evaluation's figures into the model's ``model.json`` (key ``evaluation``)."""
    card_path = card.path / "model.json"
    raw = json.loads(card_path.read_text())
    raw["evaluation"] = {
        "data": figures["data"],
        "marks": MARKS["gland" if card.object_type == "gland" else "point"],
        "figures": figures["main"],
        "per_image": figures["per_image"],
        **{
            k: figures[k]
            for k in ("jitter", "exclusion_off", "last_click_wins", "baselines", "robustness")
            if k in figures
        },
        "command": figures["command"],
    }
    write_text_atomic(card_path, json.dumps(raw, indent=2) + "\n")
