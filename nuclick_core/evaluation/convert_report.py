"""The HTML summary of a conversion (``OUT/summary.html``): totals, per-image counts with the
images holding the most instances to check first, and overlays of those images (instances to
check outlined red, the others yellow)."""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from skimage.segmentation import find_boundaries

from nuclick_core.evaluation.report import png_data_uri
from nuclick_core.io.files import write_text_atomic
from nuclick_core.io.instances import label_mask, read_instances
from nuclick_core.io.slides import open_slide, read_grid_region

OVERLAYS = 3
OVERLAY_SIDE = 600


def review_overlay(
    image: Path, instances: Path, mpp: float, max_side: int = OVERLAY_SIDE
) -> np.ndarray:
    """uint8 RGB of ``image`` (its longer side fitted to ``max_side``) with the instances to
    check outlined red and the others yellow."""
    table = read_instances(instances)
    slide = open_slide(image, mpp=mpp, fallback_mpp=mpp)
    try:
        d = max(1.0, max(slide.width, slide.height) / max_side)
        w, h = int(slide.width / d), int(slide.height / d)
        rgb = read_grid_region(slide, 0, 0, w, h, target_mpp=slide.mpp * d)
        width, height = slide.width, slide.height
    finally:
        slide.close()
    out = rgb.copy()
    flagged = table["review"] == "check" if "review" in table else np.zeros(len(table), bool)
    for subset, colour in ((table[~flagged], (255, 230, 0)), (table[flagged], (230, 0, 0))):
        labels = label_mask(subset, width, height, downsample=d)[:h, :w]
        out[find_boundaries(labels, mode="inner")] = colour
    return out


def write_convert_summary(out: Path, rows: Sequence, *, model: dict) -> Path:
    """Write ``out/summary.html`` for the manifest rows of a conversion."""
    order = sorted(rows, key=lambda r: (-r.check, r.image))
    total_clicks = sum(r.clicks for r in rows)
    total_ok = sum(r.statuses.get("ok", 0) for r in rows)
    total_check = sum(r.check for r in rows)
    lines = [
        "<!doctype html><meta charset='utf-8'><title>nuclick convert</title>",
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
        "td:first-child{text-align:left}img{max-width:100%}</style>",
        f"<h1>Conversion of {len(rows)} images</h1>",
        f"<p>Model {html.escape(model.get('name', ''))} (sha256 "
        f"{html.escape(model.get('sha256', '')[:16])}...). {total_clicks} clicks, {total_ok} "
        f"instances, <b>{total_check} to check</b> (column <code>review</code> of the instance "
        "tables; the rule is in the README, 'Converting a point-labelled dataset').</p>",
        "<table><tr><th>image</th><th>clicks</th><th>ok</th><th>to check</th>"
        "<th>mean score</th></tr>",
    ]
    for r in order:
        score = "" if r.mean_score is None else f"{r.mean_score:.3f}"
        lines.append(
            f"<tr><td>{html.escape(r.image)}</td><td>{r.clicks}</td>"
            f"<td>{r.statuses.get('ok', 0)}</td><td>{r.check}</td><td>{score}</td></tr>"
        )
    lines.append("</table>")
    shown = [r for r in order if r.check][:OVERLAYS]
    if shown:
        lines.append("<h2>Images with the most instances to check</h2>")
        lines.append("<p>Red: instances to check; yellow: the others.</p>")
    for r in shown:
        stem = Path(r.image).stem
        rgb = review_overlay(out / "images" / r.image, out / "instances" / f"{stem}.parquet", r.mpp)
        lines.append(f"<h3>{html.escape(r.image)}: {r.check} to check</h3>")
        lines.append(f"<img src='{png_data_uri(rgb)}' alt='{html.escape(r.image)}'>")
    path = out / "summary.html"
    write_text_atomic(path, "\n".join(lines) + "\n")
    return path
