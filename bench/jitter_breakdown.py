"""Where the AJI lost to click jitter goes: by where each jittered click lands.

Every ground-truth centroid click is jittered as in the report (same sigma and seed, so the
``jitter`` figure equals the report's); each click then lands in its own nucleus, on background,
or in another nucleus. The image is segmented again with the clicks of one landing category put
back on their centroids; the AJI regained is what that category costs. Prints JSON.

usage: python bench/jitter_breakdown.py --model NAME_OR_DIR --data DIR --names A,B,C
       [--mpp 0.25] [--sigma 5] [--seed 1] [--threads 0] [--image-offset=DX,DY]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from nuclick_core.cli.options import parse_offset
from nuclick_core.data.datasets import read_dataset
from nuclick_core.data.labelled import memory_slide, shift_images
from nuclick_core.data.marks import centroid_clicks, ground_truth_marks
from nuclick_core.evaluation.evaluate import score_labels
from nuclick_core.inference.engine import ModelGeometry, segment_clicks
from nuclick_core.inference.models import load_card, resolve_model
from nuclick_core.inference.runtime import OnnxPredictor
from nuclick_core.io.annotations import click_table_from_points
from nuclick_core.io.instances import label_mask

LANDINGS = ("own", "background", "other")
#: Each variant puts the clicks of these landings (indices into LANDINGS) back on the centroids.
PUT_BACK = {
    "centroid": (0, 1, 2),
    "jitter": (),
    "jitter, background put back": (1,),
    "jitter, other put back": (2,),
    "jitter, all off-object put back": (1, 2),
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--names", required=True)
    ap.add_argument("--mpp", type=float, default=0.25)
    ap.add_argument("--sigma", type=float, default=5.0)
    ap.add_argument("--seed", type=int, default=1, help="the report's jitter seed is 1")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--image-offset", type=parse_offset, default=(0.0, 0.0))
    args = ap.parse_args()

    card = load_card(resolve_model(args.model, "nucleus"))
    geom = ModelGeometry.from_card(card)
    predictor = OnnxPredictor(card, batch_size=16, threads=args.threads)
    names = args.names.split(",")
    items = shift_images(read_dataset(Path(args.data), "folder", names), *args.image_offset)

    aji: dict[str, list[float]] = {v: [] for v in PUT_BACK}
    landed = np.zeros(3)
    for item in items:
        ids, centre = centroid_clicks(item.labels)
        _, moved = ground_truth_marks(
            item.labels, "nucleus", jitter_sigma=args.sigma, seed=args.seed
        )
        h, w = item.labels.shape
        rows = np.clip(np.floor(moved[:, 1]).astype(int), 0, h - 1)
        cols = np.clip(np.floor(moved[:, 0]).astype(int), 0, w - 1)
        hit = item.labels[rows, cols]
        where = np.where(hit == ids, 0, np.where(hit == 0, 1, 2))
        landed += np.bincount(where, minlength=3)
        slide = memory_slide(item, args.mpp)
        for v, landings in PUT_BACK.items():
            xy = np.where(np.isin(where, landings)[:, None], centre, moved)
            clicks = click_table_from_points(xy, object="nucleus", source="jitter breakdown")
            table = segment_clicks(slide, clicks, predictor, geom).table
            pred = label_mask(table, w, h).astype(np.int32)
            aji[v].append(score_labels(item.labels.astype(np.int32), pred)["aji"])
    means = {v: round(float(np.mean(a)), 4) for v, a in aji.items()}
    shares = landed / landed.sum()
    jittered = means["jitter"]
    out = {
        "model": card.name,
        "images": names,
        "sigma": args.sigma,
        "seed": args.seed,
        "image_offset": list(args.image_offset),
        "clicks_landing": {c: round(float(f), 4) for c, f in zip(LANDINGS, shares, strict=True)},
        "aji": means,
        "aji_lost_to": {
            "background clicks": round(means["jitter, background put back"] - jittered, 4),
            "clicks in another nucleus": round(means["jitter, other put back"] - jittered, 4),
            "off-centre clicks inside": round(
                means["centroid"] - means["jitter, all off-object put back"], 4
            ),
        },
    }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
