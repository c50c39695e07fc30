"""`nuclick segment` on large real-tissue slides: wall time, clicks/s and peak memory; prints JSON.

usage: python bench/large_slide.py [--copies 10] [--scales 1,2] [--model instant|NAME]
       [--workers 0] [--threads 0] [--dir ~/.cache/nuclick-wsi/bench]

The slides are pyramidal tiled TIFFs (deflate, 512 px tiles, levels 1, 4, 16, 64; mpp in the
resolution tags, so OpenSlide opens them as generic TIFF) tiled from a 2048 px square of the
real CMU demo region (H&E, 0.499 um/px; ``--source`` another image), each copy flipped and
turned in turn (the eight dihedral transforms). The clicks are the seed detector's on that
square (``nuclick detect-seeds``'s detector), moved with each copy. Scale 1 is ``copies`` x
``copies`` copies (10: 20,480 px square), scale 2 twice the side (four times the area and the
clicks).

``--model instant`` (the default) is an ONNX model with the network's interface that costs
almost nothing (a nucleus-sized disk around the click, at the patch centre), so
the figures are the engine's; a model name runs that model. Each slide runs as its own
``nuclick segment`` process; peak memory is that process's maximum resident set.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from nuclick_core.data.seeds import detect_nucleus_seeds
from nuclick_core.inference.models import load_card, resolve_model
from nuclick_core.io.files import sha256_file
from nuclick_core.io.slides import open_slide, read_grid_region

SOURCE = Path("resources/demo/cmu_small_region.svs")
TILE = 512
LEVELS = (1, 4, 16, 64)


def dihedral(a: np.ndarray, k: int) -> np.ndarray:
    """The k-th of the eight flips and turns of the first two axes."""
    a = np.rot90(a, k % 4, axes=(0, 1))
    return a[:, ::-1] if k >= 4 else a


def dihedral_points(xy: np.ndarray, k: int, side: int) -> np.ndarray:
    """Where pixel centres ``xy`` (x, y) of a side x side square go under :func:`dihedral`."""
    x, y = xy[:, 0].copy(), xy[:, 1].copy()
    for _ in range(k % 4):  # np.rot90 (counter-clockwise): (x, y) -> (y, side - x)
        x, y = y, side - x
    if k >= 4:
        x = side - x
    return np.column_stack([x, y])


def source_square(source: Path, mpp: float | None) -> tuple[np.ndarray, float]:
    """The largest square of side a multiple of 256 at the top left of ``source``."""
    slide = open_slide(source, mpp=mpp, fallback_mpp=0.499)
    try:
        side = min(slide.width, slide.height) // 256 * 256
        rgb = read_grid_region(slide, 0, 0, side, side, target_mpp=slide.mpp)
        return rgb, slide.mpp
    finally:
        slide.close()


def write_mosaic(path: Path, square: np.ndarray, copies: int, mpp: float) -> None:
    """Pyramidal tiled TIFF of copies x copies transformed squares, written tile by tile."""
    import tifffile

    side0 = square.shape[0]
    levels = [lv for lv in LEVELS if (side0 // lv) % 16 == 0]  # TIFF tiles: multiples of 16
    views = {}
    for level in levels:
        s = side0 // level
        small = square.reshape(s, level, s, level, 3).mean(axis=(1, 3)).round().astype(np.uint8)
        views[level] = [np.ascontiguousarray(dihedral(small, k)) for k in range(8)]

    def tiles(level: int):
        s, tile = side0 // level, min(TILE, side0 // level)
        for r in range(0, copies * s, tile):
            for c in range(0, copies * s, tile):
                k = ((r // s) * copies + c // s) % 8
                yield views[level][k][r % s : r % s + tile, c % s : c % s + tile]

    per_cm = 1e4 / mpp
    with tifffile.TiffWriter(path, bigtiff=True) as tif:
        for level in levels:
            side, tile = copies * side0 // level, min(TILE, side0 // level)
            tif.write(
                tiles(level),
                shape=(side, side, 3),
                dtype=np.uint8,
                tile=(tile, tile),
                photometric="rgb",
                compression="zlib",
                resolution=(per_cm / level, per_cm / level),
                resolutionunit="CENTIMETER",
                subfiletype=0 if level == 1 else 1,
            )


def write_clicks(path: Path, seeds: np.ndarray, copies: int, side: int) -> int:
    with path.open("w") as f:
        f.write("x,y\n")
        for k in range(copies * copies):
            r, c = divmod(k, copies)
            xy = dihedral_points(seeds, k % 8, side) + np.array([c * side, r * side])
            np.savetxt(f, xy, fmt="%.1f", delimiter=",")
    return copies * copies * len(seeds)


def instant_model(folder: Path, like: str | None) -> Path:
    """An ONNX model with the network's interface that costs almost nothing: its output is a
    disk of probability 0.9 at the patch centre, where the click is (zero times the inclusion
    map plus a constant disk), with a card copied from ``like`` (default: the current nuclei
    model)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    card = load_card(resolve_model(like, "nucleus"))
    p, r = card.patch_size, 3.5 / card.mpp  # a nucleus of radius 3.5 um
    yy, xx = np.mgrid[0:p, 0:p] - p // 2
    disk = np.where(xx**2 + yy**2 <= r * r, 0.9, 0.0).astype(np.float32)[None, None]
    nodes = [
        helper.make_node("Slice", ["input", "s", "e", "a"], ["inclusion"]),
        helper.make_node("Mul", ["inclusion", "zero"], ["nothing"]),
        helper.make_node("Add", ["nothing", "disk"], ["prob"]),
    ]
    inits = [
        numpy_helper.from_array(np.array([3], np.int64), "s"),
        numpy_helper.from_array(np.array([4], np.int64), "e"),
        numpy_helper.from_array(np.array([1], np.int64), "a"),
        numpy_helper.from_array(np.array(0, np.float32), "zero"),
        numpy_helper.from_array(disk, "disk"),
    ]
    graph = helper.make_graph(
        nodes,
        "instant",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 5, p, p])],
        [helper.make_tensor_value_info("prob", TensorProto.FLOAT, ["N", 1, p, p])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save(model, folder / "model.onnx")
    raw = {**card.raw, "name": "instant", "sha256": sha256_file(folder / "model.onnx")}
    raw.setdefault("inference", {})["tta"] = 1
    (folder / "model.json").write_text(json.dumps(raw))
    return folder


def segment(slide: Path, clicks: Path, model: str, out: Path, args) -> dict:
    """``nuclick segment`` as its own process; its stats and its peak resident memory (its
    VmHWM, polled every 0.2 s)."""
    cmd = [
        str(Path(sys.executable).parent / "nuclick"),
        "segment",
        "--slide",
        str(slide),
        "--annotations",
        str(clicks),
        "--model",
        model,
        "--out",
        str(out),
        "--threads",
        str(args.threads),
        "--workers",
        str(args.workers),
    ]
    t0 = time.perf_counter()
    peak_kb = 0
    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=log)
        # the child's own high-water mark, polled (ru_maxrss would carry over this process's)
        while proc.poll() is None:
            try:
                with open(f"/proc/{proc.pid}/status") as f:
                    hwm = [ln for ln in f if ln.startswith("VmHWM")]
                peak_kb = max(peak_kb, int(hwm[0].split()[1])) if hwm else peak_kb
            except OSError:
                pass
            time.sleep(0.2)
        wall = time.perf_counter() - t0
        log.seek(0)
        text = log.read()
    if proc.returncode != 0:
        raise SystemExit(f"nuclick segment failed:\n{text[-3000:]}")
    stats = json.loads(re.search(r"wrote \S+: (\{.*\})", text).group(1))
    return {"seconds_process": round(wall, 2), "peak_rss_mb": round(peak_kb / 1024, 1), **stats}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--copies", type=int, default=10)
    ap.add_argument("--scales", default="1,2", help="slide sides, in multiples of --copies")
    ap.add_argument("--model", default="instant")
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--dir", type=Path, default=Path.home() / ".cache/nuclick-wsi/bench")
    ap.add_argument("--source", type=Path, default=SOURCE, help="the tissue to tile")
    ap.add_argument("--mpp", type=float, help="the source's mpp, when it does not say")
    args = ap.parse_args()
    if args.source == SOURCE and not SOURCE.exists():
        subprocess.run([str(Path(sys.executable).parent / "nuclick"), "fetch-demo"], check=True)
    args.dir.mkdir(parents=True, exist_ok=True)
    square, mpp = source_square(args.source, args.mpp)
    side = square.shape[0]
    seeds = detect_nucleus_seeds(square, mpp=mpp) + 0.5
    with tempfile.TemporaryDirectory() as tmp:
        model = (
            str(instant_model(Path(tmp) / "instant", None))
            if args.model == "instant"
            else args.model
        )
        runs = []
        for scale in (int(s) for s in args.scales.split(",")):
            copies = args.copies * scale
            stem = f"{args.source.stem}_mosaic_{copies}x{copies}"
            slide, clicks = args.dir / f"{stem}.tif", args.dir / f"{stem}.clicks.csv"
            t0 = time.perf_counter()
            if not slide.exists():
                write_mosaic(slide, square, copies, mpp)
            n = write_clicks(clicks, seeds, copies, side)
            built = time.perf_counter() - t0
            run = segment(slide, clicks, model, args.dir / "out.parquet", args)
            runs.append(
                {
                    "scale": scale,
                    "slide_px": copies * side,
                    "slide_mb": round(slide.stat().st_size / 2**20, 1),
                    "clicks": n,
                    "seconds_to_build": round(built, 1),
                    "clicks_per_second": round(n / run["seconds_wall"], 1),
                    **run,
                }
            )
            print(json.dumps(runs[-1]), file=sys.stderr, flush=True)
    first, last = runs[0], runs[-1]
    print(
        json.dumps(
            {
                "model": args.model,
                "workers": args.workers,
                "threads": args.threads,
                "cpus": os.cpu_count(),
                "runs": runs,
                "memory_growth": round(last["peak_rss_mb"] / first["peak_rss_mb"] - 1, 3),
                "time_per_click_ratio": round(
                    (last["seconds_wall"] / last["clicks"])
                    / (first["seconds_wall"] / first["clicks"]),
                    3,
                ),
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
