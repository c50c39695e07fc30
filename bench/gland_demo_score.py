"""Score the gland demo's instances against the generated scene's ground truth, as generated
(half the glands are rings without their lumen) and with every lumen filled in (the GlaS
convention the gland model follows). Prints JSON.

usage: python bench/gland_demo_score.py [results/synthetic_glands/instances.parquet]
       (after `make run`; the labels are resources/demo/synthetic_glands.labels.png)
"""

from __future__ import annotations

import json
import sys

import geopandas as gpd
import numpy as np
from PIL import Image
from scipy import ndimage as ndi

from nuclick_core.evaluation.evaluate import score_labels
from nuclick_core.io.instances import label_mask


def main() -> None:
    path = sys.argv[1] if len(sys.argv) > 1 else "results/synthetic_glands/instances.parquet"
    truth = np.array(Image.open("resources/demo/synthetic_glands.labels.png")).astype(np.int32)
    filled = truth.copy()
    for k in range(1, int(truth.max()) + 1):
        filled[ndi.binary_fill_holes(truth == k) & (truth == 0)] = k
    pred = label_mask(gpd.read_parquet(path), truth.shape[1], truth.shape[0]).astype(np.int32)
    out = {
        name: {k: round(v, 3) for k, v in score_labels(gt, pred, "gland").items()}
        for name, gt in (("as_generated", truth), ("lumens_filled", filled))
    }
    print(json.dumps({"instances": path, **out}, indent=1))


if __name__ == "__main__":
    main()
