"""Tests of nuclick_core.io.clicks: the columnar click table and the fast CSV reader.

The fast reader must give the row-by-row reader's table for every file it accepts, and leave
every other file to it (so its errors still name the row); the duplicate check must name the
same pair the row-by-row check named.
"""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from shapely.geometry import LineString, Point

from nuclick_core.errors import AnnotationError
from nuclick_core.io._readers import READERS
from nuclick_core.io.annotations import (
    _check_duplicates,
    _table,
    read_annotations,
    read_clicks,
    validate_clicks,
)
from nuclick_core.io.clicks import (
    Clicks,
    check_duplicates,
    read_delimited_points,
    read_geoparquet_points,
)


def row_by_row(path: Path, default_object: str = "nucleus", mapped=None) -> gpd.GeoDataFrame:
    """The click table as the reader built it before the fast path: marks, then a table."""
    mapped = mapped or {}
    fallback = {"point": default_object, "squiggle": "gland"}
    marks = READERS[path.suffix.lower()](path)
    resolved = [
        m._replace(object=m.object or mapped.get(m.label or "") or fallback[m.kind]) for m in marks
    ]
    table = _table(resolved)
    _check_duplicates(table, path)
    return table


def assert_same_table(got: gpd.GeoDataFrame, want: gpd.GeoDataFrame) -> None:
    assert list(got.columns) == list(want.columns)
    for c in ("click_id", "kind", "object", "label", "source"):
        assert got[c].tolist() == want[c].tolist(), c
        assert got[c].dtype == want[c].dtype, c
    assert [g.wkb for g in got.geometry] == [g.wkb for g in want.geometry]


def assert_reads_like_row_by_row(path: Path, mapped=None) -> None:
    """read_annotations gives the row-by-row reader's table, or raises its error word for word."""
    try:
        want = row_by_row(path, mapped=mapped)
    except AnnotationError as exc:
        with pytest.raises(AnnotationError) as got:
            read_annotations(path, object_by_label=mapped)
        assert str(got.value) == str(exc)
    else:
        assert_same_table(read_annotations(path, object_by_label=mapped), want)


NUMBERS = st.one_of(
    st.floats(-1e6, 1e6, allow_nan=False).map(repr),
    st.floats(0, 1e5, allow_nan=False).map(lambda v: f"{v:.3e}"),
    st.integers(-(10**7), 10**7).map(str),
    st.sampled_from(["1.", ".5", "+3", "-0", " 12 ", "\t7", "007", "1E2"]),
)
LABELS = st.sampled_from(["", "tumour", " lymph ", "Tumour", "a b"])
OBJECT_TEXT = st.sampled_from(["", "nucleus", "Cell", " NUCLEUS "])


@settings(max_examples=60, deadline=None)
@given(
    rows=st.lists(st.tuples(NUMBERS, NUMBERS, LABELS, OBJECT_TEXT), min_size=1, max_size=30),
    delimiter=st.sampled_from([",", "\t", ";"]),
    newline=st.sampled_from(["\n", "\r\n"]),
    columns=st.sampled_from(["x,y", "x,y,label", "label,y,x,object", "centroid_x,centroid_y"]),
    bom=st.booleans(),
    blank_lines=st.booleans(),
    mapped=st.booleans(),
)
def test_the_fast_reader_gives_the_row_by_row_table(
    tmp_path_factory, rows, delimiter, newline, columns, bom, blank_lines, mapped
) -> None:
    names = columns.split(",")
    lines = [delimiter.join(names)]
    for k, (x, y, label, obj) in enumerate(rows):
        # unique positions, so that no example is a duplicate-click error
        x = f"{k * 1000 + 0.25}" if k % 2 else x
        cell = {"x": x, "centroid_x": x, "y": y, "centroid_y": y, "label": label, "object": obj}
        lines.append(delimiter.join(cell[n] for n in names))
        if blank_lines and k == 0:
            lines.append("")
    text = newline.join(lines) + newline
    path = tmp_path_factory.mktemp("csv") / "c.csv"
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode())
    label_map = {"tumour": "cell"} if mapped else None
    try:
        want = row_by_row(path, mapped=label_map)
    except AnnotationError as exc:  # e.g. two rows at one place: the fast path must agree
        with pytest.raises(AnnotationError) as got:
            read_annotations(path, object_by_label=label_map)
        assert str(got.value) == str(exc)
        return
    assert read_delimited_points(path) is not None, text  # the fast path took it
    assert_same_table(read_annotations(path, object_by_label=label_map), want)


