"""Training datasets from instance masks in common formats.

Every reader returns a list of :class:`~nuclick_core.data.labelled.LabelledImage`
(RGB uint8 image, int32 instance labels with 0 = background) and raises
:class:`~nuclick_core.errors.DatasetError` naming the file at fault. Supported layouts:

- ``folder``: ``images/NAME.png|tif|jpg`` beside ``labels/NAME.png|tif`` (instance labels);
- ``pannuke``: ``images.npy`` (N, H, W, 3) with ``masks.npy`` (N, H, W, C) holding per-class
  instance channels (the last channel, background, is ignored); images without any nucleus are
  skipped and the others are named by their index ("0", "1", ...);
- ``consep``: ``Images/NAME.png`` with ``Labels/NAME.mat`` holding ``inst_map`` (CoNSeP, Lizard);
- ``monuseg``: ``NAME.tif|png`` images with ``NAME.xml`` polygon annotations (MoNuSeg XML, with
  MATLAB's 1-based pixel coordinates).

Suffixes match case-insensitively (``NAME.PNG`` is found). :func:`downscale` and
:func:`shift_images` (in :mod:`nuclick_core.data.labelled`) adapt what the readers return.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
from PIL import Image
from skimage.draw import polygon as draw_polygon

from nuclick_core.data.labelled import LabelledImage
from nuclick_core.errors import DatasetError

IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")
LABEL_SUFFIXES = (".png", ".tif", ".tiff", ".bmp")  # lossless only: JPEG would corrupt the ids
FORMATS = ("folder", "pannuke", "consep", "monuseg")
_INT32_MAX = int(np.iinfo(np.int32).max)


# ---------------------------------------------------------------- files and arrays
def _by_stem(folder: Path, suffixes: tuple[str, ...]) -> dict[str, Path]:
    """Map each stem in ``folder`` to its file, preferring suffixes in the order given."""
    rank = {s: i for i, s in enumerate(suffixes)}
    best: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        s = p.suffix.lower()
        if s in rank and p.is_file():
            old = best.get(p.stem)
            if old is None or rank[s] < rank[old.suffix.lower()]:
                best[p.stem] = p
    return best


def _image_for(images: dict[str, Path], stem: str, folder: Path) -> Path:
    if stem not in images:
        raise DatasetError(
            f"no image named {stem} with a suffix in {IMAGE_SUFFIXES} in {folder}; "
            "add the image or remove its annotation"
        )
    return images[stem]


def _read_rgb(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as im:
            return np.array(im.convert("RGB"))
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise DatasetError(f"cannot read image {path}: {exc}") from exc


def _read_label_image(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as im:
            return np.array(im)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise DatasetError(f"cannot read label image {path}: {exc}") from exc


def _as_labels(arr: np.ndarray, source: Path) -> np.ndarray:
    """Check that ``arr`` holds one channel of non-negative integer ids; return it as int32."""
    arr = np.asarray(arr)
    if arr.ndim != 2:
        raise DatasetError(
            f"{source}: labels have shape {arr.shape} but must be one channel (H, W) of "
            "instance ids; save them as a 16-bit grey PNG or TIFF, not as RGB"
        )
    if arr.dtype.kind not in "biuf":
        raise DatasetError(f"{source}: labels have dtype {arr.dtype}; they must be integers")
    if arr.dtype.kind == "f" and not (np.isfinite(arr).all() and (arr % 1 == 0).all()):
        raise DatasetError(f"{source}: labels hold non-integer values; they must be instance ids")
    low, high = (arr.min(), arr.max()) if arr.size else (0, 0)
    if low < 0 or high > _INT32_MAX:
        raise DatasetError(
            f"{source}: label ids span {low}..{high}; they must lie in 0..{_INT32_MAX}"
        )
    return arr.astype(np.int32)


def _check(
    name: str, image: np.ndarray, labels: np.ndarray, source: Path, image_path: Path | None = None
) -> LabelledImage:
    labels = _as_labels(labels, source)
    if image.shape[:2] != labels.shape:
        shown = image_path if image_path is not None else name
        raise DatasetError(
            f"{source}: image {shown} is {image.shape[1]}x{image.shape[0]} (width x height) but "
            f"its labels are {labels.shape[1]}x{labels.shape[0]}; image and labels must have "
            "the same size"
        )
    if labels.max(initial=0) == 0:
        raise DatasetError(
            f"{source}: labels of {name} are empty (no object); remove the image or fix its mask"
        )
    return LabelledImage(name, image, labels)


def _wanted(names: Iterable[str] | str | None) -> list[str] | None:
    if names is None:
        return None
    return [names] if isinstance(names, str) else [str(n) for n in names]


def _unknown(root: Path, missing: list[str], known: Iterable[str]) -> DatasetError:
    avail = sorted(known)
    shown = ", ".join(avail[:10]) + (", ..." if len(avail) > 10 else "")
    return DatasetError(
        f"{root}: no image named {missing}; check the names (available: {shown or 'none'})"
    )


# ---------------------------------------------------------------- readers
def read_folder(root: Path, names: Iterable[str] | None = None) -> list[LabelledImage]:
    """Read ``root/images/*`` with ``root/labels/*`` (same stem). ``names`` selects stems."""
    root = Path(root)
    img_dir, lab_dir = root / "images", root / "labels"
    if not img_dir.is_dir() or not lab_dir.is_dir():
        raise DatasetError(f"{root}: expected sub-folders images/ and labels/ (format 'folder')")
    label_files = _by_stem(lab_dir, LABEL_SUFFIXES)
    stems = sorted(label_files)
    wanted = _wanted(names)
    if wanted is not None:
        missing = sorted(set(wanted) - set(stems))
        if missing:
            raise _unknown(root, missing, stems)
        stems = wanted
    if not stems:
        raise DatasetError(f"{lab_dir} holds no label image (suffix in {LABEL_SUFFIXES})")
    image_files = _by_stem(img_dir, IMAGE_SUFFIXES)
    out = []
    for stem in stems:
        lab_path = label_files[stem]
        labels = _as_labels(_read_label_image(lab_path), lab_path)
        img_path = _image_for(image_files, stem, img_dir)
        out.append(_check(stem, _read_rgb(img_path), labels, lab_path, img_path))
    return out


def _to_uint8(image: np.ndarray, source: Path, index: int) -> np.ndarray:
    if image.dtype == np.uint8:
        return np.array(image)
    if image.dtype.kind not in "biuf":
        raise DatasetError(f"{source}: image {index} has dtype {image.dtype}; expected numbers")
    img = np.asarray(image, np.float64)
    if not np.isfinite(img).all() or img.min() < -0.5 or img.max() > 255.5:
        raise DatasetError(
            f"{source}: image {index} holds values in {img.min()}..{img.max()}; "
            "images must hold intensities 0..255 (PanNuke stores them as float64 0..255)"
        )
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def _merge_channels(channels: np.ndarray) -> np.ndarray:
    """One label image from per-class instance channels; each (channel, id) gets its own label.

    Where channels overlap the earlier channel wins; ids are renumbered 1..K.
    """
    labels = np.zeros(channels.shape[:2], np.int64)
    offset = 0
    for c in range(channels.shape[-1]):
        ch = np.asarray(channels[..., c])
        ch = np.where(ch > 0, ch, 0).astype(np.int64)
        ids, inverse = np.unique(ch, return_inverse=True)
        inverse = inverse.reshape(ch.shape)  # ids[0] is 0 whenever the channel has background
        n_obj = int(np.count_nonzero(ids))
        if n_obj:
            rank = inverse + (offset + 1 if ids[0] > 0 else offset)
            free = (ch > 0) & (labels == 0)
            labels[free] = rank[free]
            offset += n_obj
    _, compact = np.unique(labels, return_inverse=True)
    compact = compact.reshape(labels.shape)
    return compact if labels.min() == 0 else compact + 1


def read_pannuke(root: Path) -> list[LabelledImage]:
    """Read PanNuke-style ``images.npy`` + ``masks.npy`` (per-class instance channels)."""
    root = Path(root)
    try:  # memory-mapped: a PanNuke fold's images.npy is several GB of float64
        images = np.load(root / "images.npy", mmap_mode="r")
        masks = np.load(root / "masks.npy", mmap_mode="r")
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{root}: cannot read images.npy / masks.npy: {exc}") from exc
    if (
        images.ndim != 4
        or masks.ndim != 4
        or images.shape[-1] != 3
        or images.shape[:3] != masks.shape[:3]
    ):
        raise DatasetError(
            f"{root}: images.npy {images.shape} and masks.npy {masks.shape} must be (N, H, W, 3) "
            "and (N, H, W, C) with the same N, H, W"
        )
    source = root / "masks.npy"
    out = []
    for i in range(len(images)):
        channels = masks[i, ..., :-1] if masks.shape[-1] > 1 else masks[i]
        labels = _merge_channels(channels)
        if labels.max(initial=0) == 0:
            continue  # PanNuke holds images without nuclei; they teach nothing here
        image = _to_uint8(images[i], root / "images.npy", i)
        out.append(_check(f"{i}", image, labels, source))
    if not out:
        raise DatasetError(f"{source} holds no instance in any image")
    return out


def read_consep(root: Path) -> list[LabelledImage]:
    """Read CoNSeP/Lizard style ``Images/*.png`` with ``Labels/*.mat`` (``inst_map``)."""
    from scipy.io import loadmat
    from scipy.io.matlab import MatReadError

    root = Path(root)
    img_dir, lab_dir = root / "Images", root / "Labels"
    if not img_dir.is_dir() or not lab_dir.is_dir():
        raise DatasetError(f"{root}: expected sub-folders Images/ and Labels/ (format 'consep')")
    mats = sorted(_by_stem(lab_dir, (".mat",)).values())
    if not mats:
        raise DatasetError(f"{lab_dir} holds no .mat file")
    image_files = _by_stem(img_dir, IMAGE_SUFFIXES)
    out = []
    for mat in mats:
        try:
            data = loadmat(mat)
        except (OSError, ValueError, MatReadError, NotImplementedError) as exc:
            # NotImplementedError: MATLAB v7.3 (HDF5) files, which loadmat cannot read
            raise DatasetError(f"{mat}: not a readable .mat file: {exc}") from exc
        if "inst_map" not in data:
            keys = sorted(k for k in data if not k.startswith("__"))
            raise DatasetError(
                f"{mat}: no 'inst_map' variable; its variables are {keys}; "
                "save the instance map as 'inst_map'"
            )
        img_path = _image_for(image_files, mat.stem, img_dir)
        out.append(_check(mat.stem, _read_rgb(img_path), data["inst_map"], mat, img_path))
    return out


def _coordinate(value: str | None, axis: str, region: str, xml_path: Path) -> float:
    try:
        x = float(value) if value is not None else float("nan")
    except ValueError:
        x = float("nan")
    if not np.isfinite(x):
        raise DatasetError(
            f"{xml_path}: region {region} has a vertex with {axis}={value!r}; every <Vertex> "
            "needs finite numeric X and Y attributes"
        )
    return x


def monuseg_xml_labels(xml_path: Path, shape: tuple[int, int]) -> np.ndarray:
    """Rasterise MoNuSeg XML polygons (1-based coordinates) into int32 instance labels.

    Each ``<Region>`` with at least three vertices becomes one label, numbered 1..K in file
    order over the regions that cover at least one pixel; where regions overlap the earlier
    one keeps the pixel. Raises :class:`DatasetError` for unreadable or unsafe XML (entity
    expansion is refused) and for non-numeric vertices.
    """
    from xml.etree.ElementTree import ParseError

    from defusedxml import DefusedXmlException
    from defusedxml import ElementTree as SafeET

    xml_path = Path(xml_path)
    try:
        root = SafeET.parse(xml_path).getroot()
    except DefusedXmlException as exc:
        raise DatasetError(f"{xml_path}: refused unsafe XML ({exc!r})") from exc
    except (ParseError, OSError, ValueError) as exc:
        raise DatasetError(f"{xml_path}: not valid XML: {exc}") from exc
    labels = np.zeros(shape, np.int32)
    next_id = 1
    for k, region in enumerate(root.iter("Region"), start=1):
        rid = region.get("Id", f"#{k}")
        verts = [
            (
                _coordinate(v.get("X"), "X", rid, xml_path),
                _coordinate(v.get("Y"), "Y", rid, xml_path),
            )
            for v in region.iter("Vertex")
        ]
        if len(verts) < 3:
            continue  # a point or a line has no area
        pts = np.array(verts, np.float64) - 1.0  # MATLAB 1-based -> 0-based pixel centres
        rr, cc = draw_polygon(pts[:, 1], pts[:, 0], shape)
        free = labels[rr, cc] == 0
        if free.any():
            labels[rr[free], cc[free]] = next_id
            next_id += 1
    return labels


def read_monuseg(root: Path) -> list[LabelledImage]:
    """Read MoNuSeg-style ``NAME.xml`` polygon files beside ``NAME.tif|png`` images."""
    root = Path(root)
    xmls = sorted(_by_stem(root, (".xml",)).values())
    if not xmls:
        raise DatasetError(f"{root} holds no MoNuSeg .xml annotation")
    image_files = _by_stem(root, IMAGE_SUFFIXES)
    out = []
    for xml in xmls:
        img_path = _image_for(image_files, xml.stem, root)
        image = _read_rgb(img_path)
        labels = monuseg_xml_labels(xml, image.shape[:2])
        out.append(_check(xml.stem, image, labels, xml, img_path))
    return out


_READERS: dict[str, Callable[[Path], list[LabelledImage]]] = {
    "pannuke": read_pannuke,
    "consep": read_consep,
    "monuseg": read_monuseg,
}


def read_dataset(root: Path, fmt: str, names: Iterable[str] | None = None) -> list[LabelledImage]:
    """Read a dataset in one of :data:`FORMATS`.

    Parameters
    ----------
    root : Path
        The dataset folder.
    fmt : str
        One of :data:`FORMATS`.
    names : iterable of str, optional
        Keep only these images (in the folder format, in this order); an unknown name is an error.

    Returns
    -------
    list of LabelledImage

    Raises
    ------
    DatasetError
        If the format is unknown, the folder is missing or a file is malformed.
    """
    if fmt not in FORMATS:
        raise DatasetError(f"unknown dataset format {fmt!r}; use one of {', '.join(FORMATS)}")
    root = Path(root)
    if not root.is_dir():
        what = "is not a folder" if root.exists() else "does not exist"
        raise DatasetError(f"dataset folder {root} {what}; pass the dataset's root folder")
    if fmt == "folder":
        return read_folder(root, names)
    items = _READERS[fmt](root)
    wanted = _wanted(names)
    if wanted is None:
        return items
    by_name = {it.name: it for it in items}
    missing = sorted(set(wanted) - set(by_name))
    if missing:
        raise _unknown(root, missing, by_name)
    return [by_name[n] for n in wanted]
