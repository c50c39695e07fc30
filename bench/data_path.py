"""Training data path speed: patches per second one process draws, with the paper's
augmentations alone and with the stain, quality and scale variety (and gland strokes), so a
recipe's augmentation can be checked not to slow training. Prints JSON.

    python bench/data_path.py --data ../shared/data/monuseg-train --patch-size 128
    python bench/data_path.py --data ../shared/data/glas-train --object gland \
        --patch-size 256 --downscale 2
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from nuclick_core.data.datasets import read_dataset
from nuclick_core.data.labelled import downscale
from nuclick_core.training.augment import Variety
from nuclick_core.training.click_patches import ClickPatchSampler
from nuclick_core.training.gland_patches import GlandPatchSampler


def rate(sampler, n: int, batch: int) -> float:
    rng = np.random.default_rng(0)
    sampler.batch(rng.integers(len(sampler), size=batch), rng)  # warm-up
    t0 = time.perf_counter()
    for _ in range(n):
        sampler.batch(rng.integers(len(sampler), size=batch), rng)
    return n * batch / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--object", default="nucleus", choices=["nucleus", "cell", "gland"])
    ap.add_argument("--patch-size", type=int, default=128)
    ap.add_argument("--downscale", type=float, default=1.0)
    ap.add_argument("--batches", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--images", type=int, default=8, help="images to read (speed, not coverage)")
    args = ap.parse_args()
    items = downscale(read_dataset(Path(args.data), "folder")[: args.images], args.downscale)
    wide = Variety(stain=0.5, quality=0.3, scale=0.3)
    if args.object == "gland":
        configs = {
            "paper": GlandPatchSampler(items, patch_size=args.patch_size),
            "variety": GlandPatchSampler(
                items, patch_size=args.patch_size, variety=Variety(stain=0.5, quality=0.3)
            ),
            "variety+strokes": GlandPatchSampler(
                items,
                patch_size=args.patch_size,
                variety=Variety(stain=0.5, quality=0.3),
                strokes=0.5,
            ),
        }
    else:
        configs = {
            "paper": ClickPatchSampler(items, patch_size=args.patch_size),
            "variety": ClickPatchSampler(items, patch_size=args.patch_size, variety=wide),
        }
    out = {
        "data": args.data,
        "object": args.object,
        "patch_size": args.patch_size,
        "patches_per_second_one_process": {
            k: round(rate(s, args.batches, args.batch_size), 1) for k, s in configs.items()
        },
        "variety": {"stain": 0.5, "quality": 0.3, "scale": 0.3 if args.object != "gland" else 0},
    }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
