"""The ``nuclick`` command: one subcommand per workflow step."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from nuclick_core.errors import NuclickError

log = logging.getLogger("nuclick")


def _cmd_train(args: argparse.Namespace) -> None:
    import numpy as np

    from nuclick_core.datasets import read_dataset
    from nuclick_core.train import TrainConfig, train
    from nuclick_core.trainset import ClickPatchSampler

    val_names = [n for n in (args.val_names or "").split(",") if n]
    all_items = read_dataset(Path(args.data), args.format)
    unknown = sorted(set(val_names) - {it.name for it in all_items})
    if unknown:
        raise NuclickError(f"--val-names {unknown} are not images of {args.data}")
    train_items = [it for it in all_items if it.name not in val_names]
    val_items = [it for it in all_items if it.name in val_names]
    if not val_items:
        raise NuclickError("--val-names selects no image; name the validation images")
    cfg = TrainConfig(
        object_type=args.object,
        width=args.width,
        patch_size=args.patch_size,
        batch_size=args.batch_size,
        epochs=args.epochs,
        steps_per_epoch=args.steps_per_epoch,
        lr=args.lr,
        weight_decay=args.weight_decay,
        seed=args.seed,
        threads=args.threads,
        device=args.device,
        extra={
            "data": str(args.data),
            "format": args.format,
            "train_images": [it.name for it in train_items],
            "val_images": val_names,
            "command": " ".join(sys.argv),
        },
    )
    sampler = ClickPatchSampler(train_items, patch_size=cfg.patch_size)
    val_sampler = ClickPatchSampler(val_items, patch_size=cfg.patch_size, augment=False)
    pick = np.random.default_rng(12345).permutation(len(val_sampler))[: cfg.val_objects]
    val = val_sampler.fixed_batch(np.sort(pick))
    log.info(
        "training on %d objects from %d images; validating on %d objects from %s",
        len(sampler), len(train_items), len(pick), ", ".join(val_names),
    )

    def draw(rng: np.random.Generator, n: int) -> tuple[np.ndarray, ...]:
        return sampler.batch(rng.integers(len(sampler), size=n), rng)

    best = train(cfg, draw, val, Path(args.out), resume=not args.restart, progress=log.info)
    log.info("best checkpoint: %s", best)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nuclick", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train NuClick on an instance-labelled dataset")
    p.add_argument("--data", required=True, help="dataset folder")
    p.add_argument("--format", default="folder", help="folder | pannuke | consep | monuseg")
    p.add_argument("--val-names", required=True, help="comma-separated validation image names")
    p.add_argument("--object", default="nucleus", choices=["nucleus", "cell"])
    p.add_argument("--width", type=float, default=0.25)
    p.add_argument("--patch-size", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--epochs", type=int, default=16)
    p.add_argument("--steps-per-epoch", type=int, default=400)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--weight-decay", type=float, default=5e-5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", required=True, help="checkpoint folder (keep it outside the repo)")
    p.add_argument("--restart", action="store_true", help="ignore an existing last.pt")
    p.set_defaults(func=_cmd_train)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
    )
    try:
        args.func(args)
    except NuclickError as exc:
        log.error("%s", exc)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
