"""Reading and validating a large click file, in columns and mark by mark; prints JSON.

usage: python bench/read_clicks.py [--csv CLICKS.csv] [--formats csv,parquet,geojson]
       [--no-tracemalloc]  (default CSV: the 40,960 px bench slide's)

The CSV is the 564,000 clicks of ``bench/large_slide.py``'s 40,960 px slide (run that first);
the same points are also written as GeoParquet and as a QuPath-style GeoJSON (a
FeatureCollection of Point features with a classification) beside it. Each format is read with
``read_clicks`` + ``validate_clicks`` as ``nuclick segment`` does, once through its column path
and once with that path switched off (the mark-by-mark reader). ``peak_mb`` and ``held_mb`` are
tracemalloc's Python allocations: Arrow's own memory pool is not in them. Tracemalloc slows
allocation-heavy readers (the JSON parser most); ``--no-tracemalloc`` gives the seconds without
it (and no memory figures).
"""

from __future__ import annotations

import argparse
import json
import time
import tracemalloc
from contextlib import nullcontext
from pathlib import Path
from unittest import mock

import geopandas as gpd
import pandas as pd

from nuclick_core.io import annotations as annotations_module
from nuclick_core.io.annotations import read_clicks, validate_clicks

DEFAULT = Path.home() / ".cache/nuclick-wsi/bench/cmu_small_region_mosaic_20x20.clicks.csv"
COLUMN_PATHS = {
    ".csv": "read_delimited_points",
    ".parquet": "read_geoparquet_points",
    ".geojson": "read_geojson_points",
}


def measure(path: Path, columns: bool, trace: bool = True) -> dict:
    off = mock.patch.object(annotations_module, COLUMN_PATHS[path.suffix], lambda p: None)
    with nullcontext() if columns else off:
        if trace:
            tracemalloc.start()
        t0 = time.perf_counter()
        clicks = read_clicks(path)
        x1, y1 = clicks.xy.max(0) + 1
        validate_clicks(clicks, width=float(x1), height=float(y1), path=path)
        seconds = time.perf_counter() - t0
        if trace:
            held, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
    out = {
        "file": path.name,
        "reader": "columns" if columns else "mark by mark",
        "clicks": len(clicks.click_id),
        "seconds": round(seconds, 2),
    }
    if trace:
        out.update(held_mb=round(held / 1e6, 1), peak_mb=round(peak / 1e6, 1))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--csv", type=Path, default=DEFAULT)
    ap.add_argument("--formats", default="csv,parquet,geojson", help="which files to read")
    ap.add_argument("--no-tracemalloc", action="store_true", help="seconds only, untraced")
    args = ap.parse_args()
    if not args.csv.is_file():
        raise SystemExit(f"{args.csv} does not exist; run python bench/large_slide.py first")
    parquet = args.csv.with_suffix(".parquet")
    if not parquet.exists():
        frame = pd.read_csv(args.csv)
        points = gpd.points_from_xy(frame.pop("x"), frame.pop("y"))
        gpd.GeoDataFrame(frame, geometry=points).to_parquet(parquet)
    geojson = args.csv.with_suffix(".geojson")
    if not geojson.exists():
        frame = pd.read_csv(args.csv)
        features = [
            {
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": [x, y]},
                "properties": {"objectType": "detection", "classification": {"name": "Nucleus"}},
            }
            for x, y in zip(frame["x"].tolist(), frame["y"].tolist(), strict=True)
        ]
        geojson.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    by_format = {"csv": args.csv, "parquet": parquet, "geojson": geojson}
    files = [by_format[f] for f in args.formats.split(",")]
    trace = not args.no_tracemalloc
    runs = [measure(p, columns, trace) for p in files for columns in (True, False)]
    if geojson in files:  # the part of reading GeoJSON that is the JSON parser's alone
        t0 = time.perf_counter()
        json.loads(geojson.read_text(encoding="utf-8"), parse_int=float)
        runs.append(
            {
                "file": geojson.name,
                "reader": "json.loads alone",
                "seconds": round(time.perf_counter() - t0, 2),
            }
        )
    print(json.dumps({"runs": runs}, indent=1))


if __name__ == "__main__":
    main()
