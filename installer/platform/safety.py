"""The executor touches only what the plan owns: hashes of every byte range it does not own.

On a disk image the unowned ranges are hashed extent by extent (SEEK_DATA/SEEK_HOLE), so a
512 GB sparse image costs what it holds. Only non-zero 4 KiB blocks enter the hash (with
their offsets), so the digest depends on the bytes a reader sees, not on how the host
filesystem happens to split the file into extents.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from installer.platform.sparse import CHUNK, data_extents

BLOCK = 4096


def unowned(size: int, owned: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """Complement of ``owned`` (sorted, merged) within ``[0, size)``."""
    out: list[tuple[int, int]] = []
    pos = 0
    for s, e in sorted(owned):
        if s > pos:
            out.append((pos, min(s, size)))
        pos = max(pos, e)
    if pos < size:
        out.append((pos, size))
    return [(s, e) for s, e in out if e > s]


@dataclass(frozen=True, slots=True)
class RangeDigest:
    start: int
    end: int
    digest: str


def hash_ranges(path: Path, ranges: Sequence[tuple[int, int]]) -> tuple[RangeDigest, ...]:
    out = []
    fd = os.open(path, os.O_RDONLY)
    try:
        for start, end in ranges:
            h = hashlib.sha256()
            for s, e in data_extents(fd, start, end):
                pos = s
                while pos < e:
                    buf = os.pread(fd, min(CHUNK, e - pos), pos)
                    if not buf:
                        break
                    _hash_blocks(h, pos, buf)
                    pos += len(buf)
            out.append(RangeDigest(start, end, h.hexdigest()))
    finally:
        os.close(fd)
    return tuple(out)


def _hash_blocks(h: hashlib._Hash, pos: int, buf: bytes) -> None:
    """Feed the non-zero pieces of ``buf`` (cut at absolute 4 KiB boundaries) into ``h``."""
    i = 0
    while i < len(buf):
        j = min(len(buf), i + BLOCK - (pos + i) % BLOCK)
        piece = buf[i:j]
        if piece.count(0) != len(piece):
            h.update(f"{pos + i}:".encode())
            h.update(piece)
        i = j


def changed(before: Sequence[RangeDigest], after: Sequence[RangeDigest]) -> list[RangeDigest]:
    return [a for a, b in zip(before, after, strict=True) if a != b]
