"""Point-labelled images to dense instance masks: the conversion branch (``nuclick convert``).

Input: a folder of images (PNG/JPEG/TIFF tiles or slides) and their points, either one
annotation file per image matched by name (``POINTS/NAME.csv|.geojson|.parquet|.xml``, any
format ``nuclick segment`` reads) or one table (CSV/TSV/Parquet) with an ``image`` column (the
image's file name or stem) beside ``x``, ``y`` and an optional ``label``. One ONNX Runtime
session serves every image.

Output, a training folder that ``nuclick train --format folder`` reads back, and that HoVer-Net-
and StarDist-style training code reads as it is (an RGB image and a same-named instance label
image per tile):

- ``images/NAME.ext``: the image (a hard link where the file system allows, else a copy);
- ``labels/NAME.png``: instance labels, uint16 (``.tif`` uint32 beyond 65,535 instances), 0 =
  background, the value is the instance table's ``instance_id``;
- ``instances/NAME.parquet``: the instance table (one row per click, GeoParquet) with the
  quality columns of :mod:`nuclick_core.inference.quality` (``stability``, ``area_outlier``,
  ``review``);
- ``classes/NAME.png`` and ``classes.json``, where the points carry labels: the class index of
  the instance at each pixel (0 = background) and the index -> label table;
- ``manifest.csv`` and ``manifest.json``: per image its size, mpp, clicks, instances by status
  and mean score; the JSON adds the totals and the model (name, sha256).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from nuclick_core import __version__
from nuclick_core.errors import AnnotationError, NuclickError
from nuclick_core.inference import quality
from nuclick_core.inference.convert_finish import Converted, finish
from nuclick_core.inference.engine import ModelGeometry, RunOptions, segment_clicks
from nuclick_core.inference.models import load_card, resolve_model
from nuclick_core.inference.runtime import OnnxPredictor
from nuclick_core.io import status
from nuclick_core.io.annotations import (
    ANNOTATION_SUFFIXES,
    click_table_from_points,
    read_annotations,
    validate_clicks,
)
from nuclick_core.io.files import atomic_path, write_text_atomic
from nuclick_core.io.instances import label_mask, write_instances
from nuclick_core.io.slides import PLAIN_SUFFIXES, SLIDE_SUFFIXES, Slide, open_slide

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = PLAIN_SUFFIXES + SLIDE_SUFFIXES


def find_images(images: Path) -> list[Path]:
    """The images of a folder, sorted by name."""
    if not images.is_dir():
        raise NuclickError(f"{images}: not a folder; --images takes the folder holding the images")
    found = sorted(p for p in images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not found:
        raise NuclickError(
            f"{images}: no image with a suffix in {', '.join(IMAGE_SUFFIXES)}; point --images at "
            "the folder holding them"
        )
    return found


def point_tables(images: list[Path], points: Path, object_type: str) -> dict[str, gpd.GeoDataFrame]:
    """The click table of each image (by file name); an image without points gets an empty
    table. ``points``: a folder of per-image files, or one table with an ``image`` column."""
    if points.is_dir():
        out = {}
        for image in images:
            files = [points / f"{image.stem}{s}" for s in ANNOTATION_SUFFIXES]
            found = [f for f in files if f.exists()]
            if len(found) > 1:
                names = ", ".join(f.name for f in found)
                raise AnnotationError(
                    f"{points}: several point files for {image.name} ({names}); keep one"
                )
            out[image.name] = (
                read_annotations(found[0], default_object=object_type)
                if found
                else click_table_from_points(np.zeros((0, 2)), object=object_type, source="none")
            )
        return out
    return _split_table(images, points, object_type)


def _split_table(images: list[Path], points: Path, object_type: str) -> dict[str, gpd.GeoDataFrame]:
    suffix = points.suffix.lower()
    if suffix == ".parquet":
        frame = pd.read_parquet(points)
    elif suffix in (".csv", ".tsv"):
        frame = pd.read_csv(points, sep="\t" if suffix == ".tsv" else ",")
    else:
        raise AnnotationError(f"{points}: a points table must be .csv, .tsv or .parquet")
    missing = [c for c in ("image", "x", "y") if c not in frame.columns]
    if missing:
        raise AnnotationError(
            f"{points}: missing column(s) {', '.join(missing)} (need image, x, y)"
        )
    by_name = {p.name: p.name for p in images} | {p.stem: p.name for p in images}
    unknown = sorted(set(frame["image"].astype(str)) - set(by_name))
    if unknown:
        raise AnnotationError(
            f"{points}: {len(unknown)} image name(s) not in the images folder, e.g. {unknown[:3]}"
        )
    for col in ("x", "y"):
        bad = ~np.isfinite(pd.to_numeric(frame[col], errors="coerce").to_numpy(float))
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise AnnotationError(
                f"{points}: row {row + 1}: {col} {frame[col].iloc[row]!r} is not a finite number"
            )
    out = {}
    names = frame["image"].astype(str).map(by_name)
    for image in images:
        rows = frame[names == image.name]
        labels = (
            rows["label"].astype(object).where(rows["label"].notna(), None).tolist()
            if "label" in rows
            else None
        )
        out[image.name] = click_table_from_points(
            rows[["x", "y"]].to_numpy(float), object=object_type, labels=labels, source=str(points)
        )
    return out


def _place(image: Path, dest: Path) -> None:
    dest.unlink(missing_ok=True)
    try:
        os.link(image, dest)
    except OSError:
        shutil.copy2(image, dest)


def write_labels(labels: np.ndarray, folder: Path, stem: str) -> Path:
    """``labels`` as a uint16 PNG, or a uint32 TIFF beyond 65,535 instances."""
    from PIL import Image

    if labels.max(initial=0) <= np.iinfo(np.uint16).max:
        path = folder / f"{stem}.png"
        with atomic_path(path) as tmp:
            Image.fromarray(labels.astype(np.uint16)).save(tmp, format="PNG")
    else:
        import tifffile

        path = folder / f"{stem}.tif"
        with atomic_path(path) as tmp:
            tifffile.imwrite(tmp, labels.astype(np.uint32), compression="zlib")
    return path


def convert_folder(
    images: Path,
    points: Path,
    out: Path,
    *,
    model: str | None = None,
    object_type: str = "nucleus",
    mpp: float | None = None,
    batch_size: int = 16,
    threads: int = 0,
    jitter: bool = True,
    shard: tuple[int, int] | None = None,
) -> list[Converted]:
    """Convert every image of ``images`` with its points (see the module docstring).

    ``shard`` (k, n) converts only every n-th image from the k-th (0-based) and writes its
    manifest rows to ``out/shards/k-of-n.json``; :func:`finish_conversion` then flags and
    summarises all shards together (area outliers are judged over the whole dataset)."""
    card = load_card(resolve_model(model, object_type))
    if card.object_type not in ("nucleus", "cell"):
        raise NuclickError(
            f"model {card.name} segments {card.object_type}s; convert takes click models"
        )
    files = find_images(images)
    if shard is not None:
        k, n = shard
        if not 0 <= k < n:
            raise NuclickError(f"shard {k}/{n}: need 0 <= k < n")
        files = files[k::n]
    tables = point_tables(files, points, object_type)
    predictor = OnnxPredictor(card, batch_size=batch_size, threads=threads)
    geom = ModelGeometry.from_card(card)
    for sub in ("images", "labels", "instances"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    rows: list[Converted] = []
    for k, image in enumerate(files):
        slide = open_slide(image, mpp=mpp, fallback_mpp=card.mpp)
        try:
            clicks = tables[image.name]
            if len(clicks):
                clicks = validate_clicks(
                    clicks, width=slide.width, height=slide.height, path=points
                )

            def run(marks: gpd.GeoDataFrame, slide: Slide = slide) -> gpd.GeoDataFrame:
                return segment_clicks(
                    slide, marks, predictor, geom, batch_size=batch_size, options=RunOptions()
                ).table

            table = run(clicks)
            if jitter and len(clicks):
                table["stability"] = _stability(clicks, table, run, slide.mpp)
            width, height, image_mpp = slide.width, slide.height, slide.mpp
        finally:
            slide.close()
        write_labels(label_mask(table, width, height), out / "labels", image.stem)
        centres = shapely.centroid(clicks.geometry.values) if len(clicks) else np.zeros(0, object)
        xy = (
            np.column_stack([shapely.get_x(centres), shapely.get_y(centres)])
            if len(clicks)
            else np.zeros((0, 2))
        )
        meta = {
            "package": {"name": "nuclick-wsi", "version": __version__},
            "model": {"name": card.name, "sha256": card.sha256},
            "slide": {"path": str(image), "width": width, "height": height, "mpp": image_mpp},
            "annotations": str(points),
        }
        write_instances(
            table, out / "instances" / f"{image.stem}.parquet", metadata=meta, sort_xy=xy
        )
        _place(image, out / "images" / image.name)
        ok = table["status"] == status.OK
        rows.append(
            Converted(
                image.name,
                width,
                height,
                image_mpp,
                len(table),
                {s: int(n) for s, n in table["status"].value_counts().items()},
                float(table.loc[ok, "score"].mean()) if ok.any() else None,
            )
        )
        log.info(
            "%d/%d %s: %d clicks, %d instances",
            k + 1,
            len(files),
            image.name,
            len(table),
            int(ok.sum()),
        )
    if shard is not None:
        (out / "shards").mkdir(exist_ok=True)
        part = {
            "model": {"name": card.name, "sha256": card.sha256},
            "rows": [dataclasses.asdict(r) for r in rows],
        }
        write_text_atomic(
            out / "shards" / f"{shard[0]}-of-{shard[1]}.json", json.dumps(part) + "\n"
        )
        return rows
    return finish(out, rows, card.name, card.sha256)


def _stability(clicks: gpd.GeoDataFrame, table: gpd.GeoDataFrame, run, mpp: float) -> np.ndarray:
    """Each click's mask against the masks of the same clicks moved a little (quality)."""
    xy = np.column_stack(
        [shapely.get_x(clicks.geometry.values), shapely.get_y(clicks.geometry.values)]
    )
    moved = []
    for k in range(quality.JITTER_VIEWS):
        shifted = clicks.copy()
        shifted["geometry"] = shapely.points(quality.jittered_xy(xy, mpp, k))
        moved.append(run(shifted).geometry.to_numpy())
    return quality.stability(table.geometry.to_numpy(), moved)
