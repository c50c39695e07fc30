"""Write and read the instance table: GeoParquet 1.1, QuPath GeoJSON, label masks.

GeoParquet is written with pyarrow directly (WKB geometry, a ``bbox`` covering column, ``crs:
null`` for pixel coordinates, zstd, spatially sorted row groups) so the file does not depend on
the installed geopandas version. Files are written through
:func:`nuclick_core.io.files.atomic_path`, so they are complete or absent.
"""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import shapely

from nuclick_core.io import status
from nuclick_core.io.files import atomic_path
from nuclick_core.io.geometries import Geometries

GEOPARQUET_VERSION = "1.1.0"
ROW_GROUP_SIZE = 8192
INSTANCE_COLUMNS = (
    "instance_id",
    "click_id",
    "object",
    "label",
    "status",
    "score",
    "area_px",
    "area_um2",
    "source",
)


def hilbert_order(xy: np.ndarray, *, bits: int = 16) -> np.ndarray:
    """Indices that sort points (N, 2) along a Hilbert curve over their bounding box."""
    if len(xy) == 0:
        return np.zeros(0, np.int64)
    lo, hi = xy.min(0), xy.max(0)
    span = np.where(hi > lo, hi - lo, 1.0)
    n = (1 << bits) - 1
    x = ((xy[:, 0] - lo[0]) / span[0] * n).astype(np.int64)
    y = ((xy[:, 1] - lo[1]) / span[1] * n).astype(np.int64)
    d = np.zeros(len(xy), np.int64)
    s = 1 << (bits - 1)
    while s > 0:
        rx = (x & s) > 0
        ry = (y & s) > 0
        d += s * s * ((3 * rx) ^ ry)
        # rotate the quadrant
        flip = ~ry
        swap_x = np.where(flip & rx, n - x, x)
        swap_y = np.where(flip & rx, n - y, y)
        x, y = np.where(flip, swap_y, swap_x), np.where(flip, swap_x, swap_y)
        s >>= 1
    return np.argsort(d, kind="stable")


def write_instances(
    table: pd.DataFrame,
    path: Path,
    *,
    metadata: dict,
    sort_xy: np.ndarray,
    geometries: Geometries | None = None,
) -> None:
    """Write the instance table as GeoParquet 1.1, one row group at a time.

    Parameters
    ----------
    table : one row per click with :data:`INSTANCE_COLUMNS` and, unless ``geometries`` is
        given, a (possibly null) geometry; any further columns are written after those.
    path : output ``.parquet``.
    metadata : provenance (model, config, slide, package version), stored under ``nuclick``.
    sort_xy : float (N, 2) click positions used to order rows along a Hilbert curve.
    geometries : the rows' geometries, when they are not the table's (a run that spilled them
        to disk); only one row group's WKB is in memory at a time.
    """
    if geometries is None:
        geometries = Geometries.of(table.geometry.values)
    order = hilbert_order(np.asarray(sort_xy, np.float64))
    # in table order, text possibly as large_string (a run's source column stays in its
    # buffer); each row group takes its rows and casts them to the file's schema
    attributes = _attribute_table(table)
    columns = pa.schema(
        [
            pa.field(f.name, pa.string()) if pa.types.is_large_string(f.type) else f
            for f in attributes.schema
        ]
    )
    has = geometries.present
    bounds = geometries.bounds
    extent = (
        [
            float(bounds[has, 0].min()),
            float(bounds[has, 1].min()),
            float(bounds[has, 2].max()),
            float(bounds[has, 3].max()),
        ]
        if has.any()
        else []
    )
    geo = {
        "version": GEOPARQUET_VERSION,
        "primary_column": "geometry",
        "columns": {
            "geometry": {
                "encoding": "WKB",
                "geometry_types": geometries.geometry_types() or ["Polygon", "MultiPolygon"],
                "crs": None,
                **({"bbox": extent} if extent else {}),
                "covering": {
                    "bbox": {
                        "xmin": ["bbox", "xmin"],
                        "ymin": ["bbox", "ymin"],
                        "xmax": ["bbox", "xmax"],
                        "ymax": ["bbox", "ymax"],
                    }
                },
            }
        },
    }
    schema = columns.append(pa.field("geometry", pa.binary())).append(pa.field("bbox", _BBOX))
    schema = schema.with_metadata(
        {"geo": json.dumps(geo), "nuclick": json.dumps(metadata, default=str)}
    )
    with atomic_path(path) as tmp, pq.ParquetWriter(tmp, schema, compression="zstd") as writer:
        for start in range(0, max(len(order), 1), ROW_GROUP_SIZE):
            rows = order[start : start + ROW_GROUP_SIZE]
            part = attributes.take(pa.array(rows)).cast(columns)
            box, present = bounds[rows], has[rows]
            bbox = pa.StructArray.from_arrays(
                [pa.array(box[:, k], pa.float64(), mask=~present) for k in range(4)],
                fields=list(_BBOX),
                mask=pa.array(~present),
            )
            wkb = pa.array(geometries.wkb(rows), pa.binary())
            chunk = pa.Table.from_arrays([*part.columns, wkb, bbox], schema=schema)
            writer.write_table(chunk, row_group_size=ROW_GROUP_SIZE)


