"""The fetch planner: which byte ranges to request, and in what order. Pure (no I/O).

Given the byte spans of the needed members (local header through data), it

1. sorts and merges spans whose gap is at most ``max_gap`` bytes (a gap costs bytes, a
   separate request costs a round trip on one connection — with several connections busy,
   round trips are mostly hidden, so the default gap is small and the byte overhead stays
   ≈ 1 %);
2. splits large ranges into pieces so that ``connections`` parallel requests share the work
   evenly (about ``pieces_per_connection`` pieces each, between ``min_piece`` and
   ``max_piece`` bytes); a large member is thus fetched over several connections;
3. orders the pieces largest first, so that the small ones fill in at the end and all
   connections finish together.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

MiB = 1 << 20


@dataclass(frozen=True, slots=True)
class Piece:
    """One HTTP range request: bytes ``[start, end)``."""

    start: int
    end: int

    @property
    def size(self) -> int:
        return self.end - self.start


@dataclass(frozen=True, slots=True)
class PlanOptions:
    connections: int = 8
    max_gap: int = 16 << 10
    pieces_per_connection: int = 2
    min_piece: int = 1 * MiB
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


def piece_size(total: int, opts: PlanOptions) -> int:
    """Target piece size: an even share of ``total`` per connection slot, clamped."""
    slots = max(1, opts.connections * opts.pieces_per_connection)
    target = -(-total // slots)
    return max(opts.min_piece, min(opts.max_piece, target))


def split(ranges: Iterable[tuple[int, int]], target: int) -> list[Piece]:
    """Cut each range into near-equal pieces of at most about ``target`` bytes."""
    pieces: list[Piece] = []
    for start, end in ranges:
        n = max(1, -(-(end - start) // target))
        step = -(-(end - start) // n)
        for s in range(start, end, step):
            pieces.append(Piece(s, min(end, s + step)))
    return pieces


def plan(spans: Iterable[tuple[int, int]], opts: PlanOptions = PlanOptions()) -> list[Piece]:
    """The requests that fetch every span: coalesced, split, largest first."""
    ranges = coalesce(spans, opts.max_gap)
    total = sum(e - s for s, e in ranges)
    if opts.connections <= 1:
        pieces = [Piece(s, e) for s, e in ranges]
        return pieces  # one connection: file order, no splitting
    pieces = split(ranges, piece_size(total, opts))
    return sorted(pieces, key=lambda p: (-p.size, p.start))


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
