"""The streaming segmentation run for one slide.

plan patches by tile -> read tiles at the model's mpp (a reader thread, bounded queue) -> build
5-channel inputs -> predictor in fixed batches -> post-process each patch -> resolve overlaps ->
polygonise -> instance table (one row per click, always).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import geopandas as gpd
import numpy as np
import shapely

from nuclick_core.inference.patches import (
    ExclusionIndex,
    PatchPlan,
    build_inputs,
    grid_pixels,
    plan_tiles,
)
from nuclick_core.inference.postprocess import STATUS_OK, PostprocessParams, clicked_object
from nuclick_core.inference.runtime import ModelCard, Predictor
from nuclick_core.inference.signals import polyline_map
from nuclick_core.inference.squiggles import (
    grid_lines,
    plan_squiggle,
    representative_points,
    squiggle_inputs,
    squiggle_object,
    upscale,
)
from nuclick_core.inference.stitch import (
    STATUS_LOST,
    PatchInstance,
    mask_to_polygon,
    paste_last_wins,
    resolve_overlaps,
)
from nuclick_core.io.annotations import outside_slide_mask
from nuclick_core.io.slides import Slide, read_grid_region

log = logging.getLogger(__name__)

STATUS_OUTSIDE = "outside_slide"
STATUS_UNSUPPORTED = "unsupported_mark"
STATUS_BACKGROUND = "on_background"
#: A click whose 5x5 neighbourhood has every channel above this (of 1) lies on glass.
GLASS_LEVEL = 0.85


def on_glass(batch: np.ndarray, half: int) -> np.ndarray:
    """bool (N,): the click (at patch pixel (half, half)) lies on bright, unstained glass."""
    centre = batch[:, :3, half - 2 : half + 3, half - 2 : half + 3]
    return centre.min(axis=1).mean(axis=(1, 2)) > GLASS_LEVEL


@dataclass
class RunOptions:
    """How a run is carried out (none of these change the result)."""

    tile: int = 1024
    queue_size: int = 4
    stats: dict = field(default_factory=dict)


@dataclass
class ModelGeometry:
    """What the engine needs to know about the model.

    mark : ``"point"`` (nuclei, cells: one click each) or ``"squiggle"`` (glands).
    """

    patch_size: int
    mpp: float
    postprocess: PostprocessParams
    mark: str = "point"

    @classmethod
    def from_card(cls, card: ModelCard) -> ModelGeometry:
        mark = "squiggle" if card.object_type == "gland" else "point"
        return cls(card.patch_size, card.mpp, card.postprocess, mark)


def _reader(
    slide: Slide,
    plans: list[PatchPlan],
    exclusion: ExclusionIndex,
    geom: ModelGeometry,
    out: queue.Queue,
    stop: threading.Event,
    chunk: int,
) -> None:
    try:
        for plan in plans:
            if stop.is_set():
                return
            region = read_grid_region(slide, *plan.region, target_mpp=geom.mpp)
            # Inputs are built and queued a chunk at a time, so a dense tile does not hold
            # every patch of the tile in memory at once.
            for k in range(0, len(plan.click_index), chunk):
                part = PatchPlan(
                    plan.click_index[k : k + chunk], plan.origin_uv[k : k + chunk], plan.region
                )
                if stop.is_set():
                    return
                out.put((part, build_inputs(region, part, exclusion, geom.patch_size)))
        out.put(None)
    except BaseException as exc:  # hand the error to the consumer, which re-raises it
        out.put(exc)


def _batches(
    source: queue.Queue, batch_size: int
) -> Iterator[tuple[list[tuple[int, np.ndarray]], np.ndarray]]:
    """Regroup per-tile inputs into batches of ``batch_size`` (the last may be smaller)."""
    meta: list[tuple[int, np.ndarray]] = []
    rows: list[np.ndarray] = []  # one (5, P, P) view per held patch; no copy until batching
    while True:
        item = source.get()
        if isinstance(item, BaseException):
            raise item
        if item is not None:
            plan, inputs = item
            meta.extend(zip(plan.click_index.tolist(), plan.origin_uv, strict=True))
            rows.extend(inputs)
        while len(rows) >= batch_size or (item is None and rows):
            n = min(batch_size, len(rows))
            yield meta[:n], np.stack(rows[:n])
            meta, rows = meta[n:], rows[n:]
        if item is None:
            return


def _segment_squiggles(
    slide: Slide,
    clicks: gpd.GeoDataFrame,
    rows: np.ndarray,
    predictor: Predictor,
    geom: ModelGeometry,
    batch_size: int,
    status: np.ndarray,
    settler: _Settler,
    exclusion: bool = True,
) -> int:
    """Segment the squiggles ``rows`` of ``clicks`` (one patch each, in batches); with
    ``exclusion=False`` the exclusion maps stay blank."""
    f = geom.mpp / slide.mpp
    p = geom.patch_size
    grid_w, grid_h = int(np.ceil(slide.width / f)), int(np.ceil(slide.height / f))
    lines = [grid_lines(clicks.geometry.values[i], f) for i in rows]
    plans = [plan_squiggle(ln, p) for ln in lines]
    for start in range(0, len(rows), batch_size):
        chunk = range(start, min(start + batch_size, len(rows)))
        inputs = np.stack(
            [
                squiggle_inputs(
                    read_grid_region(
                        slide,
                        *plans[k].origin_uv,
                        plans[k].side,
                        plans[k].side,
                        target_mpp=geom.mpp,
                    ),
                    lines[k],
                    representative_points(lines, plans[k], k) if exclusion else np.zeros((0, 2)),
                    plans[k],
                    p,
                )
                for k in chunk
            ]
        )
        for k, prob in zip(chunk, predictor(inputs), strict=True):
            plan, idx = plans[k], int(rows[k])
            u0, v0 = plan.origin_uv
            prob = _inside_slide(upscale(prob, plan.side), np.array([u0, v0]), grid_w, grid_h)
            local = [ln - np.array([u0, v0]) for ln in lines[k]]
            drawn = polyline_map((plan.side, plan.side), [np.floor(ln) for ln in local]) > 0
            mask, st = squiggle_object(prob, drawn, geom.postprocess)
            status[idx] = st
            if st != STATUS_OK:
                continue
            rr, cc = np.nonzero(mask)
            r0, r1, c0, c1 = rr.min(), rr.max() + 1, cc.min(), cc.max() + 1
            first = np.floor(lines[k][0][0]).astype(int)
            settler.add(
                PatchInstance(
                    click_id=idx,
                    row0=int(v0 + r0),
                    col0=int(u0 + c0),
                    mask=mask[r0:r1, c0:c1],
                    prob=prob[r0:r1, c0:c1],
                    click_rc=(int(first[1]), int(first[0])),
                    anchor=drawn[r0:r1, c0:c1],
                )
            )
    return len(rows)


class _Settler:
    """Holds instances until no later patch can reach them, then settles overlaps and turns
    them into level-0 polygons; memory is bounded by a band of tiles, not the slide."""

    def __init__(
        self,
        settle: Callable[..., dict[int, np.ndarray | None]],
        f: float,
        slide_box: shapely.Geometry,
        geoms: list,
        score: np.ndarray,
        status: np.ndarray,
    ) -> None:
        self.settle, self.f, self.slide_box = settle, f, slide_box
        self.geoms, self.score, self.status = geoms, score, status
        self.held: list[PatchInstance] = []
        self.settled: set[int] = set()
        self.peak = 0

    def add(self, inst: PatchInstance) -> None:
        self.held.append(inst)
        self.peak = max(self.peak, len(self.held))

    def flush(self, frontier: float, patch_size: int) -> None:
        """Settle held instances that lie above ``frontier`` (no later patch reaches them);
        forget those no unsettled instance can overlap any more."""
        targets = [
            k
            for k, inst in enumerate(self.held)
            if inst.box[2] <= frontier and inst.click_id not in self.settled
        ]
        for k, mask in zip(targets, self.settle(self.held, targets).values(), strict=True):
            inst = self.held[k]
            self.settled.add(inst.click_id)
            if mask is None:
                self.status[inst.click_id] = STATUS_LOST
                continue
            poly = mask_to_polygon(mask, inst.row0, inst.col0, self.f)
            if not self.slide_box.contains(poly):  # a grid pixel may overhang the last pixel
                poly = poly.intersection(self.slide_box)
            self.geoms[inst.click_id] = poly
            self.score[inst.click_id] = float(inst.prob[mask].mean())
        self.held = [i for i in self.held if i.box[2] + patch_size > frontier]


def _inside_slide(prob: np.ndarray, origin: np.ndarray, grid_w: int, grid_h: int) -> np.ndarray:
    """Zero the probabilities of patch pixels that lie outside the slide (white padding)."""
    u0, v0 = int(origin[0]), int(origin[1])
    p = prob.shape[0]
    if u0 >= 0 and v0 >= 0 and u0 + p <= grid_w and v0 + p <= grid_h:
        return prob
    prob = prob.copy()
    prob[: max(0, -v0)] = 0
    prob[max(0, grid_h - v0) :] = 0
    prob[:, : max(0, -u0)] = 0
    prob[:, max(0, grid_w - u0) :] = 0
    return prob


def segment_clicks(
    slide: Slide,
    clicks: gpd.GeoDataFrame,
    predictor: Predictor,
    geom: ModelGeometry,
    *,
    batch_size: int = 16,
    options: RunOptions | None = None,
    exclusion: bool = True,
    overlap: str = "resolve",
) -> gpd.GeoDataFrame:
    """Segment every click of ``clicks`` (the click table) on ``slide``.

    ``exclusion=False`` blanks the exclusion maps and ``overlap="last_wins"`` pastes masks in
    click order like the original implementations; both exist for the paper's experiments.

    Returns
    -------
    The instance table: one row per click, in click order, with ``instance_id`` (click_id + 1),
    ``status``, ``score``, areas and a level-0 geometry (None unless status is ok).
    """
    options = options or RunOptions()
    if overlap not in ("resolve", "last_wins"):
        raise ValueError(f"overlap must be 'resolve' or 'last_wins', got {overlap!r}")
    f = geom.mpp / slide.mpp
    n = len(clicks)
    status = np.array(["pending"] * n, dtype=object)
    score = np.full(n, np.nan)
    is_point = (clicks["kind"] == "point").to_numpy() if n else np.zeros(0, bool)
    xy = np.zeros((n, 2))
    if is_point.any():
        pts = clicks.geometry.values[is_point]
        xy[is_point] = np.column_stack([pts.x, pts.y])
    is_squiggle = (clicks["kind"] == "squiggle").to_numpy() if n else np.zeros(0, bool)
    wanted = is_point if geom.mark == "point" else is_squiggle
    status[~wanted] = STATUS_UNSUPPORTED
    inside = ~outside_slide_mask(clicks, slide.width, slide.height) if n else np.zeros(0, bool)
    status[wanted & ~inside] = STATUS_OUTSIDE
    active = np.flatnonzero(is_point & inside) if geom.mark == "point" else np.zeros(0, np.int64)
    uv_all = grid_pixels(xy, f)
    uv = uv_all[active]
    plans = [
        PatchPlan(active[p.click_index], p.origin_uv, p.region)
        for p in plan_tiles(uv, patch_size=geom.patch_size, tile=options.tile)
    ]
    grid_w, grid_h = int(np.ceil(slide.width / f)), int(np.ceil(slide.height / f))
    q: queue.Queue = queue.Queue(maxsize=options.queue_size)
    stop = threading.Event()
    # Exclusion maps see every point click, also those outside the slide.
    keep = is_point if exclusion else np.zeros(n, bool)
    exclusion_index = ExclusionIndex(uv_all[keep], np.flatnonzero(keep))
    reader = threading.Thread(
        target=_reader,
        args=(slide, plans, exclusion_index, geom, q, stop, batch_size),
        daemon=True,
    )
    t0 = time.perf_counter()
    reader.start()
    geoms: list = [None] * n
    settler = _Settler(
        resolve_overlaps if overlap == "resolve" else paste_last_wins,
        f,
        shapely.box(0, 0, slide.width, slide.height),
        geoms,
        score,
        status,
    )
    # Rows above `frontier[k]` are out of reach of every patch after the k-th.
    tops = np.concatenate([p.origin_uv[:, 1] for p in plans]) if plans else np.zeros(0)
    frontier = np.append(np.minimum.accumulate(tops[::-1])[::-1], np.inf)
    half = geom.patch_size // 2
    done, flushed_at = 0, -np.inf
    try:
        for meta, batch in _batches(q, batch_size):
            probs = predictor(batch)
            glass = on_glass(batch, half)
            for (idx, origin), prob, bg in zip(meta, probs, glass, strict=True):
                if bg:
                    status[idx] = STATUS_BACKGROUND
                    continue
                prob = _inside_slide(prob, origin, grid_w, grid_h)
                mask, st = clicked_object(prob, (half, half), geom.postprocess)
                status[idx] = st
                if st != STATUS_OK:
                    continue
                rows, cols = np.nonzero(mask)
                r0, r1, c0, c1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
                settler.add(
                    PatchInstance(
                        click_id=int(idx),
                        row0=int(origin[1] + r0),
                        col0=int(origin[0] + c0),
                        mask=mask[r0:r1, c0:c1],
                        prob=prob[r0:r1, c0:c1].astype(np.float32),
                        click_rc=(int(origin[1] + half), int(origin[0] + half)),
                    )
                )
            done += len(meta)
            if frontier[done] >= flushed_at + options.tile / 2:
                settler.flush(frontier[done], geom.patch_size)
                flushed_at = frontier[done]
    finally:
        stop.set()
        while reader.is_alive():  # unblock a reader waiting on a full queue
            try:
                q.get_nowait()
            except queue.Empty:
                reader.join(0.05)
    if geom.mark == "squiggle":
        squiggle_rows = np.flatnonzero(is_squiggle & inside)
        done += _segment_squiggles(
            slide, clicks, squiggle_rows, predictor, geom, batch_size, status, settler, exclusion
        )
    settler.flush(np.inf, geom.patch_size)
    options.stats["peak_held_instances"] = settler.peak
    options.stats.update({"patches": done, "seconds_run": time.perf_counter() - t0})
    area_px = np.array([g.area if g is not None else 0.0 for g in geoms])
    table = gpd.GeoDataFrame(
        {
            "instance_id": clicks["click_id"].to_numpy(np.int64) + 1,
            "click_id": clicks["click_id"].to_numpy(np.int64),
            "object": clicks["object"].to_numpy(),
            "label": clicks["label"].to_numpy(),
            "status": status.astype(str),
            "score": score,
            "area_px": area_px,
            "area_um2": area_px * slide.mpp**2,
            "source": clicks["source"].to_numpy(),
        },
        geometry=gpd.GeoSeries(geoms, crs=None),
        crs=None,
    )
    return table
