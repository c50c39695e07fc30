"""Finishing a conversion (:mod:`nuclick_core.inference.convert`), once every image or shard
is converted: area outliers judged over the whole dataset and the ``review`` column written into
every instance table, the class maps where the points carried labels, and the manifest."""

from __future__ import annotations

import csv
import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from nuclick_core.errors import NuclickError
from nuclick_core.inference import quality
from nuclick_core.io import status
from nuclick_core.io.files import atomic_path, write_text_atomic
from nuclick_core.io.instances import add_columns


@dataclass(frozen=True)
class Converted:
    """One converted image: its manifest row."""

    image: str
    width: int
    height: int
    mpp: float
    clicks: int
    statuses: dict[str, int]
    mean_score: float | None
    check: int = 0


def finish_conversion(out: Path, shards: int) -> list[Converted]:
    """Flag and summarise the ``shards`` converted parts of ``out`` together (the review
    column over the whole dataset, the manifest)."""
    rows: list[Converted] = []
    model: dict = {}
    for k in range(shards):
        path = out / "shards" / f"{k}-of-{shards}.json"
        if not path.exists():
            raise NuclickError(f"{path} is missing: shard {k} of {shards} has not been converted")
        part = json.loads(path.read_text())
        if model and part["model"] != model:
            raise NuclickError(f"{path}: converted with another model ({part['model']['name']})")
        model = part["model"]
        rows.extend(Converted(**r) for r in part["rows"])
    rows.sort(key=lambda r: r.image)
    return finish(out, rows, model["name"], model["sha256"])


def finish(out: Path, rows: list[Converted], name: str, sha256: str) -> list[Converted]:
    """Flag, map classes and write the manifest of the converted ``rows``; the rows with
    their counts of instances to check."""
    reviews = _flag_dataset(out, [r.image for r in rows])
    _write_class_maps(out, [r.image for r in rows])
    rows = [dataclasses.replace(r, check=reviews.get(r.image, 0)) for r in rows]
    _write_manifest(out, rows, {"name": name, "sha256": sha256})
    return rows


def _write_class_maps(out: Path, names: list[str]) -> None:
    """Where the points carried labels: ``classes/NAME.png`` (pixel value = the class index of
    the instance there, 0 = background; uint8, uint16 beyond 255 classes) and ``classes.json``
    (index -> label, the labels sorted by name, the same for every image and shard)."""
    from PIL import Image

    tables = {
        n: pd.read_parquet(
            out / "instances" / f"{Path(n).stem}.parquet",
            columns=["instance_id", "label", "status"],
        )
        for n in names
    }
    found = sorted({v for t in tables.values() for v in t["label"].dropna().astype(str)})
    if not found:
        return
    index = {label: k + 1 for k, label in enumerate(found)}
    (out / "classes").mkdir(exist_ok=True)
    write_text_atomic(
        out / "classes.json",
        json.dumps({"0": "background", **{str(k): v for v, k in index.items()}}, indent=1) + "\n",
    )
    dtype = np.uint8 if len(found) < 256 else np.uint16
    for name, table in tables.items():
        stem = Path(name).stem
        label_file = next(
            p
            for p in (out / "labels" / f"{stem}.png", out / "labels" / f"{stem}.tif")
            if p.exists()
        )
        with Image.open(label_file) as im:
            instances = np.array(im).astype(np.int64)
        lut = np.zeros(
            int(max(instances.max(initial=0), table["instance_id"].max() if len(table) else 0)) + 1,
            dtype,
        )
        ok = table[(table["status"] == status.OK) & table["label"].notna()]
        lut[ok["instance_id"].to_numpy(np.int64)] = [index[str(v)] for v in ok["label"]]
        with atomic_path(out / "classes" / f"{stem}.png") as tmp:
            Image.fromarray(lut[instances]).save(tmp, format="PNG")


def _flag_dataset(out: Path, names: list[str]) -> dict[str, int]:
    """Area outliers over the whole dataset and the review column, added to every instance
    table in place; the number of instances to check per image."""
    paths = {n: out / "instances" / f"{Path(n).stem}.parquet" for n in names}
    wanted = ("status", "score", "area_um2", "stability")  # stability: not with --no-jitter
    tables = {
        n: pd.read_parquet(p, columns=[c for c in wanted if c in pq.read_schema(p).names])
        for n, p in paths.items()
    }
    every = pd.concat(tables.values()) if tables else pd.DataFrame(columns=["status", "area_um2"])
    outlier = quality.area_outliers(
        every["area_um2"].to_numpy(float), every["status"].to_numpy() == status.OK
    )
    counts, start = {}, 0
    for name, table in tables.items():
        n = len(table)
        flags = outlier[start : start + n]
        start += n
        stab = table["stability"].to_numpy(float) if "stability" in table else np.full(n, np.nan)
        review = quality.review(
            table["status"].to_numpy(), table["score"].to_numpy(float), stab, flags
        )
        add_columns(paths[name], {"area_outlier": flags, "review": review})
        counts[name] = int((review == "check").sum())
    return counts


def _write_manifest(out: Path, rows: list[Converted], model: dict) -> None:
    kinds = sorted({s for r in rows for s in r.statuses})
    with atomic_path(out / "manifest.csv") as tmp, open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image", "width", "height", "mpp", "clicks", *kinds, "mean_score", "check"])
        for r in rows:
            w.writerow(
                [
                    r.image,
                    r.width,
                    r.height,
                    r.mpp,
                    r.clicks,
                    *(r.statuses.get(s, 0) for s in kinds),
                    "" if r.mean_score is None else f"{r.mean_score:.4f}",
                ]
            )
    totals = {s: sum(r.statuses.get(s, 0) for r in rows) for s in kinds}
    manifest = {
        "model": model,
        "images": len(rows),
        "clicks": sum(r.clicks for r in rows),
        "instances_by_status": totals,
        "to_check": sum(r.check for r in rows),
        "review_rule": {
            "min_stability": quality.MIN_STABILITY,
            "min_score": quality.MIN_SCORE,
            "area_z": quality.AREA_Z,
            "jitter_um": quality.JITTER_UM,
            "jitter_views": quality.JITTER_VIEWS,
        },
        "per_image": [r.__dict__ for r in rows],
    }
    write_text_atomic(out / "manifest.json", json.dumps(manifest, indent=1) + "\n")
