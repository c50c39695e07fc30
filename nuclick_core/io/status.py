"""The instance table's ``status`` vocabulary: why a click has (``ok``) or has no instance.

One row per click is always written, so every click ends with exactly one of these values. The
engine sets them (:mod:`nuclick_core.inference`), the writers and reports read them; nothing
else spells them out.
"""

from __future__ import annotations

OK = "ok"
OUTSIDE_SLIDE = "outside_slide"
ON_BACKGROUND = "on_background"
EMPTY = "empty"
CLICK_OUTSIDE_MASK = "click_outside_mask"
LOST_TO_NEIGHBOUR = "lost_to_neighbour"
UNSUPPORTED_MARK = "unsupported_mark"
MARK_TOO_LARGE = "mark_too_large"
#: Held by a click while a run is under way; never written.
PENDING = "pending"

#: Every status a written instance table may hold, with its meaning (README, reports).
STATUSES: dict[str, str] = {
    OK: "an instance was found; the row has a polygon",
    OUTSIDE_SLIDE: "the mark lies outside the slide",
    ON_BACKGROUND: "the click is on bright, unstained glass",
    EMPTY: "nothing above the threshold in the patch",
    CLICK_OUTSIDE_MASK: "the predicted object is more than click_tolerance model pixels away",
    LOST_TO_NEIGHBOUR: "every pixel of the instance went to a neighbour",
    UNSUPPORTED_MARK: "the mark's kind does not fit the model (a point in a gland run, a "
    "squiggle in a nucleus or cell run)",
    MARK_TOO_LARGE: "the squiggle's patch box (twice its extent) would exceed 8 model patches: "
    "a squiggle longer than 4 patches (1.27 mm for the 256 px, 1.24 um/px gland models) is not "
    "read, so memory stays bounded (at the cap a run peaks about 40 MB above a small squiggle)",
}

#: The object types a mark, a model and a run can be about.
OBJECTS = ("nucleus", "cell", "gland")
