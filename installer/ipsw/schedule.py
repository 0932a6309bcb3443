"""Hand out byte ranges to fetch workers: one shared queue, guided request sizes, stealing.

The spans to fetch (sorted, merged) form one queue: large spans first (largest first),
then the small ones in file order. A worker that needs work
takes the next request from its front: a whole small span (one request each — spread over
all connections, so their round trips overlap with the others' transfers), or a chunk of a
large one sized ``left / (2 × workers)`` (between ``min_request`` and ``max_request``). The
chunks shrink as the queue drains, so the connections run out of work at about the same
time and the tail is short (guided self-scheduling). The size is scaled by the worker's
index, from 0.70× (worker 0) to 1.30× (the last, with 8 workers; 1× on average): with
equal sizes the connections drifted into step and sent their next requests at the same
moments, so the link idled for a round trip now and then (the bench's timeline showed
~0.07 s windows with fewer than 3 of 8 connections receiving; 0.02-0.05 s less in all on
the 65 MB firmware set at 80 ms). A worker that finds the queue empty
takes over the second half of the largest range still in flight, cut at an ``align``
boundary (the victim sees its new end on its next chunk and stops there), when that rest
is ``min_split`` bytes or more: cutting wastes what the server already sent past the cut,
so it is for a stalled or slow connection, not the normal end. Thread-safe; no I/O.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass
class _Slot:
    pos: int = 0  # the range in flight: next byte and (exclusive) end
    end: int = 0

    def remaining(self) -> int:
        return max(0, self.end - self.pos)


class WorkQueue:
    """Ranges for ``workers`` workers; worker ``i`` calls :meth:`next` and :meth:`advance`."""

    def __init__(self, spans: Iterable[tuple[int, int]], workers: int, *, align: int,
                 min_request: int, max_request: int, min_split: int, phase: int = 0) -> None:
        todo = [(s, e) for s, e in spans if e > s]
        # Large spans first, largest first: a big member is then complete (and checked and
        # written while the rest downloads) long before the end, and what is left to check
        # after the last byte is small.
        large = sorted((x for x in todo if x[1] - x[0] >= 4 * max(1, min_request)),
                       key=lambda x: x[0] - x[1])
        chosen = set(large)
        self._todo = deque(large + [x for x in todo if x not in chosen])
        self._left = sum(e - s for s, e in self._todo)
        self._slots = [_Slot() for _ in range(workers)]
        self._lock = threading.Lock()
        self.align = max(1, align)
        self.min_request = max(1, min_request)
        self.max_request = max(self.min_request, max_request)
        self.min_split = max(2 * self.align, min_split)
        self.phase = phase % self.align  # cut at multiples of align, plus this
        self.steals = 0

    def next(self, worker: int) -> tuple[int, int] | None:
        """The next range for ``worker`` to fetch, or None when all work is handed out."""
        with self._lock:
            slot = self._slots[worker]
            slot.pos = slot.end = 0
            if self._todo:
                s, e = self._todo.popleft()
                n = len(self._slots)  # left / 2n, times (2n + 2·worker) / (3n - 1)
                want = -(-self._left * (2 * n + 2 * worker) // (2 * n * (3 * n - 1)))
                size = max(self.min_request, min(self.max_request, want))
                cut = -(-(s + size - self.phase) // self.align) * self.align + self.phase
                if cut < e and e - cut >= self.min_request:
                    self._todo.appendleft((cut, e))
                    e = cut
                self._left -= e - s
            else:
                stolen = self._steal(slot)
                if stolen is None:
                    return None
                s, e = stolen
            slot.pos, slot.end = s, e
            return s, e

    def advance(self, worker: int, pos: int) -> int:
        """Record that ``worker`` has its range up to ``pos``; return where it must stop."""
        with self._lock:
            slot = self._slots[worker]
            slot.pos = pos
            return slot.end

    def _steal(self, thief: _Slot) -> tuple[int, int] | None:
        victim = max(self._slots, key=_Slot.remaining)
        if victim is thief or victim.remaining() < self.min_split:
            return None
        mid = victim.pos + victim.remaining() // 2
        mid = -(-mid // self.align) * self.align
        if mid >= victim.end or mid <= victim.pos:
            return None
        self.steals += 1
        stolen = (mid, victim.end)
        victim.end = mid
        return stolen
