"""Post-processing and polygons in worker processes, with the same results as in one process.

The engine hands each predictor batch's probabilities to :func:`point_results` and each chunk of
settled masks to :func:`polygons`. Both are pure functions of their arguments, and the
:class:`Workers` pool returns results in submission order, so the instance table is the same,
byte for byte, whatever the worker count; ``workers=0`` runs them in the calling process.
Workers are started with ``spawn`` (never ``fork``: the ONNX Runtime session's threads live in
the parent) and import only this module's light dependencies.

:class:`Stages` adds up the seconds spent in each stage of a run, workers' included.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import contextmanager
from typing import Any

import numpy as np
import shapely

from nuclick_core.inference.outline import mask_outlines
from nuclick_core.inference.postprocess import PostprocessParams, centre_objects
from nuclick_core.inference.stitch import PatchInstance
from nuclick_core.io import status

#: The stages of a run, in order; :class:`Stages` reports each.
STAGES = ("read", "build", "predict", "postprocess", "settle", "polygons")


class Stages:
    """Seconds per stage, summed over the threads and processes that ran it."""

    def __init__(self) -> None:
        self.seconds = dict.fromkeys(STAGES, 0.0)
        self._lock = threading.Lock()

    def add(self, stage: str, seconds: float) -> None:
        with self._lock:
            self.seconds[stage] += seconds

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.add(stage, time.perf_counter() - t0)


def inside_slide(prob: np.ndarray, origin: np.ndarray, grid_wh: tuple[int, int]) -> np.ndarray:
    """Zero the probabilities of patch pixels that lie outside the slide (white padding);
    ``grid_wh`` is the slide's size on the model grid."""
    u0, v0 = int(origin[0]), int(origin[1])
    width, height = grid_wh
    p = prob.shape[0]
    if u0 >= 0 and v0 >= 0 and u0 + p <= width and v0 + p <= height:
        return prob
    prob = prob.copy()
    prob[: max(0, -v0)] = 0
    prob[max(0, height - v0) :] = 0
    prob[:, : max(0, -u0)] = 0
    prob[:, max(0, width - u0) :] = 0
    return prob


Result = tuple[int, str, PatchInstance | None]


def point_results(
    probs: np.ndarray,
    rows: list[int],
    origins: list[np.ndarray],
    glass: np.ndarray,
    grid_wh: tuple[int, int],
    params: PostprocessParams,
) -> tuple[list[Result], float]:
    """Per click of one batch: (row of the click table, status, instance or None), and the
    seconds it took. The click sits at the centre of its patch."""
    t0 = time.perf_counter()
    half = probs.shape[-1] // 2
    tissue = np.flatnonzero(~np.asarray(glass, bool)).tolist()
    on = probs[tissue]  # a copy: patches overhanging the slide are zeroed there
    for j, k in enumerate(tissue):
        view = on[j]
        inside = inside_slide(view, origins[k], grid_wh)
        if inside is not view:  # only patches overhanging the slide are copied back
            view[...] = inside
    found: list = [None] * len(rows)
    for j, (k, obj) in enumerate(zip(tissue, centre_objects(on, params), strict=True)):
        found[k] = j, obj
    results: list[Result] = []
    for idx, origin, got in zip(rows, origins, found, strict=True):
        if got is None:
            results.append((idx, status.ON_BACKGROUND, None))
            continue
        j, (mask, (r0, c0), st) = got
        if mask is None:
            results.append((idx, st, None))
            continue
        r1, c1 = r0 + mask.shape[0], c0 + mask.shape[1]
        inst = PatchInstance(
            click_id=int(idx),
            row0=int(origin[1] + r0),
            col0=int(origin[0] + c0),
            mask=mask,
            prob=on[j, r0:r1, c0:c1].astype(np.float32),
            click_rc=(int(origin[1] + half), int(origin[0] + half)),
        )
        results.append((idx, st, inst))
    return results, time.perf_counter() - t0


def polygons(
    items: list[tuple[np.ndarray, int, int]], f: float, slide_wh: tuple[int, int]
) -> tuple[list[shapely.Geometry], float]:
    """Level-0 outlines of settled masks ((mask, row0, col0) on the model grid, ``f`` level-0
    pixels per grid pixel), clipped to the slide, in shapely's normal form (an instance is
    written vertex for vertex the same way whatever traced it), and the seconds it took."""
    t0 = time.perf_counter()
    if not items:
        return [], time.perf_counter() - t0
    box = shapely.box(0, 0, *slide_wh)
    polys = np.array(mask_outlines(items, f), dtype=object)
    over = ~shapely.contains(box, polys)  # a grid pixel may overhang the slide's last pixel
    polys[over] = shapely.intersection(polys[over], box)
    out = list(shapely.normalize(polys))
    return out, time.perf_counter() - t0


class _Done:
    """A finished result, for work run in the calling process."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def result(self) -> Any:
        return self.value


class Workers:
    """``n`` worker processes (0: none, the work runs where it is submitted).

    Use as a context manager; results come back in the order they were submitted.
    """

    def __init__(self, n: int = 0) -> None:
        if n < 0:
            raise ValueError(f"workers must be >= 0, got {n}")
        self.n = n
        self._pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> Workers:
        if self.n:
            ctx = multiprocessing.get_context("spawn")
            self._pool = ProcessPoolExecutor(max_workers=self.n, mp_context=ctx)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future | _Done:
        if self._pool is None:
            return _Done(fn(*args))
        return self._pool.submit(fn, *args)

    def map_chunks(
        self, fn: Callable[..., tuple[list, float]], items: list, *args: Any, chunk: int = 64
    ) -> tuple[list, float]:
        """``fn(part, *args)`` over ``items`` in chunks (several at once in workers); the
        concatenated results in order, and the seconds summed over the chunks."""
        if self._pool is None or len(items) <= chunk:
            return fn(items, *args)
        size = max(1, min(chunk, -(-len(items) // self.n)))
        futures = [
            self._pool.submit(fn, items[k : k + size], *args) for k in range(0, len(items), size)
        ]
        out: list = []
        seconds = 0.0
        for fut in futures:
            part, s = fut.result()
            out.extend(part)
            seconds += s
        return out, seconds
