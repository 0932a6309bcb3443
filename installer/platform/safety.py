"""The executor touches only what the plan owns: hashes of every byte range it does not own.

On a disk image the unowned ranges are hashed extent by extent (SEEK_DATA/SEEK_HOLE), so a
512 GB sparse image costs what it holds. Only non-zero 4 KiB blocks enter the hash (with
their offsets), so the digest depends on the bytes a reader sees, not on how the host
filesystem happens to split the file into extents.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from installer.disk.model import Disk
from installer.errors import BackendError
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


def partition_entries(disk: Disk, owned: Sequence[tuple[int, int]]) -> list[list[Any]]:
    """The partition table and APFS containers as JSON-able rows, minus what the plan owns.

    A partition wholly inside an owned range (one the plan creates or deletes) is left
    out. One the plan only partly owns (macOS: its superblock and the tail a resize gives
    up) keeps every field but its size. The GPT sectors are owned bytes, so this table is
    what proves that no other entry was edited.
    """
    out: list[list[Any]] = []
    for p in disk.ordered():
        if any(s <= p.start and p.end <= e for s, e in owned):
            continue
        partial = any(p.start < e and s < p.end for s, e in owned)
        c = p.container
        vols = sorted([v.name, list(v.roles), v.uuid] for v in c.volumes) if c else []
        out.append([p.ref, p.start, None if partial else p.size, p.kind.value, p.uuid,
                    p.name, c.uuid if c else "", vols])
    return out


def check_entries(where: str, before: list[list[Any]], now: list[list[Any]]) -> None:
    """Raise naming the partitions whose row changed, appeared or vanished."""
    if now == before:
        return
    old = {json.dumps(e) for e in before}
    new = {json.dumps(e) for e in now}
    refs = sorted({json.loads(e)[0] for e in old ^ new})
    raise BackendError(f"partitions outside the plan changed on {where}: {', '.join(refs)}")
