"""Resolve overlaps between neighbouring instances and hand them on to be polygonised.

Ownership rule: a pixel claimed by several instances goes to the one with the highest
probability there, ties to the click nearer the pixel, then to the lower click id. The rule is
pointwise, so the result does not depend on batch size, thread count or processing order. After
losing pixels an instance keeps only its component that holds its click (or, if it lost the click
pixel itself, its largest component), so no instance is fragmented by a neighbour.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import numpy as np
import shapely
from scipy import ndimage as ndi

from nuclick_core.inference.outline import side_by_side
from nuclick_core.inference.patches import Reach
from nuclick_core.io import status
from nuclick_core.io.geometries import Geometries

_FOUR = ndi.generate_binary_structure(2, 1)


@dataclass
class PatchInstance:
    """One clicked object on the model grid.

    click_id : the click it answers.
    row0, col0 : grid position of ``mask[0, 0]``.
    mask : bool (h, w) cropped to the object's bounding box.
    prob : float32 (h, w) probabilities over the same box.
    click_rc : grid (row, col) of the click.
    anchor : for squiggles, bool (h, w) of the squiggle's pixels over the same box; every
        component still holding one is kept (a gland may be several pieces along its squiggle).
    settled : set by :class:`Settler` once the instance's final mask is decided (it may still
        be held as a neighbour of instances not yet settled).
    """

    click_id: int
    row0: int
    col0: int
    mask: np.ndarray
    prob: np.ndarray
    click_rc: tuple[int, int]
    anchor: np.ndarray | None = None
    settled: bool = False

    @property
    def box(self) -> tuple[int, int, int, int]:
        h, w = self.mask.shape
        return self.row0, self.col0, self.row0 + h, self.col0 + w


def _ragged(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For groups of ``counts`` elements laid end to end: each element's group and its index
    within the group."""
    group = np.repeat(np.arange(len(counts)), counts)
    starts = np.cumsum(counts) - counts
    return group, np.arange(int(counts.sum())) - starts[group]


#: Overlap pixels decided in one pass of :func:`_lost` (about 70 bytes of temporaries each).
PIXELS_AT_ONCE = 1 << 19


def _lost(
    instances: list[PatchInstance],
    box: np.ndarray,
    overlaps: np.ndarray,
    rule: str,
    offset: np.ndarray,
) -> np.ndarray:
    """The pixels targets lose to neighbours, as indices ``offset[target] + pixel of its mask``.

    ``box`` int (N, 4): each instance's grid box (r0, c0, r1, c1). ``overlaps`` int (P, 6):
    target, neighbour (indices into ``instances``), and the grid row, column, height and width
    of the two boxes' overlap; each overlap's pixels are enumerated into flat buffers of the
    instances' masks (and probabilities) laid end to end.
    """
    t, j, r0, c0, h, w = overlaps.T
    used = np.unique(overlaps[:, :2])
    top, left = box[:, 0], box[:, 1]
    width = box[:, 3] - box[:, 1]
    size = (box[used, 2] - box[used, 0]) * width[used]
    start = np.zeros(len(instances), np.int64)
    start[used] = np.cumsum(size) - size
    masks = np.concatenate([instances[u].mask.ravel() for u in used.tolist()])
    pair, within = _ragged(h * w)
    rows, cols = r0[pair] + within // w[pair], c0[pair] + within % w[pair]
    tp, jp = t[pair], j[pair]
    in_t = (rows - top[tp]) * width[tp] + cols - left[tp]
    in_j = (rows - top[jp]) * width[jp] + cols - left[jp]
    both = masks[start[tp] + in_t] & masks[start[jp] + in_j]
    rows, cols, tp, jp, in_t, in_j = (a[both] for a in (rows, cols, tp, jp, in_t, in_j))
    ids = np.zeros(len(instances), np.int64)
    ids[used] = [instances[u].click_id for u in used.tolist()]
    if rule == "later":
        wins = ids[jp] > ids[tp]
    else:
        probs = np.concatenate([instances[u].prob.ravel() for u in used.tolist()])
        click = np.zeros((len(instances), 2), np.int64)
        click[used] = [instances[u].click_rc for u in used.tolist()]
        dj = (rows - click[jp, 0]) ** 2 + (cols - click[jp, 1]) ** 2
        dt = (rows - click[tp, 0]) ** 2 + (cols - click[tp, 1]) ** 2
        pj, pt = probs[start[jp] + in_j], probs[start[tp] + in_t]
        wins = (pj > pt) | ((pj == pt) & ((dj < dt) | ((dj == dt) & (ids[jp] < ids[tp]))))
    return offset[tp[wins]] + in_t[wins]


