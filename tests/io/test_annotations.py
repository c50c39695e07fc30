"""Tests of nuclick_core.io.annotations: every reader, every error path, and a CSV round trip."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from shapely.geometry import LineString, MultiLineString, MultiPoint, Point, Polygon

from nuclick_core.errors import AnnotationError
from nuclick_core.io.annotations import (
    COLUMNS,
    click_table_from_points,
    outside_slide_mask,
    read_annotations,
    validate_clicks,
)


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def coords(table: gpd.GeoDataFrame) -> list[list[tuple[float, ...]]]:
    return [list(g.coords) if g.geom_type != "MultiLineString" else [] for g in table.geometry]


def asap(*annotations: str) -> str:
    return (
        '<?xml version="1.0"?><ASAP_Annotations><Annotations>'
        + "".join(annotations)
        + "</Annotations><AnnotationGroups/></ASAP_Annotations>"
    )


def asap_annotation(kind: str, xy: list[tuple[float, float]], group: str = "None") -> str:
    points = "".join(f'<Coordinate Order="{i}" X="{x}" Y="{y}"/>' for i, (x, y) in enumerate(xy))
    return (
        f'<Annotation Name="a" Type="{kind}" PartOfGroup="{group}" Color="#F4FA58">'
        f"<Coordinates>{points}</Coordinates></Annotation>"
    )


def feature(geometry: dict | None, properties: dict | None = None) -> dict:
    return {"type": "Feature", "geometry": geometry, "properties": properties or {}}


# ---------------------------------------------------------------- the click table


def test_table_columns_and_dtypes(tmp_path: Path) -> None:
    path = write(tmp_path, "clicks.csv", "x,y,label\n10,20,tumour\n30.5,40,\n")
    table = read_annotations(path)
    assert tuple(table.columns) == COLUMNS
    assert table.crs is None
    assert table["click_id"].dtype == np.int64
    assert table["click_id"].tolist() == [0, 1]
    for column in ("kind", "object", "label", "source"):
        assert table[column].dtype == object
    assert table["kind"].tolist() == ["point", "point"]
    assert table["object"].tolist() == ["nucleus", "nucleus"]
    assert table["label"].tolist() == ["tumour", None]
    assert table["source"].tolist() == ["clicks.csv:row 1", "clicks.csv:row 2"]
    assert coords(table) == [[(10.0, 20.0)], [(30.5, 40.0)]]


def test_click_table_from_points() -> None:
    table = click_table_from_points(
        np.array([[1.0, 2.0], [3.0, 4.0]]), object="cell", labels=["a", None], source="mine"
    )
    assert tuple(table.columns) == COLUMNS
    assert table["object"].tolist() == ["cell", "cell"]
    assert table["label"].tolist() == ["a", None]
    assert table["source"].tolist() == ["mine:row 1", "mine:row 2"]
    assert coords(table) == [[(1.0, 2.0)], [(3.0, 4.0)]]


def test_click_table_from_points_empty() -> None:
    table = click_table_from_points(np.zeros((0, 2)))
    assert len(table) == 0
    assert tuple(table.columns) == COLUMNS
    assert table["click_id"].dtype == np.int64


@pytest.mark.parametrize(
    ("xy", "kwargs", "match"),
    [
        ([[1.0, np.nan]], {}, r"row 1 holds a non-finite"),
        ([[1.0, 2.0, 3.0]], {}, r"shape \(N, 2\)"),
        ([[1.0, 2.0]], {"labels": ["a", "b"]}, r"2 labels for 1 points"),
        ([[1.0, 2.0]], {"object": "gland"}, r"default_object 'gland'"),
        ([[1.0, 2.0], [1.001, 2.0]], {}, r"duplicated click .*array:row 1 and array:row 2"),
    ],
)
def test_click_table_from_points_errors(xy: list, kwargs: dict, match: str) -> None:
    with pytest.raises(AnnotationError, match=match):
        click_table_from_points(xy, **kwargs)


# ---------------------------------------------------------------- dispatch and common errors


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(AnnotationError, match=r"nothere\.csv does not exist.*check the path"):
        read_annotations(tmp_path / "nothere.csv")


def test_unknown_suffix(tmp_path: Path) -> None:
    path = write(tmp_path, "clicks.xlsx", "")
    with pytest.raises(AnnotationError, match=r"clicks\.xlsx.*'\.xlsx'.*\.csv.*\.geojson.*\.xml"):
        read_annotations(path)


def test_bad_options(tmp_path: Path) -> None:
    path = write(tmp_path, "clicks.csv", "x,y\n1,2\n")
    with pytest.raises(AnnotationError, match="default_object 'gland'"):
        read_annotations(path, default_object="gland")
    with pytest.raises(AnnotationError, match=r"object_by_label maps .*'blob'"):
        read_annotations(path, object_by_label={"t": "blob"})


def test_duplicated_clicks(tmp_path: Path) -> None:
    path = write(tmp_path, "clicks.csv", "x,y\n1,2\n5,5\n1.004,2\n")
    with pytest.raises(
        AnnotationError,
        match=r"clicks\.csv.*duplicated click.*clicks\.csv:row 1 and clicks\.csv:row 3.*remove",
    ):
        read_annotations(path)


def test_points_1_pixel_apart_are_not_duplicates(tmp_path: Path) -> None:
    path = write(tmp_path, "clicks.csv", "x,y\n1,2\n1.02,2\n")
    assert len(read_annotations(path)) == 2


# ---------------------------------------------------------------- CSV / TSV


def test_csv_alternative_column_names_and_object(tmp_path: Path) -> None:
    text = "Centroid_X,Centroid_Y,Class,Object\n1,2,lymph,cell\n3,4,tumour,\n"
    table = read_annotations(write(tmp_path, "clicks.csv", text))
    assert coords(table) == [[(1.0, 2.0)], [(3.0, 4.0)]]
    assert table["label"].tolist() == ["lymph", "tumour"]
    assert table["object"].tolist() == ["cell", "nucleus"]


def test_csv_upper_case_x_y(tmp_path: Path) -> None:
    table = read_annotations(write(tmp_path, "clicks.csv", "X,Y\n1,2\n"))
    assert coords(table) == [[(1.0, 2.0)]]


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("clicks.tsv", "x\ty\tlabel\n1\t2\ta\n3\t4\tb\n"),
        ("clicks.csv", "x;y;label\n1;2;a\n3;4;b\n"),
        ("clicks.txt", "x,y,label\n1,2,a\n\n3,4,b\n"),
    ],
)
def test_delimiters_sniffed(tmp_path: Path, name: str, text: str) -> None:
    table = read_annotations(write(tmp_path, name, text))
    assert coords(table) == [[(1.0, 2.0)], [(3.0, 4.0)]]
    assert table["label"].tolist() == ["a", "b"]


def test_csv_without_x_y(tmp_path: Path) -> None:
    path = write(tmp_path, "clicks.csv", "col,row\n1,2\n")
    with pytest.raises(AnnotationError, match=r"clicks\.csv.*found columns \['col', 'row'\].*'x'"):
        read_annotations(path)


@pytest.mark.parametrize("value", ["abc", "nan", "inf", "-Infinity", ""])
def test_csv_bad_number(tmp_path: Path, value: str) -> None:
    path = write(tmp_path, "clicks.csv", f"x,y\n1,2\n3,{value}\n")
    with pytest.raises(AnnotationError, match=r"clicks\.csv: row 2 \(line 3\), column 'y'"):
        read_annotations(path)


def test_csv_non_numeric_message_names_value(tmp_path: Path) -> None:
    path = write(tmp_path, "clicks.csv", "x,y\n1,2\n\n12a,4\n")
    with pytest.raises(AnnotationError, match=r"row 2 \(line 4\), column 'x': value '12a' is not"):
        read_annotations(path)


@pytest.mark.parametrize(
    ("text", "match"), [("", "is empty.*holds no marks"), ("x,y\n", "only a header.*no marks")]
)
def test_csv_empty(tmp_path: Path, text: str, match: str) -> None:
    with pytest.raises(AnnotationError, match=rf"clicks\.csv.*{match}"):
        read_annotations(write(tmp_path, "clicks.csv", text))


def test_csv_wrong_field_count(tmp_path: Path) -> None:
    path = write(tmp_path, "clicks.csv", "x,y\n1,2,3\n")
    with pytest.raises(AnnotationError, match=r"row 1 \(line 2\) has 3 fields.*header has 2"):
        read_annotations(path)


def test_csv_bad_object(tmp_path: Path) -> None:
    path = write(tmp_path, "clicks.csv", "x,y,object\n1,2,blob\n")
    with pytest.raises(AnnotationError, match=r"clicks\.csv: row 1 \(line 2\): object 'blob'"):
        read_annotations(path)


def test_csv_squiggle_id_polyline(tmp_path: Path) -> None:
    text = "x,y,label,squiggle_id\n1,1,,\n10,10,gland,g1\n20,10,,g1\n5,5,,\n30,20,,g1\n"
    table = read_annotations(write(tmp_path, "marks.csv", text))
    assert table["kind"].tolist() == ["point", "squiggle", "point"]
    assert table["object"].tolist() == ["nucleus", "gland", "nucleus"]
    assert table["label"].tolist() == [None, "gland", None]
    assert table.geometry.iloc[1].equals(LineString([(10, 10), (20, 10), (30, 20)]))
    assert table["source"].iloc[1] == "marks.csv:squiggle g1 (rows 2-5)"
    assert table["click_id"].tolist() == [0, 1, 2]


def test_csv_single_point_squiggle(tmp_path: Path) -> None:
    path = write(tmp_path, "marks.csv", "x,y,squiggle_id\n1,1,\n10,10,g7\n")
    with pytest.raises(AnnotationError, match=r"marks\.csv: squiggle_id 'g7'.*two distinct points"):
        read_annotations(path)


def test_negative_coordinates_are_read(tmp_path: Path) -> None:
    table = read_annotations(write(tmp_path, "clicks.csv", "x,y\n-5,2\n"))
    assert coords(table) == [[(-5.0, 2.0)]]


# ---------------------------------------------------------------- QuPath GeoJSON


def test_geojson_feature_collection(tmp_path: Path) -> None:
    features = [
        feature({"type": "Point", "coordinates": [1, 2]}, {"classification": {"name": "T"}}),
        feature({"type": "MultiPoint", "coordinates": [[3, 4], [5, 6]]}, {"name": "L"}),
        feature({"type": "LineString", "coordinates": [[0, 0], [9, 9]]}, {"label": "G"}),
        feature(
            {"type": "MultiLineString", "coordinates": [[[0, 0], [1, 0]], [[5, 5], [6, 6]]]},
            {"classification": "G2"},
        ),
    ]
    path = write(
        tmp_path, "marks.geojson", json.dumps({"type": "FeatureCollection", "features": features})
    )
    table = read_annotations(path)
    assert table["kind"].tolist() == ["point", "point", "point", "squiggle", "squiggle"]
    assert table["object"].tolist() == ["nucleus"] * 3 + ["gland"] * 2
    assert table["label"].tolist() == ["T", "L", "L", "G", "G2"]
    assert table["source"].tolist() == [
        "marks.geojson:feature 1",
        "marks.geojson:feature 2 point 1",
        "marks.geojson:feature 2 point 2",
        "marks.geojson:feature 3",
        "marks.geojson:feature 4",
    ]
    assert table.geometry.iloc[2].equals(Point(5, 6))
    assert table.geometry.iloc[4].equals(MultiLineString([[(0, 0), (1, 0)], [(5, 5), (6, 6)]]))


def test_geojson_bare_list_and_single_feature(tmp_path: Path) -> None:
    one = feature({"type": "Point", "coordinates": [1, 2]})
    two = feature({"type": "Point", "coordinates": [3, 4]})
    table = read_annotations(write(tmp_path, "a.json", json.dumps([one, two])))
    assert coords(table) == [[(1.0, 2.0)], [(3.0, 4.0)]]
    table = read_annotations(write(tmp_path, "b.geojson", json.dumps(one)))
    assert table["source"].tolist() == ["b.geojson:feature 1"]


def test_geojson_polygon_refused(tmp_path: Path) -> None:
    square = {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]}
    features = [feature({"type": "Point", "coordinates": [1, 2]}), feature(square)]
    path = write(tmp_path, "marks.geojson", json.dumps(features))
    with pytest.raises(
        AnnotationError, match=r"marks\.geojson: feature 2: geometry type 'Polygon'.*Point, Multi"
    ):
        read_annotations(path)


def test_geojson_null_geometry(tmp_path: Path) -> None:
    path = write(tmp_path, "marks.geojson", json.dumps([feature(None)]))
    with pytest.raises(AnnotationError, match=r"marks\.geojson: feature 1 has no geometry"):
        read_annotations(path)


def test_geojson_invalid_json(tmp_path: Path) -> None:
    path = write(tmp_path, "marks.geojson", '{"type": "FeatureCollection", "features": [')
    with pytest.raises(AnnotationError, match=r"marks\.geojson is not valid JSON \(Expecting"):
        read_annotations(path)


def test_geojson_nan_coordinate(tmp_path: Path) -> None:
    geometry = '{"type": "MultiPoint", "coordinates": [[1, 2], [NaN, 3]]}'
    path = write(tmp_path, "marks.geojson", f'[{{"type": "Feature", "geometry": {geometry}}}]')
    with pytest.raises(AnnotationError, match=r"marks\.geojson: feature 1 point 2, x.*not finite"):
        read_annotations(path)


def test_geojson_empty_collection(tmp_path: Path) -> None:
    path = write(tmp_path, "marks.geojson", '{"type": "FeatureCollection", "features": []}')
    with pytest.raises(AnnotationError, match=r"marks\.geojson holds no marks"):
        read_annotations(path)


def test_geojson_degenerate_line(tmp_path: Path) -> None:
    line = feature({"type": "LineString", "coordinates": [[1, 1], [1, 1]]})
    path = write(tmp_path, "marks.geojson", json.dumps([line]))
    with pytest.raises(AnnotationError, match=r"feature 1: a squiggle needs at least two distinct"):
        read_annotations(path)


def test_object_by_label(tmp_path: Path) -> None:
    features = [
        feature({"type": "Point", "coordinates": [1, 2]}, {"classification": {"name": "lymph"}}),
        feature({"type": "Point", "coordinates": [3, 4]}, {"classification": {"name": "tumour"}}),
        feature({"type": "Point", "coordinates": [5, 6]}),
        feature({"type": "LineString", "coordinates": [[0, 0], [9, 9]]}, {"label": "lumen"}),
    ]
    path = write(tmp_path, "marks.geojson", json.dumps(features))
    table = read_annotations(
        path, default_object="cell", object_by_label={"tumour": "nucleus", "lumen": "cell"}
    )
    assert table["object"].tolist() == ["cell", "nucleus", "cell", "cell"]


# ---------------------------------------------------------------- GeoParquet / Parquet


def test_geoparquet_round_trip(tmp_path: Path) -> None:
    frame = gpd.GeoDataFrame(
        {"classification": ["a", None, "g"], "object": [None, "cell", None]},
        geometry=[Point(1, 2), MultiPoint([(3, 4), (5, 6)]), LineString([(0, 0), (7, 8)])],
        crs=None,
    )
    path = tmp_path / "marks.parquet"
    frame.to_parquet(path, schema_version="1.1.0")
    table = read_annotations(path)
    assert table["kind"].tolist() == ["point", "point", "point", "squiggle"]
    assert table["label"].tolist() == ["a", None, None, "g"]
    assert table["object"].tolist() == ["nucleus", "cell", "cell", "gland"]
    assert table["source"].tolist() == [
        "marks.parquet:row 1",
        "marks.parquet:row 2 point 1",
        "marks.parquet:row 2 point 2",
        "marks.parquet:row 3",
    ]
    again = tmp_path / "again.geoparquet"
    table.to_parquet(again, schema_version="1.1.0")
    back = read_annotations(again)
    assert back.geometry.geom_equals(table.geometry).all()
    assert back["object"].tolist() == table["object"].tolist()


def test_geoparquet_polygon_refused(tmp_path: Path) -> None:
    frame = gpd.GeoDataFrame(geometry=[Point(1, 2), Polygon([(0, 0), (1, 0), (1, 1)])], crs=None)
    frame.to_parquet(tmp_path / "marks.parquet", schema_version="1.1.0")
    with pytest.raises(AnnotationError, match=r"marks\.parquet: row 2: geometry type 'Polygon'"):
        read_annotations(tmp_path / "marks.parquet")


def test_plain_parquet_with_x_y(tmp_path: Path) -> None:
    pd.DataFrame({"x": [1.0, 3.0], "y": [2.0, 4.0], "label": ["a", None]}).to_parquet(
        tmp_path / "clicks.parquet"
    )
    table = read_annotations(tmp_path / "clicks.parquet")
    assert coords(table) == [[(1.0, 2.0)], [(3.0, 4.0)]]
    assert table["label"].tolist() == ["a", None]


def test_plain_parquet_nan(tmp_path: Path) -> None:
    pd.DataFrame({"x": [1.0, np.nan], "y": [2.0, 4.0]}).to_parquet(tmp_path / "clicks.parquet")
    with pytest.raises(AnnotationError, match=r"clicks\.parquet: row 2, column 'x'.*not finite"):
        read_annotations(tmp_path / "clicks.parquet")


def test_corrupt_parquet(tmp_path: Path) -> None:
    path = write(tmp_path, "clicks.parquet", "not parquet")
    with pytest.raises(AnnotationError, match=r"cannot read Parquet file .*clicks\.parquet"):
        read_annotations(path)


# ---------------------------------------------------------------- ASAP XML


def test_asap_dot_pointset_spline(tmp_path: Path) -> None:
    text = asap(
        asap_annotation("Dot", [(1, 2)], group="tumour"),
        asap_annotation("PointSet", [(3, 4), (5, 6)]),
        asap_annotation("Spline", [(0, 0), (10, 0), (10, 10)], group="gland"),
    )
    table = read_annotations(write(tmp_path, "marks.xml", text))
    assert table["kind"].tolist() == ["point", "point", "point", "squiggle"]
    assert table["label"].tolist() == ["tumour", None, None, "gland"]
    assert table["object"].tolist() == ["nucleus", "nucleus", "nucleus", "gland"]
    assert table["source"].tolist() == [
        "marks.xml:annotation 1",
        "marks.xml:annotation 2 point 1",
        "marks.xml:annotation 2 point 2",
        "marks.xml:annotation 3",
    ]
    assert table.geometry.iloc[3].equals(LineString([(0, 0), (10, 0), (10, 10)]))


def test_asap_coordinates_sorted_by_order(tmp_path: Path) -> None:
    body = (
        '<Annotation Type="PolyLine" PartOfGroup="None"><Coordinates>'
        '<Coordinate Order="1" X="5" Y="5"/><Coordinate Order="0" X="0" Y="0"/>'
        "</Coordinates></Annotation>"
    )
    table = read_annotations(write(tmp_path, "marks.xml", asap(body)))
    assert coords(table) == [[(0.0, 0.0), (5.0, 5.0)]]


def test_asap_polygon_refused(tmp_path: Path) -> None:
    text = asap(asap_annotation("Dot", [(1, 2)]), asap_annotation("Polygon", [(0, 0), (1, 1)]))
    with pytest.raises(AnnotationError, match=r"marks\.xml: annotation 2: .*'Polygon'.*outputs"):
        read_annotations(write(tmp_path, "marks.xml", text))


def test_asap_bad_number(tmp_path: Path) -> None:
    text = asap(asap_annotation("Dot", [(1, float("inf"))]))
    with pytest.raises(AnnotationError, match=r"marks\.xml: annotation 1, coordinate 1, Y"):
        read_annotations(write(tmp_path, "marks.xml", text))


def test_asap_missing_coordinate(tmp_path: Path) -> None:
    body = '<Annotation Type="Dot"><Coordinates><Coordinate Y="5"/></Coordinates></Annotation>'
    with pytest.raises(AnnotationError, match=r"marks\.xml: annotation 1, coordinate 1, X.*None"):
        read_annotations(write(tmp_path, "marks.xml", asap(body)))


def test_asap_entity_expansion_refused(tmp_path: Path) -> None:
    entities = '<!ENTITY lol "lol">' + "".join(
        f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">'
        for i in range(1, 10)
    )
    text = (
        f'<?xml version="1.0"?><!DOCTYPE ASAP_Annotations [{entities}]>'
        '<ASAP_Annotations><Annotations><Annotation Name="&lol9;" Type="Dot" '
        'PartOfGroup="None"><Coordinates><Coordinate Order="0" X="1" Y="2"/></Coordinates>'
        "</Annotation></Annotations></ASAP_Annotations>"
    )
    with pytest.raises(AnnotationError, match=r"cannot parse ASAP XML .*marks\.xml.*Entit"):
        read_annotations(write(tmp_path, "marks.xml", text))


def test_asap_malformed_and_wrong_root(tmp_path: Path) -> None:
    with pytest.raises(AnnotationError, match=r"cannot parse ASAP XML .*bad\.xml"):
        read_annotations(write(tmp_path, "bad.xml", "<ASAP_Annotations><Annotations>"))
    with pytest.raises(AnnotationError, match=r"other\.xml: root element is <Annotations>"):
        read_annotations(write(tmp_path, "other.xml", "<Annotations/>"))


# ---------------------------------------------------------------- slide bounds


def test_all_outside_is_an_error() -> None:
    table = click_table_from_points([[51200.0, 80.0], [60000.0, 10.0]], source="clicks.csv")
    with pytest.raises(
        AnnotationError,
        match=r"clicks\.csv: all 2 marks lie outside the slide \(width 50000, height 40000\), "
        r"e\.g\. clicks\.csv:row 1 \(x=51200, y=80\).*level-0 pixel coordinates",
    ):
        validate_clicks(table, width=50000, height=40000, path="clicks.csv")


def test_some_outside_gives_a_mask(tmp_path: Path) -> None:
    text = "x,y,squiggle_id\n5,5,\n-1,5,\n10,5,\n9.99,9.99,\n-5,-5,s\n-1,20,s\n-5,-5,t\n20,20,t\n"
    table = read_annotations(write(tmp_path, "marks.csv", text))
    assert validate_clicks(table, width=10, height=10, path="marks.csv") is table
    mask = outside_slide_mask(table, 10, 10)
    assert mask.dtype == bool
    assert mask.tolist() == [False, True, True, False, True, False]


def test_validate_rechecks_duplicates() -> None:
    table = pd.concat([click_table_from_points([[1.0, 2.0]])] * 2, ignore_index=True)
    with pytest.raises(AnnotationError, match=r"x\.csv: duplicated click"):
        validate_clicks(table, width=10, height=10, path="x.csv")


# ---------------------------------------------------------------- property test


def _key(value: float) -> float:
    return float(np.round(value, 2)) + 0.0


finite = st.floats(min_value=-1e9, max_value=1e9, allow_nan=False, allow_infinity=False)


@settings(max_examples=50, deadline=None)
@given(
    st.lists(
        st.tuples(finite, finite),
        min_size=1,
        max_size=20,
        unique_by=lambda p: (_key(p[0]), _key(p[1])),
    )
)
def test_csv_round_trip(points: list[tuple[float, float]]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "clicks.csv"
        path.write_text("x,y\n" + "".join(f"{x!r},{y!r}\n" for x, y in points))
        table = read_annotations(path)
    assert table["click_id"].tolist() == list(range(len(points)))
    assert [(g.x, g.y) for g in table.geometry] == points


def test_hostile_geojson_is_refused_with_the_feature(tmp_path) -> None:
    """#13 defect 6: deep nesting gave RecursionError, a coordinate of 10**400 OverflowError."""
    point = '{"type":"Feature","geometry":{"type":"Point","coordinates":[%s,2]},"properties":%s}'
    deep = tmp_path / "deep.geojson"
    deep.write_text("[" + point % ("1", "[" * 50000 + "]" * 50000) + "]")
    with pytest.raises(AnnotationError, match=r"deep\.geojson: JSON nested too deeply"):
        read_annotations(deep)
    huge = tmp_path / "huge.geojson"
    huge.write_text("[" + point % ("1" + "0" * 400, "{}") + "]")
    with pytest.raises(AnnotationError, match=r"huge\.geojson: feature 1, x: value inf"):
        read_annotations(huge)
    fine = tmp_path / "fine.geojson"
    fine.write_text("[" + point % ("7", '{"id": 3}') + "]")
    assert [(g.x, g.y) for g in read_annotations(fine).geometry] == [(7.0, 2.0)]