_BBOX = pa.struct([(name, pa.float64()) for name in ("xmin", "ymin", "xmax", "ymax")])
_TEXT = ("object", "label", "status", "source")  # missing (None, NaN, pd.NA): null


def _text_column(values: pd.Series) -> pa.Array:
    """A text column as Arrow strings, missing and non-text values null; a pandas string
    column stays in its buffers (string or large_string), anything else goes value by
    value."""
    if isinstance(values.dtype, pd.StringDtype):
        arrow = pa.array(values, from_pandas=True)
        return arrow if pa.types.is_large_string(arrow.type) else arrow.cast(pa.string())
    return pa.array([v if isinstance(v, str) else None for v in values.tolist()], pa.string())


def _attribute_table(table: pd.DataFrame) -> pa.Table:
    """The table's columns but geometry as Arrow, in table order: the contract's first (text
    as strings, missing values null; ids int64; score float64), then any further columns (a
    conversion's quality flags) as they are."""

    def plain(values: pd.Series) -> pa.Array:
        if isinstance(values.dtype, np.dtype) and values.dtype.kind in "fiub":  # numbers: buffers
            return pa.array(values.to_numpy())
        return pa.array(values.tolist())

    columns = {
        c: _text_column(table[c]) if c in _TEXT else plain(table[c]) for c in INSTANCE_COLUMNS
    }
    columns["instance_id"] = pa.array(table["instance_id"].to_numpy(np.int64))
    columns["click_id"] = pa.array(table["click_id"].to_numpy(np.int64))
    columns["score"] = pa.array(table["score"].to_numpy(np.float64), pa.float64())
    for c in table.columns:
        if c not in columns and c not in ("geometry", "bbox"):
            columns[c] = plain(table[c])
    return pa.table(columns)


def add_columns(path: Path, columns: dict[str, np.ndarray]) -> None:
    """Add (or replace) columns of an instance GeoParquet in place, one value per row in the
    file's row order; rows, geometries and metadata stay as written."""
    arrow = pq.read_table(path)
    metadata = arrow.schema.metadata
    for name, values in columns.items():
        if name in arrow.column_names:
            arrow = arrow.remove_column(arrow.column_names.index(name))
        arrow = arrow.append_column(name, pa.array(np.asarray(values).tolist()))
    with atomic_path(path) as tmp:
        pq.write_table(
            arrow.replace_schema_metadata(metadata),
            tmp,
            compression="zstd",
            row_group_size=ROW_GROUP_SIZE,
        )


def read_instances(path: Path, **kwargs: object) -> gpd.GeoDataFrame:
    """Read an instance GeoParquet (``kwargs`` go to ``geopandas.read_parquet``, e.g. bbox)."""
    return gpd.read_parquet(path, **kwargs)


def read_provenance(path: Path) -> dict:
    """The ``nuclick`` provenance metadata of an instance GeoParquet."""
    md = pq.read_schema(path).metadata or {}
    return json.loads(md.get(b"nuclick", b"{}"))


def _color(label: str | None) -> list[int]:
    """A stable RGB colour for a class name."""
    if not label:
        return [0, 200, 0]
    h = sum((i + 1) * ord(c) for i, c in enumerate(label))
    return [(h * 67) % 200 + 40, (h * 151) % 200 + 40, (h * 29) % 200 + 40]


