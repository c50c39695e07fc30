"""The click table in columns: what a run holds per mark, and a fast reader for large CSVs.

:class:`Clicks` carries the click table's columns (see :mod:`nuclick_core.io.annotations`) as
arrays: positions as floats, the source text as one Arrow string array, and a geometry only
for squiggles. A slide's 500,000 detector clicks take about 70 bytes each this way instead of
the 500 to 700 of a GeoDataFrame row (a shapely point, a Python string per source); the engine
runs on it and :meth:`Clicks.table` gives the GeoDataFrame where one is wanted.

:func:`read_delimited_points` reads a CSV of points straight into those columns with
pyarrow's CSV parser. It takes only files it can read exactly as the row-by-row reader does
(plain header, numbers in the common notation, known object names) and returns None for
anything else, so that the row-by-row reader reads it and names what is wrong: the two give
the same table for every file the fast one accepts.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, replace
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import shapely

from nuclick_core.errors import AnnotationError
from nuclick_core.io._readers import _LABEL_NAMES, _X_NAMES, _Y_NAMES, _object, _text

# Numbers as float() reads them, in the notation detectors and spreadsheets write; anything
# else (hex, digit separators, other scripts' digits, inf/nan) goes to the row-by-row reader.
_NUMBER = r"^[ \t]*[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?[ \t]*$"
_BOM = b"\xef\xbb\xbf"


def object_array(values: list) -> np.ndarray:
    """A 1-d object array of ``values`` as they are (numpy would unpack sequences)."""
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def repeated(value: object, n: int) -> np.ndarray:
    """A 1-d object array of ``n`` references to one object (``np.full`` copies a string into
    every row: 100,000 rows of "point" would be 100,000 strings)."""
    out = np.empty(n, dtype=object)
    out[:] = [value]
    return out


@dataclass(frozen=True, eq=False)
class Clicks:
    """The click table in columns (row i of each is mark i, in input order).

    click_id : int64 (N,).
    kind, object : object (N,) of str (``"point"``/``"squiggle"``; the object type).
    label : object (N,) of str or None.
    source : Arrow large_string array (N,): file and row or feature.
    xy : float64 (N, 2): a point's level-0 position, a squiggle's centroid.
    lines : object (N,): a squiggle's LineString/MultiLineString, None for a point.
    """

    click_id: np.ndarray
    kind: np.ndarray
    object: np.ndarray
    label: np.ndarray
    source: pa.Array
    xy: np.ndarray
    lines: np.ndarray

    def __post_init__(self) -> None:
        # large_string, the type of pandas' Arrow strings: the instance table's source column
        # then shares this buffer instead of copying it (60 bytes a click)
        if not pa.types.is_large_string(self.source.type):
            object.__setattr__(self, "source", self.source.cast(pa.large_string()))

    def __len__(self) -> int:
        return len(self.click_id)

    @classmethod
    def points(
        cls, xy: np.ndarray, objects: np.ndarray, labels: np.ndarray, source: pa.Array
    ) -> Clicks:
        n = len(xy)
        return cls(
            np.arange(n, dtype=np.int64),
            repeated("point", n),
            objects,
            labels,
            source,
            np.asarray(xy, np.float64).reshape(n, 2),
            repeated(None, n),
        )

    @classmethod
    def of_geometries(
        cls,
        kind: np.ndarray,
        geometry: np.ndarray,
        objects: np.ndarray,
        labels: np.ndarray,
        source: list,
    ) -> Clicks:
        """Columns from per-mark geometries (points and lines) and text."""
        geoms = np.asarray(geometry, dtype=object).reshape(-1)
        n = len(geoms)
        xy = np.zeros((n, 2))
        if n:
            centres = shapely.centroid(geoms)
            xy = np.column_stack([shapely.get_x(centres), shapely.get_y(centres)])
        lines = geoms.copy()
        lines[np.asarray(kind) == "point"] = None
        return cls(
            np.arange(n, dtype=np.int64),
            np.asarray(kind, dtype=object).reshape(-1),
            np.asarray(objects, dtype=object).reshape(-1),
            np.asarray(labels, dtype=object).reshape(-1),
            pa.array([s if isinstance(s, str) else None for s in source], pa.string()),
            xy.astype(np.float64),
            lines,
        )

    @classmethod
    def of(cls, table: gpd.GeoDataFrame) -> Clicks:
        """The columns of a click table (a GeoDataFrame with the contract's columns)."""
        clicks = cls.of_geometries(
            table["kind"].to_numpy(dtype=object),
            np.asarray(table.geometry.array, dtype=object),
            table["object"].to_numpy(dtype=object),
            table["label"].to_numpy(dtype=object),
            table["source"].tolist(),
        )
        return replace(clicks, click_id=table["click_id"].to_numpy(np.int64))

    def check_duplicates(self, where: str | Path) -> None:
        """:func:`check_duplicates` of this table's points."""
        check_duplicates(self.xy, self.kind == "point", self.source, where)

    def geometries(self) -> np.ndarray:
        """Every mark's geometry: the squiggles' own, a shapely Point for each point."""
        out = self.lines.copy()
        point = self.kind == "point"
        if point.any():
            out[point] = shapely.points(self.xy[point])
        return out

    def table(self) -> gpd.GeoDataFrame:
        """The click table as a GeoDataFrame (string columns of dtype object)."""
        columns = {
            "click_id": self.click_id,
            "kind": pd.Series(self.kind, dtype=object),
            "object": pd.Series(self.object, dtype=object),
            "label": pd.Series(self.label, dtype=object),
            "source": pd.Series(self.source.to_pylist(), dtype=object),
        }
        geometry = gpd.GeoSeries(self.geometries(), crs=None)
        return gpd.GeoDataFrame(columns, geometry=geometry, crs=None)

    def source_series(self) -> pd.Series:
        """``source`` as a pandas string column that stays in its Arrow buffer."""
        return pd.Series(pd.arrays.ArrowStringArray(self.source)).astype(
            pd.StringDtype("pyarrow", na_value=np.nan)
        )

    def outside(self, width: float, height: float) -> np.ndarray:
        """Which marks lie fully outside [0, width) x [0, height) (see
        :func:`nuclick_core.io.annotations.outside_slide_mask`)."""
        x, y = self.xy[:, 0], self.xy[:, 1]
        inside = (x >= 0) & (x < width) & (y >= 0) & (y < height)
        lines = np.flatnonzero(self.kind != "point")
        if len(lines):
            box = shapely.box(0, 0, width, height)
            inside[lines] = shapely.intersects(self.lines[lines], box)
        return ~inside

    def bounds(self, rows: np.ndarray) -> np.ndarray:
        """float (len(rows), 4) xmin, ymin, xmax, ymax of the marks ``rows``."""
        out = np.column_stack([self.xy[rows], self.xy[rows]])
        lines = [k for k, r in enumerate(rows) if self.lines[r] is not None]
        if lines:
            out[lines] = shapely.bounds(self.lines[np.asarray(rows)[lines]])
        return out


def check_duplicates(xy: np.ndarray, is_point: np.ndarray, source: pa.Array, where: object) -> None:
    """Raise when two points share a position (to 0.01 px), naming the first such pair in input
    order: the first later row that repeats an earlier position, and that earlier row."""
    rows = np.flatnonzero(is_point)
    if len(rows) < 2:
        return
    key = np.round(xy if len(rows) == len(xy) else xy[rows], 2)
    key += 0.0  # -0.0 and 0.0 are one place
    order = np.lexsort((key[:, 1], key[:, 0]))  # stable: equal keys stay in input order
    key = key[order]
    start = np.empty(len(rows), bool)
    start[0] = True
    np.any(key[1:] != key[:-1], axis=1, out=start[1:])
    if start.all():
        return
    # a run of equal keys is in input order, so its first row is where the position first came
    repeat = np.flatnonzero(~start)
    k = repeat[np.argmin(order[repeat])]
    first = np.flatnonzero(start[: k + 1])[-1]
    j, i = order[k], order[first]
    x, y = key[k].tolist()
    raise AnnotationError(
        f"{where}: duplicated click at (x={x:.10g}, y={y:.10g}): {source[rows[i]].as_py()} and "
        f"{source[rows[j]].as_py()}; remove the duplicate, since two clicks on one object would "
        "make two instances fight for it"
    )


def _find(lower: list[str], names: tuple[str, ...]) -> int | None:
    return next((lower.index(n) for n in names if n in lower), None)


def _numbers(column: pa.ChunkedArray) -> np.ndarray | None:
    """float64 of a text column, or None unless every value is a finite number in
    :data:`_NUMBER`'s notation (Arrow's parser rounds correctly, as float() does)."""
    text = column.combine_chunks()
    if not pc.all(pc.match_substring_regex(text, _NUMBER)).as_py():
        return None
    try:
        values = pc.cast(pc.utf8_trim(text, " \t"), pa.float64()).to_numpy(zero_copy_only=False)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    return values if np.isfinite(values).all() else None


def _per_value(column: pa.ChunkedArray, parse) -> np.ndarray:
    """``parse`` applied once per distinct value of a text column, spread back to its rows
    (object (N,); rows of one value share one Python object)."""
    encoded = column.combine_chunks().dictionary_encode()
    values = object_array([parse(v) for v in encoded.dictionary.to_pylist()])
    return values[encoded.indices.to_numpy(zero_copy_only=False)]


def _point_columns(
    path: Path, xy: np.ndarray, label: pa.ChunkedArray | None, obj: pa.ChunkedArray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, pa.Array] | None:
    """``(xy, label, object, source)`` from a file's text columns (the sources are
    ``NAME:row K``), or None when an object name is unknown (the row-by-row reader names the
    row)."""
    n = len(xy)
    labels = repeated(None, n) if label is None else _per_value(label, _text)
    objects = None
    if obj is not None:
        try:
            objects = _per_value(obj, lambda v: _object(v, str(path)))
        except AnnotationError:
            return None
    rows = pa.array(np.arange(1, n + 1)).cast(pa.string())
    return xy, labels, objects, pc.binary_join_element_wise(f"{path.name}:row ", rows, "")


def read_delimited_points(
    path: Path,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, pa.Array] | None:
    """``(xy, label, object, source)`` of a CSV/TSV of points, read in columns, or None when
    the file is not one this reader reads exactly as the row-by-row one does (quoted or
    blank header, squiggles, a field count that differs from the header's, numbers in other
    notations, unknown object names, not UTF-8...): the caller then reads it row by row.
    ``object`` is None when the file has no object column."""
    try:
        raw = path.read_bytes()
    except OSError:
        return None
    raw = raw[len(_BOM) :] if raw.startswith(_BOM) else raw
    end = raw.find(b"\n")
    try:
        header_text = (raw if end < 0 else raw[:end]).decode("utf-8").removesuffix("\r")
    except UnicodeDecodeError:
        return None
    if '"' in header_text or not header_text.strip() or len(header_text.splitlines()) != 1:
        return None
    delimiter = max(",\t;", key=header_text.count)
    header = header_text.split(delimiter)
    lower = [h.strip().lower() for h in header]
    ix, iy = _find(lower, _X_NAMES), _find(lower, _Y_NAMES)
    if ix is None or iy is None or "squiggle_id" in lower:
        return None
    ilabel, iobject = _find(lower, _LABEL_NAMES), _find(lower, ("object",))
    names = [f"c{k}" for k in range(len(header))]
    try:
        table = pacsv.read_csv(
            io.BytesIO(raw),
            read_options=pacsv.ReadOptions(column_names=names, skip_rows=1, use_threads=False),
            parse_options=pacsv.ParseOptions(delimiter=delimiter, newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(
                column_types=dict.fromkeys(names, pa.string()),
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    n = table.num_rows
    if n == 0:
        return None
    x, y = _numbers(table.column(ix)), _numbers(table.column(iy))
    if x is None or y is None:
        return None
    label = None if ilabel is None else table.column(ilabel)
    return _point_columns(
        path, np.column_stack([x, y]), label, None if iobject is None else table.column(iobject)
    )


def _text_column(table: pa.Table, name: str | None) -> pa.ChunkedArray | bool | None:
    """The column ``name`` with nulls as empty text, None when there is no such column, or
    False when it is not text (the row-by-row reader goes through pandas' conversions)."""
    if name is None:
        return None
    column = table.column(name)
    if pa.types.is_null(column.type):  # every value missing
        column = column.cast(pa.string())
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        return False
    return pc.fill_null(column, "")


def read_geoparquet_points(
    path: Path,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, pa.Array] | None:
    """:func:`read_delimited_points` for a GeoParquet file of points (WKB geometry): the same
    columns, or None when the row-by-row reader must read it (no ``geo`` metadata, other
    encodings or geometry types, null, empty or non-finite points, label or object columns
    that are not text, unknown object names)."""
    try:
        schema = pq.read_schema(path)
        geo = json.loads((schema.metadata or {}).get(b"geo", b"null"))
        column = geo["primary_column"]
        if str(geo["columns"][column].get("encoding", "")).upper() != "WKB":
            return None
        table = pq.read_table(path)
    except (OSError, ValueError, KeyError, TypeError, pa.ArrowException):
        return None
    n = table.num_rows
    if n == 0 or table.column(column).null_count:
        return None
    geoms = shapely.from_wkb(
        table.column(column).to_numpy(zero_copy_only=False), on_invalid="ignore"
    )
    if np.any(shapely.get_type_id(geoms) != 0) or np.any(shapely.is_empty(geoms)):
        return None
    xy = shapely.get_coordinates(geoms)
    if len(xy) != n or not np.isfinite(xy).all():
        return None
    # a pandas index stored as a column (a RangeIndex is stored as a dict, not a column)
    stored = (schema.pandas_metadata or {}).get("index_columns") or []
    index = {c for c in stored if isinstance(c, str)}
    by_name = {c.lower(): c for c in table.column_names if c != column and c not in index}
    label_name = next((by_name[k] for k in _LABEL_NAMES if k in by_name), None)
    label_col, object_col = (
        _text_column(table, label_name),
        _text_column(table, by_name.get("object")),
    )
    if label_col is False or object_col is False:
        return None
    return _point_columns(path, xy, label_col, object_col)
