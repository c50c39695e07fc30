"""Options shared by several ``nuclick`` subcommands, and their parsers."""

from __future__ import annotations

import argparse

from nuclick_core.io.status import OBJECTS


def at_least(low: int):
    """An argparse type: an integer of at least ``low``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"{value} must be at least {low}")
        return value

    return parse


def parse_offset(text: str) -> tuple[float, float]:
    """``--image-offset DX,DY`` parsed; a clear error otherwise."""
    try:
        dx, dy = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--image-offset takes DX,DY in pixels, e.g. -0.5,-0.5; got {text!r}"
        ) from None
    return dx, dy


def parse_region(text: str) -> tuple[int, int, int, int]:
    """``--region x,y,w,h`` (level-0 pixels) parsed; a clear error otherwise."""
    try:
        x, y, w, h = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--region takes x,y,w,h in level-0 pixels, e.g. 900,1500,500,500; got {text!r}"
        ) from None
    return x, y, w, h


def parse_floats(text: str) -> tuple[float, ...]:
    """A comma-separated list of numbers (``--sigmas 1,3,5``)."""
    try:
        return tuple(float(v) for v in text.split(",") if v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers like 1,3,5; got {text!r}") from None


def parse_names(text: str) -> list[str]:
    """A comma-separated list of names (``--names a,b``)."""
    return [n for n in text.split(",") if n]


def add_image_offset(p: argparse.ArgumentParser, **kwargs: object) -> None:
    p.add_argument(
        "--image-offset",
        type=parse_offset,
        metavar="DX,DY",
        help="move the images' content by DX,DY pixels onto their labels before use (MoNuSeg "
        "as distributed here: -0.5,-0.5; measure with bench/label_alignment.py)",
        **kwargs,  # type: ignore[arg-type]
    )


def add_model_options(p: argparse.ArgumentParser) -> None:
    """--model and --object, as segment, stability and evaluate take them."""
    p.add_argument("--model", help="model name under models/ or a model folder (default: registry)")
    p.add_argument("--object", default="nucleus", choices=OBJECTS)


def add_run_options(p: argparse.ArgumentParser) -> None:
    """--batch-size and --threads of an ONNX Runtime session."""
    p.add_argument("--batch-size", type=at_least(1), default=16)
    p.add_argument(
        "--threads", type=at_least(0), default=0, help="0: the CPUs allotted to this job"
    )