def test_underscored_numbers_are_not_read_as_others(tmp_path) -> None:
    """#13 item 8: Python's float() reads '1_00' as 100."""
    path = tmp_path / "m.csv"
    path.write_text("x,y\n1_00,5\n")
    with pytest.raises(AnnotationError, match=r"m\.csv: row 1 .*'1_00' is not a number"):
        read_annotations(path)


def _consep_mat(path: Path, labels: np.ndarray, **extra: object) -> np.ndarray:
    """A CoNSeP-style label file: centroids as OpenCV moments give them (pixel-centre origin)."""
    from scipy.io import savemat
    from scipy.ndimage import center_of_mass

    ids = np.unique(labels)[1:]
    rc = np.array(center_of_mass(np.ones_like(labels), labels, ids)).reshape(-1, 2)
    fields = {"inst_map": labels, "inst_centroid": rc[:, ::-1], "inst_type": (ids % 3 + 1)[:, None]}
    savemat(path, {**fields, **extra})
    return rc[:, ::-1] + 0.5


def test_consep_mat_centroids_and_types(tmp_path: Path) -> None:
    from nuclick_core.data.synth import nuclei_scene

    labels = nuclei_scene(size=(96, 96), n_nuclei=6, seed=3).labels
    want = _consep_mat(tmp_path / "tile.mat", labels)
    table = read_annotations(tmp_path / "tile.mat")
    got = np.column_stack([table.geometry.x, table.geometry.y])
    # the same click the project's own centroid clicks give (pixel-corner origin)
    from nuclick_core.data.marks import centroid_clicks

    np.testing.assert_allclose(got, want)
    np.testing.assert_allclose(got, centroid_clicks(labels)[1])
    ids = np.unique(labels)[1:]
    assert table["label"].tolist() == [str(i % 3 + 1) for i in ids]
    assert table["source"].iloc[1] == "tile.mat:centroid 2"


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"detection": np.ones((3, 2))}, "no 'inst_centroid' variable"),
        ({"inst_centroid": np.ones((3, 3))}, r"shape \(3, 3\); expected N x 2"),
        ({"inst_centroid": np.ones((3, 2)), "inst_type": np.ones(2)}, "2 entries for 3"),
        ({"inst_centroid": np.array([[1.0, np.nan]])}, "centroid 1 is not finite"),
    ],
)
def test_bad_mat_files_name_the_problem(tmp_path: Path, fields: dict, match: str) -> None:
    from scipy.io import savemat

    savemat(tmp_path / "bad.mat", fields)
    with pytest.raises(AnnotationError, match=match):
        read_annotations(tmp_path / "bad.mat")
    (tmp_path / "junk.mat").write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(200))
    with pytest.raises(AnnotationError, match=r"cannot read MATLAB file .*junk\.mat"):
        read_annotations(tmp_path / "junk.mat")


def test_empty_mat_file_is_refused_like_other_formats(tmp_path: Path) -> None:
    from scipy.io import savemat

    savemat(tmp_path / "none.mat", {"inst_centroid": np.zeros((0, 2))})
    with pytest.raises(AnnotationError, match=r"none\.mat holds no marks"):
        read_annotations(tmp_path / "none.mat")
