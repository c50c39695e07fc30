"""Per-format readers of marks (clicks and squiggles) for :mod:`nuclick_core.io.annotations`.

Each reader takes a path and returns the file's marks in input order as :class:`Mark` records,
with the object type left None unless the file names it; :data:`READERS` maps file suffixes to
readers. :func:`nuclick_core.io.annotations.read_annotations` dispatches on it, resolves object
types and builds the click table. Formats: CSV/TSV (delimiter sniffed), QuPath GeoJSON,
(Geo)Parquet, ASAP XML and the MATLAB centroid files of CoNSeP and HoVer-Net (``.mat``). Errors
are :class:`~nuclick_core.errors.AnnotationError` naming the file and the row or feature.
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
from defusedxml import DefusedXmlException
from defusedxml.ElementTree import ParseError
from defusedxml.ElementTree import parse as parse_xml
from shapely.geometry import LineString, MultiLineString, Point, mapping
from shapely.geometry.base import BaseGeometry

from nuclick_core.errors import AnnotationError
from nuclick_core.io.status import OBJECTS

_X_NAMES, _Y_NAMES = ("x", "centroid_x"), ("y", "centroid_y")
_LABEL_NAMES = ("label", "class", "classification")
_SHAPES = "only Point, MultiPoint, LineString and MultiLineString marks are supported"
_NOT_MARKS = "polygons are outputs, not marks; give one click per nucleus or one line per gland"


class Mark(NamedTuple):
    """One mark as read from a file; ``object`` is None when the file does not name it."""

    kind: str
    geometry: BaseGeometry
    label: str | None
    object: str | None
    source: str


def _number(value: Any, where: str) -> float:
    """Parse one coordinate, rejecting text that is not a number, NaN and infinities."""
    if isinstance(value, str) and value.strip():
        try:
            if "_" in value:  # Python's float() reads "1_00" as 100
                raise ValueError(value)
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
) -> list[Mark]:
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
    marks: list[Mark | None] = []
    squiggles: dict[str, tuple[int, list[tuple[int, float, float, str | None, str | None]]]] = {}
    for row, where, values in rows:
        x = _number(values[ix], f"{where}, column {header[ix]!r}")
        y = _number(values[iy], f"{where}, column {header[iy]!r}")
        label = None if ilabel is None else _text(values[ilabel])
        obj = None if iobject is None else _object(values[iobject], where)
        sid = None if isquiggle is None else _text(values[isquiggle])
        if sid is None:
            marks.append(Mark("point", Point(x, y), label, obj, f"{path.name}:row {row}"))
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
        marks[slot] = Mark(
            "squiggle", geometry, next(iter(labels), None), next(iter(objects), None), source
        )
    return [m for m in marks if m is not None]


def _read_delimited(path: Path) -> list[Mark]:
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
        found = next((row for row in reader if any(v.strip() for v in row)), None)
        if found is None:
            raise AnnotationError(
                f"{path} holds no header and no marks (only blank lines or separators); "
                "write a header with x,y and one row per mark"
            )
        header = found
        marks = _marks_from_rows(header, rows(), path)
    except csv.Error as exc:
        raise AnnotationError(f"{path}: line {reader.line_num}: {exc}") from exc
    if not marks:
        raise AnnotationError(f"{path} holds only a header: the file holds no marks")
    return marks


def _marks_from_geometry(
    geometry: Mapping[str, Any], where: str, source: str, label: str | None, obj: str | None
) -> list[Mark]:
    """Marks from a GeoJSON-like geometry mapping (``type`` and ``coordinates``)."""
    kind, coords = geometry.get("type"), geometry.get("coordinates")
    if kind not in ("Point", "MultiPoint", "LineString", "MultiLineString"):
        raise AnnotationError(
            f"{where}: geometry type {kind!r} is not supported; {_SHAPES} ({_NOT_MARKS})"
        )
    if kind == "Point":
        return [Mark("point", Point(_xy(coords, where)), label, obj, source)]
    if not isinstance(coords, (list, tuple)) or not coords:
        raise AnnotationError(f"{where}: {kind} holds no coordinates; remove it or draw it again")
    if kind == "MultiPoint":
        return [
            Mark("point", Point(_xy(c, f"{where} point {j}")), label, obj, f"{source} point {j}")
            for j, c in enumerate(coords, 1)
        ]
    if kind == "LineString":
        return [Mark("squiggle", _line([_xy(c, where) for c in coords], where), label, obj, source)]
    parts = []
    for j, part in enumerate(coords, 1):
        if not isinstance(part, (list, tuple)):
            raise AnnotationError(f"{where} part {j}: {part!r} is not a list of coordinates")
        parts.append(_line([_xy(c, f"{where} part {j}") for c in part], f"{where} part {j}"))
    return [Mark("squiggle", MultiLineString(parts), label, obj, source)]


def _geojson_label(properties: Mapping[str, Any]) -> str | None:
    classification = properties.get("classification")
    if isinstance(classification, Mapping):
        classification = classification.get("name")
    for value in (classification, properties.get("label"), properties.get("name")):
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def _read_geojson(path: Path) -> list[Mark]:
    try:
        # integers as floats: a coordinate of 10**400 becomes inf (refused below with its
        # feature) instead of an OverflowError when it is converted
        data = json.loads(_read_text(path), parse_int=float)
    except json.JSONDecodeError as exc:
        raise AnnotationError(f"{path} is not valid JSON ({exc}); export it again") from exc
    except RecursionError as exc:
        raise AnnotationError(
            f"{path}: JSON nested too deeply to be GeoJSON marks; export the annotations again"
        ) from exc
    if isinstance(data, dict) and data.get("type") in ("FeatureCollection", "Feature"):
        features = data.get("features") if data["type"] == "FeatureCollection" else [data]
    else:
        features = data
    if not isinstance(features, list):
        raise AnnotationError(
            f"{path}: expected a GeoJSON FeatureCollection, a Feature or a list of features"
        )
    marks: list[Mark] = []
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


def _read_parquet(path: Path) -> list[Mark]:
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
    marks: list[Mark] = []
    for k, (geom, label, obj) in enumerate(zip(frame.geometry, labels, objects, strict=True), 1):
        where = f"{path}: row {k}"
        if geom is None:
            raise AnnotationError(f"{where} has no geometry (null); remove it or give it a point")
        marks += _marks_from_geometry(
            mapping(geom), where, f"{path.name}:row {k}", _text(label), _object(obj, where)
        )
    return marks


def _read_asap(path: Path) -> list[Mark]:
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
    marks: list[Mark] = []
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
            marks.append(Mark("point", Point(xy[0]), label, None, source))
        elif kind.lower() == "dot" or (kind.lower() == "pointset" and not xy):
            raise AnnotationError(f"{where}: {kind} annotation has {len(xy)} coordinates")
        elif kind.lower() == "pointset":
            marks += [
                Mark("point", Point(p), label, None, f"{source} point {j}")
                for j, p in enumerate(xy, 1)
            ]
        elif kind.lower() in ("spline", "polyline"):
            marks.append(Mark("squiggle", _line(xy, where), label, None, source))
        else:
            raise AnnotationError(
                f"{where}: annotation type {kind!r} is not supported; only Dot, PointSet, Spline "
                f"and PolyLine annotations are marks ({_NOT_MARKS})"
            )
    return marks


def _read_mat(path: Path) -> list[Mark]:
    """CoNSeP's labels and HoVer-Net's ``.mat`` outputs (Graham et al. 2019): ``inst_centroid``
    (N x 2, x and y of each nucleus, origin at the first pixel's centre) and optionally
    ``inst_type`` (N x 1 class ids, written as the label's text)."""
    from scipy.io import loadmat, matlab

    try:
        data = loadmat(path, variable_names=("inst_centroid", "inst_type"))
    except (OSError, ValueError, NotImplementedError, matlab.MatReadError) as exc:
        raise AnnotationError(
            f"cannot read MATLAB file {path}: {exc} (MATLAB v7.3 files are HDF5: save with -v7)"
        ) from exc
    if "inst_centroid" not in data:
        raise AnnotationError(
            f"{path}: no 'inst_centroid' variable; a .mat point file is read in the CoNSeP / "
            "HoVer-Net layout (inst_centroid N x 2 as x, y; optional inst_type N x 1)"
        )
    xy = np.asarray(data["inst_centroid"], dtype=float)
    xy = xy.reshape(0, 2) if xy.size == 0 else xy
    if xy.ndim != 2 or xy.shape[1] != 2:
        raise AnnotationError(f"{path}: inst_centroid has shape {xy.shape}; expected N x 2 (x, y)")
    types = np.asarray(data.get("inst_type", np.zeros(0))).reshape(-1)
    if "inst_type" in data and len(types) != len(xy):
        raise AnnotationError(
            f"{path}: inst_type has {len(types)} entries for {len(xy)} centroids; give one "
            "class id per centroid, in the same order"
        )
    marks = []
    for k, (x, y) in enumerate(xy, 1):
        where = f"{path}: centroid {k}"
        if not (math.isfinite(x) and math.isfinite(y)):
            raise AnnotationError(f"{where} is not finite ({x}, {y}); remove it or fix it")
        label = f"{int(types[k - 1])}" if len(types) else None
        # Pixel-centre origin (OpenCV moments) to the project's pixel-corner origin.
        point = Point(x + 0.5, y + 0.5)
        marks.append(Mark("point", point, label, None, f"{path.name}:centroid {k}"))
    return marks


READERS: dict[str, Callable[[Path], list[Mark]]] = {
    **dict.fromkeys((".csv", ".tsv", ".txt"), _read_delimited),
    **dict.fromkeys((".geojson", ".json"), _read_geojson),
    **dict.fromkeys((".parquet", ".geoparquet"), _read_parquet),
    ".xml": _read_asap,
    ".mat": _read_mat,
}
