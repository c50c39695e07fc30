"""Training-side subcommands of ``nuclick``: train, export, evaluate and promote. Each parses
its arguments, makes one library call and logs.

Heavy imports (torch, onnxruntime, the datasets) stay inside the command functions so that
``nuclick --help`` and the segmentation commands start fast.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from nuclick_core.cli.options import (
    OBJECTS,
    add_image_offset,
    add_run_options,
    at_least,
    parse_names,
)
from nuclick_core.data.datasets import FORMATS
from nuclick_core.evaluation.metrics import HIGHER_IS_BETTER
from nuclick_core.training.recipe import BCE_NORMS, RECIPE_FORMATS, TrainRecipe, recipe_defaults

log = logging.getLogger("nuclick")

#: Recipe keys that ``nuclick train`` also takes as flags (--steps-per-epoch for steps_per_epoch).
_RECIPE_FLAGS = [k for k in recipe_defaults() if k != "object"] + ["data", "val_names", "object"]


def _cmd_train(args: argparse.Namespace) -> None:
    from nuclick_core.training.recipe import read_recipe_json
    from nuclick_core.training.run import train_from_recipe

    given = {k: getattr(args, k) for k in _RECIPE_FLAGS if hasattr(args, k)}
    base = read_recipe_json(args.recipe) if args.recipe else {}
    where = "nuclick train" + (" --recipe" if args.recipe else "")
    recipe = TrainRecipe.from_mapping({**base, **given}, where=where)
    best = train_from_recipe(
        recipe,
        Path(args.out),
        threads=args.threads,
        device=args.device,
        restart=args.restart,
        command=" ".join(sys.argv),
    )
    log.info("best checkpoint: %s", best)


def _cmd_export(args: argparse.Namespace) -> None:
    from nuclick_core.training.export import export_model

    card_extra = json.loads(Path(args.card_extra).read_text()) if args.card_extra else {}
    card_extra.setdefault("inference", {})["tta"] = args.tta
    card = export_model(
        Path(args.checkpoint),
        Path(args.out),
        name=args.name or Path(args.out).name,
        mpp=args.mpp,
        postprocess={
            "threshold": args.threshold,
            "min_size": args.min_size,
            "min_hole": args.min_hole,
            "click_tolerance": args.click_tolerance,
        },
        card_extra=card_extra,
    )
    log.info(
        "exported %s (parity %.1e, sha256 %s)",
        args.out,
        card["parity_max_abs_diff"],
        card["sha256"][:12],
    )


def _cmd_evaluate(args: argparse.Namespace) -> None:
    from nuclick_core.evaluation.evaluate import evaluate_model, evaluation_items, record_in_card
    from nuclick_core.inference.models import load_card, resolve_model
    from nuclick_core.io.files import write_text_atomic

    card = load_card(resolve_model(args.model, args.object))
    items = evaluation_items(
        Path(args.data),
        args.format,
        args.names,
        image_offset=args.image_offset,
        canvases=args.canvases,
        patch_size=card.patch_size,
    )
    data = {
        "path": str(args.data),
        "format": args.format,
        "images": [it.name for it in items],
        "mpp": args.mpp,
        "image_offset": list(args.image_offset),
        **({"held_out_cells": args.names} if args.format == "cells" else {}),
    }
    figures, results = evaluate_model(
        card,
        items,
        mpp=args.mpp,
        data=data,
        batch_size=args.batch_size,
        threads=args.threads,
        tta=args.tta,
        threshold=args.threshold,
        experiments=not args.no_experiments,
        baselines=not args.no_baselines,
        robustness=not args.no_robustness,
        stain_normalise=args.stain_normalise,
        command=" ".join(sys.argv),
        progress=log.info,
    )
    write_text_atomic(args.out, json.dumps(figures, indent=1) + "\n")
    if args.update_card:
        record_in_card(card, figures)
    if args.report:
        from nuclick_core.evaluation.report import write_report

        write_report(Path(args.report), figures, results, items, overlays=not args.no_overlays)
    log.info("wrote %s (%.0f s)", args.out, figures["seconds"])


def _cmd_promote(args: argparse.Namespace) -> None:
    from dataclasses import asdict

    from nuclick_core.errors import NuclickError
    from nuclick_core.inference.models import MODELS_DIR
    from nuclick_core.io.files import write_text_atomic
    from nuclick_core.registry import promote, read_figures, rollback

    models_dir = Path(args.models_dir) if args.models_dir else MODELS_DIR
    if args.rollback:
        name = rollback(args.object, models_dir=models_dir)
        log.info("current %s model is now %s", args.object, name)
        return
    if not args.candidate or not args.candidate_figures:
        raise NuclickError("promote needs --candidate and --candidate-figures (or --rollback)")
    decision = promote(
        Path(args.candidate),
        read_figures(args.candidate_figures),
        read_figures(args.current_figures) if args.current_figures else None,
        models_dir=models_dir,
        metric=args.metric,
        margin=args.margin,
        max_drop=args.max_drop,
    )
    if args.out:
        write_text_atomic(args.out, json.dumps(asdict(decision), indent=1) + "\n")
    log.info("%s: %s", "PROMOTED" if decision.promoted else "REJECTED", decision.reason)


def _add_train(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    d = recipe_defaults()
    p = sub.add_parser(
        "train",
        help="train NuClick on an instance-labelled dataset",
        description="Flags and --recipe describe the same training recipe; a flag given "
        "overrides the recipe's key. Defaults are the config schema's.",
        argument_default=argparse.SUPPRESS,  # only the flags given override --recipe
    )
    p.add_argument(
        "--recipe",
        default=None,
        help="the recipe as JSON (or a JSON file): the keys of config.yaml's train.<object>",
    )
    p.add_argument("--data", help="dataset folder")
    p.add_argument(
        "--format",
        choices=RECIPE_FORMATS,
        help=f"dataset layout (default {d['format']}); cells: segmented single cells, blended "
        "into canvases",
    )
    p.add_argument(
        "--canvases", type=int, help=f"training canvases, format cells ({d['canvases']})"
    )
    p.add_argument(
        "--downscale",
        type=float,
        help="shrink the images by this factor before training (the model's mpp is then the "
        "data's mpp times this factor; export with that --mpp)",
    )
    add_image_offset(p)
    p.add_argument("--val-names", type=parse_names, help="comma-separated validation images")
    p.add_argument("--object", choices=OBJECTS, help=f"default {d['object']}")
    p.add_argument("--width", type=float, help=f"width multiplier ({d['width']})")
    p.add_argument(
        "--alpha-max",
        type=float,
        help="cap the loss weight alpha (default: uncapped, the paper's equation 1)",
    )
    p.add_argument(
        "--bce-norm",
        choices=BCE_NORMS,
        help="weighted BCE over the pixels (pixels: equation 1, the default) or over the "
        "weights (weights: how the models up to nuclei-light-2 were trained)",
    )
    for flag, kind in (
        ("patch-size", int),
        ("batch-size", int),
        ("epochs", int),
        ("steps-per-epoch", int),
        ("lr", float),
        ("weight-decay", float),
        ("seed", int),
    ):
        p.add_argument(f"--{flag}", type=kind, help=f"default {d[flag.replace('-', '_')]}")
    p.add_argument(
        "--val-objects", type=int, help=f"validation objects scored each epoch ({d['val_objects']})"
    )
    p.add_argument(
        "--init",
        help="start from these weights (fine-tuning): a training checkpoint, or a shipped model "
        "(model.onnx, its folder or its name under models/; its batch norms stay frozen)",
    )
    p.add_argument(
        "--click-inner",
        type=float,
        help="training clicks keep this fraction of the object's inscribed radius "
        f"from its edge (0: anywhere inside; default {d['click_inner']})",
    )
    p.add_argument(
        "--near-miss",
        type=float,
        help="fraction of training clicks that land just outside their object (on background "
        "nearer to it than to any other), teaching the network to forgive imprecise clicks",
    )
    p.add_argument(
        "--near-miss-px",
        type=float,
        help=f"how far outside a near miss may land ({d['near_miss_px']})",
    )
    p.add_argument(
        "--stain-aug", type=float, help="probability of a stain shift per patch (HED jitter)"
    )
    p.add_argument("--quality-aug", type=float, help="probability of blur or JPEG per patch")
    p.add_argument(
        "--scale-aug", type=float, help="patches cut up to 1 + this times larger or smaller"
    )
    p.add_argument(
        "--hue-aug",
        type=float,
        help="probability of a strong hue/saturation shift per patch (stains other than H&E)",
    )
    p.add_argument("--sharpen-aug", type=float, help="probability of an unsharp mask per patch")
    p.add_argument(
        "--canvas-variety",
        type=float,
        help="fraction of cell canvases with varied crowding and red-cell density (format cells)",
    )
    p.add_argument(
        "--gland-strokes",
        type=float,
        help="probability that a gland's training squiggle is a hand-like stroke, not the skeleton",
    )
    p.add_argument(
        "--threads", type=at_least(0), default=0, help="torch threads (0: torch default)"
    )
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", required=True, help="checkpoint folder (keep it outside the repo)")
    p.add_argument("--restart", action="store_true", default=False, help="ignore last.pt")
    p.set_defaults(func=_cmd_train, out_is_folder=True)


def add_training_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the train, export, evaluate and promote subcommands to ``sub``."""
    _add_train(sub)

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
    p.set_defaults(func=_cmd_export, out_is_folder=True)

    p = sub.add_parser(
        "evaluate", help="evaluate a model on labelled images (marks from the ground truth)"
    )
    p.add_argument("--model", help="model name or folder (default: registry's current)")
    p.add_argument("--object", default="nucleus", choices=OBJECTS)
    p.add_argument("--data", required=True, help="dataset folder")
    p.add_argument("--format", default="folder", choices=(*FORMATS, "cells"))
    p.add_argument(
        "--names",
        type=parse_names,
        help="comma-separated image names (default: all); cells: the held-out cells",
    )
    p.add_argument(
        "--canvases", type=int, default=60, help="validation canvases to build (format cells)"
    )
    p.add_argument("--mpp", type=float, required=True, help="um/px of the dataset's images")
    add_image_offset(p, default=(0.0, 0.0))
    p.add_argument("--out", required=True, help="JSON of every figure")
    p.add_argument("--report", help="also write the HTML report here")
    p.add_argument(
        "--no-overlays",
        action="store_true",
        help="leave the images out of the report (data that may not be redistributed)",
    )
    add_run_options(p)
    p.add_argument("--no-experiments", action="store_true", help="skip jitter/exclusion/overlap")
    p.add_argument("--no-baselines", action="store_true", help="skip the classical baselines")
    p.add_argument(
        "--no-robustness",
        action="store_true",
        help="skip the shifted sets (stain, colour, scale, blur, JPEG, marks)",
    )
    p.add_argument("--tta", type=int, choices=[1, 2, 4, 8], help="override the card's views")
    p.add_argument("--threshold", type=float, help="override the card's threshold (tuning)")
    p.add_argument(
        "--stain-normalise",
        choices=("card", "on", "off"),
        default="card",
        help="stain-normalise each image to the card's target first (default: the card's choice)",
    )
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
    p.add_argument(
        "--metric",
        default="aji",
        choices=list(HIGHER_IS_BETTER),
        help="figure the candidate must improve, in its own direction (object_hausdorff: lower)",
    )
    p.add_argument(
        "--margin",
        type=float,
        default=0.005,
        help="mean gain over the clean and shifted sets needed, in the metric's units",
    )
    p.add_argument(
        "--max-drop",
        type=float,
        default=0.02,
        help="largest loss allowed on any one set (clean or shifted), in the metric's units",
    )
    p.add_argument("--models-dir", help="default: the repository's models/")
    p.add_argument("--out", help="write the decision as JSON here")
    p.add_argument("--rollback", action="store_true", help="undo the last promotion")
    p.add_argument("--object", default="nucleus", choices=OBJECTS)
    p.set_defaults(func=_cmd_promote)
