"""The streaming segmentation run for one slide: two producers, one consumer.

plan patches by tile -> producers (points: a reader thread reads tiles at the model's mpp and
builds 5-channel inputs into a bounded queue; squiggles: one patch each) -> predictor in fixed
batches -> post-process each patch -> the consumer records statuses, settles overlaps as soon as
no later patch can reach an instance, and polygonises -> instance table (one row per click,
always).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import pandas as pd

from nuclick_core.inference.models import ModelCard
from nuclick_core.inference.patches import (
    DONE,
    ExclusionIndex,
    PatchPlan,
    grid_pixels,
    plan_tiles,
)
from nuclick_core.inference.postprocess import PostprocessParams
from nuclick_core.inference.producers import (
    Grid,
    PatchBatch,
    point_instances,
    squiggle_instances,
)
from nuclick_core.inference.progress import Progress
from nuclick_core.inference.runtime import Predictor
from nuclick_core.inference.stitch import Settler, paste_last_wins, resolve_overlaps
from nuclick_core.inference.workers import Stages, Workers, polygons
from nuclick_core.io import status
from nuclick_core.io.clicks import Clicks
from nuclick_core.io.geometries import Geometries
from nuclick_core.io.slides import Slide

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunOptions:
    """How a run is carried out (none of these change the result).

    tile : side, in model pixels, of the tiles a slide is read in.
    queue_size : batches the reader may build ahead of the predictor.
    workers : worker processes for post-processing and polygons (0: in this process).
    readers : threads reading tiles ahead (resampling a tile is the slowest step of reading a
        slide whose mpp is not the model's).
    progress_every : seconds between progress lines in the log (0: none).
    spill_dir : a folder where the instances' geometries wait as WKB until the table is
        written (memory stays flat however many clicks a slide has); None keeps them in memory.
        When set, the :class:`Segmentation`'s table has no geometry column: its
        ``geometries`` hold them, until closed.
    settle_every : instances added between two settlements; each settles what no later patch
        reaches, so the instances held are a strip along the lower edge of each tile row plus
        the tiles being read, not the slide's width.
    """

    tile: int = 1024
    queue_size: int = 4
    workers: int = 0
    readers: int = 2
    progress_every: float = 0.0
    spill_dir: str | None = None
    settle_every: int = 512


@dataclass(frozen=True)
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


@dataclass(frozen=True)
class EngineStats:
    """What a run did: patches through the network, seconds from the first read to the last
    polygon, the most instances held at once awaiting settlement (memory), and the seconds
    spent per stage (:data:`~nuclick_core.inference.workers.STAGES`, summed over threads and
    worker processes, so they may add up to more than ``seconds_run``)."""

    patches: int
    seconds_run: float
    peak_held_instances: int
    stages: dict[str, float]


@dataclass(frozen=True)
class Segmentation:
    """The instance table of a run (one row per click, in click order), its statistics and
    its geometries (also the table's geometry column, unless they were spilled to disk)."""

    table: pd.DataFrame
    stats: EngineStats
    geometries: Geometries


def segment_clicks(
    slide: Slide,
    clicks: gpd.GeoDataFrame | Clicks,
    predictor: Predictor,
    geom: ModelGeometry,
    *,
    batch_size: int = 16,
    options: RunOptions | None = None,
    exclusion: bool = True,
    overlap: str = "resolve",
) -> Segmentation:
    """Segment every mark of ``clicks`` (the click table, or its columns) on ``slide``.

    ``exclusion=False`` blanks the exclusion maps and ``overlap="last_wins"`` pastes masks in
    click order like the original implementations; both exist for the paper's experiments.

    Returns
    -------
    :class:`Segmentation`: the instance table (one row per click, in click order, with
    ``instance_id`` (click_id + 1), ``status``, ``score``, areas and a level-0 geometry, None
    unless the status is ok) and the run's statistics.
    """
    options = options or RunOptions()
    if overlap not in ("resolve", "last_wins"):
        raise ValueError(f"overlap must be 'resolve' or 'last_wins', got {overlap!r}")
    grid = Grid.of(slide, geom.mpp)
    if not isinstance(clicks, Clicks):
        clicks = Clicks.of(clicks)
    n = len(clicks)
    status_of = np.array([status.PENDING] * n, dtype=object)
    score = np.full(n, np.nan)
    is_point, is_squiggle = clicks.kind == "point", clicks.kind == "squiggle"
    wanted = is_point if geom.mark == "point" else is_squiggle
    status_of[~wanted] = status.UNSUPPORTED_MARK
    if n and not wanted.any():
        fits = "--object gland" if geom.mark == "point" else "--object nucleus or --object cell"
        log.warning(
            "none of the %d marks is a %s, which this model takes: every row gets the status "
            "unsupported_mark; for these marks use %s",
            n,
            "line (squiggle)" if geom.mark == "squiggle" else "point (click)",
            fits,
        )
    inside = ~clicks.outside(slide.width, slide.height)
    status_of[wanted & ~inside] = status.OUTSIDE_SLIDE
    geoms = Geometries(n, options.spill_dir)
    stages = Stages()
    t0 = time.perf_counter()
    try:
        with Workers(options.workers) as workers:
            slide_wh = (slide.width, slide.height)

            def polygonise(items: list) -> list:
                polys, seconds = workers.map_chunks(polygons, items, grid.f, slide_wh)
                stages.add("polygons", seconds)
                return polys

            settler = Settler(
                resolve_overlaps if overlap == "resolve" else paste_last_wins,
                polygonise,
                geoms,
                score,
                status_of,
                stages,
            )
            if geom.mark == "point":
                produced = _points(
                    slide,
                    clicks,
                    is_point,
                    inside,
                    predictor,
                    geom,
                    grid,
                    batch_size,
                    options,
                    exclusion,
                    workers,
                    stages,
                )
            else:
                rows = np.flatnonzero(is_squiggle & inside)
                produced = squiggle_instances(
                    slide,
                    list(clicks.lines[rows]),
                    rows,
                    predictor,
                    grid=grid,
                    model_mpp=geom.mpp,
                    patch_size=geom.patch_size,
                    params=geom.postprocess,
                    batch_size=batch_size,
                    exclusion=exclusion,
                )
            done, held_after_flush = 0, 0
            progress = Progress(
                int((wanted & inside).sum()),
                noun="clicks" if geom.mark == "point" else "squiggles",
                every=options.progress_every,
            )
            for batch in produced:
                for idx, st, inst in batch.results:
                    status_of[idx] = st
                    if inst is not None:
                        settler.add(inst)
                done += len(batch.results)
                progress.update(done)
                if (
                    batch.reach is not None
                    and len(settler.held) >= held_after_flush + options.settle_every
                ):
                    settler.flush(batch.reach, geom.patch_size)
                    held_after_flush = len(settler.held)
            settler.flush(DONE, geom.patch_size)
            progress.finish(done)
    except BaseException:  # a failed run leaves no spill file behind
        geoms.close()
        raise
    stats = EngineStats(
        done,
        time.perf_counter() - t0,
        settler.peak,
        {k: round(v, 4) for k, v in stages.seconds.items()},
    )
    area_px = geoms.area  # of the geometry as written
    columns = {
        "instance_id": clicks.click_id + 1,
        "click_id": clicks.click_id,
        "object": clicks.object,
        "label": clicks.label,
        "status": status_of,
        "score": score,
        "area_px": area_px,
        "area_um2": area_px * slide.mpp**2,
        "source": clicks.source_series(),
    }
    # copy=False: the table takes the run's arrays as they are (half a million clicks would
    # otherwise cost a second copy of each column)
    if geoms.spilled:
        return Segmentation(pd.DataFrame(columns, copy=False), stats, geoms)
    geometry = gpd.GeoSeries(geoms.array(), crs=None)
    table = gpd.GeoDataFrame(columns, geometry=geometry, crs=None, copy=False)
    return Segmentation(table, stats, geoms)


def _points(
    slide: Slide,
    clicks: Clicks,
    is_point: np.ndarray,
    inside: np.ndarray,
    predictor: Predictor,
    geom: ModelGeometry,
    grid: Grid,
    batch_size: int,
    options: RunOptions,
    exclusion: bool,
    workers: Workers,
    stages: Stages,
) -> Iterator[PatchBatch]:
    """The point producer over the clicks inside the slide, planned by tile."""
    xy = clicks.xy
    active = np.flatnonzero(is_point & inside)
    uv_all = grid_pixels(xy, grid.f)
    plans = [
        PatchPlan(active[p.click_index], p.origin_uv, p.region, p.row)
        for p in plan_tiles(uv_all[active], patch_size=geom.patch_size, tile=options.tile)
    ]
    # Exclusion maps see every point click, also those outside the slide.
    keep = is_point if exclusion else np.zeros(len(clicks), bool)
    return point_instances(
        slide,
        plans,
        ExclusionIndex(uv_all[keep], np.flatnonzero(keep)),
        predictor,
        grid=grid,
        model_mpp=geom.mpp,
        patch_size=geom.patch_size,
        params=geom.postprocess,
        batch_size=batch_size,
        queue_size=options.queue_size,
        workers=workers,
        stages=stages,
        readers=options.readers,
    )
