"""The fast GeoJSON reader (QuPath points) gives the feature-by-feature reader's table for every
file it accepts, and leaves every other file to it, whose errors name the feature."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nuclick_core.io.geojson_points import read_geojson_points
from tests.io.test_clicks import assert_reads_like_row_by_row

COORD = st.one_of(
    st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False),
    st.integers(-(10**6), 10**6),
)
PROPERTIES = st.one_of(
    st.none(),
    st.fixed_dictionaries(
        {},
        optional={
            "classification": st.one_of(
                st.fixed_dictionaries({"name": st.sampled_from(["Tumor", " Immune ", ""])}),
                st.sampled_from(["Stroma", ""]),
            ),
            "label": st.sampled_from(["tumour", "", "a b"]),
            "name": st.sampled_from(["n1", " "]),
            "object": st.sampled_from(["nucleus", "Cell", " NUCLEUS ", "", None]),
            "objectType": st.just("detection"),
        },
    ),
)


@settings(max_examples=60, deadline=None)
@given(
    features=st.lists(st.tuples(COORD, COORD, PROPERTIES, st.booleans()), min_size=1, max_size=25),
    wrap=st.sampled_from(["collection", "list", "feature"]),
    mapped=st.booleans(),
)
def test_the_fast_reader_gives_the_feature_by_feature_table(
    tmp_path_factory, features, wrap, mapped
) -> None:
    items = []
    for k, (x, y, props, with_z) in enumerate(features):
        x = k * 1000 + 0.5 if k % 2 else x  # unique positions, mostly
        feature = {"type": "Feature", "geometry": {"type": "Point", "coordinates": [x, y]}}
        if with_z:
            feature["geometry"]["coordinates"].append(3)
        if props is not None or k % 3:
            feature["properties"] = props
        items.append(feature)
    if wrap == "feature":
        items = items[:1]
    data = {"collection": {"type": "FeatureCollection", "features": items}, "list": items}
    path = tmp_path_factory.mktemp("geojson") / "points.geojson"
    path.write_text(json.dumps(data.get(wrap, items[0])))
    assert read_geojson_points(path) is not None
    assert_reads_like_row_by_row(path, {"tumour": "cell", "Tumor": "cell"} if mapped else None)


def _collection(*geometries, properties=None) -> str:
    features = [{"type": "Feature", "geometry": g, "properties": properties} for g in geometries]
    return json.dumps({"type": "FeatureCollection", "features": features})


POINT = {"type": "Point", "coordinates": [10.0, 20.0]}


@pytest.mark.parametrize(
    "text",
    [
        _collection(POINT, {"type": "LineString", "coordinates": [[0, 0], [5, 5]]}),
        _collection(POINT, {"type": "MultiPoint", "coordinates": [[1, 1], [2, 2]]}),
        _collection(POINT, {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]}),
        _collection(POINT, {"type": "Point", "coordinates": ["3", "4"]}),  # numbers as text
        _collection(POINT, {"type": "Point", "coordinates": [True, 4]}),
        _collection(POINT, {"type": "Point", "coordinates": [3, "4"]}),
        _collection(POINT, {"type": "Point", "coordinates": [3, False]}),
        _collection(POINT, {"type": "Point", "coordinates": [5]}),
        _collection(POINT, None),
        _collection(POINT, properties={"object": "tissue"}),  # unknown object
        _collection(POINT, properties=["not", "an", "object"]),
        '{"type": "FeatureCollection", "features": [{"type": "Feature", "geometry": '
        '{"type": "Point", "coordinates": [1e400, 2]}}]}',  # read as infinity
        '{"type": "FeatureCollection", "features": [{"type": "Feature", "geometry": '
        '{"type": "Point", "coordinates": [NaN, 2]}}]}',
        '{"type": "FeatureCollection", "features": [1, 2]}',
        "[{]",
        _collection(POINT, POINT),  # the same place twice: the duplicate named by both
    ],
)
def test_the_fast_reader_leaves_other_files_to_the_feature_by_feature_reader(
    tmp_path, text
) -> None:
    path = tmp_path / "points.geojson"
    path.write_text(text)
    if text != _collection(POINT, POINT):
        assert read_geojson_points(path) is None
    assert_reads_like_row_by_row(path)


def test_a_collection_without_features_is_refused_by_name(tmp_path) -> None:
    from nuclick_core.errors import AnnotationError
    from nuclick_core.io.annotations import read_annotations

    path = tmp_path / "empty.geojson"
    path.write_text('{"type": "FeatureCollection", "features": []}')
    assert read_geojson_points(path) is None
    with pytest.raises(AnnotationError, match=r"empty\.geojson holds no marks"):
        read_annotations(path)
