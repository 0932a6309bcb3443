"""Which bytes of a member that failed its CRC to fetch again, and when to stop trying.

A zip member has one CRC-32 for all of its data, so a failed check says *that* some byte is
wrong, not *which*. A flaky mirror corrupts one response at a time (a flipped byte, a body
shifted from the offset asked for), so two independent downloads of the same bytes agree
where they are right. Each failed check records a CRC per 64 KiB unit of the member's span;
a unit whose current bytes were seen before, more often than any other version of it, is
confirmed, the others are fetched again. The first failure confirms nothing, so the whole
member comes again once.

It stops (one line) when the same wrong bytes keep coming back — the image on the server is
damaged, no retry will cure it — or after a bounded number of rounds per member. Pure (no
I/O beyond the ``pread`` it is given).
"""

from __future__ import annotations

import zlib
from collections import Counter
from dataclasses import dataclass, field

from installer.errors import RestoreImageError
from installer.ipsw.member import PRead
from installer.ipsw.ranges import coalesce
from installer.ipsw.remote import Member

UNIT = 64 << 10


def units(m: Member) -> list[tuple[int, int]]:
    """``m``'s span cut at UNIT-aligned archive offsets."""
    out = []
    pos = m.start
    while pos < m.end:
        nxt = min(m.end, (pos // UNIT + 1) * UNIT)
        out.append((pos, nxt))
        pos = nxt
    return out


@dataclass
class _Record:
    rounds: int = 0
    seen: Counter[tuple[int, ...]] = field(default_factory=Counter)  # whole-span versions
    votes: dict[tuple[int, int], Counter[int]] = field(default_factory=dict)


class Suspects:
    """Failed checks per member; :meth:`failed` says what to fetch again."""

    def __init__(self, *, same_bytes: int = 3, max_rounds: int = 8) -> None:
        self.same_bytes = same_bytes
        self.max_rounds = max_rounds
        self._records: dict[str, _Record] = {}

    def rounds(self, name: str) -> int:
        rec = self._records.get(name)
        return rec.rounds if rec else 0

    def failed(self, m: Member, pread: PRead, err: RestoreImageError) -> list[tuple[int, int]]:
        """``m`` failed its check with ``err`` (its bytes are all in ``pread``): the ranges
        to drop and fetch again, or :class:`RestoreImageError` when retrying is hopeless."""
        rec = self._records.setdefault(m.name, _Record())
        rec.rounds += 1
        us = units(m)
        crcs = tuple(zlib.crc32(pread(a, b - a)) for a, b in us)
        rec.seen[crcs] += 1
        if rec.seen[crcs] >= self.same_bytes:
            raise RestoreImageError(
                f"{err.message}; the server sent these same bytes {rec.seen[crcs]} times",
                hint="the image on the server is damaged: try another mirror (IPSW_BASE)")
        if rec.rounds >= self.max_rounds:
            raise RestoreImageError(f"{err.message} (still wrong after {rec.rounds} fetches)",
                                    hint="the server keeps sending bad bytes: try another "
                                         "mirror (IPSW_BASE)")
        bad = []
        contested = []
        for u, c in zip(us, crcs, strict=True):
            v = rec.votes.setdefault(u, Counter())
            v[c] += 1
            rival = max((n for k, n in v.items() if k != c), default=0)
            if v[c] < 2 or v[c] <= rival:  # unconfirmed, or outvoted / tied
                bad.append(u)
            if len(v) > 1:
                contested.append(u)
        # Every unit is confirmed, yet the member is wrong: two responses were wrong alike
        # (a fault that repeats for the same request) — fetch the units that ever differed
        # until one version wins, or all of it when none did.
        return coalesce(bad or contested, 0) or [(m.start, m.end)]
