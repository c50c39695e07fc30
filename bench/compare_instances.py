"""Compare two instance tables click by click: geometry (WKB), status and score.

Used to show that a change keeps results identical (for example a refactor: the tables of
`make run` before and after). Prints JSON; exits 1 when the tables differ.

    python bench/compare_instances.py results_before/ results/        # every */instances.parquet
    python bench/compare_instances.py a.parquet b.parquet
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq


def compare(a: Path, b: Path) -> dict:
    """Per-click equality of two instance GeoParquet files (rows matched by click_id)."""
    ta = pq.read_table(a).to_pandas().set_index("click_id").sort_index()
    tb = pq.read_table(b).to_pandas().set_index("click_id").sort_index()
    same_ids = ta.index.equals(tb.index)
    out: dict = {"a": str(a), "b": str(b), "rows": [len(ta), len(tb)], "same_click_ids": same_ids}
    if not same_ids:
        out["identical"] = False
        return out
    geom = [x == y for x, y in zip(ta["geometry"], tb["geometry"], strict=True)]
    status = (ta["status"] == tb["status"]).to_numpy()
    sa, sb = ta["score"].to_numpy(np.float64), tb["score"].to_numpy(np.float64)
    score = (sa == sb) | (np.isnan(sa) & np.isnan(sb))
    out.update(
        {
            "geometry_wkb_equal": int(np.sum(geom)),
            "status_equal": int(status.sum()),
            "score_equal": int(score.sum()),
            "identical": bool(all(geom) and status.all() and score.all()),
        }
    )
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("a", type=Path, help="instance table, or a folder of */instances.parquet")
    ap.add_argument("b", type=Path)
    args = ap.parse_args()
    if args.a.is_dir():
        pairs = [
            (pa, args.b / pa.relative_to(args.a))
            for pa in sorted(args.a.glob("*/instances.parquet"))
        ]
    else:
        pairs = [(args.a, args.b)]
    if not pairs:
        print(json.dumps({"error": f"no */instances.parquet under {args.a}"}))
        return 1
    results = [compare(pa, pb) for pa, pb in pairs]
    print(json.dumps(results, indent=1))
    return 0 if all(r["identical"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
