"""The two producers of patch instances: point marks (clicks) and squiggles.

Each producer runs the predictor over its marks in fixed batches and yields, after every batch,
a :class:`PatchBatch`: per mark its status and, when the status is ok, its
:class:`~nuclick_core.inference.stitch.PatchInstance` on the model grid. The one consumer,
:func:`nuclick_core.inference.engine.segment_clicks`, records statuses and settles overlaps.

Points stream: a reader thread reads each tile of clicks at the model's mpp and builds their
5-channel inputs into a bounded queue while the predictor runs. Squiggles get one patch each
(relaxed to the patch size, or down-scaled when the squiggle is large).
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely

from nuclick_core.inference.patches import (
    ExclusionIndex,
    LaterPatches,
    PatchPlan,
    Reach,
    build_inputs,
)
from nuclick_core.inference.postprocess import PostprocessParams
from nuclick_core.inference.runtime import Predictor
from nuclick_core.inference.signals import polyline_map
from nuclick_core.inference.squiggles import (
    grid_lines,
    plan_squiggle,
    representative_points,
    squiggle_inputs,
    squiggle_object,
    upscale,
)
from nuclick_core.inference.stitch import PatchInstance
from nuclick_core.inference.workers import Stages, Workers, inside_slide, point_results
from nuclick_core.io import status
from nuclick_core.io.slides import Slide, read_grid_region

#: A click whose 5x5 neighbourhood has every channel above this (of 1) lies on glass.
GLASS_LEVEL = 0.85


@dataclass(frozen=True)
class Grid:
    """The slide resampled to the model's mpp: ``f`` level-0 pixels per grid pixel, and the
    grid's size."""

    f: float
    width: int
    height: int

    @classmethod
    def of(cls, slide: Slide, model_mpp: float) -> Grid:
        f = model_mpp / slide.mpp
        return cls(f, int(np.ceil(slide.width / f)), int(np.ceil(slide.height / f)))


@dataclass(frozen=True)
class PatchBatch:
    """What a producer hands the consumer after one predictor call.

    results : (row of the click table, status, instance or None) per mark of the batch.
    reach : where the patches after this batch lie (instances out of their reach can be
        settled); None when the producer cannot say (settled at the end).
    """

    results: list[tuple[int, str, PatchInstance | None]]
    reach: Reach | None


def on_glass(batch: np.ndarray, half: int) -> np.ndarray:
    """bool (N,): the click (at patch pixel (half, half)) lies on bright, unstained glass."""
    centre = batch[:, :3, half - 2 : half + 3, half - 2 : half + 3]
    return centre.min(axis=1).mean(axis=(1, 2)) > GLASS_LEVEL


def _reader(
    slide: Slide,
    plans: list[PatchPlan],
    exclusion: ExclusionIndex,
    model_mpp: float,
    patch_size: int,
    out: queue.Queue,
    stop: threading.Event,
    batch_size: int,
    stages: Stages,
    readers: int = 1,
) -> None:
    """Read each tile once and write its patches' inputs straight into batch buffers (no copy
    when batching); a full batch goes on the queue, the last one may be smaller.

    Tiles are read ``readers`` at a time, ahead of the one being built, by threads (OpenSlide
    and the resampling release the GIL) and used in plan order, so the batches are the same
    for any count."""

    def new_batch() -> tuple[list[tuple[int, np.ndarray]], np.ndarray]:
        return [], np.empty((batch_size, 5, patch_size, patch_size), np.float32)

    def read(plan: PatchPlan) -> np.ndarray:
        with stages("read"):
            return read_grid_region(slide, *plan.region, target_mpp=model_mpp)

    pool = ThreadPoolExecutor(max_workers=readers, thread_name_prefix="nuclick-read")
    ahead: deque[Future] = deque()
    todo = iter(plans)
    try:
        meta, buf = new_batch()
        for plan in plans:
            while len(ahead) <= readers and (nxt := next(todo, None)) is not None:
                ahead.append(pool.submit(read, nxt))
            if stop.is_set():
                return
            region = ahead.popleft().result()
            k = 0
            while k < len(plan.click_index):
                take = min(batch_size - len(meta), len(plan.click_index) - k)
                part = PatchPlan(
                    plan.click_index[k : k + take], plan.origin_uv[k : k + take], plan.region
                )
                with stages("build"):
                    build_inputs(region, part, exclusion, patch_size, out=buf[len(meta) :][:take])
                meta.extend(zip(part.click_index.tolist(), part.origin_uv, strict=True))
                k += take
                if len(meta) == batch_size:
                    if stop.is_set():
                        return
                    out.put((meta, buf))
                    meta, buf = new_batch()
        if meta:
            out.put((meta, buf[: len(meta)]))
        out.put(None)
    except BaseException as exc:  # hand the error to the consumer, which re-raises it
        out.put(exc)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _batches(
    source: queue.Queue, stop: threading.Event
) -> Iterator[tuple[list[tuple[int, np.ndarray]], np.ndarray]]:
    """The reader's batches, in order, until it is done (re-raising its error) or ``stop``."""
    while not stop.is_set():
        try:
            item = source.get(timeout=0.1)
        except queue.Empty:
            continue
        if isinstance(item, BaseException):
            raise item
        if item is None:
            return
        yield item


