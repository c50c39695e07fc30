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

import csv
import io
import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import shapely
from defusedxml import DefusedXmlException
from defusedxml.ElementTree import ParseError
from defusedxml.ElementTree import parse as parse_xml
from shapely.geometry import LineString, MultiLineString, Point, mapping
from shapely.geometry.base import BaseGeometry

from nuclick_core.errors import AnnotationError

OBJECTS = ("nucleus", "cell", "gland")
POINT_OBJECTS = ("nucleus", "cell")
COLUMNS = ("click_id", "kind", "object", "label", "source", "geometry")
_X_NAMES, _Y_NAMES = ("x", "centroid_x"), ("y", "centroid_y")
_LABEL_NAMES = ("label", "class", "classification")
_SHAPES = "only Point, MultiPoint, LineString and MultiLineString marks are supported"
_NOT_MARKS = "polygons are outputs, not marks; give one click per nucleus or one line per gland"


class _Mark(NamedTuple):
    kind: str
    geometry: BaseGeometry
    label: str | None
    object: str | None
    source: str


def _number(value: Any, where: str) -> float:
    """Parse one coordinate, rejecting text that is not a number, NaN and infinities."""
    if isinstance(value, str) and value.strip():
        try:
            number = float(value.strip())
        except ValueError:
            raise AnnotationError(f"{where}: value {value!r} is not a number") from None
    elif isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
        value, (bool, np.bool_)
    ):
        number = float(value)
    else:
        raise AnnotationError(f"{where}: value {value!r} is missing or not a number")
    if not math.isfinite(number):
        raise AnnotationError(f"{where}: value {value!r} is not finite; give a finite number")
    return number


def _text(value: Any) -> str | None:
    """A label-like cell as stripped text, or None when empty or missing."""
    if value is None or (not isinstance(value, str) and bool(pd.isna(value))):
        return None
    text = str(value).strip()
    return text or None


def _object(value: Any, where: str) -> str | None:
    text = _text(value)
    if text is not None and text.lower() not in OBJECTS:
        raise AnnotationError(f"{where}: object {text!r} is not one of {', '.join(OBJECTS)}")
    return None if text is None else text.lower()


def _line(xy: Sequence[tuple[float, float]], where: str) -> LineString:
    if len(set(xy)) < 2:
        raise AnnotationError(
            f"{where}: a squiggle needs at least two distinct points, got {len(xy)} point(s); "
            "draw a longer line or give the mark as a point"
        )
    return LineString(xy)


def _xy(coord: Any, where: str) -> tuple[float, float]:
    if not isinstance(coord, (list, tuple)) or len(coord) < 2:
        raise AnnotationError(f"{where}: coordinate {coord!r} is not an [x, y] pair")
    return _number(coord[0], f"{where}, x"), _number(coord[1], f"{where}, y")


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise AnnotationError(f"{path} is not UTF-8 text ({exc}); save it as UTF-8") from exc
    except OSError as exc:
        raise AnnotationError(f"cannot read {path}: {exc}") from exc


def _marks_from_rows(
    header: Sequence[str], rows: Iterable[tuple[int, str, Sequence[Any]]], path: Path
) -> list[_Mark]:
    """Marks from tabular rows ``(row number, location for errors, values)``."""
    lower = [str(h).strip().lower() for h in header]

    def find(names: Sequence[str]) -> int | None:
        return next((lower.index(n) for n in names if n in lower), None)

    ix, iy = find(_X_NAMES), find(_Y_NAMES)
    if ix is None or iy is None:
        raise AnnotationError(
            f"{path}: no x/y coordinate columns; found columns {list(header)}; the file needs a "
            "header with columns 'x' and 'y' (or 'centroid_x' and 'centroid_y') in level-0 pixels"
        )
    ilabel, iobject, isquiggle = find(_LABEL_NAMES), find(("object",)), find(("squiggle_id",))
    marks: list[_Mark | None] = []
    squiggles: dict[str, tuple[int, list[tuple[int, float, float, str | None, str | None]]]] = {}
    for row, where, values in rows:
        x = _number(values[ix], f"{where}, column {header[ix]!r}")
        y = _number(values[iy], f"{where}, column {header[iy]!r}")
        label = None if ilabel is None else _text(values[ilabel])
        obj = None if iobject is None else _object(values[iobject], where)
        sid = None if isquiggle is None else _text(values[isquiggle])
        if sid is None:
            marks.append(_Mark("point", Point(x, y), label, obj, f"{path.name}:row {row}"))
            continue
        if sid not in squiggles:
            squiggles[sid] = (len(marks), [])
            marks.append(None)
        squiggles[sid][1].append((row, x, y, label, obj))
    for sid, (slot, members) in squiggles.items():
        where = f"{path}: squiggle_id {sid!r} (rows {members[0][0]}-{members[-1][0]})"
        labels = {m[3] for m in members if m[3] is not None}
        objects = {m[4] for m in members if m[4] is not None}
        if len(labels) > 1 or len(objects) > 1:
            raise AnnotationError(
                f"{where}: rows of one squiggle disagree on label/object ({sorted(labels)}, "
                f"{sorted(objects)}); give every row of a squiggle the same label and object"
            )
        geometry = _line([(m[1], m[2]) for m in members], where)
        source = f"{path.name}:squiggle {sid} (rows {members[0][0]}-{members[-1][0]})"
        marks[slot] = _Mark(
            "squiggle", geometry, next(iter(labels), None), next(iter(objects), None), source
        )
    return [m for m in marks if m is not None]


