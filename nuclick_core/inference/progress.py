"""Progress of a run in its log: marks done, marks per second and the time left, every few
seconds, so that a cohort owner can watch a cluster job's log file (``tail -f``)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

log = logging.getLogger("nuclick")


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Progress:
    """Log ``progress: 1,200/5,000 clicks (24.0%), 410 clicks/s, ETA 0:09`` at most every
    ``every`` seconds (0: never) while marks are done, and once at the end."""

    def __init__(
        self,
        total: int,
        *,
        noun: str = "clicks",
        every: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total, self.noun, self.every, self.clock = total, noun, every, clock
        self.start = self.last = clock()

    def line(self, done: int) -> str:
        elapsed = max(self.clock() - self.start, 1e-9)
        rate = done / elapsed
        share = f" ({100 * done / self.total:.1f}%)" if self.total else ""
        left = self.total - done
        eta = _duration(left / rate) if rate > 0 else "unknown"
        return (
            f"progress: {done:,}/{self.total:,} {self.noun}{share}, {rate:,.0f} {self.noun}/s, "
            f"ETA {eta}, elapsed {_duration(elapsed)}"
        )

    def update(self, done: int) -> None:
        if self.every > 0 and self.clock() - self.last >= self.every:
            self.last = self.clock()
            log.info(self.line(done))

    def finish(self, done: int) -> None:
        if self.every > 0:
            log.info(self.line(done))
