"""Cell canvases: white cells blended on red-cell backgrounds, touching, exact labels."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage as ndi
from skimage.draw import disk

from nuclick_core.data.cell_canvases import (
    CellCutout,
    build_canvas,
    build_canvases,
    read_cells,
    split_cells,
    validation_canvases,
)
from nuclick_core.errors import DatasetError


def _cutouts(n: int = 5) -> list[CellCutout]:
    rng = np.random.default_rng(0)
    out = []
    for k in range(n):
        img = np.full((80, 80, 3), (240, 220, 180), np.uint8)
        for _ in range(6):  # red cells in the background
            rr, cc = disk(tuple(rng.integers(5, 75, 2)), 7, shape=(80, 80))
            img[rr, cc] = (220, 150, 140)
        mask = np.zeros((80, 80), bool)
        rr, cc = disk((40, 40), 18 + k, shape=(80, 80))
        mask[rr, cc] = True
        img[mask] = (150, 90, 170)
        out.append(CellCutout(f"c{k}", img, mask))
    return out


def test_canvas_labels_are_exact_and_deterministic() -> None:
    cells = _cutouts()
    a = build_canvas(cells, size=192, n_cells=6, seed=3)
    b = build_canvas(cells, size=192, n_cells=6, seed=3)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.labels, b.labels)
    ids = np.unique(a.labels)[1:]
    assert len(ids) >= 3 and ids.tolist() == list(range(1, len(ids) + 1))
    for i in ids:
        assert ndi.label(a.labels == i)[1] == 1  # one piece per cell
    # cells are darker (purple) than the background
    assert a.image[a.labels > 0].mean() < a.image[a.labels == 0].mean()


def test_canvas_variety_varies_crowding_and_only_when_asked() -> None:
    cells = _cutouts()
    plain = build_canvases(cells, 6, size=192, n_cells=6, seed=2)
    none = build_canvases(cells, 6, size=192, n_cells=6, seed=2, variety=0.0)
    assert all(np.array_equal(a.image, b.image) for a, b in zip(plain, none, strict=True))
    half = build_canvases(cells, 6, size=192, n_cells=6, seed=2, variety=0.5)
    same = [np.array_equal(a.image, b.image) for a, b in zip(plain, half, strict=True)]
    assert sum(same) == 3  # every second canvas varied, the others as without variety
    varied = build_canvases(cells, 12, size=192, n_cells=6, seed=2, variety=1.0)
    counts = [len(np.unique(c.labels)) - 1 for c in varied]
    assert min(counts) <= 4 and max(counts) >= 7  # 2 to 12 cells drawn, not always 6
    for c in varied:
        ids = np.unique(c.labels)[1:]
        assert ids.tolist() == list(range(1, len(ids) + 1))
        for i in ids:
            assert ndi.label(c.labels == i)[1] == 1
    again = build_canvases(cells, 12, size=192, n_cells=6, seed=2, variety=1.0)
    assert all(np.array_equal(a.image, b.image) for a, b in zip(varied, again, strict=True))


def test_thinned_background_fades_red_cells_to_plasma() -> None:
    from nuclick_core.data.cell_canvases import _background

    cells = _cutouts(1)
    full = _background(cells, 128, np.random.default_rng(0))
    thin = _background(cells, 128, np.random.default_rng(0), thin=0.8)
    assert thin.std(axis=(0, 1)).mean() < 0.3 * full.std(axis=(0, 1)).mean()
    zoomed = _background(cells, 128, np.random.default_rng(0), zoom=0.6)
    assert zoomed.shape == (128, 128, 3) and np.isfinite(zoomed).all()


def test_some_cells_touch() -> None:
    touching = 0
    for canvas in build_canvases(_cutouts(), 4, size=192, n_cells=6, seed=1):
        grown = ndi.grey_dilation(canvas.labels, size=3)
        touching += int(((grown != canvas.labels) & (canvas.labels > 0) & (grown > 0)).any())
    assert touching >= 2


def test_read_cells_folder(tmp_path) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    cell = _cutouts(1)[0]
    Image.fromarray(cell.image).save(tmp_path / "images" / "001.png")
    Image.fromarray(np.where(cell.mask, 255, 0).astype(np.uint8)).save(
        tmp_path / "masks" / "001.png"
    )
    cells = read_cells(tmp_path)
    assert len(cells) == 1 and np.array_equal(cells[0].mask, cell.mask)
    (tmp_path / "images" / "002.png").write_bytes((tmp_path / "images" / "001.png").read_bytes())
    with pytest.raises(DatasetError, match="002"):
        read_cells(tmp_path)


def _write_cells(root, cells) -> None:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for c in cells:
        Image.fromarray(c.image).save(root / "images" / f"{c.name}.png")
        Image.fromarray(np.where(c.mask, 255, 0).astype(np.uint8)).save(
            root / "masks" / f"{c.name}.png"
        )


def test_validation_canvases_hold_only_held_out_cells_and_do_not_depend_on_count(
    tmp_path,
) -> None:
    cells = _cutouts(5)
    train, val = split_cells(cells, ["c1", "c3"], tmp_path)
    assert [c.name for c in train] == ["c0", "c2", "c4"] and [c.name for c in val] == ["c1", "c3"]
    with pytest.raises(DatasetError, match=r"\['c9'\] are not cells"):
        split_cells(cells, ["c9"], tmp_path)
    two, three = validation_canvases(val, 2, size=192), validation_canvases(val, 3, size=192)
    assert np.array_equal(two[1].image, three[1].image)
    assert not np.array_equal(three[0].image, build_canvas(val, size=192, n_cells=10).image)


def test_evaluate_cli_on_held_out_cell_canvases(tmp_path) -> None:
    pytest.importorskip("torch")
    from nuclick_core.cli.main import main
    from tests.conftest import export_tiny_model

    _write_cells(tmp_path / "wbc", _cutouts(5))
    model = export_tiny_model(tmp_path / "models" / "cells-tiny", object_type="cell")
    out = tmp_path / "eval.json"
    args = ["evaluate", "--model", str(model), "--object", "cell", "--data", str(tmp_path / "wbc")]
    args += ["--format", "cells", "--names", "c1,c3", "--canvases", "2", "--mpp", "0.5"]
    args += ["--no-experiments", "--no-baselines", "--threads", "1", "--out", str(out)]
    assert main(args) == 0
    figures = json.loads(out.read_text())
    assert figures["data"]["held_out_cells"] == ["c1", "c3"]
    _, val = split_cells(_cutouts(5), ["c1", "c3"], tmp_path)
    assert figures["data"]["images"] == [c.name for c in validation_canvases(val, 2, size=128)]
    assert figures["main"]["objects"] >= 2 and 0.0 <= figures["main"]["aji"] <= 1.0
    assert main([*args[:-2], "--names", "", "--out", str(out)]) != 0  # held-out cells are required
    assert main([*args, "--image-offset=0.5,0"]) != 0  # canvases are built, not misregistered
