"""Choose the post-processing threshold and test-time augmentation on TRAINING images (never the
validation images the model card reports); prints JSON, best first.

usage: python bench/tune_inference.py --model DIR --data DIR --names A,B,C --mpp 0.25
       [--thresholds 0.4,0.5,0.6] [--tta 1,4] [--threads 0]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

from nuclick_core.datasets import read_dataset
from nuclick_core.engine import ModelGeometry
from nuclick_core.evaluate import evaluate_image, mean_figures, model_segmenter
from nuclick_core.runtime import OnnxPredictor, load_card, resolve_model


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--names", required=True)
    ap.add_argument("--mpp", type=float, required=True)
    ap.add_argument("--thresholds", default="0.4,0.5,0.6")
    ap.add_argument("--tta", default="1,4")
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    card = load_card(resolve_model(args.model, "nucleus"))
    items = read_dataset(Path(args.data), "folder", args.names.split(","))
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
            figs = mean_figures([evaluate_image(it, seg, mpp=args.mpp) for it in items])
            rows.append(
                {
                    "tta": views,
                    "threshold": threshold,
                    "seconds": round(time.perf_counter() - t0, 1),
                    **{k: round(figs[k], 4) for k in ("aji", "dice", "pq", "sq")},
                }
            )
    rows.sort(key=lambda r: -r["aji"])
    print(
        json.dumps(
            {"model": card.name, "images": items and [i.name for i in items], "runs": rows},
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
