"""Hand out byte ranges to fetch workers, and rebalance at the end by stealing.

The planner cuts the work into one equal-cost job per connection. Real connections are not
equally fast, so a worker that runs out of work takes half of what the busiest worker still
has: the later half of its unstarted pieces, or the second half of the range it is
fetching (cut at a block boundary; the victim sees its new end on its next chunk and stops
there). Cutting a range in flight wastes what the server already sent past the cut (the
victim closes its response), so that is done only for rests of ``min_split`` bytes or
more, where the waste is small in comparison. Thread-safe; no I/O.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from installer.ipsw.ranges import Job


@dataclass
class _Slot:
    pieces: list[tuple[int, int]] = field(default_factory=list)  # not started yet
    pos: int = 0  # the range in flight: next byte and (exclusive) end
    end: int = 0

    def remaining(self) -> int:
        return max(0, self.end - self.pos) + sum(e - s for s, e in self.pieces)


class WorkQueue:
    """Jobs for ``workers`` workers; worker ``i`` calls :meth:`next` and :meth:`advance`."""

    def __init__(self, jobs: Iterable[Job], workers: int, *, min_steal: int,
                 align: int, min_split: int | None = None) -> None:
        self._todo = deque(jobs)
        self._slots = [_Slot() for _ in range(workers)]
        self._lock = threading.Lock()
        self.min_steal = min_steal
        self.min_split = max(min_steal, min_split or 0)
        self.align = align
        self.steals = 0

    def next(self, worker: int) -> tuple[int, int] | None:
        """The next range for ``worker`` to fetch, or None when all work is handed out."""
        with self._lock:
            slot = self._slots[worker]
            slot.pos = slot.end = 0
            if not slot.pieces and self._todo:
                slot.pieces = [(p.start, p.end) for p in self._todo.popleft()]
            if not slot.pieces:
                slot.pieces = self._steal(slot)
            if not slot.pieces:
                return None
            slot.pos, slot.end = slot.pieces.pop(0)
            return slot.pos, slot.end

    def advance(self, worker: int, pos: int) -> int:
        """Record that ``worker`` has its range up to ``pos``; return where it must stop."""
        with self._lock:
            slot = self._slots[worker]
            slot.pos = pos
            return slot.end

    def _steal(self, thief: _Slot) -> list[tuple[int, int]]:
        victim = max(self._slots, key=_Slot.remaining)
        if victim is thief or victim.remaining() < self.min_steal:
            return []
        self.steals += 1
        if victim.pieces:
            # Unstarted pieces: take the later ones, about half of the victim's backlog.
            half = victim.remaining() // 2
            taken: list[tuple[int, int]] = []
            size = 0
            while victim.pieces:
                s, e = victim.pieces[-1]
                if taken and size + (e - s) > half:
                    break
                taken.insert(0, victim.pieces.pop())
                size += e - s
            return taken
        # Only the range in flight: split it at a block boundary past the victim's position.
        if victim.end - victim.pos < self.min_split:
            self.steals -= 1
            return []
        mid = victim.pos + (victim.end - victim.pos) // 2
        mid = -(-mid // self.align) * self.align
        if mid >= victim.end or mid <= victim.pos:
            self.steals -= 1
            return []
        stolen = (mid, victim.end)
        victim.end = mid
        return [stolen]