def write_qupath_geojson(
    table: pd.DataFrame, path: Path, *, geometries: Geometries | None = None
) -> int:
    """Export the ``ok`` instances as QuPath detections (FeatureCollection); returns the count.

    Rows without a geometry (status other than ok) have nothing to draw and are left out; the
    GeoParquet keeps them. ``geometries`` as for :func:`write_instances`: the rows are read a
    few thousand at a time.
    """
    if geometries is None:
        geometries = Geometries.of(table.geometry.values)
    rows = np.flatnonzero((table["status"].to_numpy() == status.OK) & geometries.present)
    click_id = table["click_id"].to_numpy()
    labels, objects = table["label"].to_numpy(), table["object"].to_numpy()
    score, area_px = table["score"].to_numpy(), table["area_px"].to_numpy()
    area_um2 = table["area_um2"].to_numpy()
    count = 0
    with atomic_path(path) as tmp, open(tmp, "w") as fh:
        fh.write('{"type": "FeatureCollection", "features": [\n')
        for start in range(0, len(rows), 4096):
            part = rows[start : start + 4096]
            for i, geom in zip(part, geometries.get(part), strict=True):
                label = labels[i] if isinstance(labels[i], str) else None
                name = label or str(objects[i])
                feature = {
                    "type": "Feature",
                    "id": f"nuclick-{int(click_id[i])}",
                    "geometry": shapely.geometry.mapping(geom),
                    "properties": {
                        "objectType": "detection",
                        "classification": {"name": name, "color": _color(name)},
                        "measurements": {
                            "click_id": int(click_id[i]),
                            "score": float(score[i]),
                            "area_px": float(area_px[i]),
                            "area_um2": float(area_um2[i]),
                        },
                    },
                }
                fh.write(("" if count == 0 else ",\n") + json.dumps(feature, separators=(",", ":")))
                count += 1
        fh.write("\n]}\n")
    return count


def paint_instances(
    out: np.ndarray,
    items: list[tuple[int, shapely.Geometry]],
    *,
    downsample: float = 1.0,
    row0: int = 0,
    col0: int = 0,
) -> None:
    """Paint instances (instance_id, level-0 polygon), in order (later ones over earlier),
    into ``out``: the labels at level-0 / ``downsample`` of the pixels from (row0, col0) on.
    Pixel centres inside a polygon are painted, holes cleared. A tile painted this way holds
    exactly the pixels of the whole mask painted at once."""
    from skimage.draw import polygon as draw_polygon

    h, w = out.shape
    full = (row0 + h, col0 + w)  # the same rasterisation as the whole mask, clipped to the tile

    def pixels(ring) -> tuple[np.ndarray, np.ndarray]:
        xy = np.asarray(ring.coords) / downsample - 0.5
        rr, cc = draw_polygon(xy[:, 1], xy[:, 0], full)
        keep = (rr >= row0) & (cc >= col0)
        return rr[keep] - row0, cc[keep] - col0

    for iid, geom in items:
        for poly in getattr(geom, "geoms", [geom]):
            rr, cc = pixels(poly.exterior)
            out[rr, cc] = iid
            for ring in poly.interiors:
                rr, cc = pixels(ring)
                out[rr, cc] = np.where(out[rr, cc] == iid, 0, out[rr, cc])


def ok_instances(table: gpd.GeoDataFrame) -> list[tuple[int, shapely.Geometry]]:
    """(instance_id, geometry) of the table's ``ok`` rows, in table order."""
    ok = table[(table["status"] == status.OK) & table.geometry.notna()]
    return list(zip(ok["instance_id"].astype(int), ok.geometry, strict=True))


def label_mask(
    table: gpd.GeoDataFrame, width: int, height: int, *, downsample: float = 1.0
) -> np.ndarray:
    """Rasterise ``ok`` instances into uint32 (H, W) labels at level-0 / ``downsample``; pixel
    value = instance_id. Pixel centres inside a polygon are painted."""
    h, w = int(np.ceil(height / downsample)), int(np.ceil(width / downsample))
    out = np.zeros((h, w), np.uint32)
    paint_instances(out, ok_instances(table), downsample=downsample)
    return out
