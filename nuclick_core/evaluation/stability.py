"""How much masks change when the clicks move: a check for slides without ground truth."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import geopandas as gpd
import numpy as np
import shapely

from nuclick_core.evaluation.evaluate import model_segmenter
from nuclick_core.inference.engine import ModelGeometry
from nuclick_core.inference.run import open_run
from nuclick_core.inference.runtime import OnnxPredictor
from nuclick_core.io import status
from nuclick_core.io.slides import Slide


def stability(
    slide: Slide,
    clicks: gpd.GeoDataFrame,
    segment: Callable[[Slide, gpd.GeoDataFrame], gpd.GeoDataFrame],
    *,
    sigmas: tuple[float, ...],
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """Agreement between masks from the original clicks and from jittered clicks (no ground
    truth needed): per click, IoU of the two instances (0 when only one exists).

    ``sigmas`` are in level-0 pixels. Returns, per sigma, the mean and median IoU and the share
    of clicks with IoU above 0.5, over the clicks whose original instance is ok.
    """
    points = clicks[clicks["kind"] == "point"].reset_index(drop=True)
    ref = segment(slide, points)
    ok = (ref["status"] == status.OK).to_numpy()
    out: dict[str, dict[str, float]] = {}
    rng = np.random.default_rng(seed)
    for sigma in sigmas:
        xy = np.column_stack([points.geometry.x, points.geometry.y])
        moved = points.copy()
        moved["geometry"] = gpd.points_from_xy(*(xy + rng.normal(0, sigma, xy.shape)).T)
        got = segment(slide, moved)
        a = ref.geometry.values[ok]
        b = got.geometry.values[ok]
        has_b = ~shapely.is_missing(b)
        iou = np.zeros(len(a))
        inter = shapely.area(shapely.intersection(a[has_b], b[has_b]))
        union = shapely.area(shapely.union(a[has_b], b[has_b]))
        iou[has_b] = inter / np.maximum(union, 1e-12)
        out[f"{sigma:g}"] = {
            "clicks": float(len(a)),
            "mean_iou": float(iou.mean()) if len(iou) else float("nan"),
            "median_iou": float(np.median(iou)) if len(iou) else float("nan"),
            "share_iou_over_0.5": float((iou > 0.5).mean()) if len(iou) else float("nan"),
        }
    return out


def slide_stability(
    slide: Path | str,
    annotations: Path | str,
    *,
    model: str | None = None,
    object_type: str = "nucleus",
    mpp: float | None = None,
    sigmas: tuple[float, ...] = (1.0, 3.0, 5.0),
    seed: int = 0,
    batch_size: int = 16,
    threads: int = 0,
) -> dict:
    """:func:`stability` of one slide's clicks with its model, as JSON-ready figures (the same
    model and object checks as ``nuclick segment``)."""
    with open_run(slide, annotations, model=model, object_type=object_type, mpp=mpp) as run:
        segment = model_segmenter(
            OnnxPredictor(run.card, batch_size=batch_size, threads=threads),
            ModelGeometry.from_card(run.card),
            batch_size=batch_size,
        )
        return {
            "slide": str(slide),
            "annotations": str(annotations),
            "model": {"name": run.card.name, "sha256": run.card.sha256},
            "sigma_unit": "level-0 pixels",
            "slide_mpp": run.slide.mpp,
            "stability": stability(
                run.slide, run.clicks.table(), segment, sigmas=sigmas, seed=seed
            ),
        }
