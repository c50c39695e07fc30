"""The ``nuclick`` command: one subcommand per workflow step (parsing and calls only)."""

from __future__ import annotations

import argparse
import logging
import sys

from nuclick_core.cli.models import add_model_commands
from nuclick_core.cli.slides import add_slide_commands
from nuclick_core.cli.training import add_training_commands
from nuclick_core.errors import NuclickError
from nuclick_core.io.files import check_outputs

log = logging.getLogger("nuclick")

#: Argument names that are output files (``--out`` of train and export is a folder: not listed
#: for them) and input files; every command's are checked before it starts (io.files).
OUTPUT_FILES = ("out", "geojson", "report")
INPUT_FILES = ("slide", "annotations", "instances", "model", "recipe", "checkpoint")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nuclick", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    add_training_commands(sub)
    add_model_commands(sub)
    add_slide_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = logging.DEBUG if args.verbose else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(message)s")
    for name in ("nuclick", "nuclick_core"):
        logging.getLogger(name).setLevel(level)
    try:
        check_outputs(
            {
                f"--{d}": getattr(args, d, None)
                for d in OUTPUT_FILES
                if not (d == "out" and getattr(args, "out_is_folder", False))
            },
            {f"--{d}": getattr(args, d, None) for d in INPUT_FILES},
        )
        args.func(args)
    except NuclickError as exc:
        log.error("%s", exc)
        return 2
    except KeyboardInterrupt:
        log.error("interrupted; no output was written (outputs appear only when complete)")
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
