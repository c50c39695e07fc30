"""Training-side subcommands of ``nuclick``: train, export, evaluate and promote.

:func:`add_training_commands` registers them on the parser built by
:func:`nuclick_core.cli.main.build_parser`. Heavy imports (torch, onnxruntime, the datasets) stay
inside the command functions so that ``nuclick --help`` and the segmentation commands start fast.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path

import numpy as np

from nuclick_core.errors import NuclickError

log = logging.getLogger("nuclick")


def _cell_canvases(root: Path, val_names: list[str], args: argparse.Namespace) -> tuple:
    """Training and validation canvases from segmented cells; validation canvases use only the
    held-out cells named in ``val_names``."""
    from nuclick_core.data.cell_canvases import (
        build_canvases,
        read_cells,
        split_cells,
        validation_canvases,
    )

    train_cells, val_cells = split_cells(read_cells(root), val_names, root)
    if not val_cells:
        return [], []
    size = max(2 * args.patch_size, 256)
    n_val = max(args.canvases // 10, 4)
    log.info("building %d training and %d validation canvases (%d px)", args.canvases, n_val, size)
    return (
        build_canvases(train_cells, args.canvases, seed=args.seed, size=size, n_cells=10),
        validation_canvases(val_cells, n_val, seed=args.seed, size=size),
    )


def _cmd_train(args: argparse.Namespace) -> None:
    from nuclick_core.data.datasets import downscale, read_dataset, shift_images
    from nuclick_core.training.click_patches import ClickPatchSampler
    from nuclick_core.training.train import TrainConfig, train

    val_names = [n for n in (args.val_names or "").split(",") if n]
    if args.format == "cells":
        if args.downscale != 1 or args.image_offset != (0.0, 0.0):
            raise NuclickError(
                "--downscale and --image-offset apply to image datasets, not to --format cells"
            )
        train_items, val_items = _cell_canvases(Path(args.data), val_names, args)
    else:
        all_items = read_dataset(Path(args.data), args.format)
        unknown = sorted(set(val_names) - {it.name for it in all_items})
        if unknown:
            raise NuclickError(f"--val-names {unknown} are not images of {args.data}")
        all_items = downscale(shift_images(all_items, *args.image_offset), args.downscale)
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
        val_objects=args.val_objects,
        alpha_max=args.alpha_max,
        extra={
            "data": str(args.data),
            "format": args.format,
            "train_images": [it.name for it in train_items],
            "val_images": val_names,
            "command": " ".join(sys.argv),
            "click_inner": args.click_inner,
            "near_miss": args.near_miss,
            "near_miss_px": args.near_miss_px,
            "init": args.init,
            "downscale": args.downscale,
            "image_offset": list(args.image_offset),
        },
    )
    from nuclick_core.training.gland_patches import GlandPatchSampler

    sampler: ClickPatchSampler | GlandPatchSampler
    val_sampler: ClickPatchSampler | GlandPatchSampler
    if cfg.object_type == "gland":
        sampler = GlandPatchSampler(train_items, patch_size=cfg.patch_size)
        val_sampler = GlandPatchSampler(val_items, patch_size=cfg.patch_size, augment=False)
    else:
        sampler = ClickPatchSampler(
            train_items,
            patch_size=cfg.patch_size,
            click_inner=args.click_inner,
            near_miss=args.near_miss,
            near_miss_px=args.near_miss_px,
        )
        val_sampler = ClickPatchSampler(val_items, patch_size=cfg.patch_size, augment=False)
    pick = np.random.default_rng(12345).permutation(len(val_sampler))[: cfg.val_objects]
    val = val_sampler.fixed_batch(np.sort(pick))
    log.info(
        "training on %d objects from %d images; validating on %d objects from %s",
        len(sampler),
        len(train_items),
        len(pick),
        ", ".join(val_names),
    )

    def draw(rng: np.random.Generator, n: int) -> tuple[np.ndarray, ...]:
        return sampler.batch(rng.integers(len(sampler), size=n), rng)

    init = Path(args.init) if args.init else None
    best = train(
        cfg, draw, val, Path(args.out), resume=not args.restart, init=init, progress=log.info
    )
    log.info("best checkpoint: %s", best)


def _cmd_export(args: argparse.Namespace) -> None:
    import json

    from nuclick_core.training.export import export_model

    card_extra = json.loads(Path(args.card_extra).read_text()) if args.card_extra else {}
    card_extra.setdefault("inference", {})["tta"] = args.tta
    postprocess = {
        "threshold": args.threshold,
        "min_size": args.min_size,
        "min_hole": args.min_hole,
        "click_tolerance": args.click_tolerance,
    }
    card = export_model(
        Path(args.checkpoint),
        Path(args.out),
        name=args.name or Path(args.out).name,
        mpp=args.mpp,
        postprocess=postprocess,
        card_extra=card_extra,
    )
    log.info(
        "exported %s (parity %.1e, sha256 %s)",
        args.out,
        card["parity_max_abs_diff"],
        card["sha256"][:12],
    )


def _cmd_evaluate(args: argparse.Namespace) -> None:
    import json
    import time

    from nuclick_core.data.datasets import read_dataset, shift_images
    from nuclick_core.evaluation.evaluate import MARKS, run_evaluation
    from nuclick_core.inference.engine import ModelGeometry
    from nuclick_core.inference.runtime import OnnxPredictor, load_card, resolve_model
    from nuclick_core.io.instances import atomic_path

    t0 = time.perf_counter()
    card = load_card(resolve_model(args.model, args.object))
    names = [n for n in args.names.split(",") if n] if args.names else None
    if args.format == "cells":
        from nuclick_core.data.cell_canvases import read_cells, split_cells, validation_canvases

        if not names:
            raise NuclickError("--format cells needs --names: the held-out cells to blend")
        if args.image_offset != (0.0, 0.0):
            raise NuclickError("--image-offset applies to image datasets, not to --format cells")
        _, val_cells = split_cells(read_cells(Path(args.data)), names, Path(args.data))
        items = validation_canvases(val_cells, args.canvases, size=2 * card.patch_size)
    else:
        items = shift_images(read_dataset(Path(args.data), args.format, names), *args.image_offset)
    predictor = OnnxPredictor(card, batch_size=args.batch_size, threads=args.threads, tta=args.tta)
    geom = ModelGeometry.from_card(card)
    if args.threshold is not None:
        geom = dataclasses.replace(
            geom, postprocess=dataclasses.replace(geom.postprocess, threshold=args.threshold)
        )
    figures, results = run_evaluation(
        items,
        predictor,
        geom,
        mpp=args.mpp,
        object_type=card.object_type,
        batch_size=args.batch_size,
        experiments=not args.no_experiments,
        baselines=not args.no_baselines,
        progress=log.info,
    )
    figures["inference"] = {"tta": predictor.tta, "threshold": geom.postprocess.threshold}
    figures["model"] = {
        "name": card.name,
        "sha256": card.sha256,
        "path": str(card.path),
        "object_type": card.object_type,
    }
    figures["data"] = {
        "path": str(args.data),
        "format": args.format,
        "images": [it.name for it in items],
        "mpp": args.mpp,
        "image_offset": list(args.image_offset),
        **({"held_out_cells": names} if args.format == "cells" else {}),
    }
    figures["command"] = " ".join(sys.argv)
    figures["seconds"] = time.perf_counter() - t0
    with atomic_path(Path(args.out)) as tmp:
        tmp.write_text(json.dumps(figures, indent=1) + "\n")
    if args.update_card:
        card_path = card.path / "model.json"
        raw = json.loads(card_path.read_text())
        raw["evaluation"] = {
            "data": figures["data"],
            "marks": MARKS["gland" if card.object_type == "gland" else "point"],
            "figures": figures["main"],
            "per_image": figures["per_image"],
            **{
                k: figures[k]
                for k in ("jitter", "exclusion_off", "last_click_wins", "baselines")
                if k in figures
            },
            "command": figures["command"],
        }
        with atomic_path(card_path) as tmp:
            tmp.write_text(json.dumps(raw, indent=2) + "\n")
    if args.report:
        from nuclick_core.evaluation.report import write_report

        write_report(Path(args.report), figures, results, items, overlays=not args.no_overlays)
    log.info("wrote %s (%.0f s)", args.out, figures["seconds"])


def _cmd_promote(args: argparse.Namespace) -> None:
    import json
    from dataclasses import asdict

    from nuclick_core.inference.runtime import MODELS_DIR
    from nuclick_core.registry import promote, rollback

    models_dir = Path(args.models_dir) if args.models_dir else MODELS_DIR
    if args.rollback:
        name = rollback(args.object, models_dir=models_dir)
        log.info("current %s model is now %s", args.object, name)
        return
    if not args.candidate or not args.candidate_figures:
        raise NuclickError("promote needs --candidate and --candidate-figures (or --rollback)")
    cand = json.loads(Path(args.candidate_figures).read_text())
    cur = json.loads(Path(args.current_figures).read_text()) if args.current_figures else None
    decision = promote(
        Path(args.candidate),
        cand,
        cur,
        models_dir=models_dir,
        metric=args.metric,
        margin=args.margin,
    )
    if args.out:
        from nuclick_core.io.instances import atomic_path

        with atomic_path(Path(args.out)) as tmp:
            tmp.write_text(json.dumps(asdict(decision), indent=1) + "\n")
    log.info("%s: %s", "PROMOTED" if decision.promoted else "REJECTED", decision.reason)


def parse_offset(text: str) -> tuple[float, float]:
    """``--image-offset DX,DY`` parsed; a clear error otherwise."""
    try:
        dx, dy = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--image-offset takes DX,DY in pixels, e.g. -0.5,-0.5; got {text!r}"
        ) from None
    return dx, dy


def _add_image_offset(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--image-offset",
        type=parse_offset,
        default=(0.0, 0.0),
        metavar="DX,DY",
        help="move the images' content by DX,DY pixels onto their labels before use (MoNuSeg "
        "as distributed here: -0.5,-0.5; measure with bench/label_alignment.py)",
    )


def add_training_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the train, export, evaluate and promote subcommands to ``sub``."""
    p = sub.add_parser("train", help="train NuClick on an instance-labelled dataset")
    p.add_argument("--data", required=True, help="dataset folder")
    p.add_argument(
        "--format",
        default="folder",
        help="folder | pannuke | consep | monuseg | cells (segmented single cells, "
        "blended into canvases)",
    )
    p.add_argument("--canvases", type=int, default=400, help="training canvases (format cells)")
    p.add_argument(
        "--downscale",
        type=float,
        default=1.0,
        help="shrink the images by this factor before training (the model's mpp is then the "
        "data's mpp times this factor; export with that --mpp)",
    )
    _add_image_offset(p)
    p.add_argument("--val-names", required=True, help="comma-separated validation image names")
    p.add_argument("--object", default="nucleus", choices=["nucleus", "cell", "gland"])
    p.add_argument("--width", type=float, default=0.25)
    p.add_argument(
        "--alpha-max",
        type=float,
        help="cap the loss weight alpha (default: uncapped, the paper's equation 1)",
    )
    p.add_argument("--patch-size", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--epochs", type=int, default=16)
    p.add_argument("--steps-per-epoch", type=int, default=400)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--weight-decay", type=float, default=5e-5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    p.add_argument("--device", default="cpu")
    p.add_argument(
        "--val-objects", type=int, default=512, help="validation objects scored each epoch"
    )
    p.add_argument("--out", required=True, help="checkpoint folder (keep it outside the repo)")
    p.add_argument("--restart", action="store_true", help="ignore an existing last.pt")
    p.add_argument("--init", help="start from this checkpoint's weights (fine-tuning)")
    p.add_argument(
        "--click-inner",
        type=float,
        default=0.3,
        help="training clicks keep this fraction of the object's inscribed radius "
        "from its edge (0: anywhere inside)",
    )
    p.add_argument(
        "--near-miss",
        type=float,
        default=0.0,
        help="fraction of training clicks that land just outside their object (on background "
        "nearer to it than to any other), teaching the network to forgive imprecise clicks",
    )
    p.add_argument(
        "--near-miss-px", type=float, default=5.0, help="how far outside a near miss may land"
    )
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("export", help="training checkpoint -> ONNX model folder with model.json")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--out", required=True, help="model folder, e.g. models/nuclei-light")
    p.add_argument("--name", help="model name (default: the folder name)")
    p.add_argument("--mpp", type=float, required=True, help="um/px the model was trained at")
    p.add_argument("--threshold", type=float, default=0.5)
    p.add_argument("--min-size", type=int, default=10, help="smallest object, model pixels")
    p.add_argument("--min-hole", type=int, default=30, help="holes below this are filled")
    p.add_argument("--click-tolerance", type=float, default=3.0)
    p.add_argument(
        "--tta",
        type=int,
        default=1,
        choices=[1, 2, 4, 8],
        help="test-time augmentation views recommended for inference",
    )
    p.add_argument("--card-extra", help="JSON file merged into model.json (data, licence)")
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser(
        "evaluate", help="evaluate a model on labelled images (marks from the ground truth)"
    )
    p.add_argument("--model", help="model name or folder (default: registry's current)")
    p.add_argument("--object", default="nucleus", choices=["nucleus", "cell", "gland"])
    p.add_argument("--data", required=True, help="dataset folder")
    p.add_argument("--format", default="folder")
    p.add_argument(
        "--names", help="comma-separated image names (default: all); cells: the held-out cells"
    )
    p.add_argument(
        "--canvases", type=int, default=60, help="validation canvases to build (format cells)"
    )
    p.add_argument("--mpp", type=float, required=True, help="um/px of the dataset's images")
    _add_image_offset(p)
    p.add_argument("--out", required=True, help="JSON of every figure")
    p.add_argument("--report", help="also write the HTML report here")
    p.add_argument(
        "--no-overlays",
        action="store_true",
        help="leave the images out of the report (data that may not be redistributed)",
    )
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--no-experiments", action="store_true", help="skip jitter/exclusion/overlap")
    p.add_argument("--no-baselines", action="store_true", help="skip the classical baselines")
    p.add_argument("--tta", type=int, choices=[1, 2, 4, 8], help="override the card's views")
    p.add_argument("--threshold", type=float, help="override the card's threshold (tuning)")
    p.add_argument(
        "--update-card",
        action="store_true",
        help="record the figures in the model's model.json (evaluation)",
    )
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("promote", help="make a candidate current if it beats the current model")
    p.add_argument("--candidate", help="candidate model folder under models/")
    p.add_argument("--candidate-figures", help="nuclick evaluate JSON of the candidate")
    p.add_argument("--current-figures", help="nuclick evaluate JSON of the current model")
    p.add_argument("--metric", default="aji")
    p.add_argument("--margin", type=float, default=0.005)
    p.add_argument("--models-dir", help="default: the repository's models/")
    p.add_argument("--out", help="write the decision as JSON here")
    p.add_argument("--rollback", action="store_true", help="undo the last promotion")
    p.add_argument("--object", default="nucleus", choices=["nucleus", "cell", "gland"])
    p.set_defaults(func=_cmd_promote)
