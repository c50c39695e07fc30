"""Training patches for click-guided objects (nuclei, cells) from instance-labelled images.

Each sample is one object: a click is drawn inside it (away from its boundary) every time it is
seen, the patch is centred on the click, the inclusion map marks the click, the exclusion map
marks the other objects' centroids (jittered, some dropped), the target is the object's mask and
``others`` the other objects' masks (for the loss weights).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from nuclick_core.data.labelled import LabelledImage, crop
from nuclick_core.inference.signals import network_input, point_map, sample_click
from nuclick_core.training.augment import Variety, flip_rotate, photometric, resize_patch


@dataclass(frozen=True)
class ObjectRef:
    image_index: int
    label: int
    bbox: tuple[int, int, int, int]  # row0, col0, row1, col1 (exclusive)
    centroid_xy: tuple[float, float]


def index_objects(images: list[LabelledImage], *, min_area: int = 8) -> list[ObjectRef]:
    """List every object of at least ``min_area`` pixels across ``images``."""
    refs: list[ObjectRef] = []
    for i, item in enumerate(images):
        slices = ndi.find_objects(item.labels)
        for lab0, sl in enumerate(slices):
            if sl is None:
                continue
            lab = lab0 + 1
            sub = item.labels[sl] == lab
            if sub.sum() < min_area:
                continue
            ys, xs = np.nonzero(sub)
            cy, cx = ys.mean() + sl[0].start, xs.mean() + sl[1].start
            bbox = (sl[0].start, sl[1].start, sl[0].stop, sl[1].stop)
            refs.append(ObjectRef(i, lab, bbox, (float(cx), float(cy))))
    return refs


def near_miss_click(
    labels: np.ndarray, ref: ObjectRef, reach: float, rng: np.random.Generator
) -> np.ndarray | None:
    """A background pixel (x, y) within ``reach`` pixels of object ``ref`` and nearer to it than
    to any other object, drawn uniformly; None when there is none (the object fills its
    surroundings)."""
    pad = 2 * int(np.ceil(reach)) + 1  # candidates lie within reach; their rivals within 2 x
    h, w = labels.shape
    r0, c0 = max(ref.bbox[0] - pad, 0), max(ref.bbox[1] - pad, 0)
    r1, c1 = min(ref.bbox[2] + pad, h), min(ref.bbox[3] + pad, w)
    window = labels[r0:r1, c0:c1]
    to_target = ndi.distance_transform_edt(window != ref.label)
    others = (window > 0) & (window != ref.label)
    to_others = ndi.distance_transform_edt(~others) if others.any() else np.inf
    ok = (window == 0) & (to_target <= reach) & (to_target < to_others)
    rows, cols = np.nonzero(ok)
    if len(rows) == 0:
        return None
    k = rng.integers(len(rows))
    return np.array([cols[k] + c0, rows[k] + r0], np.float64)


class ClickPatchSampler:
    """Draws training patches for click-guided segmentation.

    Parameters
    ----------
    images : labelled images.
    patch_size : patch side in pixels (128 nuclei, 256 cells).
    jitter_px : standard deviation of the exclusion-point jitter.
    drop_prob : probability of dropping each exclusion point.
    augment : apply the paper's augmentations.
    click_inner : clicks keep at least this fraction of the object's largest inscribed
        distance from its boundary (0: anywhere inside; lower values teach robustness to
        imprecise clicks).
    near_miss : probability that a click misses its object: it lands on background within
        ``near_miss_px`` of the object, nearer to it than to any other object (a hurried click
        beside a small nucleus), and the target is still the object.
    near_miss_px : how far outside its object a near-miss click may land.
    """

    def __init__(
        self,
        images: list[LabelledImage],
        *,
        patch_size: int = 128,
        jitter_px: float = 2.0,
        drop_prob: float = 0.1,
        augment: bool = True,
        click_inner: float = 0.3,
        near_miss: float = 0.0,
        near_miss_px: float = 5.0,
        variety: Variety | None = None,
    ) -> None:
        self.images = images
        self.variety = variety or Variety()
        self.click_inner = click_inner
        self.near_miss = near_miss
        self.near_miss_px = near_miss_px
        self.objects = index_objects(images)
        if not self.objects:
            raise ValueError("no labelled objects in the training images")
        self.patch_size = patch_size
        self.jitter_px = jitter_px
        self.drop_prob = drop_prob
        self.augment = augment
        self._centroids = [
            np.array([o.centroid_xy for o in self.objects if o.image_index == i]).reshape(-1, 2)
            for i in range(len(images))
        ]
        self._labels_of = [
            np.array([o.label for o in self.objects if o.image_index == i], np.int64)
            for i in range(len(images))
        ]

    def __len__(self) -> int:
        return len(self.objects)

    def sample(
        self, index: int, rng: np.random.Generator, *, click_xy: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One training example.

        Returns
        -------
        x : float32 (5, P, P) network input; y : float32 (1, P, P) target; others : float32
        (1, P, P) mask of the other objects in the patch.
        """
        ref = self.objects[index]
        item = self.images[ref.image_index]
        r0, c0, r1, c1 = ref.bbox
        if click_xy is None and self.near_miss > 0 and rng.random() < self.near_miss:
            click_xy = near_miss_click(item.labels, ref, self.near_miss_px, rng)
        if click_xy is None:
            local = sample_click(
                item.labels[r0:r1, c0:c1] == ref.label, rng, inner=self.click_inner
            )
            click_xy = local + np.array([c0, r0])
        p = self.patch_size
        side = self.variety.side(p, rng) if self.augment else p
        half = side // 2
        row0, col0 = int(round(click_xy[1])) - half, int(round(click_xy[0])) - half
        rgb = crop(item.image, row0, col0, side, 255)
        if self.augment:
            rgb = self.variety.appearance(rgb, rng)
        img = rgb.astype(np.float32) / 255.0
        lab = crop(item.labels, row0, col0, side, 0)
        target = (lab == ref.label).astype(np.float32)
        others = ((lab > 0) & (lab != ref.label)).astype(np.float32)

        cents = self._centroids[ref.image_index]
        keep = self._labels_of[ref.image_index] != ref.label
        pts = cents[keep] - np.array([col0, row0])
        click = click_xy - np.array([col0, row0])
        if self.augment:
            pts = pts + rng.normal(0, self.jitter_px, pts.shape)
            pts = pts[rng.random(len(pts)) >= self.drop_prob]
        if side != p:  # scale variety: the region resized to the patch, marks with it
            img, target, others = resize_patch([img, target, others], p, masks=2)
            pts, click = ((a + 0.5) * (p / side) - 0.5 for a in (pts, click))
        size = (p, p)
        inclusion = point_map(size, click[None])
        exclusion = point_map(size, pts)
        if self.augment:
            img = photometric(img, rng)
            img, inclusion, exclusion, target, others = flip_rotate(
                [img, inclusion, exclusion, target, others], rng
            )
        return network_input(img, inclusion, exclusion), target[None], others[None]

    def batch(
        self, indices: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Stack :meth:`sample` over ``indices``."""
        parts = [self.sample(int(i), rng) for i in indices]
        return tuple(np.stack(p) for p in zip(*parts, strict=True))  # type: ignore[return-value]

    def fixed_batch(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Validation examples: clicks at the objects' centroids, no augmentation or jitter."""
        rng = np.random.default_rng(0)
        saved, self.augment = self.augment, False
        try:
            parts = [
                self.sample(int(i), rng, click_xy=np.array(self.objects[int(i)].centroid_xy))
                for i in indices
            ]
        finally:
            self.augment = saved
        return tuple(np.stack(p) for p in zip(*parts, strict=True))  # type: ignore[return-value]
