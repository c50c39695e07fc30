"""Instance label masks of whole slides as tiled, pyramidal TIFFs, written tile by tile.

Each 512 px tile is painted from the instances that reach it (an STR-tree over their bounding
boxes), by the same rule as :func:`nuclick_core.io.instances.label_mask` (pixel centres inside a
polygon, later instances over earlier ones), so a tile holds exactly the pixels of the whole
mask; memory depends on the tile and the table, not on the slide's size. Lower-resolution levels
(2x, 4x, ... down to 1,024 px) are painted the same way at their scale, as reduced-resolution
pages, with the slide's mpp in the resolution tags: tifffile, QuPath (Bio-Formats) and other
pyramidal-TIFF readers open it; pixel value = instance_id, 0 background (int32).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import shapely

from nuclick_core.errors import NuclickError
from nuclick_core.io.files import atomic_path
from nuclick_core.io.instances import ok_instances, paint_instances, read_instances, read_provenance

LABEL_TILE = 512
#: Levels are added while the level's longer side exceeds this.
SMALLEST_LEVEL = 1024


def _tiles(
    items: list[tuple[int, shapely.Geometry]],
    tree: shapely.STRtree,
    width: int,
    height: int,
    downsample: float,
) -> Iterator[np.ndarray]:
    """The level's tiles in row-major order (edge tiles padded with 0)."""
    t = LABEL_TILE
    for r0 in range(0, height, t):
        for c0 in range(0, width, t):
            tile = np.zeros((t, t), np.int32)
            # level-0 area whose pixel centres fall in the tile
            area = shapely.box(
                c0 * downsample, r0 * downsample, (c0 + t) * downsample, (r0 + t) * downsample
            )
            hits = np.sort(tree.query(area))  # table order: later instances paint over earlier
            paint_instances(tile, [items[k] for k in hits], downsample=downsample, row0=r0, col0=c0)
            yield tile


def write_label_tiff(
    instances: Path | str,
    out: Path | str,
    *,
    downsample: float = 1.0,
    max_pixels: float | None = None,
) -> tuple[int, int, int]:
    """Write the instance table's labels as a tiled pyramidal int32 TIFF at the slide's
    level-0 size / ``downsample``; returns (width, height, instances in the table drawn).

    Raises
    ------
    NuclickError
        The table has no slide size in its metadata, an instance id passes the int32 range,
        or the mask would exceed ``max_pixels`` (no limit when None).
    """
    import tifffile

    instances = Path(instances)
    slide = read_provenance(instances).get("slide", {})
    if "width" not in slide:
        raise NuclickError(
            f"{instances} has no slide size in its metadata; was it written by nuclick segment?"
        )
    width = int(np.ceil(slide["width"] / downsample))
    height = int(np.ceil(slide["height"] / downsample))
    if max_pixels is not None and width * height > max_pixels:
        raise NuclickError(
            f"a {width}x{height} label mask exceeds --max-pixels {max_pixels:g}; "
            "pass a larger --downsample (e.g. 4 or 16) or a larger --max-pixels"
        )
    items = ok_instances(read_instances(instances))
    if items and max(iid for iid, _ in items) > np.iinfo(np.int32).max:
        raise NuclickError("instance ids exceed the int32 range of a TIFF label image")
    tree = shapely.STRtree([g for _, g in items])
    mpp = slide.get("mpp")
    levels = [1]
    while max(width, height) / levels[-1] > SMALLEST_LEVEL:
        levels.append(levels[-1] * 2)
    # BigTIFF when the uncompressed level 0 could pass classic TIFF's 4 GB of offsets
    big = width * height * np.dtype(np.int32).itemsize > 2**31
    with (
        atomic_path(Path(out)) as tmp,
        tifffile.TiffWriter(tmp, bigtiff=big) as tif,
    ):
        for k, level in enumerate(levels):
            w, h = -(-width // level), -(-height // level)
            per_cm = 1e4 / (mpp * downsample * level) if mpp else None
            tif.write(
                _tiles(items, tree, w, h, downsample * level),
                shape=(h, w),
                dtype=np.int32,
                tile=(LABEL_TILE, LABEL_TILE),
                compression="zlib",
                photometric="minisblack",
                subfiletype=0 if k == 0 else 1,
                resolution=(per_cm, per_cm) if per_cm else None,
                resolutionunit="CENTIMETER" if per_cm else None,
            )
    return width, height, len(items)
