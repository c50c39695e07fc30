"""Throughput of the segmentation run on a synthetic slide; prints JSON.

usage: python bench/segment_throughput.py [--model NAME_OR_PATH] [--tiles 4] [--batch-sizes 8,16,32]
       [--threads 0]

The slide is a mosaic of synthetic nuclei scenes (exact ground truth) with one click per nucleus
at its centroid; the run goes through the same engine as `nuclick segment` (reading, inference,
post-processing, overlap resolution, polygons), so the figure is end to end except file I/O.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np

from nuclick_core.data.labelled import LabelledImage, memory_slide
from nuclick_core.data.marks import centroid_clicks
from nuclick_core.data.synth import nuclei_scene
from nuclick_core.inference.engine import ModelGeometry, RunOptions, segment_clicks
from nuclick_core.inference.models import load_card, resolve_model
from nuclick_core.inference.runtime import OnnxPredictor, allotted_cpus
from nuclick_core.io.annotations import click_table_from_points


def mosaic(tiles: int, size: int = 512) -> LabelledImage:
    image = np.zeros((tiles * size, tiles * size, 3), np.uint8)
    labels = np.zeros((tiles * size, tiles * size), np.int32)
    offset = 0
    for k in range(tiles * tiles):
        s = nuclei_scene(size=(size, size), n_nuclei=160, seed=k, radius_range=(6.0, 14.0))
        r, c = divmod(k, tiles)
        image[r * size : (r + 1) * size, c * size : (c + 1) * size] = s.image
        lab = np.where(s.labels > 0, s.labels + offset, 0)
        labels[r * size : (r + 1) * size, c * size : (c + 1) * size] = lab
        offset += int(s.labels.max())
    return LabelledImage("mosaic", image, labels)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model")
    ap.add_argument("--tiles", type=int, default=4)
    ap.add_argument("--batch-sizes", default="8,16,32")
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    card = load_card(resolve_model(args.model, "nucleus"))
    item = mosaic(args.tiles)
    slide = memory_slide(item, card.mpp)
    _, xy = centroid_clicks(item.labels)
    clicks = click_table_from_points(xy, source="centroid")
    geom = ModelGeometry.from_card(card)
    runs = []
    for bs in (int(b) for b in args.batch_sizes.split(",")):
        pred = OnnxPredictor(card, batch_size=bs, threads=args.threads)
        t0 = time.perf_counter()
        table = segment_clicks(slide, clicks, pred, geom, batch_size=bs, options=RunOptions()).table
        wall = time.perf_counter() - t0
        runs.append(
            {
                "batch_size": bs,
                "clicks": len(clicks),
                "ok": int((table["status"] == "ok").sum()),
                "seconds_wall": round(wall, 3),
                "clicks_per_second": round(len(clicks) / wall, 1),
                "providers": pred.providers,
            }
        )
    print(
        json.dumps(
            {
                "model": card.name,
                "sha256": card.sha256[:12],
                "patch_size": card.patch_size,
                "slide_px": list(item.labels.shape),
                "threads": args.threads or allotted_cpus(),
                "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
                "runs": runs,
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
