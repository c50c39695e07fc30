"""Squiggle-guided gland segmentation: relax and down-scale paths, slide border, holes."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
import shapely
from PIL import Image
from skimage.draw import disk

from nuclick_core.inference.engine import ModelGeometry, segment_clicks
from nuclick_core.inference.postprocess import PostprocessParams
from nuclick_core.inference.squiggles import plan_squiggle, squiggle_object
from nuclick_core.io.annotations import squiggle_table
from nuclick_core.io.slides import open_slide

P = 64
PARAMS = PostprocessParams(threshold=0.5, min_size=20, min_hole=8)
GEOM = ModelGeometry(P, 1.0, PARAMS, mark="squiggle")


class DarkPredictor:
    """Foreground = dark pixels (ignores the maps): a stand-in network for glands."""

    patch_size = P

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return (batch[:, :3].mean(1) < 0.5).astype(np.float32)


def _ring_image(shape, centre, r_out, r_in) -> np.ndarray:
    img = np.full((*shape, 3), 240, np.uint8)
    rr, cc = disk(centre, r_out, shape=shape)
    img[rr, cc] = (90, 40, 110)
    if r_in > 0:
        rr, cc = disk(centre, r_in, shape=shape)
        img[rr, cc] = 240
    return img


def _table(lines) -> gpd.GeoDataFrame:
    return squiggle_table([shapely.LineString(ln) for ln in lines], source="t")


def _run(tmp_path, img, lines):
    path = tmp_path / "g.png"
    Image.fromarray(img).save(path)
    slide = open_slide(path, mpp=1.0, fallback_mpp=1.0)
    return segment_clicks(slide, _table(lines), DarkPredictor(), GEOM, batch_size=2).table


def test_plan_relaxes_small_boxes_and_scales_large_ones() -> None:
    small = plan_squiggle([np.array([[10.0, 10.0], [20.0, 14.0]])], P)
    assert small.side == P and small.scale(P) == 1.0
    big = plan_squiggle([np.array([[0.0, 0.0], [100.0, 30.0]])], P)
    assert big.side > P and big.scale(P) < 1.0
    assert big.origin_uv[0] <= 0 and big.origin_uv[0] + big.side >= 100


def test_squiggle_around_a_hole_keeps_it(tmp_path) -> None:
    img = _ring_image((100, 100), (50, 50), 20, 8)
    # an arc inside the ring's wall, around the lumen
    t = np.linspace(0.2, 2.6, 12)
    arc = np.column_stack([50 + 14 * np.cos(t), 50 + 14 * np.sin(t)])
    table = _run(tmp_path, img, [arc])
    assert table["status"].tolist() == ["ok"]
    poly = table.geometry.iloc[0]
    assert len(poly.interiors) == 1  # the lumen stays a hole
    assert not poly.contains(shapely.Point(50, 50))
    assert poly.area == pytest.approx(np.pi * (20**2 - 8**2), rel=0.1)


def test_squiggle_across_a_hole_fills_it(tmp_path) -> None:
    img = _ring_image((100, 100), (50, 50), 20, 5)
    line = np.array([[36.0, 50.0], [64.0, 50.0]])  # crosses the lumen
    table = _run(tmp_path, img, [line])
    poly = table.geometry.iloc[0]
    assert len(poly.interiors) == 0 and poly.contains(shapely.Point(50.5, 50.5))


def test_large_gland_takes_the_down_scale_path(tmp_path) -> None:
    img = _ring_image((200, 200), (100, 100), 70, 0)
    line = np.array([[50.0, 100.0], [150.0, 100.0], [100.0, 60.0]])
    table = _run(tmp_path, img, [line])
    assert table["status"].tolist() == ["ok"]
    assert table.geometry.iloc[0].area == pytest.approx(np.pi * 70**2, rel=0.06)


def test_squiggle_at_the_slide_border_and_two_glands(tmp_path) -> None:
    img = _ring_image((100, 160), (50, 10), 25, 0)  # gland cut by the left border
    rr, cc = disk((50, 120), 15, shape=img.shape[:2])
    img[rr, cc] = (90, 40, 110)
    lines = [np.array([[1.0, 45.0], [10.0, 55.0]]), np.array([[115.0, 50.0], [125.0, 50.0]])]
    table = _run(tmp_path, img, lines)
    assert table["status"].tolist() == ["ok", "ok"]
    a, b = table.geometry.values
    assert a.bounds[0] >= 0 and a.is_valid and b.is_valid
    assert a.intersection(b).area == 0
    assert b.area == pytest.approx(np.pi * 15**2, rel=0.1)


def test_clicks_are_unsupported_for_a_gland_model(tmp_path, caplog) -> None:
    img = _ring_image((80, 80), (40, 40), 20, 0)
    path = tmp_path / "g.png"
    Image.fromarray(img).save(path)
    slide = open_slide(path, mpp=1.0, fallback_mpp=1.0)
    clicks = gpd.GeoDataFrame(
        {"click_id": [0], "kind": "point", "object": "nucleus", "label": None, "source": "t"},
        geometry=[shapely.Point(40, 40)],
        crs=None,
    )
    table = segment_clicks(slide, clicks, DarkPredictor(), GEOM).table
    assert table["status"].tolist() == ["unsupported_mark"]
    # when no mark at all fits, the run says so and names the flag that would (#13, item 8)
    assert "none of the 1 marks is a line (squiggle)" in caplog.text
    assert "use --object nucleus or --object cell" in caplog.text


def test_exclusion_off_blanks_the_squiggles_exclusion_maps(tmp_path) -> None:
    img = _ring_image((80, 120), (40, 40), 20, 0)
    path = tmp_path / "g.png"
    Image.fromarray(img).save(path)
    slide = open_slide(path, mpp=1.0, fallback_mpp=1.0)
    table = _table([[(30, 40), (50, 40)], [(70, 40), (90, 40)]])
    seen: list[np.ndarray] = []

    class Recording(DarkPredictor):
        def __call__(self, batch: np.ndarray) -> np.ndarray:
            seen.append(batch.copy())
            return super().__call__(batch)

    for exclusion in (True, False):
        seen.clear()
        segment_clicks(slide, table, Recording(), GEOM, batch_size=2, exclusion=exclusion)
        marks = sum(float(b[:, 4].sum()) for b in seen)
        assert (marks > 0) == exclusion  # each squiggle sees the other one only when asked


def test_squiggle_object_needs_the_squiggle_on_foreground() -> None:
    prob = np.zeros((20, 20), np.float32)
    prob[2:10, 2:10] = 1
    squiggle = np.zeros((20, 20), bool)
    squiggle[15, 12:18] = True
    assert squiggle_object(prob, squiggle, PARAMS)[1] == "click_outside_mask"


def test_gland_training_patches_follow_the_inference_plan() -> None:
    from nuclick_core.data.labelled import LabelledImage
    from nuclick_core.data.synth import glands_scene
    from nuclick_core.training.gland_patches import GlandPatchSampler

    s = glands_scene(size=(256, 256), n_glands=3, seed=0, radius_range=(30, 60), rim_width=(8, 14))
    sampler = GlandPatchSampler([LabelledImage("g", s.image, s.labels)], patch_size=P)
    rng = np.random.default_rng(0)
    x, y, others = sampler.batch(np.arange(len(sampler)), rng)
    assert x.shape == (len(sampler), 5, P, P)
    for k in range(len(sampler)):
        incl = x[k, 3] > 0
        assert incl.sum() > 1  # a squiggle, not a click
        assert (y[k, 0][incl] > 0).mean() > 0.9  # drawn inside its gland
        assert not (y[k, 0] * others[k, 0]).any()
    a = sampler.fixed_batch(np.arange(2))
    b = sampler.fixed_batch(np.arange(2))
    assert all(np.array_equal(p, q) for p, q in zip(a, b, strict=True))


def test_segment_cli_with_a_gland_model(tmp_path) -> None:
    """`nuclick segment --object gland` end to end with a tiny random gland model."""
    from nuclick_core.cli.main import main
    from tests.conftest import export_tiny_model

    model = export_tiny_model(
        tmp_path / "gland-tiny",
        object_type="gland",
        mpp=1.0,
        postprocess={"threshold": 0.5, "min_size": 20, "min_hole": 8},
    )
    img = _ring_image((100, 120), (50, 60), 25, 8)
    Image.fromarray(img).save(tmp_path / "g.png")
    (tmp_path / "marks.csv").write_text("x,y,squiggle_id\n50,40,a\n60,35,a\n70,40,a\n100,90,\n")
    out = tmp_path / "g.parquet"
    assert (
        main(
            [
                "segment",
                "--slide",
                str(tmp_path / "g.png"),
                "--annotations",
                str(tmp_path / "marks.csv"),
                "--out",
                str(out),
                "--model",
                str(model),
                "--object",
                "gland",
                "--mpp",
                "1.0",
                "--threads",
                "1",
            ]
        )
        == 0
    )
    table = gpd.read_parquet(out).sort_values("click_id")
    assert len(table) == 2
    statuses = dict(zip(table["source"], table["status"], strict=True))
    assert any(s == "unsupported_mark" for s in statuses.values())  # the lone point


def test_committed_demo_squiggles_lie_in_the_generated_glands(tmp_path) -> None:
    """config/demo's squiggles were made from the gland demo scene; if the scene generator
    changes, this fails: regenerate them (see nuclick_core.data.demo.gland_squiggles_geojson)."""
    from pathlib import Path

    from nuclick_core.data.demo import make_gland_demo
    from nuclick_core.io.annotations import read_annotations

    _, labels_png = make_gland_demo(tmp_path)
    labels = np.array(Image.open(labels_png)).astype(np.int32)
    path = Path(__file__).parents[2] / "config" / "demo" / "synthetic_glands.squiggles.geojson"
    table = read_annotations(path, default_object="nucleus")
    assert len(table) == labels.max() and set(table["object"]) == {"gland"}
    hit = set()
    for geom in table.geometry:
        pts = shapely.get_coordinates(shapely.segmentize(geom, 1.0))
        owners = labels[np.floor(pts[:, 1]).astype(int), np.floor(pts[:, 0]).astype(int)]
        assert (owners == owners[0]).all() and owners[0] > 0  # wholly inside one gland
        hit.add(int(owners[0]))
    assert hit == set(range(1, labels.max() + 1))  # one squiggle per gland


def test_a_squiggle_beyond_eight_patches_gets_a_status_not_terabytes(tmp_path) -> None:
    """#13 defect 5: a squiggle out to 1e12 asked for 7 TiB; the box is capped and the other
    squiggles of the slide are still segmented."""
    from nuclick_core.inference.producers import MAX_SQUIGGLE_PATCHES

    img = _ring_image((100, 160), (50, 120), 15, 0)
    lines = [
        np.array([[10.0, 10.0], [1e12, 20.0]]),
        np.array([[115.0, 50.0], [125.0, 50.0]]),
        np.array([[5.0, 5.0], [5.0 + MAX_SQUIGGLE_PATCHES * P, 5.0]]),  # just over the cap
    ]
    table = _run(tmp_path, img, lines)
    assert table["status"].tolist() == ["mark_too_large", "ok", "mark_too_large"]
    assert table.geometry.iloc[1].area == pytest.approx(np.pi * 15**2, rel=0.1)