def point_instances(
    slide: Slide,
    plans: list[PatchPlan],
    exclusion: ExclusionIndex,
    predictor: Predictor,
    *,
    grid: Grid,
    model_mpp: float,
    patch_size: int,
    params: PostprocessParams,
    batch_size: int,
    queue_size: int,
    workers: Workers,
    stages: Stages,
    readers: int = 1,
) -> Iterator[PatchBatch]:
    """Patch instances of the clicks in ``plans`` (tiles in row-major order), a batch at a time.

    A reader thread reads tiles and builds batches, an inference thread runs the predictor on
    them, and this thread takes the probabilities: each batch's post-processing runs here or,
    with ``workers``, in worker processes (up to two batches per worker in flight), and comes
    back in order.
    """
    q: queue.Queue = queue.Queue(maxsize=queue_size)
    predicted: queue.Queue = queue.Queue(maxsize=2)
    stop = threading.Event()
    reader = threading.Thread(
        target=_reader,
        args=(slide, plans, exclusion, model_mpp, patch_size, q, stop, batch_size, stages, readers),
        daemon=True,
    )

    def infer() -> None:
        """The predictor in a thread of its own: ONNX Runtime releases the GIL while it runs,
        so post-processing, settling and polygons go on beside it instead of between calls."""
        try:
            for meta, batch in _batches(q, stop):
                with stages("predict"):
                    probs = predictor(batch)
                while not stop.is_set():
                    try:
                        predicted.put((meta, probs, on_glass(batch, patch_size // 2)), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            if not stop.is_set():
                predicted.put(None)
        except BaseException as exc:  # hand the error to the consumer, which re-raises it
            predicted.put(exc)

    inference = threading.Thread(target=infer, daemon=True)
    later = LaterPatches(plans)
    in_flight: deque[tuple[Any, Reach]] = deque()
    depth = 2 * workers.n

    def collect() -> PatchBatch:
        future, front = in_flight.popleft()
        results, seconds = future.result()
        stages.add("postprocess", seconds)
        return PatchBatch(results, front)

    done = 0
    reader.start()
    inference.start()
    try:
        while (item := predicted.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            meta, probs, glass = item
            done += len(meta)
            rows, origins = [m[0] for m in meta], [m[1] for m in meta]
            args = (probs, rows, origins, glass, (grid.width, grid.height), params)
            in_flight.append((workers.submit(point_results, *args), later.after(done)))
            while len(in_flight) > depth:
                yield collect()
        while in_flight:
            yield collect()
    finally:
        stop.set()
        while inference.is_alive() or reader.is_alive():  # unblock threads on full queues
            for source in (predicted, q):
                with contextlib.suppress(queue.Empty):
                    source.get_nowait()
            inference.join(0.05)
            reader.join(0.01)


#: The largest squiggle box (twice the squiggle's extent), in patches of the model grid: a
#: squiggle up to 4 x 256 px x 1.24 um = 1.27 mm long for the gland models.
MAX_SQUIGGLE_PATCHES = 8


def squiggle_instances(
    slide: Slide,
    squiggles: list[shapely.Geometry],
    rows: np.ndarray,
    predictor: Predictor,
    *,
    grid: Grid,
    model_mpp: float,
    patch_size: int,
    params: PostprocessParams,
    batch_size: int,
    exclusion: bool = True,
) -> Iterator[PatchBatch]:
    """Patch instances of the squiggles (level-0 (Multi)LineStrings; ``rows`` their rows of
    the click table), one patch each, a batch at a time; with ``exclusion=False`` the
    exclusion maps stay blank."""
    p = patch_size
    lines = [grid_lines(g, grid.f) for g in squiggles]
    plans = [plan_squiggle(ln, p) for ln in lines]
    # A squiggle's region is read and its mask built at grid resolution, so memory grows with
    # its box squared: one spanning more than MAX_SQUIGGLE_PATCHES patches gets a status.
    too_large = [plan.side > MAX_SQUIGGLE_PATCHES * p for plan in plans]
    if any(too_large):
        marks: list[tuple[int, str, PatchInstance | None]] = [
            (int(rows[k]), status.MARK_TOO_LARGE, None) for k in np.flatnonzero(too_large)
        ]
        yield PatchBatch(marks, None)
    keep = [k for k, large in enumerate(too_large) if not large]
    for start in range(0, len(keep), batch_size):
        chunk = keep[start : start + batch_size]
        inputs = np.stack(
            [
                squiggle_inputs(
                    read_grid_region(
                        slide,
                        *plans[k].origin_uv,
                        plans[k].side,
                        plans[k].side,
                        target_mpp=model_mpp,
                    ),
                    lines[k],
                    representative_points(lines, plans[k], k) if exclusion else np.zeros((0, 2)),
                    plans[k],
                    p,
                )
                for k in chunk
            ]
        )
        results: list[tuple[int, str, PatchInstance | None]] = []
        for k, prob in zip(chunk, predictor(inputs), strict=True):
            plan, idx = plans[k], int(rows[k])
            u0, v0 = plan.origin_uv
            prob = inside_slide(
                upscale(prob, plan.side), np.array([u0, v0]), (grid.width, grid.height)
            )
            local = [ln - np.array([u0, v0]) for ln in lines[k]]
            drawn = polyline_map((plan.side, plan.side), [np.floor(ln) for ln in local]) > 0
            mask, st = squiggle_object(prob, drawn, params)
            if st != status.OK:
                results.append((idx, st, None))
                continue
            rr, cc = np.nonzero(mask)
            r0, r1, c0, c1 = rr.min(), rr.max() + 1, cc.min(), cc.max() + 1
            first = np.floor(lines[k][0][0]).astype(int)
            inst = PatchInstance(
                click_id=idx,
                row0=int(v0 + r0),
                col0=int(u0 + c0),
                mask=mask[r0:r1, c0:c1],
                prob=prob[r0:r1, c0:c1],
                click_rc=(int(first[1]), int(first[0])),
                anchor=drawn[r0:r1, c0:c1],
            )
            results.append((idx, st, inst))
        yield PatchBatch(results, None)
