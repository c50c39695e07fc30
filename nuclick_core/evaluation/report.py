"""Self-contained HTML evaluation reports (tables, an SVG plot, overlay images), with the JSON of
every figure written beside them by the caller."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import numpy as np
from PIL import Image
from skimage.segmentation import find_boundaries

from nuclick_core.data.labelled import LabelledImage
from nuclick_core.data.marks import MARK_SHIFTS, MARKS
from nuclick_core.data.shifts import DESCRIPTIONS
from nuclick_core.evaluation.evaluate import ImageResult
from nuclick_core.evaluation.metrics import HIGHER_IS_BETTER, POINT_FIGURES
from nuclick_core.io import status
from nuclick_core.io.files import atomic_path

PAPER_NUCLEI = {"aji": 0.834, "dice": 0.912, "pq": 0.838}  # NuClick paper, MoNuSeg, full network
#: The paper's figures (full network) per object type: (row name, figures).
PAPER = {
    "nucleus": ("NuClick paper (full network, MoNuSeg)", PAPER_NUCLEI),
    "cell": ("NuClick paper (full network, WBC canvases)", {"aji": 0.954}),
    "gland": ("NuClick paper (full network, GlaS test A)", {"object_dice": 0.956, "f1": 1.0}),
}
MAX_OVERLAYS = 10  # images shown in a report; the tables cover every image
#: Columns of a gland report: the GlaS figures first, then two of the point figures.
GLAND_COLUMNS = ("object_dice", "object_hausdorff", "f1", "dice", "aji")

CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 10px;
text-align:right}th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
.best{font-weight:bold}figure{display:inline-block;margin:6px}figcaption{font-size:90%}
.note{color:#555;font-size:92%}"""


