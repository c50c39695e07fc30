"""Fuzzing the annotation readers (#13): whatever the bytes, only the project's own typed error
comes out, and every accepted mark reaches the click table exactly once."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nuclick_core.errors import NuclickError
from nuclick_core.io.annotations import read_annotations

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SUFFIXES = [".csv", ".tsv", ".geojson", ".json", ".xml", ".parquet"]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
coordinate = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)


def _read(suffix: str, data: bytes):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"marks{suffix}"
        path.write_bytes(data)
        return read_annotations(path)


def _only_typed_errors(suffix: str, data: bytes) -> None:
    try:
        table = _read(suffix, data)
    except NuclickError:
        return
    assert table["click_id"].tolist() == list(range(len(table)))


@FUZZ
@given(st.sampled_from(SUFFIXES), st.binary(max_size=300))
def test_any_bytes_give_a_table_or_a_typed_error(suffix: str, data: bytes) -> None:
    _only_typed_errors(suffix, data)


@FUZZ
@given(st.sampled_from([".csv", ".tsv", ".xml"]), st.text(max_size=300))
def test_any_text_gives_a_table_or_a_typed_error(suffix: str, text: str) -> None:
    _only_typed_errors(suffix, text.encode())


@FUZZ
@given(json_values)
def test_any_json_gives_a_table_or_a_typed_error(value) -> None:
    _only_typed_errors(".geojson", json.dumps(value).encode())


def _feature(geometry: dict) -> dict:
    return {"type": "Feature", "geometry": geometry, "properties": {}}


#: Clicks closer than 0.005 px are one click to the reader (refused as duplicates, by name).
points = st.lists(
    st.tuples(coordinate, coordinate),
    min_size=1,
    max_size=12,
    # the reader's duplicate rule: numpy's rounding (Python's round differs at halves: 0.005)
    unique_by=lambda p: tuple((np.round(np.array(p), 2) + 0.0).tolist()),
)


@FUZZ
@given(
    points,
    st.lists(st.lists(st.tuples(coordinate, coordinate), min_size=2, max_size=5), max_size=4),
)
def test_every_geojson_mark_reaches_the_table_once(pts, lines) -> None:
    features = [_feature({"type": "Point", "coordinates": list(p)}) for p in pts]
    features += [
        _feature({"type": "LineString", "coordinates": [list(p) for p in ln]}) for ln in lines
    ]
    data = json.dumps({"type": "FeatureCollection", "features": features}).encode()
    try:
        table = _read(".geojson", data)
    except NuclickError as exc:  # a line of one repeated point is refused, naming the feature
        assert "needs at least two distinct points" in str(exc), exc
        assert any(len(set(ln)) < 2 for ln in lines)
        return
    assert len(table) == len(features)
    assert (table["kind"] == "point").sum() == len(pts)
    assert [(g.x, g.y) for g in table.geometry[: len(pts)]] == pts


@FUZZ
@given(points)
def test_every_asap_dot_reaches_the_table_once(pts) -> None:
    dots = "".join(
        f'<Annotation Name="a{k}" Type="Dot" PartOfGroup="None"><Coordinates>'
        f'<Coordinate Order="0" X="{x!r}" Y="{y!r}"/></Coordinates></Annotation>'
        for k, (x, y) in enumerate(pts)
    )
    xml = f"<ASAP_Annotations><Annotations>{dots}</Annotations></ASAP_Annotations>"
    table = _read(".xml", xml.encode())
    assert [(g.x, g.y) for g in table.geometry] == pts


@FUZZ
@given(
    st.lists(
        st.tuples(coordinate | st.just(float("nan")), coordinate),
        min_size=1,
        max_size=12,
        unique_by=lambda p: tuple((np.round(np.array(p), 2) + 0.0).tolist()),  # not duplicates
    )
)
def test_every_parquet_row_reaches_the_table_or_is_named(rows) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "marks.parquet"
        pd.DataFrame(rows, columns=["x", "y"]).to_parquet(path)
        try:
            table = read_annotations(path)
        except NuclickError as exc:
            assert any(x != x for x, _ in rows), exc  # only a NaN is refused
            assert "marks.parquet: row" in str(exc)
            return
    assert [(g.x, g.y) for g in table.geometry] == rows
