"""Worker processes for post-processing and polygons (#14): the same table, byte for byte,
whatever the worker count, and the seconds per stage reported."""

from __future__ import annotations

import multiprocessing

import numpy as np
import pytest

from nuclick_core.data.labelled import LabelledImage, memory_slide
from nuclick_core.data.marks import centroid_clicks
from nuclick_core.data.synth import nuclei_scene
from nuclick_core.inference.engine import ModelGeometry, RunOptions, segment_clicks
from nuclick_core.inference.postprocess import PostprocessParams
from nuclick_core.inference.producers import Grid
from nuclick_core.inference.workers import STAGES, Stages, Workers
from nuclick_core.io.annotations import click_table_from_points
from tests.conftest import DarknessPredictor

GEOM = ModelGeometry(64, 0.5, PostprocessParams(threshold=0.5, min_size=5, min_hole=10))


@pytest.fixture(scope="module")
def crowded():
    """Two synthetic scenes side by side, one click per nucleus (hundreds of clicks, touching
    nuclei, so overlaps are settled and polygons go out in several chunks)."""
    a = nuclei_scene(size=(256, 256), n_nuclei=90, seed=1, radius_range=(5.0, 10.0))
    b = nuclei_scene(size=(256, 256), n_nuclei=90, seed=2, radius_range=(5.0, 10.0))
    labels = np.hstack([a.labels, np.where(b.labels > 0, b.labels + a.labels.max(), 0)])
    item = LabelledImage("crowded", np.hstack([a.image, b.image]), labels)
    _, xy = centroid_clicks(item.labels)
    return memory_slide(item, 0.5), click_table_from_points(xy, source="centroid")


def _run(slide, clicks, workers: int, batch_size: int = 8):
    return segment_clicks(
        slide,
        clicks,
        DarknessPredictor(64),
        GEOM,
        batch_size=batch_size,
        options=RunOptions(tile=128, workers=workers),
    )


def _table_bytes(table) -> list:
    return [
        (row.status, np.float64(row.score).tobytes(), None if g is None else g.wkb)
        for row, g in zip(table.itertuples(), table.geometry.values, strict=True)
    ]


def test_the_table_is_the_same_for_any_worker_count(crowded) -> None:
    slide, clicks = crowded
    base = _run(slide, clicks, 0)
    assert (base.table["status"] == "ok").sum() > 100
    for workers in (1, 2):
        seg = _run(slide, clicks, workers)
        assert _table_bytes(seg.table) == _table_bytes(base.table)
    # batch size does not change it either, with workers
    assert _table_bytes(_run(slide, clicks, 2, batch_size=3).table) == _table_bytes(base.table)


@pytest.mark.parametrize("readers", [1, 3])
def test_the_table_is_the_same_for_any_reader_count(crowded, readers) -> None:
    slide, clicks = crowded
    base = _run(slide, clicks, 0)
    seg = segment_clicks(
        slide,
        clicks,
        DarknessPredictor(64),
        GEOM,
        batch_size=8,
        options=RunOptions(tile=64, readers=readers),
    )
    assert _table_bytes(seg.table) == _table_bytes(base.table)


def test_stage_seconds_are_reported(crowded) -> None:
    slide, clicks = crowded
    stats = _run(slide, clicks, 1).stats
    assert set(stats.stages) == set(STAGES)
    for stage in ("build", "predict", "postprocess", "settle", "polygons"):
        assert stats.stages[stage] > 0, stage
    assert stats.patches == len(clicks)


class _Failing(DarknessPredictor):
    def __call__(self, batch: np.ndarray) -> np.ndarray:
        if len(self.calls) == 3:
            raise RuntimeError("the predictor failed")
        return super().__call__(batch)


def test_an_error_stops_the_workers(crowded) -> None:
    slide, clicks = crowded
    before = len(multiprocessing.active_children())
    with pytest.raises(RuntimeError, match="the predictor failed"):
        segment_clicks(
            slide, clicks, _Failing(64), GEOM, batch_size=8, options=RunOptions(workers=2)
        )
    assert len(multiprocessing.active_children()) == before


def test_a_negative_worker_count_is_refused() -> None:
    with pytest.raises(ValueError, match="workers must be >= 0"):
        Workers(-1)


def test_a_consumer_that_stops_early_leaves_no_thread_behind(crowded) -> None:
    """Closing the producer after one batch (an error downstream, Ctrl-C) stops the reader and
    inference threads, even with full queues."""
    import threading

    from nuclick_core.inference.engine import _points
    from nuclick_core.io.clicks import Clicks

    slide, table = crowded
    clicks = Clicks.of(table)
    before = threading.active_count()
    n = len(clicks)
    with Workers(0) as workers:
        produced = _points(
            slide,
            clicks,
            np.ones(n, bool),
            np.ones(n, bool),
            DarknessPredictor(64),
            GEOM,
            Grid.of(slide, GEOM.mpp),
            2,
            RunOptions(tile=64, queue_size=1),
            True,
            workers,
            Stages(),
        )
        first = next(produced)
        assert len(first.results) == 2
        produced.close()
    assert threading.active_count() == before