def _table(
    rows: dict[str, dict[str, float]], cols: tuple[str, ...], *, bold_best: bool = True
) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in ("", *cols))

    def best_of(c: str) -> float:
        values = [r[c] for r in rows.values() if r.get(c) is not None]
        pick = max if HIGHER_IS_BETTER.get(c, True) else min  # object Hausdorff: lowest
        return pick(values, default=0)

    best = {c: best_of(c) for c in cols}
    body = []
    for name, r in rows.items():
        cells = []
        for c in cols:
            v = r.get(c)
            text = "" if v is None else (f"{v:.0f}" if float(v).is_integer() else f"{v:.3f}")
            cls = ' class="best"' if bold_best and v is not None and v == best[c] else ""
            cells.append(f"<td{cls}>{text}</td>")
        body.append(f"<tr><td>{html.escape(name)}</td>{''.join(cells)}</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _line_plot(xs: list[float], ys: list[float], *, xlabel: str, ylabel: str) -> str:
    """A small SVG line plot."""
    w, h, m = 420, 260, 45
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(min(ys), 0.5), 1.0
    px = [m + (x - x0) / max(x1 - x0, 1e-9) * (w - 2 * m) for x in xs]
    py = [h - m - (y - y0) / max(y1 - y0, 1e-9) * (h - 2 * m) for y in ys]
    pts = " ".join(f"{a:.1f},{b:.1f}" for a, b in zip(px, py, strict=True))
    marks = "".join(
        f'<circle cx="{a:.1f}" cy="{b:.1f}" r="3"/><text x="{a:.1f}" y="{b - 8:.1f}" '
        f'font-size="10" text-anchor="middle">{y:.3f}</text>'
        for a, b, y in zip(px, py, ys, strict=True)
    )
    ticks = "".join(
        f'<text x="{a:.1f}" y="{h - m + 15}" font-size="10" text-anchor="middle">{x:g}</text>'
        for a, x in zip(px, xs, strict=True)
    )
    return (
        f'<svg width="{w}" height="{h}" xmlns="http://www.w3.org/2000/svg">'
        f'<rect x="{m}" y="{m}" width="{w - 2 * m}" height="{h - 2 * m}" '
        'fill="none" stroke="#999"/>'
        f'<polyline points="{pts}" fill="none" stroke="#1f77b4" stroke-width="2"/>{marks}{ticks}'
        f'<text x="{w / 2}" y="{h - 8}" font-size="12" text-anchor="middle">{xlabel}</text>'
        f'<text x="12" y="{h / 2}" font-size="12" transform="rotate(-90 12 {h / 2})" '
        f'text-anchor="middle">{ylabel} (y from {y0:.2f} to 1)</text></svg>'
    )


def overlay(
    image: np.ndarray, true: np.ndarray | None, pred: np.ndarray, clicks: np.ndarray
) -> np.ndarray:
    """RGB overlay: ground-truth outlines green, predicted outlines yellow, clicks red."""
    out = image.copy()
    if true is not None:
        out[find_boundaries(true, mode="inner")] = (0, 200, 0)
    out[find_boundaries(pred, mode="inner")] = (255, 230, 0)
    h, w = pred.shape
    for x, y in np.floor(clicks).astype(int):
        out[max(y - 1, 0) : min(y + 2, h), max(x - 1, 0) : min(x + 2, w)] = (230, 0, 0)
    return out


def png_data_uri(rgb: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _crop(arr: np.ndarray, size: int = 400) -> np.ndarray:
    return arr[:size, :size]


def write_report(
    path: Path,
    figures: dict,
    results: dict[str, list[ImageResult]],
    items: list[LabelledImage],
    *,
    overlays: bool = True,
) -> None:
    """Write the evaluation report as one HTML file (images embedded unless ``overlays`` is
    False, for data whose licence does not allow sharing the images)."""
    model = figures.get("model", {})
    obj = str(model.get("object_type", "nucleus"))
    cols = GLAND_COLUMNS if obj == "gland" else POINT_FIGURES
    parts = [
        f"<!doctype html><meta charset='utf-8'><title>NuClick evaluation: "
        f"{html.escape(str(model.get('name', '')))}</title><style>{CSS}</style>",
        f"<h1>Evaluation of {html.escape(str(model.get('name', '')))}</h1>",
        f"<p class='note'>Model sha256 {html.escape(str(model.get('sha256', ''))[:16])}...; data "
        f"{html.escape(str(figures.get('data', {}).get('path', '')))}, images "
        f"{html.escape(', '.join(figures.get('data', {}).get('images', [])))}; "
        f"{MARKS['gland' if obj == 'gland' else 'point']}; figures are per-image means. "
        "Produced by: "
        f"<code>{html.escape(str(figures.get('command', '')))}</code></p>",
    ]
    rows = {"NuClick (this model)": figures["main"]}
    for name, f in figures.get("baselines", {}).items():
        rows[name.replace("_", " ")] = f
    paper_name, paper = PAPER.get(obj, PAPER["nucleus"])
    rows[paper_name] = paper
    if "baselines" in figures:
        parts.append("<h2>Comparison with classical seeded methods (as the paper's Table II)</h2>")
        parts.append("<p class='note'>Every method gets the same clicks.</p>")
    else:
        parts.append("<h2>Figures</h2>")
    parts.append(_table(rows, cols))
    if "jitter" in figures:
        sig = sorted(float(s) for s in figures["jitter"])
        jrows = {"0 (centroid)": figures["main"]}
        jrows.update({f"{s:g}": figures["jitter"][str(s)] for s in sig})
        parts.append("<h2>Robustness to click position (as the paper's Table IX)</h2>")
        parts.append(
            "<p class='note'>Clicks moved by Gaussian noise of the given sigma (pixels).</p>"
        )
        parts.append(_table(jrows, ("aji", "dice", "pq"), bold_best=False))
        parts.append(
            _line_plot(
                [0.0, *sig],
                [figures["main"]["aji"]] + [figures["jitter"][str(s)]["aji"] for s in sig],
                xlabel="click jitter sigma (px)",
                ylabel="AJI",
            )
        )
    if "exclusion_off" in figures:
        parts.append("<h2>Exclusion map and overlap handling (as the paper's Table X)</h2>")
        parts.append(
            _table(
                {
                    "exclusion map on, overlap resolution (shipped)": figures["main"],
                    "exclusion map off": figures["exclusion_off"],
                    "last click wins (original implementations)": figures["last_click_wins"],
                },
                cols if obj == "gland" else ("aji", "aji_plus", "dice", "pq"),
                bold_best=False,
            )
        )
    if "robustness" in figures:
        parts.append("<h2>Robustness: shifted images, scales and marks</h2>")
        parts.append(
            "<p class='note'>The same images and objects, shifted as other labs, scanners and "
            "people would shift them (seeded, so every model sees the same sets). The gate "
            "compares a candidate with the current model on all of them together.</p>"
        )
        described = {**DESCRIPTIONS, **MARK_SHIFTS["point"], **MARK_SHIFTS["gland"]}
        rrows = {"clean": figures["main"]}
        rrows.update({f"{k}: {described.get(k, '')}": v for k, v in figures["robustness"].items()})
        parts.append(
            _table(rrows, cols if obj == "gland" else ("aji", "dice", "pq", "sq"), bold_best=False)
        )
    parts.append("<h2>Per image</h2>")
    parts.append(
        _table(
            figures["per_image"],
            (*(cols[:3] if obj == "gland" else ("aji", "dice", "pq")), "objects", "ok"),
            bold_best=False,
        )
    )
    parts.append(
        "<h2>Overlays</h2><p class='note'>Top-left 400x400 px of each image (the first "
        f"{min(len(items), MAX_OVERLAYS)} of {len(items)}): ground truth green, NuClick yellow, "
        "clicks (squiggles) red.</p>"
        if overlays
        else "<h2>Overlays</h2><p class='note'>Left out: the data's licence does not allow "
        "sharing its images. Run the command above without --no-overlays to see them.</p>"
    )
    pairs = list(zip(items, results["main"], strict=True))[:MAX_OVERLAYS] if overlays else []
    for item, res in pairs:
        img = overlay(_crop(item.image), _crop(item.labels), _crop(res.pred), res.clicks)
        parts.append(
            f"<figure><img src='{png_data_uri(img)}' width='400'>"
            f"<figcaption>{html.escape(item.name)}</figcaption></figure>"
        )
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(parts) + "\n")


def write_run_report(
    path: Path, instances, stability: dict, overlay_png: Path, provenance: dict
) -> None:
    """One slide's report without ground truth: statuses, instance sizes, the stability of the
    masks under click jitter, and the overlay image."""
    ok = instances[instances["status"] == status.OK]
    slide = provenance.get("slide", {})
    package = provenance.get("package", {})
    counts = instances["status"].value_counts().to_dict()
    area = ok["area_um2"].to_numpy() if len(ok) else np.zeros(1)
    rows_status = {k: {"instances": float(v)} for k, v in sorted(counts.items())}
    rows_area = {
        "area (um2)": {
            "p10": float(np.percentile(area, 10)),
            "median": float(np.median(area)),
            "p90": float(np.percentile(area, 90)),
        },
        "score": {
            "p10": float(np.percentile(ok["score"], 10)) if len(ok) else 0.0,
            "median": float(np.median(ok["score"])) if len(ok) else 0.0,
            "p90": float(np.percentile(ok["score"], 90)) if len(ok) else 0.0,
        },
    }
    stab = {f"sigma {s} px": v for s, v in stability["stability"].items()}
    img = base64.b64encode(Path(overlay_png).read_bytes()).decode()
    parts = [
        f"<!doctype html><meta charset='utf-8'><title>nuclick run: "
        f"{html.escape(str(stability.get('slide', '')))}</title><style>{CSS}</style>",
        f"<h1>{html.escape(str(stability.get('slide', '')))}</h1>",
        f"<p class='note'>Model {html.escape(str(stability['model']['name']))} "
        f"(sha256 {html.escape(stability['model']['sha256'][:16])}...), marks "
        f"{html.escape(str(stability.get('annotations', '')))}; slide {slide.get('width')}x"
        f"{slide.get('height')} px at {slide.get('mpp')} um/px (mpp from "
        f"{html.escape(str(slide.get('mpp_source')))}); nuclick-wsi "
        f"{html.escape(str(package.get('version')))}.</p>",
        "<h2>Instances by status</h2>",
        _table(rows_status, ("instances",), bold_best=False),
        "<h2>Instance sizes and scores</h2>",
        _table(rows_area, ("p10", "median", "p90"), bold_best=False),
        "<h2>Stability under click jitter (no ground truth)</h2>",
        "<p class='note'>IoU between the mask from each click and the mask after moving the "
        "click by Gaussian noise of the given sigma (level-0 pixels), over clicks with an "
        "instance.</p>",
        _table(stab, ("clicks", "mean_iou", "median_iou", "share_iou_over_0.5"), bold_best=False),
        "<h2>Overlay</h2><p class='note'>Instances yellow; clicks red (instance) or blue "
        "(none).</p>",
        f"<img src='data:image/png;base64,{img}' style='max-width:100%'>",
    ]
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(parts) + "\n")
