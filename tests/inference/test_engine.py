"""The segmentation run: contract of the output, independence of tiling and batch size."""

from __future__ import annotations

import numpy as np
import pytest
import shapely

from nuclick_core.inference.engine import ModelGeometry, RunOptions, segment_clicks
from nuclick_core.inference.models import load_card
from nuclick_core.inference.postprocess import PostprocessParams
from nuclick_core.inference.runtime import OnnxPredictor
from nuclick_core.io.slides import open_slide
from tests.conftest import DarknessPredictor, click_table

PARAMS = PostprocessParams(threshold=0.5, min_size=5, min_hole=10)


def _geometries_equal(a, b) -> bool:
    for ga, gb in zip(a.geometry.values, b.geometry.values, strict=True):
        if (ga is None) != (gb is None):
            return False
        if ga is not None and not ga.equals_exact(gb, 0.0):
            return False
    return (a["status"].to_numpy() == b["status"].to_numpy()).all()


def _assert_contract(table, n_clicks: int) -> None:
    assert len(table) == n_clicks
    assert table["click_id"].tolist() == list(range(n_clicks))
    ok = table[table["status"] == "ok"].geometry.values
    assert len(ok) > 0
    assert shapely.is_valid(ok).all() and not shapely.is_empty(ok).any()
    tree = shapely.STRtree(ok)
    a, b = tree.query(ok, predicate="intersects")
    pairs = a < b
    if pairs.any():
        inter = shapely.area(shapely.intersection(ok[a[pairs]], ok[b[pairs]]))
        assert inter.max() == 0.0
    for g in ok:
        assert g.geom_type == "Polygon"  # never fragmented by a neighbour


def test_disks_are_segmented_without_overlap(demo_scene) -> None:
    path, centres = demo_scene
    slide = open_slide(path, mpp=0.5, fallback_mpp=0.5)
    table = segment_clicks(
        slide, click_table(centres), DarknessPredictor(64), ModelGeometry(64, 0.5, PARAMS)
    ).table
    _assert_contract(table, len(centres))
    assert (table["status"] == "ok").all()
    # an isolated disk of radius 8 has area ~201 px; touching pairs split between them
    isolated = table.iloc[[2, 5, 6, 7, 8, 11]]
    assert np.allclose(isolated["area_px"], np.pi * 8**2, rtol=0.15)
    for k, (x, y) in enumerate(centres):
        assert table.geometry.iloc[k].contains(shapely.Point(x, y))


@pytest.mark.parametrize("batch_size", [1, 7, 32])
@pytest.mark.parametrize("tile", [16, 100, 4096])
def test_tiled_equals_single_region_and_batch_independent(demo_scene, batch_size, tile) -> None:
    path, centres = demo_scene
    slide = open_slide(path, mpp=0.5, fallback_mpp=0.5)
    geom = ModelGeometry(64, 0.5, PARAMS)
    ref = segment_clicks(
        slide,
        click_table(centres),
        DarknessPredictor(64),
        geom,
        batch_size=1,
        options=RunOptions(tile=100000),
    ).table
    pred = DarknessPredictor(64)
    got = segment_clicks(
        slide,
        click_table(centres),
        pred,
        geom,
        batch_size=batch_size,
        options=RunOptions(tile=tile),
    ).table
    assert max(pred.calls) <= batch_size
    assert _geometries_equal(ref, got)


def test_resampled_slide_tiling_and_scaling(demo_scene) -> None:
    """A 0.25 um/px slide read at the model's 0.5: shapes come back in level-0 pixels."""
    path, centres = demo_scene
    slide = open_slide(path, mpp=0.25, fallback_mpp=0.5)
    geom = ModelGeometry(64, 0.5, PARAMS)
    one = segment_clicks(
        slide, click_table(centres), DarknessPredictor(64), geom, options=RunOptions(tile=100000)
    ).table
    tiled = segment_clicks(
        slide,
        click_table(centres),
        DarknessPredictor(64),
        geom,
        batch_size=5,
        options=RunOptions(tile=20),
    ).table
    assert _geometries_equal(one, tiled)
    iso = one.iloc[[2, 5, 6, 7, 8, 11]]
    assert np.allclose(iso["area_px"], np.pi * 8**2, rtol=0.3)  # level-0 px, not model px
    assert np.allclose(iso["area_um2"], iso["area_px"] * 0.25**2)


