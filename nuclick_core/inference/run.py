"""One slide end to end, as a library call: what ``nuclick segment`` does, for every caller.

:func:`open_run` resolves the model, checks that it segments the asked object type, reads and
validates the marks and opens the slide (closed again however the block ends);
:func:`run_slide` runs the engine over them and returns a :class:`SlideRun` (the instance
table, the run's statistics and its provenance); :func:`write_run` writes the table (GeoParquet,
optionally QuPath GeoJSON) with the provenance in its metadata.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np

from nuclick_core import __version__
from nuclick_core.errors import NuclickError
from nuclick_core.inference.engine import ModelGeometry, RunOptions, segment_clicks
from nuclick_core.inference.models import ModelCard, load_card, resolve_model
from nuclick_core.inference.runtime import OnnxPredictor
from nuclick_core.inference.stain import card_target, normaliser, wants_normalisation
from nuclick_core.io.annotations import read_clicks, validate_clicks
from nuclick_core.io.clicks import Clicks
from nuclick_core.io.geometries import Geometries
from nuclick_core.io.instances import write_instances, write_qupath_geojson
from nuclick_core.io.slides import Slide, open_slide


@dataclass(frozen=True)
class RunInputs:
    """What a run reads before it segments: the model's card, the open slide and the
    validated click table (in columns: :class:`~nuclick_core.io.clicks.Clicks`)."""

    card: ModelCard
    slide: Slide
    clicks: Clicks
    annotations: Path


@dataclass(frozen=True)
class SlideRun:
    """The result of :func:`run_slide`.

    table : the instance table (one row per click, in click order); without a geometry
        column when the run spilled its geometries (``spill_dir``).
    stats : the engine's statistics plus wall-clock seconds, clicks, counts by status and
        patches per second (JSON-ready).
    provenance : model, slide, annotation file, configuration and package version; written
        into the GeoParquet's metadata.
    click_xy : float (N, 2) level-0 position of each mark (a squiggle's centroid), which
        orders the written rows along a Hilbert curve.
    """

    table: gpd.GeoDataFrame
    stats: dict
    provenance: dict
    click_xy: np.ndarray
    geometries: Geometries


def point_object(object_type: str) -> str:
    """Object type given to point marks: glands are marked by squiggles, so points in a gland
    run keep the default type (and get the status unsupported_mark)."""
    return object_type if object_type in ("nucleus", "cell") else "nucleus"


@contextmanager
def open_run(
    slide: Path | str,
    annotations: Path | str,
    *,
    model: str | None = None,
    object_type: str = "nucleus",
    mpp: float | None = None,
) -> Iterator[RunInputs]:
    """Resolve and check the model, read the marks, open the slide and validate the marks
    against it; the slide is closed when the block ends.

    Raises
    ------
    ModelError, AnnotationError, SlideError, NuclickError
        With a message naming the file and the fix (the CLI prints it without a traceback).
    """
    card = load_card(resolve_model(model, object_type))
    if card.object_type != object_type:
        raise NuclickError(
            f"model {card.name} is a {card.object_type} model but --object is {object_type}; "
            "pick a model for that object type"
        )
    annotations = Path(annotations)
    clicks = read_clicks(annotations, default_object=point_object(object_type))
    opened = open_slide(slide, mpp=mpp, fallback_mpp=card.mpp)
    try:
        clicks = validate_clicks(clicks, width=opened.width, height=opened.height, path=annotations)
        yield RunInputs(card, opened, clicks, annotations)
    finally:
        opened.close()


def run_slide(
    slide: Path | str,
    annotations: Path | str,
    *,
    model: str | None = None,
    object_type: str = "nucleus",
    mpp: float | None = None,
    batch_size: int = 16,
    threads: int = 0,
    provider: str = "auto",
    tile: int = 1024,
    tta: int | None = None,
    workers: int = 0,
    readers: int = 2,
    progress_every: float = 5.0,
    spill_dir: Path | str | None = None,
    stain_normalise: str = "card",
) -> SlideRun:
    """Segment every mark of ``annotations`` on ``slide`` with the model (a name under
    models/, a folder, or None: the registry's current model for ``object_type``).

    ``threads`` 0 means the CPUs allotted to the job; ``tta`` None means the card's views;
    ``workers`` processes take post-processing and polygons off the predictor's thread;
    ``readers`` threads read tiles ahead; a progress line is logged every ``progress_every``
    seconds (0: none). With ``spill_dir`` (a folder that outlives :func:`write_run`) the
    geometries wait there on disk, so memory does not grow with the number of clicks; the
    caller closes ``run.geometries`` (which removes the file) when done. ``stain_normalise``
    ``on``/``off``, or ``card`` for the card's choice (:mod:`nuclick_core.inference.stain`).
    """
    t0 = time.perf_counter()
    with open_run(slide, annotations, model=model, object_type=object_type, mpp=mpp) as run:
        card, opened = run.card, run.slide
        stain: dict | bool = False
        if wants_normalisation(card, stain_normalise):
            target = card_target(card)
            opened.colour = normaliser(opened, target)
            stain = {"method": "reinhard", "target_lab": [v.tolist() for v in target]}
        predictor = OnnxPredictor(
            card, batch_size=batch_size, threads=threads, provider=provider, tta=tta
        )
        seg = segment_clicks(
            opened,
            run.clicks,
            predictor,
            ModelGeometry.from_card(card),
            batch_size=batch_size,
            options=RunOptions(
                tile=tile,
                workers=workers,
                readers=readers,
                progress_every=progress_every,
                spill_dir=None if spill_dir is None else str(spill_dir),
            ),
        )
    click_xy = run.clicks.xy
    provenance = {
        "package": {"name": "nuclick-wsi", "version": __version__},
        "model": {
            "name": card.name,
            "sha256": card.sha256,
            "path": str(card.path),
            "mpp": card.mpp,
            "patch_size": card.patch_size,
        },
        "slide": {
            "path": str(opened.path),
            "width": opened.width,
            "height": opened.height,
            "mpp": opened.mpp,
            "mpp_source": opened.mpp_source,
        },
        "annotations": str(annotations),
        "config": {
            "object": object_type,
            "batch_size": batch_size,
            "tile": tile,
            "tta": predictor.tta,
            "stain_normalise": stain,
            "postprocess": card.raw["postprocess"],
            "providers": predictor.providers,
        },
    }
    table = seg.table
    stats = {
        **asdict(seg.stats),
        "seconds_wall": time.perf_counter() - t0,
        "clicks": len(table),
        "statuses": table["status"].value_counts().to_dict(),
        "patches_per_second": seg.stats.patches / max(seg.stats.seconds_run, 1e-9),
    }
    return SlideRun(table, stats, provenance, click_xy, seg.geometries)


def write_run(run: SlideRun, out: Path | str, *, geojson: Path | str | None = None) -> None:
    """Write the run's instance table to ``out`` (GeoParquet with its provenance and, under
    ``run``, its statistics) and, when asked, the ok instances as QuPath GeoJSON to ``geojson``.

    The GeoJSON is written first: each file appears only when complete (written under a
    temporary name), so an existing GeoParquet means the whole run finished."""
    if geojson:
        write_qupath_geojson(run.table, Path(geojson), geometries=run.geometries)
    metadata = {**run.provenance, "run": run.stats}
    write_instances(
        run.table, Path(out), metadata=metadata, sort_xy=run.click_xy, geometries=run.geometries
    )
