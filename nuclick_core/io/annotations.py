"""Read and validate clicks and squiggles, normalised to the click table.

The click table is a :class:`geopandas.GeoDataFrame` with ``crs=None``, one row per input mark in
input order, and exactly these columns:

- ``click_id`` (int64): 0..n-1 in input order;
- ``kind`` (object, str): ``"point"`` or ``"squiggle"``;
- ``object`` (object, str): ``"nucleus"``, ``"cell"`` or ``"gland"``;
- ``label`` (object): class name (str) or None;
- ``source`` (object, str): file and row/feature, e.g. ``"clicks.csv:row 12"``,
  ``"marks.geojson:feature 3 point 2"``;
- ``geometry``: Point (points), LineString or MultiLineString (squiggles; one squiggle may be drawn
  in pieces and stays one row).

Coordinates are level-0 pixels of the slide, x right, y down. Row, feature, annotation and point
numbers in ``source`` and in error messages are 1-based (a CSV "row" is a data row, the header
excluded; the physical line number is given too). A mark's object type is, in order: the file's
own ``object`` value for that mark, ``object_by_label[label]``, then ``default_object`` for points
and ``"gland"`` for squiggles.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow as pa
import shapely

from nuclick_core.errors import AnnotationError
from nuclick_core.io._readers import OBJECTS, READERS, Mark
from nuclick_core.io.clicks import (
    Clicks,
    object_array,
    read_delimited_points,
    read_geoparquet_points,
    repeated,
)
from nuclick_core.io.files import atomic_path
from nuclick_core.io.geojson_points import read_geojson_points

#: File suffixes :func:`read_annotations` reads.
ANNOTATION_SUFFIXES = tuple(READERS)

POINT_OBJECTS = ("nucleus", "cell")
COLUMNS = ("click_id", "kind", "object", "label", "source", "geometry")


def _table(marks: Sequence[Mark]) -> gpd.GeoDataFrame:
    """The click table of resolved marks (object set); string columns keep dtype object."""
    columns = {f: pd.Series([getattr(m, f) for m in marks], dtype=object) for f in COLUMNS[1:5]}
    geometry = gpd.GeoSeries([m.geometry for m in marks], crs=None)
    click_id = np.arange(len(marks), dtype=np.int64)
    return gpd.GeoDataFrame({"click_id": click_id, **columns}, geometry=geometry, crs=None)


def _at(x0: float, y0: float, x1: float, y1: float) -> str:
    if (x0, y0) == (x1, y1):
        return f"x={x0:.10g}, y={y0:.10g}"
    return f"x {x0:.10g}..{x1:.10g}, y {y0:.10g}..{y1:.10g}"


def _check_duplicates(table: gpd.GeoDataFrame, where: str | Path) -> None:
    Clicks.of(table).check_duplicates(where)


def _check_objects(default_object: str, object_by_label: Mapping[str, str] | None) -> None:
    if default_object not in POINT_OBJECTS:
        raise AnnotationError(
            f"default_object {default_object!r} must be one of {', '.join(POINT_OBJECTS)}"
        )
    bad = {k: v for k, v in (object_by_label or {}).items() if v not in OBJECTS}
    if bad:
        raise AnnotationError(
            f"object_by_label maps {bad} to unknown object types; use one of {', '.join(OBJECTS)}"
        )


def read_annotations(
    path: str | Path,
    *,
    default_object: str = "nucleus",
    object_by_label: Mapping[str, str] | None = None,
) -> gpd.GeoDataFrame:
    """Read clicks and squiggles from a file into the click table (see the module docstring).

    Parameters
    ----------
    path : str or Path
        ``.csv``/``.tsv``/``.txt`` (header with x, y; delimiter comma, tab or semicolon sniffed),
        ``.geojson``/``.json`` (QuPath), ``.parquet``/``.geoparquet`` or ``.xml`` (ASAP).
    default_object : {"nucleus", "cell"}
        Object type of points that carry no object of their own and whose label is not mapped.
    object_by_label : mapping of str to str, optional
        Object type ("nucleus", "cell" or "gland") per label (exact match); overrides the default.

    Returns
    -------
    GeoDataFrame
        The click table, duplicate-free, in input order, ``crs=None``.

    Raises
    ------
    AnnotationError
        Unsupported suffix, missing or unreadable file, no marks, missing columns, a value that is
        not a finite number, an unsupported geometry (polygons), a squiggle with fewer than two
        points, or two points at the same position (to 0.01 px); the message names the file and
        the row or feature.

    Example
    -------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     _ = (Path(d) / "c.csv").write_text("x,y,label\\n10,20,tumour\\n")
    ...     read_annotations(Path(d) / "c.csv")["source"].tolist()
    ['c.csv:row 1']
    """
    return read_clicks(path, default_object=default_object, object_by_label=object_by_label).table()


def read_clicks(
    path: str | Path,
    *,
    default_object: str = "nucleus",
    object_by_label: Mapping[str, str] | None = None,
) -> Clicks:
    """:func:`read_annotations` in columns (:class:`~nuclick_core.io.clicks.Clicks`), as a
    run holds them: a CSV, GeoParquet or GeoJSON file of points is read in columns (its rows never
    become Python objects), every other file mark by mark."""
    path = Path(path)
    _check_objects(default_object, object_by_label)
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise AnnotationError(
            f"{path}: unsupported annotation format {path.suffix!r}; "
            f"supported suffixes are {', '.join(READERS)}"
        )
    if not path.is_file():
        raise AnnotationError(
            f"annotation file {path} does not exist or is not a file; check the path"
        )
    mapped = object_by_label or {}
    fast = None
    if reader is READERS[".csv"]:
        fast = read_delimited_points(path)
    elif reader is READERS[".parquet"]:
        fast = read_geoparquet_points(path)
    elif reader is READERS[".geojson"]:
        fast = read_geojson_points(path)
    if fast is not None:
        xy, labels, objects, source = fast
        resolved = repeated(default_object, len(labels))
        if mapped:
            by_label = object_array([mapped.get(v or "") for v in labels])
            resolved = np.where(pd.notna(by_label), by_label, resolved)
        if objects is not None:
            resolved = np.where(pd.notna(objects), objects, resolved)
        clicks = Clicks.points(xy, resolved, labels, source)
    else:
        marks = reader(path)
        if not marks:
            raise AnnotationError(f"{path} holds no marks; add clicks or squiggles to it")
        fallback = {"point": default_object, "squiggle": "gland"}
        clicks = Clicks.of_geometries(
            object_array([m.kind for m in marks]),
            object_array([m.geometry for m in marks]),
            object_array(
                [m.object or mapped.get(m.label or "") or fallback[m.kind] for m in marks]
            ),
            object_array([m.label for m in marks]),
            [m.source for m in marks],
        )
    clicks.check_duplicates(path)
    # Arrow's allocator keeps the blocks the parsers freed for reuse (54 MB after reading
    # 564,000 clicks from CSV); a run holds the click table for hours, so give them back.
    pa.default_memory_pool().release_unused()
    return clicks


def click_table_from_points(
    xy: Any,
    *,
    object: str = "nucleus",
    labels: Sequence[str | None] | None = None,
    source: str = "array",
) -> gpd.GeoDataFrame:
    """Build a click table of points from an array of level-0 coordinates.

    Parameters
    ----------
    xy : array-like, float (N, 2)
        Level-0 (x, y) of each click.
    object : {"nucleus", "cell"}
        Object type of every click.
    labels : sequence of str or None, optional
        Class name per click (length N).
    source : str
        Prefix of each row's ``source``: ``"{source}:row {i}"`` with i from 1.

    Returns
    -------
    GeoDataFrame
        The click table (see the module docstring).

    Raises
    ------
    AnnotationError
        Wrong shape, non-finite coordinates, labels of the wrong length, unknown object type or
        duplicated clicks.

    Example
    -------
    >>> click_table_from_points([[1.0, 2.0], [3.0, 4.0]])["click_id"].tolist()
    [0, 1]
    """
    _check_objects(object, None)
    try:
        coords = np.asarray(xy, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise AnnotationError(f"{source}: xy is not a numeric (N, 2) array ({exc})") from exc
    coords = coords.reshape(0, 2) if coords.size == 0 else coords
    if coords.ndim != 2 or coords.shape[1] != 2:
        raise AnnotationError(f"{source}: xy must have shape (N, 2), got {coords.shape}")
    bad = np.flatnonzero(~np.isfinite(coords).all(axis=1))
    if bad.size:
        raise AnnotationError(
            f"{source}: row {bad[0] + 1} holds a non-finite coordinate "
            f"{coords[bad[0]].tolist()}; give finite numbers"
        )
    n = len(coords)
    labels = [None] * n if labels is None else list(labels)
    if len(labels) != n:
        raise AnnotationError(f"{source}: {len(labels)} labels for {n} points; give one per point")
    points = shapely.points(coords) if n else []
    table = _table(
        [
            Mark("point", g, lab, object, f"{source}:row {i}")
            for i, (g, lab) in enumerate(zip(points, labels, strict=True), 1)
        ]
    )
    _check_duplicates(table, source)
    return table


def squiggle_table(lines: Sequence[Any], *, source: str = "array") -> gpd.GeoDataFrame:
    """Build a click table of gland squiggles from LineString/MultiLineString geometries.

    Row ``i`` (from 1) gets the source ``"{source}:squiggle {i}"``; an empty or non-line
    geometry is an :class:`AnnotationError` naming that row.
    """
    marks = []
    for i, geom in enumerate(lines, 1):
        if shapely.get_type_id(geom) not in (1, 5) or shapely.is_empty(geom):
            raise AnnotationError(
                f"{source}: squiggle {i} is {getattr(geom, 'geom_type', type(geom).__name__)}, "
                "not a non-empty LineString or MultiLineString"
            )
        marks.append(Mark("squiggle", geom, None, "gland", f"{source}:squiggle {i}"))
    return _table(marks)


def outside_slide_mask(table: gpd.GeoDataFrame, width: float, height: float) -> np.ndarray:
    """Which marks lie fully outside the slide's level-0 area [0, width) x [0, height).

    A point is outside when it is not in the half-open rectangle; a squiggle when it does not touch
    the rectangle at all. The engine gives such rows the status ``outside_slide``.

    Returns
    -------
    bool array (N,), True where the mark is outside.

    Example
    -------
    >>> outside_slide_mask(click_table_from_points([[5, 5], [50, 5]]), 10, 10).tolist()
    [False, True]
    """
    return Clicks.of(table).outside(width, height)


def validate_clicks(
    table: gpd.GeoDataFrame | Clicks, *, width: float, height: float, path: str | Path
) -> gpd.GeoDataFrame | Clicks:
    """Check a click table against a slide's level-0 size.

    Only a table whose marks are *all* outside the slide is an error: that almost always means the
    file uses another scale or origin. Some marks outside is not an error here; find them with
    :func:`outside_slide_mask` (the engine reports them as ``outside_slide``). Duplicated clicks
    are checked again, for tables that did not come from :func:`read_annotations`.

    Parameters
    ----------
    table : GeoDataFrame or Clicks
        A click table.
    width, height : float
        Level-0 size of the slide in pixels.
    path : str or Path
        The annotation file, named in error messages.

    Returns
    -------
    GeoDataFrame or Clicks
        ``table``, unchanged.

    Raises
    ------
    AnnotationError
        Missing columns, every mark outside the slide, or duplicated clicks.
    """
    columns = COLUMNS if isinstance(table, Clicks) else table.columns
    missing = [c for c in COLUMNS if c not in columns]
    if missing:
        raise AnnotationError(
            f"{path}: click table lacks columns {missing}; build it with "
            "read_annotations or click_table_from_points"
        )
    if width <= 0 or height <= 0:
        raise AnnotationError(f"{path}: slide size {width}x{height} is not positive")
    clicks = table if isinstance(table, Clicks) else Clicks.of(table)
    if len(clicks) and clicks.outside(width, height).all():
        first = np.arange(min(3, len(clicks)))
        examples = [
            f"{s} ({_at(*b)})"
            for s, b in zip(
                clicks.source.take(first).to_pylist(), clicks.bounds(first).tolist(), strict=True
            )
        ]
        raise AnnotationError(
            f"{path}: all {len(clicks)} marks lie outside the slide (width {width}, height "
            f"{height}), e.g. {'; '.join(examples)}; check that the annotation file uses level-0 "
            "pixel coordinates"
        )
    clicks.check_duplicates(path)
    return table


def write_points(xy: np.ndarray, path: Path | str) -> None:
    """Write level-0 points (x, y) float (N, 2) as marks: ``.geojson``/``.json`` gives one
    QuPath MultiPoint annotation classified ``Nucleus``, anything else a CSV with ``x,y``."""
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "w") as fh:
        if path.suffix.lower() in (".geojson", ".json"):
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
