"""The geometry column of an instance table while a run fills it: one geometry per row, set
once each, held in memory or spilled to disk as WKB.

A slide of half a million nuclei holds about a gigabyte of polygons (a nucleus outline traced
along the pixel grid has some hundred vertices). Spilled, a row costs 60 bytes of memory
(offset, length, bounding box, area) and its WKB waits in a file until the table is written
row group by row group (:func:`nuclick_core.io.instances.write_instances`), so memory stays flat
however many clicks a slide has.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import shapely

_TYPE_NAMES = {
    0: "Point",
    1: "LineString",
    2: "LinearRing",
    3: "Polygon",
    4: "MultiPoint",
    5: "MultiLineString",
    6: "MultiPolygon",
    7: "GeometryCollection",
}


class Geometries:
    """Geometries of ``n`` rows, None until set.

    Parameters
    ----------
    n : rows.
    spill_dir : a folder for the WKB file (created there under a temporary name, removed by
        :meth:`close`); None keeps the geometries in memory.
    """

    def __init__(self, n: int, spill_dir: Path | str | None = None) -> None:
        self.n = n
        self.bounds = np.full((n, 4), np.nan)
        self.area = np.zeros(n)
        self.types: set[int] = set()
        self.present = np.zeros(n, bool)
        self._geoms: np.ndarray | None = None
        self._file = None
        if spill_dir is None:
            self._geoms = np.empty(n, dtype=object)
        else:
            fd, name = tempfile.mkstemp(prefix=".geometries-", suffix=".wkb", dir=spill_dir)
            self._path = Path(name)
            self._file = os.fdopen(fd, "w+b")
            self._offset = np.zeros(n, np.int64)
            self._length = np.zeros(n, np.int32)  # 0: no geometry
            self._end = 0

    @classmethod
    def of(cls, geoms: np.ndarray | list) -> Geometries:
        """In-memory geometries from an array (None where a row has none)."""
        arr = np.empty(len(geoms), dtype=object)
        arr[:] = list(geoms)
        out = cls(len(arr))
        has = np.flatnonzero(shapely.is_geometry(arr))
        out.put(has, arr[has])
        return out

    @property
    def spilled(self) -> bool:
        return self._file is not None

    def __len__(self) -> int:
        return self.n

    def put(self, rows: np.ndarray | list[int], geoms: np.ndarray | list) -> None:
        """Set the geometries of ``rows`` (each row once)."""
        rows = np.asarray(rows, np.int64)
        if len(rows) == 0:
            return
        arr = np.empty(len(rows), dtype=object)
        arr[:] = list(geoms)
        self.bounds[rows] = shapely.bounds(arr)
        self.area[rows] = shapely.area(arr)
        self.types.update(shapely.get_type_id(arr).tolist())
        self.present[rows] = True
        if self._file is None:
            assert self._geoms is not None
            self._geoms[rows] = arr
            return
        blobs = shapely.to_wkb(arr)
        lengths = np.fromiter((len(b) for b in blobs), np.int64, len(blobs))
        self._offset[rows] = self._end + np.cumsum(lengths) - lengths
        self._length[rows] = lengths
        self._file.seek(self._end)
        self._file.write(b"".join(blobs))
        self._end += int(lengths.sum())

    def __setitem__(self, row: int, geom: shapely.Geometry) -> None:
        self.put([row], [geom])

    def geometry_types(self) -> list[str]:
        """Names of the geometry types set, sorted (GeoParquet's ``geometry_types``)."""
        return sorted(_TYPE_NAMES[t] for t in self.types)

    def wkb(self, rows: np.ndarray) -> list[bytes | None]:
        """WKB of ``rows`` (None where a row has no geometry), in the order asked."""
        rows = np.asarray(rows, np.int64)
        if self._file is None:
            assert self._geoms is not None
            return list(shapely.to_wkb(self._geoms[rows]))
        self._file.flush()
        fd = self._file.fileno()
        return [
            os.pread(fd, int(n), int(o)) if n else None
            for o, n in zip(self._offset[rows], self._length[rows], strict=True)
        ]

    def get(self, rows: np.ndarray) -> np.ndarray:
        """Geometries of ``rows`` (object array, None where a row has none)."""
        rows = np.asarray(rows, np.int64)
        if self._file is None:
            assert self._geoms is not None
            return self._geoms[rows]
        out = np.empty(len(rows), dtype=object)
        out[:] = shapely.from_wkb(np.array(self.wkb(rows), dtype=object))
        return out

    def array(self) -> np.ndarray:
        """Every row's geometry (in memory: no copy; spilled: read back)."""
        return self.get(np.arange(self.n))

    def close(self) -> None:
        """Remove the spill file (nothing to do in memory)."""
        if self._file is not None:
            self._file.close()
            self._path.unlink(missing_ok=True)
            self._file = None
            self._geoms = None

    def __enter__(self) -> Geometries:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
