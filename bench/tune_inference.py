"""Choose the post-processing threshold and test-time augmentation on TRAINING images (never the
validation images the model card reports); prints JSON, best first.

usage: python bench/tune_inference.py --model DIR --data DIR --names A,B,C --mpp 0.25
       [--thresholds 0.4,0.5,0.6] [--tta 1,4] [--threads 0] [--format folder|cells]
       [--image-offset=DX,DY]

The object type comes from the model card: glands are marked by ground-truth squiggles and
ranked by object Dice, nuclei and cells by clicks and AJI. With ``--format cells`` the names are
training cells, blended into canvases with seeds no validation canvas uses.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

from nuclick_core.cli.options import parse_offset
from nuclick_core.data.cell_canvases import build_canvases, read_cells
from nuclick_core.data.datasets import read_dataset
from nuclick_core.data.labelled import shift_images
from nuclick_core.evaluation.evaluate import evaluate_image, mean_figures, model_segmenter
from nuclick_core.inference.engine import ModelGeometry
from nuclick_core.inference.models import load_card, resolve_model
from nuclick_core.inference.runtime import OnnxPredictor


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--names", required=True)
    ap.add_argument("--mpp", type=float, required=True)
    ap.add_argument("--thresholds", default="0.4,0.5,0.6")
    ap.add_argument("--tta", default="1,4")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--format", default="folder", choices=["folder", "cells"])
    ap.add_argument("--canvases", type=int, default=20, help="canvases to build (cells)")
    ap.add_argument(
        "--image-offset",
        type=parse_offset,
        default=(0.0, 0.0),
        help="DX,DY as in nuclick train (write it with '=')",
    )
    args = ap.parse_args()
    card = load_card(resolve_model(args.model, "nucleus"))  # --model is required: a name or folder
    names = args.names.split(",")
    if args.format == "cells":
        cells = [c for c in read_cells(Path(args.data)) if c.name in names]
        items = build_canvases(cells, args.canvases, seed=20_000, size=2 * card.patch_size)
    else:
        items = shift_images(read_dataset(Path(args.data), "folder", names), *args.image_offset)
    obj = card.object_type
    keys = ("object_dice", "f1", "aji", "dice") if obj == "gland" else ("aji", "dice", "pq", "sq")
    rows = []
    for views in (int(v) for v in args.tta.split(",")):
        predictor = OnnxPredictor(card, batch_size=16, threads=args.threads, tta=views)
        for threshold in (float(t) for t in args.thresholds.split(",")):
            geom = ModelGeometry.from_card(card)
            geom = dataclasses.replace(
                geom, postprocess=dataclasses.replace(geom.postprocess, threshold=threshold)
            )
            t0 = time.perf_counter()
            seg = model_segmenter(predictor, geom)
            figs = mean_figures(
                [evaluate_image(it, seg, mpp=args.mpp, object_type=obj) for it in items]
            )
            rows.append(
                {
                    "tta": views,
                    "threshold": threshold,
                    "seconds": round(time.perf_counter() - t0, 1),
                    **{k: round(figs[k], 4) for k in keys},
                }
            )
    rows.sort(key=lambda r: -r[keys[0]])
    print(
        json.dumps(
            {
                "model": card.name,
                "images": [i.name for i in items],
                "image_offset": list(args.image_offset),
                "runs": rows,
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
