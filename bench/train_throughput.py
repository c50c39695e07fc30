"""Training speed of the NuClick network on this machine: patches/s of forward + backward +
Adam step at several patch sizes (random inputs; data loading not included). Prints JSON.

usage: python bench/train_throughput.py [--width 0.25] [--threads 2] [--sizes 128:16,256:8,512:4]
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from nuclick_core.training.network import NuClick


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--width", type=float, default=0.25)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--sizes", default="128:16,256:8,512:4", help="patch:batch pairs")
    ap.add_argument("--steps", type=int, default=3, help="timed steps after one warm-up")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    runs = []
    for pair in args.sizes.split(","):
        patch, batch = (int(v) for v in pair.split(":"))
        torch.manual_seed(0)
        model = NuClick(width=args.width)
        opt = torch.optim.Adam(model.parameters(), 1e-3)
        x = torch.randn(batch, 5, patch, patch)
        times = []
        for _ in range(args.steps + 1):
            t0 = time.perf_counter()
            model(x).mean().backward()
            opt.step()
            opt.zero_grad()
            times.append(time.perf_counter() - t0)
        best = min(times[1:])
        runs.append({"patch": patch, "batch": batch, "patches_per_second": round(batch / best, 2)})
    print(json.dumps({"width": args.width, "threads": args.threads, "runs": runs}, indent=1))


if __name__ == "__main__":
    main()
