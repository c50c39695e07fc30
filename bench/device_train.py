"""Time-boxed NuClick training on one GPU, weights back as fp16 chunks; and their reassembly.

    # on the GPU machine (make device-train; the data travel in resources/device/):
    python bench/device_train.py train --data resources/device/monuseg-train \
        --width 0.5 --minutes 9 --batch-size 512 --out $OUT/run
    # back here, on the CPU:
    python bench/device_train.py assemble --chunks RUN_DIR --out ~/.cache/nuclick-wsi/device.pt
    nuclick export --checkpoint ~/.cache/nuclick-wsi/device.pt --out models/NAME --mpp 0.25 ...

`train` draws click patches exactly as `nuclick train` does (the same sampler, augmentations
and loss), in DataLoader worker processes so the GPU does not wait on numpy, and runs the
network with bf16 autocast and channels_last on CUDA (plain fp32 on the CPU, where the tests
run it for a few steps at a tiny width). The learning rate follows a warm-up and a cosine over
the given minutes, so a run of any length ends annealed. It writes the weights with
nuclick_core.training.chunks (fp16, 16 MiB chunks, under 64 MiB in all: width 0.5 is the widest
that comes back whole) and prints a JSON summary (steps, patches, patches/s, losses).

The checkout that travels must stay under 64 MiB: the training images (53 MB for all 30 MoNuSeg
tiles) travel without the validation images, which are scored back here by `nuclick evaluate`.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled

import torch
from torch.utils.data import DataLoader, IterableDataset

from nuclick_core.data.datasets import read_dataset
from nuclick_core.data.labelled import shift_images
from nuclick_core.training.chunks import assemble_checkpoint, fp16_bytes, save_chunks
from nuclick_core.training.click_patches import ClickPatchSampler
from nuclick_core.training.recipe import TrainRecipe
from nuclick_core.training.run import train_config
from nuclick_core.training.train import initial_net, nuclick_loss


class _Batches(IterableDataset):
    """Endless training batches; every worker draws from its own seeded generator."""

    def __init__(self, sampler: ClickPatchSampler, batch_size: int, seed: int) -> None:
        self.sampler, self.batch_size, self.seed = sampler, batch_size, seed

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        rng = np.random.default_rng([self.seed, info.id if info else 0])
        while True:
            idx = rng.integers(len(self.sampler), size=self.batch_size)
            yield tuple(torch.from_numpy(a) for a in self.sampler.batch(idx, rng))


def _lr_at(t: float, total: float, base: float, warmup: float) -> float:
    """Linear warm-up over the first ``warmup`` of the time, then a cosine to zero."""
    frac = min(t / max(total, 1e-9), 1.0)
    if frac < warmup:
        return base * frac / warmup
    return base * 0.5 * (1.0 + math.cos(math.pi * (frac - warmup) / (1.0 - warmup)))


def cmd_train(args: argparse.Namespace) -> dict:
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    cuda = device.startswith("cuda")
    names = [n for n in args.val_names.split(",") if n]
    items = [it for it in read_dataset(Path(args.data), "folder") if it.name not in names]
    items = shift_images(items, *args.image_offset)
    sampler = ClickPatchSampler(
        items,
        patch_size=args.patch_size,
        click_inner=args.click_inner,
        near_miss=args.near_miss,
        near_miss_px=args.near_miss_px,
    )
    recipe = TrainRecipe(
        data=args.data,
        val_names=tuple(names),
        width=args.width,
        patch_size=args.patch_size,
        batch_size=args.batch_size,
        epochs=1,
        steps_per_epoch=max(args.max_steps, 1),
        lr=args.lr,
        seed=args.seed,
        click_inner=args.click_inner,
        near_miss=args.near_miss,
        near_miss_px=args.near_miss_px,
        image_offset=tuple(args.image_offset),
        bce_norm=args.bce_norm,
        init=args.init,
    )
    cfg = train_config(recipe, [it.name for it in items], 0, device, " ".join(sys.argv))
    cfg.extra["trained_on"] = "device run (bench/device_train.py)"
    torch.manual_seed(args.seed)
    net = initial_net(cfg, Path(args.init) if args.init else None, print)
    weight_mib = fp16_bytes(net.state_dict()) / 2**20
    if weight_mib > args.max_total_mib:
        raise SystemExit(f"width {args.width}: fp16 weights {weight_mib:.1f} MiB, over the limit")
    if cuda:
        net = net.to(memory_format=torch.channels_last)
        torch.backends.cudnn.benchmark = True
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=cfg.weight_decay)
    loader = DataLoader(
        _Batches(sampler, args.batch_size, args.seed),
        batch_size=None,
        num_workers=args.workers,
        pin_memory=cuda,
        persistent_workers=args.workers > 0,
        prefetch_factor=4 if args.workers > 0 else None,
    )
    budget = args.minutes * 60.0
    t0 = time.perf_counter()
    history: list[dict] = []
    steps, waited, last = 0, 0.0, float("nan")
    t_data = time.perf_counter()
    net.train()
    for x, y, o in loader:
        waited += time.perf_counter() - t_data
        elapsed = time.perf_counter() - t0
        if elapsed >= budget or (args.max_steps and steps >= args.max_steps):
            break
        for group in opt.param_groups:
            group["lr"] = _lr_at(elapsed, budget, args.lr, args.warmup)
        x = x.to(device, non_blocking=True)
        y, o = y.to(device, non_blocking=True), o.to(device, non_blocking=True)
        if cuda:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=cuda):
            logits = net(x)
        loss = nuclick_loss(logits.float(), y, o, bce_norm=cfg.bce_norm)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        steps += 1
        if steps % args.log_every == 0:  # reading the loss waits for the GPU: not every step
            last = float(loss.detach())
            rate = steps * args.batch_size / (time.perf_counter() - t0)
            history.append({"step": steps, "seconds": round(elapsed, 1), "loss": last})
            print(f"step {steps} loss {last:.4f} {rate:.0f} patches/s", flush=True)
        t_data = time.perf_counter()
    seconds = time.perf_counter() - t0
    if steps == 0:
        raise SystemExit("no training step ran: give more --minutes or --max-steps")
    last = float(loss.detach())
    history.append({"step": steps, "seconds": round(seconds, 1), "loss": last})
    cfg.steps_per_epoch = steps
    manifest = save_chunks(
        net.state_dict(),
        Path(args.out),
        config=asdict(cfg),
        history=history,
        chunk_mib=args.chunk_mib,
        max_total_mib=args.max_total_mib,
    )
    return {
        "device": torch.cuda.get_device_name(0) if cuda else platform.processor() or "cpu",
        "width": args.width,
        "batch_size": args.batch_size,
        "steps": steps,
        "patches": steps * args.batch_size,
        "seconds": round(seconds, 1),
        "patches_per_second": round(steps * args.batch_size / max(seconds, 1e-9), 1),
        "seconds_waiting_for_data": round(waited, 1),
        "final_loss": history[-1]["loss"],
        "weights_mib": round(manifest["bytes"] / 2**20, 2),
        "chunks": [c["file"] for c in manifest["chunks"]],
    }


def cmd_assemble(args: argparse.Namespace) -> dict:
    out = assemble_checkpoint(Path(args.chunks), Path(args.out).expanduser())
    return {"checkpoint": str(out)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="time-boxed training (GPU or CPU)")
    t.add_argument("--data", required=True, help="folder dataset (images/, labels/)")
    t.add_argument("--val-names", default="", help="images to leave out (scored back home)")
    t.add_argument("--width", type=float, default=0.5)
    t.add_argument("--patch-size", type=int, default=128)
    t.add_argument("--batch-size", type=int, default=512)
    t.add_argument("--minutes", type=float, default=9.0, help="training time, data loading in")
    t.add_argument("--max-steps", type=int, default=0, help="stop after this many steps (tests)")
    t.add_argument("--lr", type=float, default=2e-3)
    t.add_argument("--warmup", type=float, default=0.05, help="fraction of the time")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", help="default: cuda when available, else cpu")
    t.add_argument("--workers", type=int, default=14, help="DataLoader worker processes")
    t.add_argument(
        "--image-offset", type=float, nargs=2, default=(-0.5, -0.5), metavar=("DX", "DY")
    )
    t.add_argument("--click-inner", type=float, default=0.3)
    t.add_argument("--near-miss", type=float, default=0.25)
    t.add_argument("--near-miss-px", type=float, default=5.0)
    t.add_argument("--bce-norm", default="pixels", choices=["pixels", "weights"])
    t.add_argument("--init", help="checkpoint to start from (half the width: widened)")
    t.add_argument("--chunk-mib", type=float, default=16.0)
    t.add_argument("--max-total-mib", type=float, default=60.0)
    t.add_argument("--log-every", type=int, default=50)
    t.add_argument("--out", required=True, help="folder for weights.NNN and weights.json")
    t.set_defaults(func=cmd_train)
    a = sub.add_parser("assemble", help="chunks -> a checkpoint for nuclick export")
    a.add_argument("--chunks", required=True)
    a.add_argument("--out", required=True)
    a.set_defaults(func=cmd_assemble)
    args = ap.parse_args()
    print(json.dumps(args.func(args), indent=1))


if __name__ == "__main__":
    main()
