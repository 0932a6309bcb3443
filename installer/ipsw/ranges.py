"""The fetch planner: which byte ranges to request, and in what order. Pure (no I/O).

Given the byte spans of the needed members (local header through data), it

1. sorts and merges spans whose gap is at most ``max_gap`` bytes (a gap costs bytes, a
   separate request costs a round trip on one connection — with several connections busy,
   round trips are mostly hidden, so the default gap is small and the byte overhead stays
   ≈ 1 %);
2. lays the ranges end to end and cuts that sequence into ``connections ×
   pieces_per_connection`` jobs of equal byte count (at least ``min_piece``, at most
   ``max_piece``): a large member is fetched over several connections, small ones ride
   along in the job that reaches them, and with a fair link every connection finishes at
   the same time (no idle tail). A job is one request per range it touches.
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
    pieces_per_connection: int = 1  # the fetcher rebalances by stealing at the end
    min_piece: int = 1 * MiB
    max_piece: int = 1024 * MiB
    #: What one more request costs, in bytes one connection could have carried meanwhile
    #: (≈ RTT × per-connection rate); jobs are balanced on bytes + requests × this.
    request_cost: int = 128 << 10


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


Job = tuple[Piece, ...]


def cut(ranges: list[tuple[int, int]], size: int, request_cost: int = 0) -> list[Job]:
    """Cut the ranges, laid end to end, into jobs of ``size`` bytes (the last one less),
    where each request a job makes counts ``request_cost`` bytes."""
    jobs: list[Job] = []
    cur: list[Piece] = []
    room = size
    for start, end in ranges:
        pos = start
        while pos < end:
            if cur and room <= request_cost:  # another request would not pay: next job
                jobs.append(tuple(cur))
                cur, room = [], size
            room -= request_cost
            take = min(max(room, 1), end - pos)
            cur.append(Piece(pos, pos + take))
            pos += take
            room -= take
            if room <= 0:
                jobs.append(tuple(cur))
                cur, room = [], size
    if cur:
        jobs.append(tuple(cur))
    return jobs


def plan(spans: Iterable[tuple[int, int]], opts: PlanOptions = PlanOptions()) -> list[Job]:
    """The jobs (sequences of range requests) that fetch every span, one connection each."""
    ranges = coalesce(spans, opts.max_gap)
    if opts.connections <= 1:
        return [(Piece(s, e),) for s, e in ranges]  # one connection: file order, whole
    slots = max(1, opts.connections * opts.pieces_per_connection)
    total = sum(e - s for s, e in ranges) + (len(ranges) + slots) * opts.request_cost
    size = max(piece_size(total, opts), 2 * opts.request_cost)
    jobs = cut(ranges, size, opts.request_cost)
    while len(jobs) > slots and size < opts.max_piece:  # splits cost requests too: widen
        size = min(opts.max_piece, size + size // 64 + 1)
        jobs = cut(ranges, size, opts.request_cost)
    return jobs


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
