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
import pyarrow as pa
import pyarrow.parquet as pq
import shapely

from nuclick_core.io import status
from nuclick_core.io.files import atomic_path

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
    table: gpd.GeoDataFrame, path: Path, *, metadata: dict, sort_xy: np.ndarray
) -> None:
    """Write the instance table as GeoParquet 1.1.

    Parameters
    ----------
    table : one row per click with :data:`INSTANCE_COLUMNS` and a (possibly null) geometry;
        any further columns are written after those.
    path : output ``.parquet``.
    metadata : provenance (model, config, slide, package version), stored under ``nuclick``.
    sort_xy : float (N, 2) click positions used to order rows along a Hilbert curve.
    """
    order = hilbert_order(np.asarray(sort_xy, np.float64))
    table = table.iloc[order].reset_index(drop=True)
    geoms = np.asarray(table.geometry.values, dtype=object)
    bounds = shapely.bounds(geoms)  # NaN for missing geometries
    has = ~np.isnan(bounds[:, 0])
    bbox = pa.StructArray.from_arrays(
        [pa.array(bounds[:, k], pa.float64(), mask=~has) for k in range(4)],
        names=["xmin", "ymin", "xmax", "ymax"],
        mask=pa.array(~has),
    )
    wkb = pa.array([shapely.to_wkb(g) if g is not None else None for g in geoms], pa.binary())
    text = ("object", "label", "status", "source")  # missing (None, NaN, pd.NA): null
    columns = {
        c: pa.array([v if isinstance(v, str) else None for v in table[c].tolist()], pa.string())
        if c in text
        else pa.array(table[c].tolist())
        for c in INSTANCE_COLUMNS
    }
    columns["instance_id"] = pa.array(table["instance_id"].to_numpy(np.int64))
    columns["click_id"] = pa.array(table["click_id"].to_numpy(np.int64))
    columns["score"] = pa.array(table["score"].to_numpy(np.float64), pa.float64())
    # further columns (quality flags of a conversion) follow the contract's, as they are
    for c in table.columns:
        if c not in columns and c not in ("geometry", "bbox"):
            columns[c] = pa.array(table[c].tolist())
    columns["geometry"] = wkb
    columns["bbox"] = bbox
    arrow = pa.table(columns)
    kinds = sorted({g.geom_type for g in geoms if g is not None}) or ["Polygon", "MultiPolygon"]
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
                "geometry_types": kinds,
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
    arrow = arrow.replace_schema_metadata(
        {"geo": json.dumps(geo), "nuclick": json.dumps(metadata, default=str)}
    )
    with atomic_path(path) as tmp:
        pq.write_table(arrow, tmp, compression="zstd", row_group_size=ROW_GROUP_SIZE)


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


def write_qupath_geojson(table: gpd.GeoDataFrame, path: Path) -> int:
    """Export the ``ok`` instances as QuPath detections (FeatureCollection); returns the count.

    Rows without a geometry (status other than ok) have nothing to draw and are left out; the
    GeoParquet keeps them.
    """
    ok = table[(table["status"] == status.OK) & table.geometry.notna()]
    count = 0
    with atomic_path(path) as tmp, open(tmp, "w") as fh:
        fh.write('{"type": "FeatureCollection", "features": [\n')
        for row in ok.itertuples(index=False):
            label = row.label if isinstance(row.label, str) else None
            name = label or str(row.object)
            feature = {
                "type": "Feature",
                "id": f"nuclick-{int(row.click_id)}",
                "geometry": shapely.geometry.mapping(row.geometry),
                "properties": {
                    "objectType": "detection",
                    "classification": {"name": name, "color": _color(name)},
                    "measurements": {
                        "click_id": int(row.click_id),
                        "score": float(row.score),
                        "area_px": float(row.area_px),
                        "area_um2": float(row.area_um2),
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
