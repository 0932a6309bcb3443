"""Byte-range arithmetic for the fetcher, and its options. Pure (no I/O).

The spans a fetch needs (each member's local header through its data) are sorted and
merged where the gap between them is at most ``max_gap`` bytes: a gap costs bytes, a
separate request costs a round trip on one connection (mostly hidden while the other
connections are busy), so the default gap is small and the byte overhead stays ≈ 1 %.
How the merged spans are cut into requests and spread over connections is
:mod:`installer.ipsw.schedule`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

MiB = 1 << 20


@dataclass(frozen=True, slots=True)
class PlanOptions:
    connections: int = 8
    max_gap: int = 16 << 10
    #: Request sizes: a large span is fetched in chunks of ``left / (2 × connections)``
    #: within these bounds (small at the end, so that connections finish together).
    min_piece: int = 256 << 10
    max_piece: int = 64 * MiB


def coalesce(spans: Iterable[tuple[int, int]], max_gap: int) -> list[tuple[int, int]]:
    """Merge overlapping spans and those separated by at most ``max_gap`` bytes."""
    out: list[tuple[int, int]] = []
    for start, end in sorted(s for s in spans if s[1] > s[0]):
        if out and start - out[-1][1] <= max_gap:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def subtract(start: int, end: int, have: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """The parts of ``[start, end)`` not covered by the sorted, merged intervals ``have``."""
    out = []
    pos = start
    for s, e in have:
        if e <= pos:
            continue
        if s >= end:
            break
        if s > pos:
            out.append((pos, min(s, end)))
        pos = max(pos, e)
        if pos >= end:
            break
    if pos < end:
        out.append((pos, end))
    return out
