"""Training patches for squiggle-guided glands, as the paper describes.

Each sample is one gland: its squiggle is the skeleton of the gland after thresholding its
distance transform at a random tau
(:func:`nuclick_core.inference.signals.gland_skeleton`), drawn anew each
time; the patch is planned exactly as at inference (:func:`plan_box`: relaxed to the patch
size, or the box doubled and down-scaled); the exclusion map holds one interior pixel of each
other gland in the patch.
"""

from __future__ import annotations

import numpy as np
import shapely
from skimage.transform import resize

from nuclick_core.data.labelled import LabelledImage, crop
from nuclick_core.data.marks import MARK_SHIFTS, gland_stroke
from nuclick_core.inference.signals import (
    gland_skeleton,
    network_input,
    point_map,
    sample_click,
)
from nuclick_core.inference.squiggles import plan_box
from nuclick_core.training.augment import Variety, flip_rotate, photometric
from nuclick_core.training.click_patches import index_objects

#: Hand-like training strokes (besides the paper's skeleton): those of the robustness yardstick.
STROKES = tuple(MARK_SHIFTS["gland"])


class GlandPatchSampler:
    """Draws (x, target, others) gland training examples at ``patch_size`` (512 in the paper)."""

    def __init__(
        self,
        images: list[LabelledImage],
        *,
        patch_size: int = 512,
        augment: bool = True,
        variety: Variety | None = None,
        strokes: float = 0.0,
    ) -> None:
        self.images = images
        self.variety = variety or Variety()
        self.strokes = strokes
        self.objects = index_objects(images, min_area=64)
        if not self.objects:
            raise ValueError("no labelled glands in the training images")
        self.patch_size = patch_size
        self.augment = augment

    def __len__(self) -> int:
        return len(self.objects)

    def sample(self, index: int, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
        ref = self.objects[index]
        item = self.images[ref.image_index]
        r0, c0, r1, c1 = ref.bbox
        mask = item.labels[r0:r1, c0:c1] == ref.label
        if self.augment and self.strokes and rng.random() < self.strokes:
            kind = STROKES[int(rng.integers(len(STROKES)))]
            line = shapely.segmentize(gland_stroke(mask, kind, rng), 0.5)
            xy = np.unique(np.floor(shapely.get_coordinates(line)).astype(int), axis=0)
            inside = (xy[:, 1] >= 0) & (xy[:, 1] < mask.shape[0])
            inside &= (xy[:, 0] >= 0) & (xy[:, 0] < mask.shape[1])
            skeleton = np.zeros_like(mask)
            skeleton[xy[inside, 1], xy[inside, 0]] = True
            if not skeleton.any():
                skeleton = gland_skeleton(mask, rng=rng)
        else:
            skeleton = gland_skeleton(mask, rng=rng)
        rows, cols = np.nonzero(skeleton)
        pts = np.column_stack([cols + c0, rows + r0]).astype(np.float64)
        plan = plan_box(pts.min(0), pts.max(0), self.patch_size)
        u0, v0 = plan.origin_uv
        side, p = plan.side, self.patch_size
        rgb = crop(item.image, v0, u0, side, 255)
        if self.augment:
            rgb = self.variety.appearance(rgb, rng)
        img = rgb.astype(np.float32) / 255.0
        lab = crop(item.labels, v0, u0, side, 0)
        target = (lab == ref.label).astype(np.float32)
        others_mask = (lab > 0) & (lab != ref.label)
        s = p / side
        local = (pts - [u0, v0] + 0.5) * s - 0.5
        inclusion = point_map((p, p), local)
        excl_pts = []
        for other in np.unique(lab[others_mask]):
            excl_pts.append(sample_click(lab == other, rng))
        exclusion = point_map((p, p), (np.array(excl_pts).reshape(-1, 2) + 0.5) * s - 0.5)
        others = others_mask.astype(np.float32)
        if side != p:
            img = resize(img, (p, p), order=1, anti_aliasing=True, preserve_range=True)
            target = (resize(target, (p, p), order=1, anti_aliasing=True) > 0.5).astype(np.float32)
            others = (resize(others, (p, p), order=1, anti_aliasing=True) > 0.5).astype(np.float32)
        if self.augment:
            img = photometric(img.astype(np.float32), rng)
            img, inclusion, exclusion, target, others = flip_rotate(
                [img, inclusion, exclusion, target, others], rng
            )
        return network_input(img, inclusion, exclusion), target[None], others[None]

    def batch(self, indices: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
        parts = [self.sample(int(i), rng) for i in indices]
        return tuple(np.stack(p) for p in zip(*parts, strict=True))

    def fixed_batch(self, indices: np.ndarray) -> tuple[np.ndarray, ...]:
        """Validation examples: a fixed seed per object, no augmentation."""
        saved, self.augment = self.augment, False
        try:
            parts = [self.sample(int(i), np.random.default_rng([7, int(i)])) for i in indices]
        finally:
            self.augment = saved
        return tuple(np.stack(p) for p in zip(*parts, strict=True))
