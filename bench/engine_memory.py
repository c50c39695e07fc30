"""What a run holds per click, and what one tile read costs; prints JSON.

usage: python bench/engine_memory.py [--csv CLICKS.csv] [--slide SLIDE.tif]
       (defaults: the 40,960 px slide of ``bench/large_slide.py``; run that first)

``per_click_bytes``: the state a run keeps for the whole slide, per click, as the engine builds
it (tracemalloc for NumPy, ``nbytes`` for Arrow): the click columns, the outlines' spill
offsets, boxes and areas (:class:`~nuclick_core.io.geometries.Geometries`), the tile plans,
the exclusion index, status and score. ``tile_read``: peak Python allocations and time of
reading one 1,152 px tile at the nuclei models' 0.25 um/px, resampled at once and in strips,
and 16 tiles read by one thread and by two.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path

import numpy as np

from nuclick_core.inference.patches import ExclusionIndex, PatchPlan, grid_pixels, plan_tiles
from nuclick_core.io import slides
from nuclick_core.io.annotations import read_clicks, validate_clicks
from nuclick_core.io.geometries import Geometries

BENCH = Path.home() / ".cache/nuclick-wsi/bench"
STEM = "cmu_small_region_mosaic_20x20"
MODEL_MPP, PATCH, TILE = 0.25, 128, 1024


def traced(build) -> tuple[object, int]:
    """``build()`` and the bytes it left allocated."""
    tracemalloc.start()
    out = build()
    held = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return out, held


def per_click(csv: Path, slide: slides.Slide) -> dict:
    clicks = validate_clicks(read_clicks(csv), width=slide.width, height=slide.height, path=csv)
    n = len(clicks)
    f = MODEL_MPP / slide.mpp
    columns = {
        "click_columns": sum(
            getattr(clicks, k).nbytes
            for k in ("click_id", "kind", "object", "label", "xy", "lines")
        ),
        "source_text": clicks.source.nbytes,
    }
    with tempfile.TemporaryDirectory() as tmp:
        _, columns["outline_offsets_boxes_areas"] = traced(lambda: Geometries(n, tmp))
        uv = grid_pixels(clicks.xy, f)
        _, columns["tile_plans"] = traced(
            lambda: [
                PatchPlan(p.click_index.copy(), p.origin_uv, p.region, p.row)
                for p in plan_tiles(uv, patch_size=PATCH, tile=TILE)
            ]
        )
        _, columns["exclusion_index"] = traced(lambda: ExclusionIndex(uv, np.arange(n)))
    columns["status_and_score"] = n * (8 + 8)  # an object pointer and a float64 per click
    per = {k: round(v / n, 1) for k, v in columns.items()}
    return {"clicks": n, "per_click_bytes": per, "total_per_click": round(sum(per.values()), 1)}


def tile_read(slide: slides.Slide) -> dict:
    side = TILE + PATCH
    out = {}
    for name, strip in (("at_once", 10**9), ("strips", slides.RESAMPLE_STRIP)):
        old, slides.RESAMPLE_STRIP = slides.RESAMPLE_STRIP, strip
        try:
            tracemalloc.start()
            t0 = time.perf_counter()
            for k in range(4):
                slides.read_grid_region(slide, 2000 + k * TILE, 4000, side, side, MODEL_MPP)
            seconds = (time.perf_counter() - t0) / 4
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
        finally:
            slides.RESAMPLE_STRIP = old
        out[name] = {"peak_mb": round(peak / 1e6, 1), "ms": round(seconds * 1000, 1)}
    # Reading releases the GIL (OpenSlide's decoding, NumPy's passes over whole rows): the same
    # tiles read one after another and by two threads at once.
    origins = [(2000 + (k % 8) * TILE, 4000 + (k // 8) * TILE) for k in range(16)]

    def read(some: list) -> None:
        for u, v in some:
            slides.read_grid_region(slide, u, v, side, side, MODEL_MPP)

    t0 = time.perf_counter()
    read(origins)
    one = time.perf_counter() - t0
    pair = [threading.Thread(target=read, args=(origins[k::2],)) for k in range(2)]
    t0 = time.perf_counter()
    for th in pair:
        th.start()
    for th in pair:
        th.join()
    two = time.perf_counter() - t0
    out["threads"] = {"tiles": len(origins), "one_s": round(one, 2), "two_s": round(two, 2)}
    return {"tile_px": side, **out}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--csv", type=Path, default=BENCH / f"{STEM}.clicks.csv")
    ap.add_argument("--slide", type=Path, default=BENCH / f"{STEM}.tif")
    args = ap.parse_args()
    for path in (args.csv, args.slide):
        if not path.is_file():
            raise SystemExit(f"{path} does not exist; run python bench/large_slide.py first")
    slide = slides.open_slide(args.slide, fallback_mpp=0.499)
    try:
        print(json.dumps({**per_click(args.csv, slide), "tile_read": tile_read(slide)}, indent=1))
    finally:
        slide.close()


if __name__ == "__main__":
    main()