def _read_delimited(path: Path) -> list[_Mark]:
    text = _read_text(path)
    first = next((line for line in text.splitlines() if line.strip()), None)
    if first is None:
        raise AnnotationError(f"{path} is empty: the file holds no marks")
    delimiter = max(",\t;", key=first.count)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)

    def rows() -> Iterable[tuple[int, str, Sequence[str]]]:
        count = 0
        for values in reader:
            if not any(v.strip() for v in values):
                continue
            count += 1
            where = f"{path}: row {count} (line {reader.line_num})"
            if len(values) != len(header):
                raise AnnotationError(
                    f"{where} has {len(values)} fields but the header has {len(header)}; "
                    f"check the delimiter ({delimiter!r}) and quoting"
                )
            yield count, where, values

    try:
        header = next(row for row in reader if any(v.strip() for v in row))
        marks = _marks_from_rows(header, rows(), path)
    except csv.Error as exc:
        raise AnnotationError(f"{path}: line {reader.line_num}: {exc}") from exc
    if not marks:
        raise AnnotationError(f"{path} holds only a header: the file holds no marks")
    return marks


def _marks_from_geometry(
    geometry: Mapping[str, Any], where: str, source: str, label: str | None, obj: str | None
) -> list[_Mark]:
    """Marks from a GeoJSON-like geometry mapping (``type`` and ``coordinates``)."""
    kind, coords = geometry.get("type"), geometry.get("coordinates")
    if kind not in ("Point", "MultiPoint", "LineString", "MultiLineString"):
        raise AnnotationError(
            f"{where}: geometry type {kind!r} is not supported; {_SHAPES} ({_NOT_MARKS})"
        )
    if kind == "Point":
        return [_Mark("point", Point(_xy(coords, where)), label, obj, source)]
    if not isinstance(coords, (list, tuple)) or not coords:
        raise AnnotationError(f"{where}: {kind} holds no coordinates; remove it or draw it again")
    if kind == "MultiPoint":
        return [
            _Mark("point", Point(_xy(c, f"{where} point {j}")), label, obj, f"{source} point {j}")
            for j, c in enumerate(coords, 1)
        ]
    if kind == "LineString":
        return [
            _Mark("squiggle", _line([_xy(c, where) for c in coords], where), label, obj, source)
        ]
    parts = []
    for j, part in enumerate(coords, 1):
        if not isinstance(part, (list, tuple)):
            raise AnnotationError(f"{where} part {j}: {part!r} is not a list of coordinates")
        parts.append(_line([_xy(c, f"{where} part {j}") for c in part], f"{where} part {j}"))
    return [_Mark("squiggle", MultiLineString(parts), label, obj, source)]


