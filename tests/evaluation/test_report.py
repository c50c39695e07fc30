"""Report tables mark the best value in each metric's own direction."""

from __future__ import annotations

import re

from nuclick_core.evaluation.report import _table


def test_best_is_highest_except_for_hausdorff() -> None:
    rows = {
        "nuclick": {"object_dice": 0.9, "object_hausdorff": 30.0},
        "watershed": {"object_dice": 0.5, "object_hausdorff": 80.0},
    }
    html = _table(rows, ("object_dice", "object_hausdorff"))
    best = re.findall(r'<td class="best">([^<]*)</td>', html)
    assert best == ["0.900", "30"]