def test_onnx_batch_sizes_tiles_and_threads_agree(demo_scene, tiny_model) -> None:
    """Batch size, tile size and ONNX Runtime's thread count never change the result."""
    path, centres = demo_scene
    card = load_card(tiny_model)
    slide = open_slide(path, mpp=0.5, fallback_mpp=0.5)
    geom = ModelGeometry(card.patch_size, card.mpp, card.postprocess)
    results = []
    for bs, tile, threads in [(1, 100000, 1), (7, 50, 2), (32, 30, 3)]:
        pred = OnnxPredictor(card, batch_size=bs, threads=threads)
        results.append(
            segment_clicks(
                slide,
                click_table(centres),
                pred,
                geom,
                batch_size=bs,
                options=RunOptions(tile=tile),
            ).table
        )
    assert (results[0]["status"] == "ok").sum() >= len(centres) // 2  # not all-None geometries
    assert _geometries_equal(results[0], results[1])
    assert _geometries_equal(results[0], results[2])


def test_statuses_for_marks_that_cannot_be_segmented(demo_scene) -> None:
    path, centres = demo_scene
    slide = open_slide(path, mpp=0.5, fallback_mpp=0.5)
    xy = np.vstack([centres[:2], [[5000, 10]], [[395, 5]], [[-3, 40]]])
    table = segment_clicks(
        slide, click_table(xy), DarknessPredictor(64), ModelGeometry(64, 0.5, PARAMS)
    ).table
    assert table["status"].tolist()[:2] == ["ok", "ok"]
    assert table["status"].iloc[2] == "outside_slide"
    assert table["status"].iloc[3] == "on_background"  # white glass
    assert table["status"].iloc[4] == "outside_slide"
    assert table.geometry.iloc[2:].isna().all()


def test_empty_click_table(demo_scene) -> None:
    path, _ = demo_scene
    slide = open_slide(path, mpp=0.5, fallback_mpp=0.5)
    table = segment_clicks(
        slide, click_table(np.zeros((0, 2))), DarknessPredictor(64), ModelGeometry(64, 0.5, PARAMS)
    ).table
    assert len(table) == 0