@pytest.mark.parametrize(
    "text",
    [
        '"x","y"\n1,2\n',  # quoted header
        "x,y\n1,2\n3\n",  # short row
        "x,y\n1_0,2\n",  # digit separator (float() reads it, the contract does not)
        "x,y\ninf,2\n",
        "x,y\n0x10,2\n",
        "x,y,object\n1,2,gland\n3,4,tissue\n",  # unknown object
        "x,y,squiggle_id\n1,2,a\n3,4,a\n",
        "\nx,y\n1,2\n",  # blank first line
        "x,y\n",  # header only
        "x,y\n,,\n1,2\n",
    ],
)
def test_the_fast_reader_leaves_other_files_to_the_row_by_row_reader(tmp_path, text) -> None:
    path = tmp_path / "c.csv"
    path.write_text(text)
    assert read_delimited_points(path) is None
    assert_reads_like_row_by_row(path)


PARQUET_TEXT = st.one_of(st.none(), LABELS)


@settings(max_examples=40, deadline=None)
@given(
    rows=st.lists(
        st.tuples(
            st.floats(-1e6, 1e6, allow_nan=False),
            st.floats(-1e6, 1e6, allow_nan=False),
            PARQUET_TEXT,
            st.one_of(st.none(), OBJECT_TEXT),
        ),
        min_size=1,
        max_size=30,
    ),
    label_name=st.sampled_from(["label", "Class", "name", "other"]),
    with_object=st.booleans(),
    mapped=st.booleans(),
)
def test_the_geoparquet_reader_gives_the_row_by_row_table(
    tmp_path_factory, rows, label_name, with_object, mapped
) -> None:
    path = tmp_path_factory.mktemp("pq") / "c.parquet"
    columns = {label_name: [r[2] for r in rows]}
    if with_object:
        columns["object"] = [r[3] for r in rows]
    points = gpd.points_from_xy([r[0] for r in rows], [r[1] for r in rows])
    gpd.GeoDataFrame(columns, geometry=points).to_parquet(path)
    assert read_geoparquet_points(path) is not None
    label_map = {"tumour": "cell"} if mapped else None
    assert_reads_like_row_by_row(path, label_map)


@pytest.mark.parametrize(
    "frame",
    [
        lambda: gpd.GeoDataFrame({"label": ["a", "b"]}, geometry=[Point(1, 2), None]),
        lambda: gpd.GeoDataFrame(geometry=[Point(1, 2), LineString([(0, 0), (5, 5)])]),
        lambda: gpd.GeoDataFrame({"label": [1, None]}, geometry=[Point(1, 2), Point(3, 4)]),
        lambda: gpd.GeoDataFrame({"object": ["gland?", "cell"]}, geometry=[Point(1, 2)] * 2),
        lambda: gpd.GeoDataFrame(geometry=[Point(1, 2), Point()]),
        lambda: gpd.GeoDataFrame(geometry=[Point(1, 2), Point(float("inf"), 4)]),
    ],
)
def test_the_geoparquet_reader_leaves_other_files_to_the_row_by_row_reader(tmp_path, frame) -> None:
    path = tmp_path / "c.parquet"
    frame().to_parquet(path)
    assert read_geoparquet_points(path) is None
    assert_reads_like_row_by_row(path)


