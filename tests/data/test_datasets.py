"""Dataset readers: folder, PanNuke, CoNSeP/Lizard and MoNuSeg layouts written in tmp_path."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image
from scipy.io import savemat

from nuclick_core.data.datasets import FORMATS, monuseg_xml_labels, read_dataset
from nuclick_core.data.synth import Scene, nuclei_scene, scene_to_png
from nuclick_core.errors import DatasetError


def _scene(seed: int) -> Scene:
    return nuclei_scene(size=(64, 64), n_nuclei=6, seed=seed)


def _folder(root: Path, seeds: dict[str, int], image_suffix: str = ".png") -> dict[str, Scene]:
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    scenes = {}
    for name, seed in seeds.items():
        scenes[name] = scene = _scene(seed)
        scene_to_png(scene, root / "images" / f"{name}.png", root / "labels" / f"{name}.png")
        if image_suffix != ".png":
            img_png = root / "images" / f"{name}.png"
            Image.open(img_png).save(img_png.with_suffix(image_suffix))
            img_png.unlink()
    return scenes


def _esc(path: Path) -> str:
    return re.escape(str(path))


# ---------------------------------------------------------------- folder
@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_folder_round_trip(tmp_path: Path, suffix: str) -> None:
    scenes = _folder(tmp_path, {"a": 1, "b": 2}, suffix)
    items = read_dataset(tmp_path, "folder")
    assert [it.name for it in items] == ["a", "b"]
    for it in items:
        assert it.image.dtype == np.uint8 and it.image.shape == (64, 64, 3)
        assert it.labels.dtype == np.int32
        np.testing.assert_array_equal(it.image, scenes[it.name].image)
        np.testing.assert_array_equal(it.labels, scenes[it.name].labels)
        assert it.image.flags.writeable and it.labels.flags.writeable


def test_folder_names_select_in_order(tmp_path: Path) -> None:
    _folder(tmp_path, {"a": 1, "b": 2, "c": 3})
    assert [it.name for it in read_dataset(tmp_path, "folder", names=["c", "a"])] == ["c", "a"]
    assert [it.name for it in read_dataset(tmp_path, "folder", names="b")] == ["b"]


def test_folder_unknown_name(tmp_path: Path) -> None:
    _folder(tmp_path, {"a": 1})
    with pytest.raises(DatasetError, match=r"no image named \['zz'\].*available: a"):
        read_dataset(tmp_path, "folder", names=["a", "zz"])


def test_folder_label_without_image(tmp_path: Path) -> None:
    _folder(tmp_path, {"a": 1})
    (tmp_path / "images" / "a.png").unlink()
    with pytest.raises(DatasetError, match=r"no image named a .*" + _esc(tmp_path / "images")):
        read_dataset(tmp_path, "folder")


def test_folder_uppercase_suffix(tmp_path: Path) -> None:
    _folder(tmp_path, {"a": 1})
    (tmp_path / "images" / "a.png").rename(tmp_path / "images" / "a.PNG")
    assert [it.name for it in read_dataset(tmp_path, "folder")] == ["a"]


# ---------------------------------------------------------------- PanNuke
def _pannuke(root: Path, dtype: type) -> tuple[np.ndarray, np.ndarray]:
    """Three images: two with nuclei split over class channels, one without any."""
    a, b = _scene(1), _scene(2)
    images = np.stack([a.image, np.full_like(a.image, 200), b.image]).astype(dtype)
    masks = np.zeros((3, 64, 64, 6), np.float64)  # PanNuke's masks are float64 too
    for i, scene in ((0, a), (2, b)):
        lab = scene.labels
        odd = lab % 2 == 1
        masks[i, ..., 0] = np.where(odd, lab, 0)  # ids 1, 3, 5
        masks[i, ..., 3] = np.where(~odd & (lab > 0), lab // 2, 0)  # ids 1, 2, 3 again
        masks[i, ..., 5] = lab == 0  # background channel, must be ignored
    np.save(root / "images.npy", images)
    np.save(root / "masks.npy", masks)
    return images, masks


@pytest.mark.parametrize("dtype", [np.float64, np.uint8])
def test_pannuke_merges_channels(tmp_path: Path, dtype: type) -> None:
    images, masks = _pannuke(tmp_path, dtype)
    items = read_dataset(tmp_path, "pannuke")
    assert [it.name for it in items] == ["0", "2"]  # image 1 has no nucleus
    for it in items:
        i = int(it.name)
        assert it.image.dtype == np.uint8
        np.testing.assert_array_equal(it.image, images[i].astype(np.uint8))
        np.testing.assert_array_equal(it.labels > 0, masks[i, ..., :5].max(-1) > 0)
        pairs = {(c, int(v)) for c in range(5) for v in np.unique(masks[i, ..., c]) if v > 0}
        assert int(it.labels.max()) == len(pairs) == 6
        for c, v in pairs:  # each (channel, instance) is exactly one label
            got = np.unique(it.labels[masks[i, ..., c] == v])
            assert got.size == 1 and got[0] > 0
        assert set(np.unique(it.labels)) == set(range(7))


def test_pannuke_float_rounds(tmp_path: Path) -> None:
    _pannuke(tmp_path, np.float64)
    images = np.load(tmp_path / "images.npy")
    np.save(tmp_path / "images.npy", images - 0.01)  # 254.99 must not become 254
    items = read_dataset(tmp_path, "pannuke")
    np.testing.assert_array_equal(items[0].image, _scene(1).image)


def test_pannuke_out_of_range_image(tmp_path: Path) -> None:
    images, _ = _pannuke(tmp_path, np.float64)
    np.save(tmp_path / "images.npy", images * 10)
    with pytest.raises(DatasetError, match=_esc(tmp_path / "images.npy") + r": image 0 .*0\.\.255"):
        read_dataset(tmp_path, "pannuke")


def test_pannuke_no_nucleus_at_all(tmp_path: Path) -> None:
    np.save(tmp_path / "images.npy", np.zeros((2, 8, 8, 3), np.uint8))
    np.save(tmp_path / "masks.npy", np.zeros((2, 8, 8, 6)))
    with pytest.raises(DatasetError, match=_esc(tmp_path / "masks.npy") + " holds no instance"):
        read_dataset(tmp_path, "pannuke")


def test_pannuke_shape_mismatch(tmp_path: Path) -> None:
    np.save(tmp_path / "images.npy", np.zeros((2, 8, 8, 3), np.uint8))
    np.save(tmp_path / "masks.npy", np.zeros((2, 8, 9, 6)))
    with pytest.raises(DatasetError, match=r"images\.npy \(2, 8, 8, 3\) and masks\.npy"):
        read_dataset(tmp_path, "pannuke")


def test_pannuke_missing_files(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"cannot read images\.npy / masks\.npy"):
        read_dataset(tmp_path, "pannuke")


def test_pannuke_names(tmp_path: Path) -> None:
    _pannuke(tmp_path, np.uint8)
    assert [it.name for it in read_dataset(tmp_path, "pannuke", names=["2"])] == ["2"]
    with pytest.raises(DatasetError, match=r"no image named \['1'\]"):
        read_dataset(tmp_path, "pannuke", names=["1"])  # skipped: it holds no nucleus


@settings(max_examples=40, deadline=None)
@given(arrays(np.int64, (2, 6, 5, 3), elements=st.integers(0, 3)))
def test_pannuke_merge_property(tmp_path_factory: pytest.TempPathFactory, m: np.ndarray) -> None:
    """Any channels: foreground is the union, labels are 1..K, no label spans two pairs."""
    root = tmp_path_factory.mktemp("pn")
    m[..., -1] = 0
    np.save(root / "images.npy", np.zeros((2, 6, 5, 3), np.uint8))
    np.save(root / "masks.npy", m)
    if not m.any():
        with pytest.raises(DatasetError, match="holds no instance"):
            read_dataset(root, "pannuke")
        return
    for it in read_dataset(root, "pannuke"):
        ch = m[int(it.name), ..., :2]
        np.testing.assert_array_equal(it.labels > 0, ch.max(-1) > 0)
        assert set(np.unique(it.labels[it.labels > 0])) == set(range(1, int(it.labels.max()) + 1))
        first = np.where(ch[..., 0] > 0, 0, 1)  # where channels overlap, channel 0 wins
        owner = np.stack([first, np.take_along_axis(ch, first[..., None], -1)[..., 0]], -1)
        for lab in range(1, int(it.labels.max()) + 1):
            assert len({tuple(p) for p in owner[it.labels == lab]}) == 1


# ---------------------------------------------------------------- CoNSeP / Lizard
def _consep(root: Path, seeds: dict[str, int], key: str = "inst_map") -> dict[str, Scene]:
    (root / "Images").mkdir(parents=True)
    (root / "Labels").mkdir()
    scenes = {}
    for name, seed in seeds.items():
        scenes[name] = scene = _scene(seed)
        Image.fromarray(scene.image).convert("RGBA").save(root / "Images" / f"{name}.png")
        inst = scene.labels.astype(np.float64)  # CoNSeP stores inst_map as float64
        savemat(root / "Labels" / f"{name}.mat", {key: inst, "type_map": inst > 0})
    return scenes


def test_consep_round_trip(tmp_path: Path) -> None:
    scenes = _consep(tmp_path, {"test_1": 1, "test_2": 2})
    items = read_dataset(tmp_path, "consep")
    assert [it.name for it in items] == ["test_1", "test_2"]
    for it in items:
        np.testing.assert_array_equal(it.image, scenes[it.name].image)
        np.testing.assert_array_equal(it.labels, scenes[it.name].labels)
        assert it.labels.dtype == np.int32


def test_consep_without_inst_map(tmp_path: Path) -> None:
    _consep(tmp_path, {"x": 1}, key="instances")
    mat = tmp_path / "Labels" / "x.mat"
    with pytest.raises(DatasetError, match=_esc(mat) + r".*\['instances', 'type_map'\]"):
        read_dataset(tmp_path, "consep")


@pytest.mark.parametrize("content", [b"", b"not a mat file at all, just some text bytes " * 4])
def test_consep_unreadable_mat(tmp_path: Path, content: bytes) -> None:
    _consep(tmp_path, {"x": 1})
    mat = tmp_path / "Labels" / "x.mat"
    mat.write_bytes(content)
    with pytest.raises(DatasetError, match=_esc(mat) + ": not a readable .mat file"):
        read_dataset(tmp_path, "consep")


def test_consep_non_integer_inst_map(tmp_path: Path) -> None:
    _consep(tmp_path, {"x": 1})
    mat = tmp_path / "Labels" / "x.mat"
    savemat(mat, {"inst_map": np.full((64, 64), 1.5)})
    with pytest.raises(DatasetError, match=_esc(mat) + ": labels hold non-integer"):
        read_dataset(tmp_path, "consep")


# ---------------------------------------------------------------- MoNuSeg XML
def _region(rid: int, xy: list[tuple[float, float]]) -> str:
    verts = "".join(f'<Vertex X="{x}" Y="{y}" Z="0"/>' for x, y in xy)
    return f'<Region Id="{rid}" Type="0"><Attributes/><Vertices>{verts}</Vertices></Region>'


def _monuseg_xml(*regions: str) -> str:
    return (
        '<?xml version="1.0"?>\n<Annotations MicronsPerPixel="0.252">'
        '<Annotation Id="1"><Attributes/><Regions><RegionAttributeHeaders/>'
        + "".join(regions)
        + "</Regions><Plots/></Annotation></Annotations>"
    )


def _monuseg(root: Path, xml: str, name: str = "TCGA-A", size: int = 32) -> Path:
    Image.fromarray(np.full((size, size, 3), 220, np.uint8)).save(root / f"{name}.tif")
    path = root / f"{name}.xml"
    path.write_text(xml)
    return path


def test_monuseg_square_is_one_based(tmp_path: Path) -> None:
    # MATLAB pixel (row 5, col 3) .. (row 9, col 8), 1-based, are 0-based rows 4..8, cols 2..7
    _monuseg(tmp_path, _monuseg_xml(_region(1, [(3, 5), (8, 5), (8, 9), (3, 9)])))
    (item,) = read_dataset(tmp_path, "monuseg")
    assert item.name == "TCGA-A" and item.image.shape == (32, 32, 3)
    expected = np.zeros((32, 32), np.int32)
    expected[4:9, 2:8] = 1
    np.testing.assert_array_equal(item.labels, expected)


@settings(max_examples=40, deadline=None)
@given(x0=st.integers(1, 20), y0=st.integers(1, 20), w=st.integers(1, 10), h=st.integers(1, 10))
def test_monuseg_rectangle_property(
    tmp_path_factory: pytest.TempPathFactory, x0: int, y0: int, w: int, h: int
) -> None:
    """A rectangle with 1-based corners (x0, y0)-(x0+w, y0+h) covers exactly those pixels."""
    path = tmp_path_factory.mktemp("mx") / "r.xml"
    x1, y1 = x0 + w, y0 + h
    path.write_text(_monuseg_xml(_region(1, [(x0, y0), (x1, y0), (x1, y1), (x0, y1)])))
    expected = np.zeros((32, 32), np.int32)
    expected[y0 - 1 : y1, x0 - 1 : x1] = 1
    np.testing.assert_array_equal(monuseg_xml_labels(path, (32, 32)), expected)


def test_monuseg_two_regions_two_labels(tmp_path: Path) -> None:
    xml = _monuseg_xml(
        _region(1, [(2, 2), (6, 2), (6, 6), (2, 6)]),
        _region(2, [(20.5, 10), (28, 10), (24, 18)]),  # a triangle, fractional vertex
        _region(3, [(40, 40), (50, 40), (50, 50)]),  # outside the image: no label
        _region(4, [(1, 1), (3, 3)]),  # two vertices: no area
    )
    path = _monuseg(tmp_path, xml)
    labels = monuseg_xml_labels(path, (32, 32))
    assert labels.dtype == np.int32
    assert sorted(np.unique(labels)) == [0, 1, 2]
    assert np.count_nonzero(labels == 1) == 25
    assert labels[13, 23] == 2 and labels[9, 27] == 2  # centre and a corner of the triangle


def test_monuseg_billion_laughs_refused(tmp_path: Path) -> None:
    lol = "".join(f'<!ENTITY lol{i} "{("&lol" + str(i - 1) + ";") * 10}">' for i in range(1, 10))
    xml = (
        f'<?xml version="1.0"?><!DOCTYPE Annotations [<!ENTITY lol0 "lol">{lol}]>'
        '<Annotations><Annotation><Regions><Region Id="&lol9;"/></Regions>'
        "</Annotation></Annotations>"
    )
    path = _monuseg(tmp_path, xml)
    with pytest.raises(DatasetError, match=_esc(path) + ": refused unsafe XML"):
        read_dataset(tmp_path, "monuseg")


def test_monuseg_malformed_xml(tmp_path: Path) -> None:
    path = _monuseg(tmp_path, "<Annotations><Annotation><Regions></Annotation>")
    with pytest.raises(DatasetError, match=_esc(path) + ": not valid XML"):
        read_dataset(tmp_path, "monuseg")


def test_monuseg_non_numeric_vertex(tmp_path: Path) -> None:
    path = _monuseg(tmp_path, _monuseg_xml(_region(7, [(1, 1), ("abc", 5), (5, 5)])))
    with pytest.raises(DatasetError, match=_esc(path) + r": region 7 .*X='abc'"):
        read_dataset(tmp_path, "monuseg")


def test_monuseg_no_region(tmp_path: Path) -> None:
    path = _monuseg(tmp_path, _monuseg_xml())
    with pytest.raises(DatasetError, match=_esc(path) + ": labels of TCGA-A are empty"):
        read_dataset(tmp_path, "monuseg")


def test_monuseg_no_xml(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=_esc(tmp_path) + " holds no MoNuSeg .xml"):
        read_dataset(tmp_path, "monuseg")


# ---------------------------------------------------------------- errors
def test_size_mismatch(tmp_path: Path) -> None:
    _folder(tmp_path, {"a": 1})
    lab = tmp_path / "labels" / "a.png"
    Image.fromarray(np.ones((40, 50), np.uint16)).save(lab)
    img = tmp_path / "images" / "a.png"
    msg = _esc(lab) + ": image " + _esc(img) + " is 64x64 .*50x40"
    with pytest.raises(DatasetError, match=msg):
        read_dataset(tmp_path, "folder")


def test_consep_size_mismatch(tmp_path: Path) -> None:
    _consep(tmp_path, {"x": 1})
    mat = tmp_path / "Labels" / "x.mat"
    savemat(mat, {"inst_map": np.ones((30, 64))})
    with pytest.raises(DatasetError, match=_esc(mat) + r".* is 64x64 .*64x30"):
        read_dataset(tmp_path, "consep")


def test_empty_labels(tmp_path: Path) -> None:
    _folder(tmp_path, {"a": 1})
    lab = tmp_path / "labels" / "a.png"
    Image.fromarray(np.zeros((64, 64), np.uint16)).save(lab)
    with pytest.raises(DatasetError, match=_esc(lab) + ": labels of a are empty"):
        read_dataset(tmp_path, "folder")


def test_unknown_format(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="unknown dataset format 'coco'.*" + ", ".join(FORMATS)):
        read_dataset(tmp_path, "coco")


@pytest.mark.parametrize("fmt", FORMATS)
def test_missing_folder(tmp_path: Path, fmt: str) -> None:
    root = tmp_path / "nowhere"
    with pytest.raises(DatasetError, match=_esc(root) + " does not exist"):
        read_dataset(root, fmt)


@pytest.mark.parametrize(("fmt", "sub"), [("folder", "images"), ("consep", "Images")])
def test_missing_subfolders(tmp_path: Path, fmt: str, sub: str) -> None:
    (tmp_path / sub).mkdir()
    with pytest.raises(DatasetError, match=_esc(tmp_path) + ": expected sub-folders " + sub):
        read_dataset(tmp_path, fmt)


def test_empty_labels_folder(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    with pytest.raises(DatasetError, match=_esc(tmp_path / "labels") + " holds no label image"):
        read_dataset(tmp_path, "folder")


@pytest.mark.parametrize("mode", ["RGB", "RGBA"])
def test_labels_with_channels(tmp_path: Path, mode: str) -> None:
    _folder(tmp_path, {"a": 1})
    lab = tmp_path / "labels" / "a.png"
    Image.fromarray(np.ones((64, 64, 3), np.uint8)).convert(mode).save(lab)
    n = len(mode)
    with pytest.raises(DatasetError, match=_esc(lab) + rf".*shape \(64, 64, {n}\).*one channel"):
        read_dataset(tmp_path, "folder")


def test_unreadable_image(tmp_path: Path) -> None:
    _folder(tmp_path, {"a": 1})
    img = tmp_path / "images" / "a.png"
    img.write_bytes(b"not a png")
    with pytest.raises(DatasetError, match="cannot read image " + _esc(img)):
        read_dataset(tmp_path, "folder")


def test_shift_images_moves_content_not_labels() -> None:
    from nuclick_core.data.labelled import LabelledImage, shift_images

    image = np.zeros((40, 40, 3), np.uint8)
    image[10:20, 12:22] = 200
    labels = np.zeros((40, 40), np.int32)
    labels[10:20, 12:22] = 1
    (moved,) = shift_images([LabelledImage("a", image, labels)], -2.0, 1.0)
    assert moved.labels is labels
    assert moved.image.dtype == np.uint8
    rows, cols = np.nonzero(moved.image[..., 0] > 100)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (11, 20, 10, 19)
    # half a pixel: the bright square's centre of mass moves by half a pixel
    (half,) = shift_images([LabelledImage("a", image, labels)], -0.5, -0.5)
    w = half.image[..., 0].astype(float)
    r, c = np.indices(w.shape)
    assert (r * w).sum() / w.sum() == pytest.approx(14.5 - 0.5, abs=0.02)
    assert (c * w).sum() / w.sum() == pytest.approx(16.5 - 0.5, abs=0.02)
    assert shift_images([LabelledImage("a", image, labels)], 0, 0)[0].image is image


def test_shift_images_refuses_offsets_that_are_not_pixels() -> None:
    from nuclick_core.data.labelled import LabelledImage, shift_images

    item = LabelledImage("a", np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8), np.int32))
    with pytest.raises(DatasetError, match="over 4 px"):
        shift_images([item], 12.5, 0)