def test_memory_is_bounded_by_a_band_of_tiles(tmp_path) -> None:
    from PIL import Image

    from tests.conftest import disks_image

    centres = np.array([[30 + 40 * (k % 3), 20 + 30 * (k // 3)] for k in range(120)], float)
    path = tmp_path / "tall.png"
    Image.fromarray(disks_image(shape=(1240, 160), centres=centres, radius=6)).save(path)
    slide = open_slide(path, mpp=0.5, fallback_mpp=0.5)
    geom = ModelGeometry(64, 0.5, PARAMS)
    streamed = segment_clicks(
        slide,
        click_table(centres),
        DarknessPredictor(64),
        geom,
        batch_size=8,
        options=RunOptions(tile=64, settle_every=8),
    )
    a = streamed.table
    b = segment_clicks(
        slide,
        click_table(centres),
        DarknessPredictor(64),
        geom,
        batch_size=8,
        options=RunOptions(tile=100000),
    ).table
    assert _geometries_equal(a, b)
    assert (a["status"] == "ok").all()
    assert streamed.stats.peak_held_instances < len(centres) / 3


def _tables_identical(a, b) -> bool:
    score_a, score_b = a["score"].to_numpy(), b["score"].to_numpy()
    same_score = (score_a == score_b) | (np.isnan(score_a) & np.isnan(score_b))
    return _geometries_equal(a, b) and bool(same_score.all())


@pytest.mark.parametrize("overlap", ["resolve", "last_wins"])
def test_a_wide_slide_holds_a_strip_of_each_tile_row_not_the_row(tmp_path, overlap) -> None:
    """Settling what no later patch reaches, also within a tile row, gives the table of a run
    that settles everything at the end, while holding far fewer instances than a tile row has
    clicks."""
    from PIL import Image

    from tests.conftest import disks_image

    rng = np.random.default_rng(3)
    centres = rng.uniform([8, 8], [3064, 760], (900, 2))  # touching and overlapping disks
    path = tmp_path / "wide.png"
    Image.fromarray(disks_image(shape=(768, 3072), centres=centres, radius=6)).save(path)
    slide = open_slide(path, mpp=0.5, fallback_mpp=0.5)
    geom = ModelGeometry(64, 0.5, PARAMS)

    def run(**options):
        return segment_clicks(
            slide,
            click_table(centres),
            DarknessPredictor(64),
            geom,
            batch_size=8,
            options=RunOptions(**options),
            overlap=overlap,
        )

    streamed = run(tile=256, settle_every=16)
    at_the_end = run(tile=100000)
    assert at_the_end.stats.peak_held_instances == len(centres)
    assert _tables_identical(streamed.table, at_the_end.table)
    assert _tables_identical(run(tile=256).table, at_the_end.table)
    if overlap == "resolve":
        assert (streamed.table["status"] == "lost_to_neighbour").sum() < 20
    per_tile_row = len(centres) / 3
    assert streamed.stats.peak_held_instances < 0.75 * per_tile_row


class _FixedPredictor:
    """A stand-in network with known output: the same probability map for every patch."""

    def __init__(self, prob: np.ndarray) -> None:
        self.patch_size = prob.shape[0]
        self.prob = prob.astype(np.float32)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return np.repeat(self.prob[None], len(batch), axis=0)


def _off_centre_disk(p: int, dy: int, radius: int) -> np.ndarray:
    yy, xx = np.mgrid[:p, :p]
    return (((yy - p // 2 - dy) ** 2 + (xx - p // 2) ** 2) <= radius**2).astype(np.float32)


@pytest.mark.parametrize(
    ("prob", "expected"),
    [
        (np.zeros((64, 64)), "empty"),
        (_off_centre_disk(64, 20, 5), "click_outside_mask"),  # 15 px from the click
        (_off_centre_disk(64, 0, 5), "ok"),
    ],
)
def test_known_network_outputs_reach_the_table_with_their_status(
    demo_scene, prob, expected
) -> None:
    """#13: `empty` and `click_outside_mask` never reached an instance table in a test."""
    image, centres = demo_scene
    slide = open_slide(image, mpp=0.5, fallback_mpp=0.5)
    picked = centres[[2, 5, 8]]  # far apart: no overlaps
    table = segment_clicks(
        slide, click_table(picked), _FixedPredictor(prob), ModelGeometry(64, 0.5, PARAMS)
    ).table
    assert table["click_id"].tolist() == list(range(len(picked)))
    assert table["status"].tolist() == [expected] * len(picked)
    if expected == "ok":
        assert all(abs(g.area - np.pi * 25) < 15 for g in table.geometry)
    else:
        assert table.geometry.isna().all()


def test_the_stand_in_network_reads_the_exclusion_map(demo_scene) -> None:
    """The stand-in predictor suppresses foreground near other clicks, so the tiled, batched
    and streamed equalities above would catch an exclusion map built wrongly at a tile border."""
    path, centres = demo_scene
    slide = open_slide(path, mpp=0.5, fallback_mpp=0.5)
    pair = centres[:2]  # a touching pair
    geom = ModelGeometry(64, 0.5, PARAMS)
    runs = [
        segment_clicks(slide, click_table(pair), DarknessPredictor(64), geom, exclusion=e).table
        for e in (True, False)
    ]
    with_maps, without = (r["score"].to_numpy() for r in runs)
    assert (with_maps < without - 0.01).all()


class _ByClickShade:
    """A stand-in network with known output: a large confident disk when the click is on a
    dark pixel, a small unsure one when it is on a mid-grey pixel."""

    patch_size = 64

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        out = np.zeros((len(batch), 64, 64), np.float32)
        for k, x in enumerate(batch):
            r, c = np.argwhere(x[3] > 0)[0]
            dark = x[:3, r, c].mean() < 0.3
            out[k] = _off_centre_disk(64, 0, 10 if dark else 2) * (0.9 if dark else 0.6)
        return out


def test_a_click_whose_every_pixel_goes_to_its_neighbour_is_lost_to_neighbour(tmp_path) -> None:
    """#13: lost_to_neighbour never reached an instance table in a test."""
    from PIL import Image

    img = np.full((120, 120, 3), 240, np.uint8)
    yy, xx = np.mgrid[:120, :120]
    img[(yy - 60) ** 2 + (xx - 60) ** 2 <= 100] = 40
    img[62:65, 62:65] = 128  # the second click's pixel: mid-grey, inside the dark disk
    Image.fromarray(img).save(tmp_path / "s.png")
    slide = open_slide(tmp_path / "s.png", mpp=0.5, fallback_mpp=0.5)
    clicks = click_table(np.array([[60.5, 60.5], [63.5, 63.5]]))
    table = segment_clicks(slide, clicks, _ByClickShade(), ModelGeometry(64, 0.5, PARAMS)).table
    assert table["status"].tolist() == ["ok", "lost_to_neighbour"]
    assert table.geometry.iloc[1] is None and table.geometry.iloc[0].area > 250


def test_a_failed_spilling_run_leaves_no_spill_file(demo_scene, tmp_path) -> None:
    path, centres = demo_scene
    slide = open_slide(path, mpp=0.5, fallback_mpp=0.5)

    class Failing(DarknessPredictor):
        def __call__(self, batch):  # a later batch fails, after earlier ones have settled
            if len(self.calls) >= 3:
                raise RuntimeError("device lost")
            return super().__call__(batch)

    failing, spill = Failing(64), tmp_path / "spill"
    spill.mkdir()

    with pytest.raises(RuntimeError, match="device lost"):
        segment_clicks(
            slide,
            click_table(centres),
            failing,
            ModelGeometry(64, 0.5, PARAMS),
            batch_size=2,
            options=RunOptions(tile=32, spill_dir=str(spill), readers=1),
        )
    assert len(failing.calls) == 3 and list(spill.iterdir()) == []