def _settle(
    instances: list[PatchInstance],
    targets: list[int] | None,
    rule: str,
    finish: Callable[[list[tuple[np.ndarray, PatchInstance]]], list[np.ndarray | None]],
) -> dict[int, np.ndarray | None]:
    """For each target instance, remove the pixels it loses to any overlapping instance, then
    ``finish`` the masks (each with its instance), all at once.

    ``rule`` says who wins a pixel two masks claim: ``"ownership"`` (the module's rule: higher
    probability, then the click nearer the pixel, then the lower click id) or ``"later"`` (the
    higher click id). Every pixel of every overlap of every (target, neighbour) pair is decided
    by array operations (:func:`_lost`), :data:`PIXELS_AT_ONCE` pixels at a time.
    """
    if not instances:
        return {}
    box = np.array([i.box for i in instances], np.int64).reshape(-1, 4)  # r0, c0, r1, c1
    boxes = shapely.box(box[:, 1], box[:, 0], box[:, 3], box[:, 2])
    targets = list(range(len(instances))) if targets is None else targets
    t_of = np.asarray(targets, np.int64)
    # every (target, neighbour) pair of intersecting boxes
    pairs = (
        shapely.STRtree(boxes).query(boxes[t_of], predicate="intersects")
        if targets
        else np.zeros((2, 0), np.int64)
    )
    t, j = t_of[pairs[0]], pairs[1]
    r0, c0 = np.maximum(box[t, 0], box[j, 0]), np.maximum(box[t, 1], box[j, 1])
    r1, c1 = np.minimum(box[t, 2], box[j, 2]), np.minimum(box[t, 3], box[j, 3])
    real = (t != j) & (r1 > r0) & (c1 > c0)  # boxes that touch along an edge share no pixel
    overlaps = np.stack([t, j, r0, c0, r1 - r0, c1 - c0], 1)[real]
    may_lose = np.zeros(len(instances), bool)
    may_lose[overlaps[:, 0]] = True
    size = (box[:, 2] - box[:, 0]) * (box[:, 3] - box[:, 1]) * may_lose
    offset = np.cumsum(size) - size
    lost = np.zeros(int(size.sum()), bool)
    total = np.cumsum(overlaps[:, 4] * overlaps[:, 5])
    cuts = np.searchsorted(
        total, np.arange(PIXELS_AT_ONCE, total[-1] if len(total) else 0, PIXELS_AT_ONCE)
    )
    edges = np.unique(np.concatenate([[0], cuts, [len(overlaps)]]))
    for lo, hi in zip(edges[:-1].tolist(), edges[1:].tolist(), strict=True):
        lost[_lost(instances, box, overlaps[lo:hi], rule, offset)] = True
    cut: list[tuple[np.ndarray, PatchInstance]] = []
    for k in targets:
        inst, mask = instances[k], instances[k].mask
        if may_lose[k]:
            gone = lost[offset[k] : offset[k] + size[k]].reshape(mask.shape)
            if gone.any():
                mask = mask & ~gone
        cut.append((mask, inst))
    return {inst.click_id: m for (_, inst), m in zip(cut, finish(cut), strict=True)}


def resolve_overlaps(
    instances: list[PatchInstance], targets: list[int] | None = None
) -> dict[int, np.ndarray | None]:
    """Final mask per click id (cropped like the input), or None when nothing is left.

    ``targets`` (indices into ``instances``) limits which instances are settled; all of
    ``instances`` still count as neighbours. A streaming run settles the instances no future
    patch can reach and keeps the others for later.
    """
    return _settle(instances, targets, "ownership", _keep_click_components)


def paste_last_wins(
    instances: list[PatchInstance], targets: list[int] | None = None
) -> dict[int, np.ndarray | None]:
    """The original implementations' behaviour, for comparison only: masks pasted in click
    order, each later instance overwriting earlier ones, no clean-up (instances may end up
    fragmented)."""
    return _settle(
        instances, targets, "later", lambda cut: [m if m.any() else None for m, _ in cut]
    )


