"""Progress lines in a run's log (#16): clicks done, clicks/s and the time left."""

from __future__ import annotations

import logging

from nuclick_core.inference.progress import Progress


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_lines_every_few_seconds_with_rate_and_eta(caplog) -> None:
    clock = Clock()
    progress = Progress(5000, every=5.0, clock=clock)
    caplog.set_level(logging.INFO, logger="nuclick")
    clock.now += 2.0
    progress.update(800)  # too soon: no line
    assert not caplog.records
    clock.now += 3.0
    progress.update(1200)
    assert caplog.messages == [
        "progress: 1,200/5,000 clicks (24.0%), 240 clicks/s, ETA 0:16, elapsed 0:05"
    ]
    clock.now += 1.0
    progress.update(1300)  # 1 s after the last line
    assert len(caplog.messages) == 1
    clock.now += 3594.0
    progress.finish(5000)
    assert caplog.messages[-1] == (
        "progress: 5,000/5,000 clicks (100.0%), 1 clicks/s, ETA 0:00, elapsed 1:00:00"
    )


def test_off_and_empty(caplog) -> None:
    caplog.set_level(logging.INFO, logger="nuclick")
    clock = Clock()
    quiet = Progress(10, every=0, clock=clock)
    clock.now += 60
    quiet.update(5)
    quiet.finish(10)
    assert not caplog.records
    Progress(0, noun="squiggles", clock=clock).finish(0)
    assert caplog.messages == ["progress: 0/0 squiggles, 0 squiggles/s, ETA unknown, elapsed 0:00"]
