"""Subcommands that rewrite exported models for inference: zero-tiny-weights (near-zero
weights set to 0: the same output, much faster on Intel CPUs), quantize (an int8 variant
calibrated on training patches) and stain-target (the card's stain-normalisation target)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from nuclick_core.cli.options import at_least, parse_names
from nuclick_core.data.datasets import FORMATS

log = logging.getLogger("nuclick")


def _cmd_zero_tiny_weights(args: argparse.Namespace) -> None:
    from nuclick_core.inference.models import resolve_model
    from nuclick_core.training.export import zero_tiny_weights_in_model

    model_dir = resolve_model(args.model, "nucleus")
    card = zero_tiny_weights_in_model(model_dir)
    done = card.get("tiny_weights", {})
    if "sha256_before" in done:
        log.info(
            "%s: %d weights below %g set to 0 (output changed by at most %.1e), sha256 %s",
            model_dir,
            done["zeroed"],
            done["below"],
            done["output_max_abs_diff"],
            card["sha256"][:12],
        )
    else:
        log.info("%s: no weight to zero; left as it was", model_dir)


def _cmd_quantize(args: argparse.Namespace) -> None:
    from nuclick_core.errors import NuclickError
    from nuclick_core.inference.models import resolve_model
    from nuclick_core.training.quantize import half_precision_model, quantize_model

    source = resolve_model(args.model, "nucleus")
    if args.fp16:
        card = half_precision_model(source, Path(args.out))
        log.info("wrote %s (fp16, from %s; sha256 %s)", args.out, source, card["sha256"][:12])
        return
    if not args.data or args.mpp is None:
        raise NuclickError("int8 needs --data and --mpp (the images to calibrate on); fp16: --fp16")
    card = quantize_model(
        source,
        Path(args.out),
        data=Path(args.data),
        fmt=args.format,
        exclude=args.exclude_names or [],
        mpp=args.mpp,
        patches=args.patches,
    )
    log.info("wrote %s (int8, from %s; sha256 %s)", args.out, source, card["sha256"][:12])


def _cmd_stain_target(args: argparse.Namespace) -> None:
    import json

    import numpy as np

    from nuclick_core.data.cell_canvases import read_cells
    from nuclick_core.data.datasets import read_dataset
    from nuclick_core.errors import DatasetError
    from nuclick_core.inference.models import load_card, resolve_model
    from nuclick_core.inference.stain import lab_stats
    from nuclick_core.io.files import write_text_atomic

    card = load_card(resolve_model(args.model, "nucleus"))
    root, skip = Path(args.data), set(args.exclude_names or [])
    if args.format == "cells":
        images = [(c.name, c.image) for c in read_cells(root)]
    else:
        images = [(it.name, it.image) for it in read_dataset(root, args.format)]
    images = [(name, im) for name, im in images if name not in skip]
    if not images:
        raise DatasetError(f"{root}: no image left to measure after --exclude-names")
    stats = [lab_stats(im[::2, ::2]) for _, im in images]  # every second pixel
    target = {
        "lab_mean": [round(float(v), 2) for v in np.mean([m for m, _ in stats], axis=0)],
        "lab_std": [round(float(v), 2) for v in np.mean([s for _, s in stats], axis=0)],
        "images": len(images),
        "data": str(root),
    }
    raw = json.loads((card.path / "model.json").read_text())
    inference = raw.setdefault("inference", {})
    inference["stain_target"] = target
    if args.default is not None:
        inference["stain_normalise"] = args.default == "on"
    write_text_atomic(card.path / "model.json", json.dumps(raw, indent=2) + "\n")
    log.info("%s: stain target %s over %d images", card.name, target, len(images))


def add_model_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the zero-tiny-weights and quantize subcommands to ``sub``."""
    p = sub.add_parser(
        "zero-tiny-weights",
        help="set a model's near-zero weights to 0 (much faster on Intel CPUs; same output)",
    )
    p.add_argument("--model", required=True, help="model name under models/, or its folder")
    p.set_defaults(func=_cmd_zero_tiny_weights, out_is_folder=True)

    p = sub.add_parser(
        "quantize",
        help="int8 variant of a click model for CPUs (calibrated on training patches), or fp16",
    )
    p.add_argument("--model", required=True, help="model name under models/, or its folder")
    p.add_argument("--fp16", action="store_true", help="an fp16 variant for GPUs instead")
    p.add_argument("--data", help="labelled images to calibrate on (int8)")
    p.add_argument("--format", default="folder", choices=FORMATS)
    p.add_argument(
        "--exclude-names", type=parse_names, help="images left out (the validation images)"
    )
    p.add_argument("--mpp", type=float, help="um/px of the dataset's images (int8)")
    p.add_argument("--patches", type=at_least(16), default=256, help="calibration patches")
    p.add_argument("--out", required=True, help="the new model folder, e.g. models/M-int8")
    p.set_defaults(func=_cmd_quantize, out_is_folder=True)

    p = sub.add_parser(
        "stain-target",
        help="measure a model's stain-normalisation target (LAB mean and spread of its "
        "training images' tissue) into its card",
    )
    p.add_argument("--model", required=True, help="model name under models/, or its folder")
    p.add_argument("--data", required=True, help="the model's training images")
    p.add_argument("--format", default="folder", choices=[*FORMATS, "cells"])
    p.add_argument(
        "--exclude-names", type=parse_names, help="images left out (the validation images)"
    )
    p.add_argument(
        "--default",
        choices=("on", "off"),
        help="also set whether runs normalise by default (inference.stain_normalise)",
    )
    p.set_defaults(func=_cmd_stain_target, out_is_folder=True)