def _keep_click_components(cut: list[tuple[np.ndarray, PatchInstance]]) -> list[np.ndarray | None]:
    """:func:`_keep_click_component` of each (mask, instance), the masks labelled together, side
    by side on canvases; only those in several pieces are looked at one by one."""
    out: list[np.ndarray | None] = [m if m.any() else None for m, _ in cut]
    for canvas, index, left in side_by_side([m for m, _ in cut]):
        labels, n = ndi.label(canvas, structure=_FOUR)
        rr, cc = np.nonzero(labels)
        owner = np.zeros(n + 1, np.int64)
        owner[labels[rr, cc]] = np.searchsorted(left, cc, side="right") - 1
        pieces = np.bincount(owner[1:], minlength=len(index))
        for j in np.flatnonzero(pieces > 1).tolist():
            out[index[j]] = _keep_click_component(*cut[index[j]])
    return out


def _keep_click_component(mask: np.ndarray, inst: PatchInstance) -> np.ndarray | None:
    """The component holding the click (for squiggles: every component touching the squiggle);
    when the mark lost all its pixels, the largest component."""
    labels, n = ndi.label(mask, structure=_FOUR)
    if n == 0:
        return None
    if n == 1:
        return mask
    if inst.anchor is not None:
        keep_ids = np.unique(labels[inst.anchor & mask])
        if len(keep_ids):
            return np.isin(labels, keep_ids)
        keep = 0
    else:
        r, c = inst.click_rc[0] - inst.row0, inst.click_rc[1] - inst.col0
        inside = 0 <= r < mask.shape[0] and 0 <= c < mask.shape[1]
        keep = labels[r, c] if inside else 0
    if keep == 0:
        sizes = np.bincount(labels.ravel())
        sizes[0] = 0
        keep = int(np.argmax(sizes))  # ties: the lowest label, i.e. first in raster order
    return labels == keep


class Settler:
    """Holds instances until no later patch can reach them, then settles their overlaps and
    turns them into level-0 polygons; what it holds is a strip along the lower edge of each
    tile row plus the tiles being read (see :class:`~nuclick_core.inference.patches.Reach`),
    not the slide or a band across its width.

    ``settle`` is :func:`resolve_overlaps` (or :func:`paste_last_wins` for the paper's
    comparison); ``polygonise`` maps a list of (mask, row0, col0) on the model grid to their
    level-0 polygons, in order. Results land in ``geoms`` (:class:`Geometries`), ``score`` and
    ``status`` (arrays over the click table's rows, owned by the engine); ``timed(stage)``
    times the settling. Settled masks are polygonised and stored :data:`CHUNK` at a time, so
    a flush holds at most that many polygons and their WKB, however wide the slide.
    """

    CHUNK = 2048

    def __init__(
        self,
        settle: Callable[..., dict[int, np.ndarray | None]],
        polygonise: Callable[[list[tuple[np.ndarray, int, int]]], list],
        geoms: Geometries,
        score: np.ndarray,
        status_of: np.ndarray,
        timed: Callable[[str], AbstractContextManager] = lambda _: nullcontext(),
    ) -> None:
        self.settle, self.polygonise, self.timed = settle, polygonise, timed
        self.geoms, self.score, self.status = geoms, score, status_of
        self.held: list[PatchInstance] = []
        self.peak = 0

    def add(self, inst: PatchInstance) -> None:
        self.held.append(inst)
        self.peak = max(self.peak, len(self.held))

    def flush(self, reach: Reach, patch_size: int) -> None:
        """Settle the held instances that no patch still to come (``reach``) overlaps; forget
        the settled ones that nothing unsettled or still to come can overlap: their box grown
        by a patch is out of reach (an overlapping instance is at most a patch in size)."""
        targets = [
            k
            for k, inst in enumerate(self.held)
            if not inst.settled and reach.clear_of(inst.box[2], inst.box[3])
        ]
        with self.timed("settle"):
            masks = self.settle(self.held, targets).values()
        settled = list(zip((self.held[k] for k in targets), masks, strict=True))
        for start in range(0, len(settled), self.CHUNK):
            done: list[tuple[PatchInstance, np.ndarray]] = []
            for inst, mask in settled[start : start + self.CHUNK]:
                inst.settled = True
                if mask is None:
                    self.status[inst.click_id] = status.LOST_TO_NEIGHBOUR
                else:
                    done.append((inst, mask))
            polys = self.polygonise([(mask, inst.row0, inst.col0) for inst, mask in done])
            self.geoms.put([inst.click_id for inst, _ in done], polys)
            for inst, mask in done:
                self.score[inst.click_id] = float(inst.prob[mask].mean())
        p = patch_size
        self.held = [
            i for i in self.held if not (i.settled and reach.clear_of(i.box[2] + p, i.box[3] + p))
        ]
