"""Geometries held in memory or spilled to disk as WKB: the same answers either way."""

from __future__ import annotations

import numpy as np
import shapely

from nuclick_core.io.geometries import Geometries


def _polygons(n: int, seed: int = 0) -> list:
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        x, y = rng.uniform(0, 1000, 2)
        disk = shapely.Point(x, y).buffer(rng.uniform(2, 9), quad_segs=int(rng.integers(2, 9)))
        out.append(
            disk if k % 5 else shapely.MultiPolygon([disk, shapely.box(x + 20, y, x + 25, y + 4)])
        )
    return out


def test_spilled_and_held_geometries_agree(tmp_path) -> None:
    polys = _polygons(40)
    rows = np.random.default_rng(1).permutation(60)[:40]  # 20 rows stay empty
    held, spilled = Geometries(60), Geometries(60, tmp_path)
    for chunk in np.array_split(np.arange(40), 7):  # set in batches, out of row order
        held.put(rows[chunk], [polys[i] for i in chunk])
        spilled.put(rows[chunk], [polys[i] for i in chunk])
    spilled[int(np.setdiff1d(np.arange(60), rows)[0])] = shapely.box(0, 0, 1, 1)
    held[int(np.setdiff1d(np.arange(60), rows)[0])] = shapely.box(0, 0, 1, 1)
    ask = np.random.default_rng(2).permutation(60)
    assert held.wkb(ask) == spilled.wkb(ask)
    assert sum(w is None for w in spilled.wkb(ask)) == 19
    assert np.array_equal(held.present, spilled.present)
    assert np.array_equal(held.bounds, spilled.bounds, equal_nan=True)
    assert np.array_equal(held.area, spilled.area)
    assert held.geometry_types() == spilled.geometry_types() == ["MultiPolygon", "Polygon"]
    got = spilled.get(rows[:5])
    assert all(shapely.equals_exact(g, polys[i], 0) for i, g in enumerate(got))
    assert spilled.array()[np.setdiff1d(np.arange(60), rows)[1]] is None
    (path,) = list(tmp_path.iterdir())
    assert path.stat().st_size == sum(len(w) for w in spilled.wkb(np.arange(60)) if w)
    spilled.close()
    assert list(tmp_path.iterdir()) == []


def test_geometries_of_an_array_with_missing_rows() -> None:
    polys = _polygons(3)
    g = Geometries.of([polys[0], None, polys[2]])
    assert g.present.tolist() == [True, False, True]
    assert g.area[1] == 0 and np.isnan(g.bounds[1]).all()
    assert g.get(np.array([1]))[0] is None and g.wkb(np.array([0]))[0] == shapely.to_wkb(polys[0])