def _geojson_label(properties: Mapping[str, Any]) -> str | None:
    classification = properties.get("classification")
    if isinstance(classification, Mapping):
        classification = classification.get("name")
    for value in (classification, properties.get("label"), properties.get("name")):
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def _read_geojson(path: Path) -> list[_Mark]:
    try:
        data = json.loads(_read_text(path))
    except json.JSONDecodeError as exc:
        raise AnnotationError(f"{path} is not valid JSON ({exc}); export it again") from exc
    if isinstance(data, dict) and data.get("type") in ("FeatureCollection", "Feature"):
        features = data.get("features") if data["type"] == "FeatureCollection" else [data]
    else:
        features = data
    if not isinstance(features, list):
        raise AnnotationError(
            f"{path}: expected a GeoJSON FeatureCollection, a Feature or a list of features"
        )
    marks: list[_Mark] = []
    for k, feature in enumerate(features, 1):
        where, source = f"{path}: feature {k}", f"{path.name}:feature {k}"
        geometry = feature.get("geometry") if isinstance(feature, dict) else None
        if not isinstance(geometry, dict):
            raise AnnotationError(
                f"{where} has no geometry (null or missing); remove it or give it a point or line"
            )
        properties = feature.get("properties") or {}
        if not isinstance(properties, dict):
            raise AnnotationError(f"{where}: properties must be an object, got {properties!r}")
        obj = _object(properties.get("object"), where)
        marks += _marks_from_geometry(geometry, where, source, _geojson_label(properties), obj)
    return marks


def _read_parquet(path: Path) -> list[_Mark]:
    try:
        geo = b"geo" in (pq.read_schema(path).metadata or {})
        frame = gpd.read_parquet(path) if geo else pd.read_parquet(path)
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise AnnotationError(f"cannot read Parquet file {path}: {exc}") from exc
    if not isinstance(frame, gpd.GeoDataFrame):
        rows = enumerate(frame.itertuples(index=False, name=None), 1)
        return _marks_from_rows(
            [str(c) for c in frame.columns], ((k, f"{path}: row {k}", v) for k, v in rows), path
        )
    by_name = {str(c).lower(): c for c in frame.columns if c != frame.geometry.name}
    label_column = next((by_name[n] for n in _LABEL_NAMES if n in by_name), None)
    none = [None] * len(frame)
    labels = none if label_column is None else frame[label_column].tolist()
    objects = frame[by_name["object"]].tolist() if "object" in by_name else none
    marks: list[_Mark] = []
    for k, (geom, label, obj) in enumerate(zip(frame.geometry, labels, objects, strict=True), 1):
        where = f"{path}: row {k}"
        if geom is None:
            raise AnnotationError(f"{where} has no geometry (null); remove it or give it a point")
        marks += _marks_from_geometry(
            mapping(geom), where, f"{path.name}:row {k}", _text(label), _object(obj, where)
        )
    return marks


def _read_asap(path: Path) -> list[_Mark]:
    try:
        root = parse_xml(str(path)).getroot()
    except (ParseError, DefusedXmlException) as exc:
        raise AnnotationError(
            f"cannot parse ASAP XML {path}: {exc!r}; entity declarations and external references "
            "are refused for safety, export the annotations again from ASAP"
        ) from exc
    if root.tag != "ASAP_Annotations":
        raise AnnotationError(
            f"{path}: root element is <{root.tag}>, not <ASAP_Annotations>; "
            "only ASAP XML is supported for .xml marks"
        )
    marks: list[_Mark] = []
    for k, annotation in enumerate(root.iter("Annotation"), 1):
        where, source = f"{path}: annotation {k}", f"{path.name}:annotation {k}"
        kind = (annotation.get("Type") or "").strip()
        group = _text(annotation.get("PartOfGroup"))
        label = None if group in (None, "None") else group
        ordered = []
        for j, c in enumerate(annotation.iter("Coordinate"), 1):
            at = f"{where}, coordinate {j}"
            values = {"Order": c.get("Order", str(j)), "X": c.get("X"), "Y": c.get("Y")}
            ordered.append([_number(v, f"{at}, {a}") for a, v in values.items()])
        xy = [(x, y) for _, x, y in sorted(ordered, key=lambda item: item[0])]
        if kind.lower() == "dot" and len(xy) == 1:
            marks.append(_Mark("point", Point(xy[0]), label, None, source))
        elif kind.lower() == "dot" or (kind.lower() == "pointset" and not xy):
            raise AnnotationError(f"{where}: {kind} annotation has {len(xy)} coordinates")
        elif kind.lower() == "pointset":
            marks += [
                _Mark("point", Point(p), label, None, f"{source} point {j}")
                for j, p in enumerate(xy, 1)
            ]
        elif kind.lower() in ("spline", "polyline"):
            marks.append(_Mark("squiggle", _line(xy, where), label, None, source))
        else:
            raise AnnotationError(
                f"{where}: annotation type {kind!r} is not supported; only Dot, PointSet, Spline "
                f"and PolyLine annotations are marks ({_NOT_MARKS})"
            )
    return marks