def test_an_empty_geoparquet_file_is_refused_by_name(tmp_path) -> None:
    path = tmp_path / "empty.parquet"
    gpd.GeoDataFrame({"label": []}, geometry=gpd.GeoSeries([])).to_parquet(path)
    assert read_geoparquet_points(path) is None
    with pytest.raises(AnnotationError, match=r"empty\.parquet holds no marks"):
        read_annotations(path)


def test_a_bad_number_is_named_by_row_and_line(tmp_path) -> None:
    path = tmp_path / "c.csv"
    path.write_text("x,y\n1,2\n\n3,four\n")
    with pytest.raises(AnnotationError, match=r"row 2 \(line 4\), column 'y'.*'four'"):
        read_clicks(path)


def _old_duplicate_pair(xy: np.ndarray) -> tuple[int, int] | None:
    seen: dict[tuple[float, float], int] = {}
    for j, (x, y) in enumerate((np.round(xy, 2) + 0.0).tolist()):
        if (x, y) in seen:
            return seen[x, y], j
        seen[x, y] = j
    return None


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 6), st.integers(0, 3)), min_size=0, max_size=25))
def test_the_duplicate_check_names_the_first_pair_in_input_order(cells) -> None:
    xy = np.array(cells, np.float64).reshape(-1, 2) * 0.5 + np.array([0.001, -0.004])
    source = pa.array([f"f:row {i + 1}" for i in range(len(xy))])
    pair = _old_duplicate_pair(xy)
    if pair is None:
        check_duplicates(xy, np.ones(len(xy), bool), source, "f")
        return
    with pytest.raises(AnnotationError) as got:
        check_duplicates(xy, np.ones(len(xy), bool), source, "f")
    i, j = pair
    assert f": f:row {i + 1} and f:row {j + 1};" in str(got.value)


def test_squiggles_do_not_count_as_duplicates() -> None:
    xy = np.zeros((2, 2))
    check_duplicates(xy, np.array([True, False]), pa.array(["a", "b"]), "f")


def test_columns_round_trip_a_table_with_squiggles(tmp_path) -> None:
    path = tmp_path / "c.csv"
    path.write_text("x,y,squiggle_id,label\n1,2,,a\n10,10,s,\n20,12,s,\n5.5,6,,\n")
    table = read_annotations(path)
    clicks = Clicks.of(table)
    assert clicks.kind.tolist() == ["point", "squiggle", "point"]
    np.testing.assert_allclose(clicks.xy, [[1, 2], [15, 11], [5.5, 6]])
    assert_same_table(clicks.table(), table)
    assert clicks.outside(12, 12).tolist() == [False, False, False]
    assert clicks.outside(8, 8).tolist() == [False, True, False]
    np.testing.assert_array_equal(clicks.bounds(np.array([1, 0])), [[10, 10, 20, 12], [1, 2, 1, 2]])
    with pytest.raises(AnnotationError, match=r"all 3 marks lie outside.*c.csv:row 1 \(x=1, y=2\)"):
        validate_clicks(read_clicks(path), width=0.5, height=0.5, path=path)


def test_a_large_csv_is_read_without_a_python_object_per_row(tmp_path) -> None:
    """The fast reader's Python allocations stay near the columns' own size (an object array
    entry is 8 bytes); a shapely point and a source string per row would be 300 and more."""
    n = 100_000
    rng = np.random.default_rng(0)
    xy = np.unique(rng.integers(0, 10**6, (n, 2)), axis=0).astype(np.float64) / 10
    path = tmp_path / "c.csv"
    pd.DataFrame({"x": xy[:, 0], "y": xy[:, 1], "label": "tumour"}).to_csv(path, index=False)
    tracemalloc.start()
    clicks = read_clicks(path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert len(clicks) == len(xy)
    np.testing.assert_array_equal(clicks.xy, xy)
    assert clicks.source[-1].as_py() == f"c.csv:row {len(xy)}"
    assert peak / len(xy) < 150, f"{peak / len(xy):.0f} bytes of Python objects per click"
