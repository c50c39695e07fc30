"""How far a labelled dataset's labels sit from the objects in its images, as a model sees them.

A model trained with flips and rotations cannot learn a fixed offset between images and labels
(a flip reverses it), so its masks sit where the objects are; the mean offset of its masks'
centroids from the labels' centroids (clicks at the labels' centroids) measures where the
labels sit. Prints JSON per image and overall, with the ``--image-offset`` that moves the images
onto their labels (the mean offset of the masks, negated). Colour-based estimates disagree from
channel to channel on TCGA tiles (their colour planes are out of register by up to a pixel), so
the model is the measuring instrument.

usage: python bench/label_alignment.py --data ../shared/data/monuseg-train [--names A,B]
       [--model nuclei-light] [--mpp 0.25] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from nuclick_core.data.datasets import read_dataset
from nuclick_core.data.marks import centroid_clicks
from nuclick_core.evaluation.evaluate import evaluate_image, model_segmenter
from nuclick_core.inference.engine import ModelGeometry
from nuclick_core.inference.models import load_card, resolve_model
from nuclick_core.inference.runtime import OnnxPredictor


def centroid_offsets(labels: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """(dx, dy) of each predicted object's centroid from its labelled object's, (K, 2); pred
    holds k + 1 for the k-th label id in increasing order (as ``evaluate_image`` returns)."""
    ids, true_xy = centroid_clicks(labels)
    k = np.arange(1, len(ids) + 1)
    found = np.isin(k, np.unique(pred))
    _, got_xy = centroid_clicks(np.where(np.isin(pred, k[found]), pred, 0))
    return got_xy - true_xy[found]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--format", default="folder")
    ap.add_argument("--names", help="comma-separated image names (default: all)")
    ap.add_argument("--model", help="model name or folder (default: the current nuclei model)")
    ap.add_argument("--mpp", type=float, default=0.25, help="um/px of the dataset's images")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    card = load_card(resolve_model(args.model, "nucleus"))
    segment = model_segmenter(
        OnnxPredictor(card, threads=args.threads), ModelGeometry.from_card(card)
    )
    names = args.names.split(",") if args.names else None
    per_image, every = {}, []
    for item in read_dataset(Path(args.data), args.format, names):
        result = evaluate_image(item, segment, mpp=args.mpp, object_type=card.object_type)
        d = centroid_offsets(item.labels, result.pred)
        every.append(d)
        per_image[item.name] = {
            "dx": round(float(d[:, 0].mean()), 3),
            "dy": round(float(d[:, 1].mean()), 3),
            "objects": len(d),
        }
    d = np.concatenate(every)
    dx, dy = float(d[:, 0].mean()), float(d[:, 1].mean())
    sem = d.std(0) / np.sqrt(len(d))
    print(
        json.dumps(
            {
                "data": args.data,
                "model": card.name,
                "mask_offset_from_labels": {
                    "dx": round(dx, 3),
                    "dy": round(dy, 3),
                    "sem": [round(float(s), 3) for s in sem],
                    "objects": len(d),
                },
                "image_offset": f"{-dx:.2f},{-dy:.2f}",
                "per_image": per_image,
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