_READERS: dict[str, Callable[[Path], list[_Mark]]] = {
    **dict.fromkeys((".csv", ".tsv", ".txt"), _read_delimited),
    **dict.fromkeys((".geojson", ".json"), _read_geojson),
    **dict.fromkeys((".parquet", ".geoparquet"), _read_parquet),
    ".xml": _read_asap,
}


def _table(marks: Sequence[_Mark]) -> gpd.GeoDataFrame:
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
    points = table[table["kind"] == "point"]
    xy = np.round(shapely.get_coordinates(points.geometry.array), 2) + 0.0
    seen: dict[tuple[float, float], str] = {}
    for source, (x, y) in zip(points["source"], xy.tolist(), strict=True):
        if (x, y) in seen:
            raise AnnotationError(
                f"{where}: duplicated click at (x={x:.10g}, y={y:.10g}): {seen[x, y]} and "
                f"{source}; remove the duplicate, since two clicks on one object would make two "
                "instances fight for it"
            )
        seen[x, y] = source


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
    path = Path(path)
    _check_objects(default_object, object_by_label)
    reader = _READERS.get(path.suffix.lower())
    if reader is None:
        raise AnnotationError(
            f"{path}: unsupported annotation format {path.suffix!r}; "
            f"supported suffixes are {', '.join(_READERS)}"
        )
    if not path.is_file():
        raise AnnotationError(
            f"annotation file {path} does not exist or is not a file; check the path"
        )
    marks = reader(path)
    if not marks:
        raise AnnotationError(f"{path} holds no marks; add clicks or squiggles to it")
    mapped = object_by_label or {}
    fallback = {"point": default_object, "squiggle": "gland"}
    table = _table(
        [
            m._replace(object=m.object or mapped.get(m.label or "") or fallback[m.kind])
            for m in marks
        ]
    )
    _check_duplicates(table, path)
    return table


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
            _Mark("point", g, lab, object, f"{source}:row {i}")
            for i, (g, lab) in enumerate(zip(points, labels, strict=True), 1)
        ]
    )
    _check_duplicates(table, source)
    return table


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
    geoms = np.asarray(table.geometry.array, dtype=object)
    inside = np.asarray(shapely.intersects(geoms, shapely.box(0, 0, width, height)), dtype=bool)
    is_point = np.asarray(shapely.get_type_id(geoms) == 0, dtype=bool)
    x, y = shapely.get_x(geoms[is_point]), shapely.get_y(geoms[is_point])
    inside[is_point] = (x >= 0) & (x < width) & (y >= 0) & (y < height)
    return ~inside


def validate_clicks(
    table: gpd.GeoDataFrame, *, width: float, height: float, path: str | Path
) -> gpd.GeoDataFrame:
    """Check a click table against a slide's level-0 size.

    Only a table whose marks are *all* outside the slide is an error: that almost always means the
    file uses another scale or origin. Some marks outside is not an error here; find them with
    :func:`outside_slide_mask` (the engine reports them as ``outside_slide``). Duplicated clicks
    are checked again, for tables that did not come from :func:`read_annotations`.

    Parameters
    ----------
    table : GeoDataFrame
        A click table.
    width, height : float
        Level-0 size of the slide in pixels.
    path : str or Path
        The annotation file, named in error messages.

    Returns
    -------
    GeoDataFrame
        ``table``, unchanged.

    Raises
    ------
    AnnotationError
        Missing columns, every mark outside the slide, or duplicated clicks.
    """
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing:
        raise AnnotationError(
            f"{path}: click table lacks columns {missing}; build it with "
            "read_annotations or click_table_from_points"
        )
    if width <= 0 or height <= 0:
        raise AnnotationError(f"{path}: slide size {width}x{height} is not positive")
    if len(table) and outside_slide_mask(table, width, height).all():
        bounds = shapely.bounds(table.geometry.array[:3]).tolist()
        examples = [f"{s} ({_at(*b)})" for s, b in zip(table["source"][:3], bounds, strict=True)]
        raise AnnotationError(
            f"{path}: all {len(table)} marks lie outside the slide (width {width}, height "
            f"{height}), e.g. {'; '.join(examples)}; check that the annotation file uses level-0 "
            "pixel coordinates"
        )
    _check_duplicates(table, path)
    return table
