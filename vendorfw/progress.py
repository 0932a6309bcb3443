"""The CLI's progress renderer: bytes done, speed, on one stderr line.

Library code only calls ``progress(nbytes)``; the CLI decides whether anyone is watching
(a TTY, or ``--progress``) and passes this meter, or nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TextIO


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


class ByteMeter:
    """Callable progress sink that redraws at most every ``interval`` seconds."""

    def __init__(
        self,
        stream: TextIO,
        label: str,
        *,
        interval: float = 0.2,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream
        self.label = label
        self.interval = interval
        self.clock = clock
        self.start = clock()
        self.last = -interval
        self.done = 0
        self.drawn = False

    def __call__(self, nbytes: int) -> None:
        self.done += nbytes
        now = self.clock()
        if now - self.last >= self.interval:
            self.last = now
            self._draw(now)

    def _draw(self, now: float) -> None:
        elapsed = max(now - self.start, 1e-9)
        self.stream.write(
            f"\r{self.label}: {human(self.done)} ({human(self.done / elapsed)}/s)\x1b[K"
        )
        self.stream.flush()
        self.drawn = True

    def finish(self) -> None:
        """Draw the final count and end the line (only if anything was drawn)."""
        if self.drawn:
            self._draw(self.clock())
            self.stream.write("\n")
            self.stream.flush()
