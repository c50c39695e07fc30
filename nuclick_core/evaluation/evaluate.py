"""Evaluate a model on images with ground truth, through the same engine users run.

Marks come from the ground truth: for nuclei and cells a click at each object's centroid
(optionally jittered); for glands a squiggle, the skeleton of the gland after thresholding its
distance transform at its mean (the middle of the training signal's range). Every image is
segmented by :func:`nuclick_core.inference.engine.segment_clicks`, the instance polygons are
rasterised back to a label image and compared with the ground truth. Figures are per-image
means (the MoNuSeg convention for AJI; GlaS also averages object Dice per image).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import shapely
from scipy import ndimage as ndi

from nuclick_core.evaluation import metrics, object_metrics
from nuclick_core.inference.engine import ModelGeometry, segment_clicks
from nuclick_core.inference.runtime import Predictor
from nuclick_core.inference.signals import gland_skeleton
from nuclick_core.io.annotations import click_table_from_points, squiggle_table
from nuclick_core.io.instances import label_mask
from nuclick_core.io.slides import Slide
from nuclick_core.training.click_patches import LabelledImage


@dataclass
class ImageResult:
    name: str
    figures: dict[str, float]
    pred: np.ndarray  # int32 (H, W) predicted labels (value = GT object index + 1)
    clicks: np.ndarray  # float (N, 2) level-0 (x, y) clicks used (glands: squiggle pixels)


def memory_slide(item: LabelledImage, mpp: float) -> Slide:
    """An in-memory slide over a labelled image."""
    h, w = item.labels.shape
    return Slide(Path(item.name), w, h, mpp, "user", None, item.image)


def centroid_clicks(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """GT object ids (K,) and their centroids as level-0 (x, y) (K, 2), pixel-corner origin."""
    ids = np.unique(labels)
    ids = ids[ids > 0]
    rc = np.array(ndi.center_of_mass(np.ones_like(labels), labels, ids)).reshape(-1, 2)
    return ids, rc[:, ::-1] + 0.5


#: How evaluation marks are made from the ground truth, by kind (recorded in reports and cards).
MARKS = {
    "point": "clicks at the ground-truth centroids",
    "gland": "squiggles: skeletons of the ground-truth glands after thresholding their "
    "distance transform at its mean",
}


def skeleton_lines(
    skeleton: np.ndarray, offset_xy: tuple[float, float] = (0.0, 0.0)
) -> shapely.Geometry:
    """A skeleton's pixels joined into lines (level-0 coordinates of pixel centres): a
    LineString or MultiLineString that rasterises back onto the skeleton."""
    rows, cols = np.nonzero(skeleton)
    xy = np.column_stack([cols, rows]) + 0.5 + np.asarray(offset_xy)
    half = np.array([0.5, 0.0])  # a lone pixel becomes a one-pixel segment
    if len(xy) == 1:
        return shapely.LineString([xy[0] - half, xy[0] + half])
    on = np.zeros((skeleton.shape[0] + 2, skeleton.shape[1] + 2), bool)
    on[1:-1, 1:-1] = skeleton
    edges: list[tuple[np.ndarray, np.ndarray]] = []
    r, c = rows + 1, cols + 1
    for dr, dc in ((0, 1), (1, 0), (1, 1), (1, -1)):
        hit = on[r + dr, c + dc]
        if dr and dc:  # a diagonal step only where no 4-connected path joins the two pixels
            hit &= ~on[r, c + dc] & ~on[r + dr, c]
        a = xy[hit]
        edges.extend(zip(a, a + np.array([dc, dr]), strict=True))
    if not edges:  # isolated pixels only
        edges = [(p - half, p + half) for p in xy]
    return shapely.line_merge(shapely.MultiLineString([list(e) for e in edges]))


def ground_truth_marks(
    labels: np.ndarray,
    object_type: str,
    *,
    jitter_sigma: float = 0.0,
    seed: int = 0,
    source: str = "ground truth",
) -> tuple[gpd.GeoDataFrame, np.ndarray]:
    """The click table for ``labels`` and the level-0 (x, y) positions to draw: centroid clicks
    (nuclei, cells; jittered when asked) or skeleton squiggles (glands, one per object)."""
    if object_type != "gland":
        _, xy = centroid_clicks(labels)
        if jitter_sigma > 0:
            xy = xy + np.random.default_rng(seed).normal(0.0, jitter_sigma, xy.shape)
        return click_table_from_points(xy, object=object_type, source=source), xy
    if jitter_sigma > 0:
        raise ValueError("click jitter applies to point marks, not to gland squiggles")
    lines, drawn = [], []
    for k, sl in enumerate(ndi.find_objects(labels), 1):
        if sl is None:
            continue
        skel = gland_skeleton(labels[sl] == k)
        lines.append(skeleton_lines(skel, (sl[1].start, sl[0].start)))
        r, c = np.nonzero(skel)
        drawn.append(np.column_stack([c + sl[1].start, r + sl[0].start]) + 0.5)
    xy = np.concatenate(drawn) if drawn else np.zeros((0, 2))
    return squiggle_table(lines, source=source), xy


def evaluate_image(
    item: LabelledImage,
    segment: Callable[[Slide, gpd.GeoDataFrame], gpd.GeoDataFrame],
    *,
    mpp: float,
    object_type: str = "nucleus",
    jitter_sigma: float = 0.0,
    seed: int = 0,
) -> ImageResult:
    """Segment one image from ground-truth marks and score it against its labels."""
    marks, xy = ground_truth_marks(
        item.labels,
        object_type,
        jitter_sigma=jitter_sigma,
        seed=seed,
        source=f"{item.name} ground truth",
    )
    table = segment(memory_slide(item, mpp), marks)
    pred = label_mask(table, item.labels.shape[1], item.labels.shape[0]).astype(np.int32)
    figures = {
        **score_labels(item.labels.astype(np.int32), pred, object_type),
        "objects": float(len(marks)),
        "ok": float((table["status"] == "ok").sum()),
    }
    return ImageResult(item.name, figures, pred, xy)


def model_segmenter(
    predictor: Predictor,
    geom: ModelGeometry,
    *,
    batch_size: int = 16,
    exclusion: bool = True,
    overlap: str = "resolve",
) -> Callable[[Slide, gpd.GeoDataFrame], gpd.GeoDataFrame]:
    """A ``segment(slide, clicks)`` callable running the engine with these settings."""

    def segment(slide: Slide, clicks: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
        return segment_clicks(
            slide,
            clicks,
            predictor,
            geom,
            batch_size=batch_size,
            exclusion=exclusion,
            overlap=overlap,
        )

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


def score_labels(true: np.ndarray, pred: np.ndarray, object_type: str = "nucleus") -> dict:
    """AJI, AJI+, Dice and PQ; for glands also the GlaS object Dice, object Hausdorff and
    detection F1."""
    pq = metrics.panoptic_quality(true, pred)
    out = {
        "aji": metrics.aji(true, pred),
        "aji_plus": metrics.aji_plus(true, pred),
        "dice": metrics.dice(true, pred),
        "pq": pq["pq"],
        "dq": pq["dq"],
        "sq": pq["sq"],
    }
    if object_type == "gland":
        out["object_dice"] = object_metrics.object_dice(true, pred)
        out["object_hausdorff"] = object_metrics.object_hausdorff(true, pred)
        out["f1"] = object_metrics.detection_f1(true, pred)["f1"]
    return out


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
    progress: Callable[[str], None] = print,
) -> tuple[dict, dict[str, list[ImageResult]]]:
    """Every figure of the evaluation report.

    Returns
    -------
    (figures, results): ``figures`` is JSON-ready: ``main`` (centroid clicks, exclusion on,
    overlap resolution), ``per_image``, and when asked ``baselines``, ``jitter`` (by sigma),
    ``exclusion_off``, ``last_click_wins``; ``results`` keeps the images' predictions per
    experiment for figures.
    """
    figures: dict = {}
    results: dict[str, list[ImageResult]] = {}

    def run(key: str, **kw: object) -> dict[str, float]:
        seg = model_segmenter(
            predictor,
            geom,
            batch_size=batch_size,
            exclusion=bool(kw.pop("exclusion", True)),
            overlap=str(kw.pop("overlap", "resolve")),
        )
        res = [
            evaluate_image(it, seg, mpp=mpp, object_type=object_type, **kw)  # type: ignore[arg-type]
            for it in items
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
    import shapely

    points = clicks[clicks["kind"] == "point"].reset_index(drop=True)
    ref = segment(slide, points)
    ok = (ref["status"] == "ok").to_numpy()
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
