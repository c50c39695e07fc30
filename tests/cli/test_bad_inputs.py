"""The bad-input matrix (#13): each case is a file, a model or an option a real user has, run
through ``nuclick segment`` exactly as a user runs it. Each ends in exit 2 with one message that
names the file (or flag) and the fix and leaves no output behind, or in a complete table (one
row per click) with the expected statuses."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from nuclick_core.cli.main import main
from nuclick_core.io.annotations import read_annotations
from nuclick_core.io.files import sha256_file
from nuclick_core.io.status import STATUSES

CSV = "x,y\n40,40\n120,60\n"


class Case:
    """The files of one run, made in ``tmp``: ``slide``, ``marks`` and ``model`` may be
    replaced by a case; ``argv`` is the command line."""

    def __init__(self, tmp: Path, image: Path, model: Path) -> None:
        self.tmp = tmp
        self.slide = image
        self.marks = tmp / "marks.csv"
        self.marks.write_text(CSV)
        self.model = tmp / "model"
        shutil.copytree(model, self.model)
        self.out = tmp / "out.parquet"
        self.extra: list[str] = []

    def marks_file(self, name: str, content: str | bytes) -> None:
        self.marks = self.tmp / name
        data = content.encode() if isinstance(content, str) else content
        self.marks.write_bytes(data)

    def slide_file(self, name: str, content: bytes | np.ndarray) -> None:
        self.slide = self.tmp / name
        if isinstance(content, bytes):
            self.slide.write_bytes(content)
        else:
            Image.fromarray(content).save(self.slide)

    def card(self, **changes: object) -> None:
        path = self.model / "model.json"
        card = json.loads(path.read_text())
        card.update(changes)
        path.write_text(json.dumps(card))

    def argv(self) -> list[str]:
        return [
            "segment", "--slide", str(self.slide), "--annotations", str(self.marks),
            "--out", str(self.out), "--model", str(self.model), "--mpp", "0.5",
            "--threads", "1", *self.extra,
        ]  # fmt: skip


def _geojson(geometry: str, properties: str = "{}") -> str:
    return (
        '{"type":"FeatureCollection","features":[{"type":"Feature","geometry":'
        f'{geometry},"properties":{properties}}}]}}'
    )


def _asap(coordinates: str, root: str = "ASAP_Annotations") -> str:
    return (
        f'<?xml version="1.0"?><{root}><Annotations><Annotation Name="a" Type="Dot" '
        f'PartOfGroup="None"><Coordinates>{coordinates}</Coordinates></Annotation>'
        f"</Annotations></{root}>"
    )


def _corrupt_onnx(c: Case) -> None:
    onnx = c.model / "model.onnx"
    onnx.write_bytes(onnx.read_bytes()[:300])
    c.card(sha256=sha256_file(onnx))


#: (id, how the case changes the run, message expected with exit 2)
FAILING: list[tuple[str, Callable[[Case], None], str]] = [
    # annotations: CSV/TSV
    ("csv-no-y", lambda c: c.marks_file("m.csv", "x,z\n1,2\n"), "m.csv"),
    ("csv-text", lambda c: c.marks_file("m.csv", "x,y\nabc,2\n"), "'abc' is not a number"),
    ("csv-nan", lambda c: c.marks_file("m.csv", "x,y\nnan,2\n"), "is not finite"),
    ("csv-inf", lambda c: c.marks_file("m.csv", "x,y\n1,inf\n"), "is not finite"),
    ("csv-underscore", lambda c: c.marks_file("m.csv", "x,y\n1_00,2\n"), "'1_00' is not a"),
    ("csv-empty-cell", lambda c: c.marks_file("m.csv", "x,y\n1,\n"), "m.csv: row 1"),
    ("csv-empty-file", lambda c: c.marks_file("m.csv", ""), "m.csv"),
    ("csv-binary", lambda c: c.marks_file("m.csv", b"\xff\xfe\x00\x01garbage"), "m.csv"),
    ("tsv-text", lambda c: c.marks_file("m.tsv", "x\ty\n1\tfoo\n"), "'foo' is not a number"),
    ("csv-bad-object", lambda c: c.marks_file("m.csv", "x,y,object\n1,2,mitosis\n"), "mitosis"),
    # annotations: GeoJSON
    ("geojson-invalid", lambda c: c.marks_file("m.geojson", "{not json"), "not valid JSON"),
    (
        "geojson-deep",
        lambda c: c.marks_file("m.geojson", "[" * 100000 + "]" * 100000),
        "nested too deeply",
    ),
    (
        "geojson-huge-coordinate",
        lambda c: c.marks_file(
            "m.geojson", _geojson('{"type":"Point","coordinates":[1' + "0" * 400 + ",2]}")
        ),
        "feature 1, x: value inf",
    ),
    ("geojson-null-geometry", lambda c: c.marks_file("m.geojson", _geojson("null")), "feature 1"),
    (
        "geojson-bad-properties",
        lambda c: c.marks_file(
            "m.geojson", _geojson('{"type":"Point","coordinates":[1,2]}', "[1]")
        ),
        "properties must be an object",
    ),
    ("geojson-a-number", lambda c: c.marks_file("m.geojson", "42"), "m.geojson"),
    (
        "geojson-no-coordinates",
        lambda c: c.marks_file("m.geojson", _geojson('{"type":"Point"}')),
        "m.geojson: feature 1",
    ),
    # annotations: ASAP XML, Parquet, others
    ("asap-wrong-root", lambda c: c.marks_file("m.xml", _asap("", root="Other")), "<Other>"),
    (
        "asap-entity",
        lambda c: c.marks_file(
            "m.xml", '<?xml version="1.0"?><!DOCTYPE a [<!ENTITY e "x">]><a>&e;</a>'
        ),
        "refused for safety",
    ),
    (
        "asap-bad-coordinate",
        lambda c: c.marks_file("m.xml", _asap('<Coordinate Order="0" X="abc" Y="1"/>')),
        "m.xml",
    ),
    ("parquet-garbage", lambda c: c.marks_file("m.parquet", b"PAR1garbage"), "m.parquet"),
    ("unknown-format", lambda c: c.marks_file("m.docx", "x"), "m.docx"),
    ("missing-marks", lambda c: setattr(c, "marks", c.tmp / "nope.csv"), "nope.csv"),
    # slides
    ("missing-slide", lambda c: setattr(c, "slide", c.tmp / "nope.svs"), "nope.svs"),
    ("truncated-svs", lambda c: c.slide_file("s.svs", b"II*\x00" + b"\x00" * 64), "truncated"),
    ("broken-png", lambda c: c.slide_file("s.png", b"\x89PNG\r\n\x1a\n junk"), "s.png"),
    ("unknown-image", lambda c: c.slide_file("s.xyz", b"junk"), "s.xyz"),
    ("float-image", lambda c: c.slide_file("s.tif", np.ones((50, 50), np.float32)), "floating"),
    # options
    ("mpp-zero", lambda c: c.extra.extend(["--mpp", "0"]), "mpp 0.0"),
    ("mpp-tiny", lambda c: c.extra.extend(["--mpp", "1e-6"]), "outside 0.01..100"),
    ("mpp-huge", lambda c: c.extra.extend(["--mpp", "1e6"]), "outside 0.01..100"),
    ("mpp-nan", lambda c: c.extra.extend(["--mpp", "nan"]), "mpp nan"),
    # model folders
    ("missing-model", lambda c: shutil.rmtree(c.model), "not found"),
    ("card-invalid-json", lambda c: (c.model / "model.json").write_text("{"), "model.json"),
    ("card-mpp-zero", lambda c: c.card(mpp=0), "mpp 0.0 must be a positive"),
    ("card-mpp-text", lambda c: c.card(mpp="abc"), "mistypes a field"),
    ("card-patch-size", lambda c: c.card(patch_size=100), "multiple of 32"),
    ("card-no-sha", lambda c: c.card(sha256="0" * 64), "sha256"),
    ("card-missing-field", lambda c: c.card(postprocess="x"), "model.json"),
    ("onnx-corrupt", _corrupt_onnx, "ONNX Runtime cannot load it"),
    ("wrong-object", lambda c: c.extra.extend(["--object", "cell"]), "is a nucleus model"),
    # outputs
    ("out-is-marks", lambda c: setattr(c, "out", c.marks), "would destroy the input"),
    ("out-is-slide", lambda c: setattr(c, "out", c.slide), "would destroy the input"),
    ("geojson-is-out", lambda c: c.extra.extend(["--geojson", str(c.out)]), "the same file"),
    ("out-is-folder", lambda c: setattr(c, "out", c.tmp), "is a folder"),
    ("same-click-twice", lambda c: c.marks_file("m.csv", "x,y\n40,40\n40,40\n"), "duplicated"),
    ("out-under-file", lambda c: setattr(c, "out", c.marks / "o.parquet"), "not a folder"),
]

#: (id, how the case changes the run, statuses of the table in click order)
WORKING: list[tuple[str, Callable[[Case], None], list[str] | None]] = [
    ("plain-csv", lambda c: None, ["ok", "ok"]),
    ("tsv", lambda c: c.marks_file("m.tsv", "x\ty\n40\t40\n120\t60\n"), ["ok", "ok"]),
    (
        "outside-slide",
        lambda c: c.marks_file("m.csv", "x,y\n-5,40\n40,40\n9999,1\n"),
        ["outside_slide", "ok", "outside_slide"],
    ),
    (
        "mixed-labels",
        lambda c: c.marks_file("m.csv", "x,y,label\n40,40,tumour\n120,60,\n"),
        ["ok", "ok"],
    ),
    (
        "squiggle-in-nucleus-run",
        lambda c: c.marks_file(
            "m.geojson", _geojson('{"type":"LineString","coordinates":[[1,2],[30,40]]}')
        ),
        ["unsupported_mark"],
    ),
    (
        "asap-dot",
        lambda c: c.marks_file("m.xml", _asap('<Coordinate Order="0" X="40" Y="40"/>')),
        ["ok"],
    ),
    (
        "grey16-slide",  # the demo scene as 16-bit grey: read scaled, not clipped to white
        lambda c: c.slide_file(
            "s.png", np.asarray(Image.open(c.slide).convert("L")).astype(np.uint16) * 257
        ),
        ["ok", "ok"],
    ),
]


@pytest.fixture
def case(tmp_path, demo_scene, tiny_model) -> Case:
    image, _ = demo_scene
    return Case(tmp_path, image, tiny_model)


@pytest.mark.parametrize(
    ("change", "message"), [c[1:] for c in FAILING], ids=[c[0] for c in FAILING]
)
def test_bad_input_exits_2_with_one_message_and_no_output(case, caplog, change, message) -> None:
    change(case)
    before = sorted(p.name for p in case.tmp.iterdir())
    assert main(case.argv()) == 2
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and message in errors[0].getMessage(), caplog.text
    assert "Traceback" not in caplog.text
    assert sorted(p.name for p in case.tmp.iterdir()) == before  # nothing written, nothing lost


@pytest.mark.parametrize(
    ("change", "statuses"), [c[1:] for c in WORKING], ids=[c[0] for c in WORKING]
)
def test_awkward_but_valid_input_gives_a_complete_table(case, change, statuses) -> None:
    change(case)
    assert main(case.argv()) == 0
    table = pq.read_table(case.out).to_pandas().sort_values("click_id")
    got = table["status"].tolist()
    assert len(got) == len(read_annotations(case.marks))  # one row per mark, always
    assert set(got) <= set(STATUSES)
    if statuses is not None:
        assert got == statuses
