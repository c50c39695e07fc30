"""A fast reader for GeoJSON files of points (QuPath's export of detections or point
annotations), straight into the click table's columns.

It takes only files it can read exactly as the feature-by-feature reader does (every feature
a Point with numeric, finite coordinates, properties an object or absent, known object names)
and returns None for anything else, so that the feature-by-feature reader reads the file and
names what is wrong: the two give the same table for every file the fast one accepts. What it
saves is a shapely Point and a mark per feature.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from nuclick_core.errors import AnnotationError
from nuclick_core.io._readers import _geojson_label, _object
from nuclick_core.io.clicks import object_array


def _plain_point(feature: object) -> bool:
    """A feature the fast reader takes: a Point of two (or more) JSON numbers and properties
    that are an object, null or absent."""
    if type(feature) is not dict:
        return False
    geometry, properties = feature.get("geometry"), feature.get("properties")
    if type(geometry) is not dict or geometry.get("type") != "Point":
        return False
    xy = geometry.get("coordinates")
    return (
        type(xy) is list
        and len(xy) >= 2
        and type(xy[0]) is float  # integers are read as floats; booleans and text are not
        and type(xy[1]) is float
        and (not properties or type(properties) is dict)
    )


def read_geojson_points(
    path: Path,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, pa.Array] | None:
    """``(xy, label, object, source)`` of a GeoJSON file of points, or None when the
    feature-by-feature reader must read it (not UTF-8 or not JSON, lines or other geometries,
    coordinates that are text, booleans or not finite, properties that are not an object,
    unknown object names, no features). ``object`` is None when no feature names one; the
    sources are ``NAME:feature K``."""
    try:
        # integers as floats, as the feature-by-feature reader parses them
        data = json.loads(path.read_text(encoding="utf-8-sig"), parse_int=float)
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return None
    if isinstance(data, dict) and data.get("type") in ("FeatureCollection", "Feature"):
        features = data.get("features") if data["type"] == "FeatureCollection" else [data]
    else:
        features = data
    if type(features) is not list or not features or not all(map(_plain_point, features)):
        return None
    xy = np.array([f["geometry"]["coordinates"][:2] for f in features], np.float64)
    if not np.isfinite(xy).all():
        return None
    properties = [f.get("properties") or {} for f in features]
    # one string object per distinct label (the parser makes one per feature)
    distinct: dict[str | None, str | None] = {}
    labels = object_array([distinct.setdefault(v, v) for v in map(_geojson_label, properties)])
    named = [p.get("object") for p in properties]
    objects = None
    if any(v is not None for v in named):
        try:
            objects = object_array([_object(v, str(path)) for v in named])
        except AnnotationError:
            return None
    numbers = pa.array(np.arange(1, len(features) + 1)).cast(pa.string())
    return xy, labels, objects, pc.binary_join_element_wise(f"{path.name}:feature ", numbers, "")
