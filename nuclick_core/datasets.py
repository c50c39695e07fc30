"""Training datasets from instance masks in common formats.

Every reader returns a list of :class:`~nuclick_core.trainset.LabelledImage` (RGB uint8 image,
int32 instance labels with 0 = background). Supported layouts:

- ``folder``: ``images/NAME.png|tif|jpg`` beside ``labels/NAME.png|tif`` (instance labels);
- ``pannuke``: ``images.npy`` (N, H, W, 3) with ``masks.npy`` (N, H, W, C) holding per-class
  instance channels (the last channel, background, is ignored);
- ``consep``: ``Images/NAME.png`` with ``Labels/NAME.mat`` holding ``inst_map`` (CoNSeP, Lizard);
- ``monuseg``: ``NAME.tif|png`` images with ``NAME.xml`` polygon annotations (MoNuSeg XML, with
  MATLAB's 1-based pixel coordinates).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image
from skimage.draw import polygon as draw_polygon

from nuclick_core.errors import DatasetError
from nuclick_core.trainset import LabelledImage

IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")
FORMATS = ("folder", "pannuke", "consep", "monuseg")


def _read_rgb(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except (OSError, ValueError) as exc:
        raise DatasetError(f"cannot read image {path}: {exc}") from exc


def _check(name: str, image: np.ndarray, labels: np.ndarray, source: Path) -> LabelledImage:
    if image.shape[:2] != labels.shape[:2]:
        raise DatasetError(
            f"{source}: image {name} is {image.shape[1]}x{image.shape[0]} but its labels are "
            f"{labels.shape[1]}x{labels.shape[0]}; image and label must have the same size"
        )
    if labels.max(initial=0) == 0:
        raise DatasetError(
            f"{source}: labels of {name} are empty (no object); remove the image or fix its mask"
        )
    return LabelledImage(name, image, labels.astype(np.int32))


def _find_image(folder: Path, stem: str) -> Path:
    for suffix in IMAGE_SUFFIXES:
        p = folder / f"{stem}{suffix}"
        if p.exists():
            return p
    raise DatasetError(f"no image named {stem} with a suffix in {IMAGE_SUFFIXES} in {folder}")


def read_folder(root: Path, names: Iterable[str] | None = None) -> list[LabelledImage]:
    """Read ``root/images/*`` with ``root/labels/*`` (same stem). ``names`` selects stems."""
    img_dir, lab_dir = root / "images", root / "labels"
    if not img_dir.is_dir() or not lab_dir.is_dir():
        raise DatasetError(f"{root}: expected sub-folders images/ and labels/ (format 'folder')")
    stems = sorted(p.stem for p in lab_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if names is not None:
        wanted = list(names)
        missing = sorted(set(wanted) - set(stems))
        if missing:
            raise DatasetError(f"{root}: no labels for {missing}; check the image names")
        stems = wanted
    if not stems:
        raise DatasetError(f"{root}/labels holds no label images")
    out = []
    for stem in stems:
        lab_path = next(p for p in lab_dir.iterdir() if p.stem == stem)
        labels = np.asarray(Image.open(lab_path))
        if labels.ndim != 2:
            raise DatasetError(f"{lab_path}: labels must be one channel (instance ids)")
        out.append(_check(stem, _read_rgb(_find_image(img_dir, stem)), labels, lab_path))
    return out


def read_pannuke(root: Path) -> list[LabelledImage]:
    """Read PanNuke-style ``images.npy`` + ``masks.npy`` (per-class instance channels)."""
    try:
        images = np.load(root / "images.npy")
        masks = np.load(root / "masks.npy")
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{root}: cannot read images.npy / masks.npy: {exc}") from exc
    if images.ndim != 4 or masks.ndim != 4 or images.shape[:3] != masks.shape[:3]:
        raise DatasetError(
            f"{root}: images.npy {images.shape} and masks.npy {masks.shape} must be (N, H, W, 3) "
            "and (N, H, W, C) with the same N, H, W"
        )
    out = []
    for i in range(len(images)):
        channels = masks[i, ..., :-1] if masks.shape[-1] > 1 else masks[i]
        labels = np.zeros(masks.shape[1:3], np.int32)
        next_id = 1
        for c in range(channels.shape[-1]):
            ch = channels[..., c].astype(np.int64)
            for inst in np.unique(ch[ch > 0]):
                labels[(ch == inst) & (labels == 0)] = next_id
                next_id += 1
        if next_id == 1:
            continue  # PanNuke holds images without nuclei; they teach nothing here
        out.append(_check(f"{i}", images[i].astype(np.uint8), labels, root / "masks.npy"))
    if not out:
        raise DatasetError(f"{root}/masks.npy holds no instance in any image")
    return out


def read_consep(root: Path) -> list[LabelledImage]:
    """Read CoNSeP/Lizard style ``Images/*.png`` with ``Labels/*.mat`` (``inst_map``)."""
    from scipy.io import loadmat

    img_dir, lab_dir = root / "Images", root / "Labels"
    if not img_dir.is_dir() or not lab_dir.is_dir():
        raise DatasetError(f"{root}: expected sub-folders Images/ and Labels/ (format 'consep')")
    out = []
    for mat in sorted(lab_dir.glob("*.mat")):
        try:
            data = loadmat(mat)
        except (OSError, ValueError) as exc:
            raise DatasetError(f"{mat}: not a readable .mat file: {exc}") from exc
        if "inst_map" not in data:
            raise DatasetError(f"{mat}: no 'inst_map' variable; keys are {sorted(data)}")
        image = _read_rgb(_find_image(img_dir, mat.stem))
        out.append(_check(mat.stem, image, np.asarray(data["inst_map"]), mat))
    if not out:
        raise DatasetError(f"{lab_dir} holds no .mat file")
    return out


def monuseg_xml_labels(xml_path: Path, shape: tuple[int, int]) -> np.ndarray:
    """Rasterise MoNuSeg XML polygons (1-based coordinates) into int32 instance labels."""
    from defusedxml import ElementTree

    try:
        root = ElementTree.parse(xml_path).getroot()
    except Exception as exc:  # defusedxml raises several parse error types
        raise DatasetError(f"{xml_path}: not valid XML: {exc}") from exc
    labels = np.zeros(shape, np.int32)
    next_id = 1
    for region in root.iter("Region"):
        verts = [(float(v.get("X", "nan")), float(v.get("Y", "nan"))) for v in region.iter("Vertex")]
        pts = np.array(verts, np.float64) - 1.0
        if len(pts) < 3 or not np.isfinite(pts).all():
            continue
        rr, cc = draw_polygon(pts[:, 1], pts[:, 0], shape)
        free = labels[rr, cc] == 0
        labels[rr[free], cc[free]] = next_id
        next_id += 1
    return labels


def read_monuseg(root: Path) -> list[LabelledImage]:
    """Read MoNuSeg-style ``NAME.xml`` polygon files beside ``NAME.tif|png`` images."""
    out = []
    for xml in sorted(root.glob("*.xml")):
        image = _read_rgb(_find_image(root, xml.stem))
        out.append(_check(xml.stem, image, monuseg_xml_labels(xml, image.shape[:2]), xml))
    if not out:
        raise DatasetError(f"{root} holds no MoNuSeg .xml annotation")
    return out


def read_dataset(root: Path, fmt: str, names: Iterable[str] | None = None) -> list[LabelledImage]:
    """Read a dataset in one of :data:`FORMATS`; ``names`` selects images (folder format)."""
    root = Path(root)
    if not root.exists():
        raise DatasetError(f"dataset folder {root} does not exist")
    if fmt == "folder":
        return read_folder(root, names)
    readers = {"pannuke": read_pannuke, "consep": read_consep, "monuseg": read_monuseg}
    if fmt not in readers:
        raise DatasetError(f"unknown dataset format {fmt!r}; use one of {', '.join(FORMATS)}")
    items = readers[fmt](root)
    if names is not None:
        wanted = set(names)
        items = [it for it in items if it.name in wanted]
    return items
