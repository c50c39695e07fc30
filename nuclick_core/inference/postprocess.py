"""Turn one patch's probability map into the clicked object's mask (each patch in 2-D).

Steps, as in the paper: threshold, remove objects under the minimum size, keep the component
connected to the click (a label lookup: for a binary mask that is what morphological
reconstruction from the click computes), fill small holes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from nuclick_core.io import status


@dataclass(frozen=True)
class PostprocessParams:
    """Thresholds in model pixels.

    threshold : probability above which a pixel is foreground.
    min_size : objects smaller than this many pixels are removed.
    min_hole : holes smaller than this many pixels are filled.
    click_tolerance : when the click pixel itself is background, the nearest component within
        this many pixels is taken; beyond it the status is ``click_outside_mask``.
    """

    threshold: float = 0.5
    min_size: int = 10
    min_hole: int = 30
    click_tolerance: float = 3.0


_FOUR = ndi.generate_binary_structure(2, 1)


def fill_small_holes(mask: np.ndarray, max_hole: int) -> np.ndarray:
    """Fill background components of ``mask`` smaller than ``max_hole`` pixels that do not touch
    the border."""
    holes, n = ndi.label(~mask, structure=_FOUR)
    if n == 0:
        return mask
    sizes = np.bincount(holes.ravel())
    border = np.unique(np.concatenate([holes[0], holes[-1], holes[:, 0], holes[:, -1]]))
    small = sizes < max_hole
    small[0] = False
    small[border] = False
    return mask | small[holes]


def clicked_object(
    prob: np.ndarray, click_rc: tuple[int, int], params: PostprocessParams
) -> tuple[np.ndarray, str]:
    """The clicked object's mask from one patch's probabilities.

    Parameters
    ----------
    prob : float32 (H, W) foreground probabilities of one patch.
    click_rc : (row, col) of the click in the patch.
    params : thresholds.

    Returns
    -------
    (mask, status): bool (H, W) mask and ``"ok"``, ``"empty"`` or ``"click_outside_mask"``
    (mask all False for the last two).

    Example
    -------
    >>> p = np.zeros((8, 8), np.float32); p[2:6, 2:6] = 0.9
    >>> m, s = clicked_object(p, (3, 3), PostprocessParams(min_size=4))
    >>> int(m.sum()), s
    (16, 'ok')
    """
    crop, (r0, c0), st = clicked_object_box(prob, click_rc, params)
    mask = np.zeros(prob.shape, bool)
    if crop is not None:
        mask[r0 : r0 + crop.shape[0], c0 : c0 + crop.shape[1]] = crop
    return mask, st


def clicked_object_box(
    prob: np.ndarray, click_rc: tuple[int, int], params: PostprocessParams
) -> tuple[np.ndarray | None, tuple[int, int], str]:
    """:func:`clicked_object` cropped to the object's bounding box: (mask or None, (row, col)
    of the box's corner in the patch, status). The patch is labelled once and holes are filled
    on the box alone: background on the box's border reaches the patch's border through the
    background outside the box, so it is never a hole, and the mask is the same."""
    fg = prob > params.threshold
    labels, n = ndi.label(fg, structure=_FOUR)
    if n == 0:
        return None, (0, 0), status.EMPTY
    sizes = np.bincount(labels.ravel())
    big = sizes >= params.min_size
    big[0] = False
    if not big.any():
        return None, (0, 0), status.EMPTY
    r, c = click_rc
    target = labels[r, c] if big[labels[r, c]] else 0
    if target == 0:
        radius = int(np.ceil(params.click_tolerance))
        r0, c0 = max(r - radius, 0), max(c - radius, 0)
        window = labels[r0 : r + radius + 1, c0 : c + radius + 1]
        rr, cc = np.nonzero(big[window])
        if len(rr) == 0:
            return None, (0, 0), status.CLICK_OUTSIDE_MASK
        d2 = (rr + r0 - r) ** 2 + (cc + c0 - c) ** 2
        k = np.lexsort((window[rr, cc], d2))[0]  # nearest; ties to the lower label
        if d2[k] > params.click_tolerance**2:
            return None, (0, 0), status.CLICK_OUTSIDE_MASK
        target = window[rr[k], cc[k]]
    mask = labels == target
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    return fill_small_holes(mask[r0:r1, c0:c1], params.min_hole), (r0, c0), status.OK


#: 4-connectivity within each 2-D slice of a stack of patches, none across slices.
_PLANE = np.zeros((3, 3, 3), bool)
_PLANE[1] = _FOUR


def centre_objects(
    probs: np.ndarray, params: PostprocessParams
) -> list[tuple[np.ndarray | None, tuple[int, int], str]]:
    """:func:`clicked_object_box` for each patch of a batch whose click is at the centre
    pixel ``(H // 2, W // 2)``; the same masks, boxes and statuses.

    Vectorised over the batch: most clicks lie on an object large enough that fits in a
    window around the click, so windows of a quarter and then half the patch's side are
    labelled for the whole batch at once (a component that does not touch the window's edges
    is the patch's component, pixel for pixel, and its holes are the same: the background
    around it in the window is one piece touching the window's edges). Patches the windows
    cannot decide (the click pixel is background, its object is under the minimum size or
    reaches beyond half the patch) take :func:`clicked_object_box`.

    probs : float (N, H, W) foreground probabilities.
    """
    n, h, w = probs.shape
    cr, cc = h // 2, w // 2
    out: list = [None] * n
    on_object = probs[:, cr, cc] > params.threshold
    todo, undecided = np.flatnonzero(on_object), [np.flatnonzero(~on_object)]
    for a in sorted({h // 8, h // 4}):
        if a < 2 or len(todo) == 0 or a > min(cr, cc, h - cr, w - cc):
            continue
        win = probs[todo, cr - a : cr + a, cc - a : cc + a] > params.threshold
        labels = ndi.label(win, structure=_PLANE)[0]
        comp = labels == labels[:, a, a][:, None, None]
        del labels
        edge = comp[:, 0].any(1) | comp[:, -1].any(1) | comp[:, :, 0].any(1) | comp[:, :, -1].any(1)
        small = comp.sum(axis=(1, 2)) < params.min_size
        done = ~edge & ~small
        undecided.append(todo[~edge & small])  # the whole object, too small: the nearest one
        if done.any():
            _fill_window_holes(comp[done], todo[done], (cr - a, cc - a), params, out)
        todo = todo[edge]
    for k in np.concatenate([todo, *undecided]).tolist():
        out[k] = clicked_object_box(probs[k], (cr, cc), params)
    return out


def _fill_window_holes(
    comp: np.ndarray,
    index: np.ndarray,
    corner: tuple[int, int],
    params: PostprocessParams,
    out: list,
) -> None:
    """Fill the small holes of window masks ``comp`` (M, S, S) none of which touches its
    window's edges, and put each one's bounding-box crop at ``out[index[j]]``.

    Only masks with a row crossed more than once can have a hole (a hole pixel has the mask
    on both sides of it along its row), so only those are labelled."""
    filled: np.ndarray = comp
    gaps = (comp[:, :, 1:] & ~comp[:, :, :-1]).sum(axis=2).max(axis=1) > 1
    if gaps.any():
        some = comp[gaps]
        holes = ndi.label(~some, structure=_PLANE)[0]
        sizes = np.bincount(holes.ravel())
        fill = sizes < params.min_hole
        fill[0] = False
        edges = [holes[:, 0], holes[:, -1], holes[:, :, 0], holes[:, :, -1]]
        fill[np.unique(np.concatenate(edges, axis=1))] = False
        filled = comp.copy()
        filled[gaps] = some | fill[holes]
    rows, cols = np.any(filled, axis=2), np.any(filled, axis=1)
    s = comp.shape[1]
    r0, c0 = rows.argmax(axis=1), cols.argmax(axis=1)
    r1, c1 = s - rows[:, ::-1].argmax(axis=1), s - cols[:, ::-1].argmax(axis=1)
    for j, k in enumerate(index.tolist()):
        crop = filled[j, r0[j] : r1[j], c0[j] : c1[j]].copy()
        out[k] = crop, (int(corner[0] + r0[j]), int(corner[1] + c0[j])), status.OK
