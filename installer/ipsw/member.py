"""Decode one zip member from bytes already at hand, and the sinks that receive members.

A member is read through ``pread(offset, n)`` (the range cache or the local file), its local
header checked against the central directory, its data inflated in bounded chunks, and its
size and CRC-32 verified. A sink receives the chunks as they are checked; the last step
raises when the size or CRC is wrong, and the sink then drops what it wrote (so nothing
unverified is ever kept).
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol

from installer.errors import RestoreImageError
from installer.ipsw.remote import DEFLATED, LOCAL_HEADER, LOCAL_SIG, STORED, Member, check_name
from vendorfw.atomic import atomic_file

CHUNK = 1 << 20
PRead = Callable[[int, int], bytes]


class MemberSink(Protocol):
    """Receives verified members. ``chunks`` yields the uncompressed bytes in order; it
    raises :class:`RestoreImageError` if they turn out wrong, and the sink must then drop
    what it wrote."""

    def write_member(self, member: Member, chunks: Iterator[bytes]) -> None: ...


def data_offset(m: Member, pread: PRead) -> int:
    """Where ``m``'s compressed data starts, from its local header (checked)."""
    hdr = pread(m.start, LOCAL_HEADER)
    if hdr[:4] != LOCAL_SIG:
        raise RestoreImageError(f"member {m.name!r}: no local header at offset {m.start}")
    name_len: int
    extra_len: int
    name_len, extra_len = struct.unpack_from("<HH", hdr, 26)
    start = m.start + LOCAL_HEADER + name_len + extra_len
    if start + m.compress_size > m.end:
        raise RestoreImageError(f"member {m.name!r}: local header ({name_len + extra_len} "
                                "bytes of name and extra) overruns the next member")
    name = pread(m.start + LOCAL_HEADER, name_len)
    if name.decode("utf-8", "replace") != m.name and name.decode("cp437") != m.name:
        raise RestoreImageError(f"member {m.name!r}: local header names {name!r}")
    return start


def iter_member(m: Member, pread: PRead) -> Iterator[bytes]:
    """Yield ``m``'s uncompressed bytes; raise if the size or CRC-32 is wrong."""
    if m.method not in (STORED, DEFLATED):
        raise RestoreImageError(f"member {m.name!r}: unsupported compression {m.compression}")
    pos = data_offset(m, pread)
    end = pos + m.compress_size
    inflater = zlib.decompressobj(-15) if m.method == DEFLATED else None
    crc = 0
    out = 0
    last = 0
    while True:
        if inflater is None:
            if pos >= end:
                break
            data = pread(pos, min(CHUNK, end - pos))
            pos += len(data)
        else:
            if inflater.eof:
                break
            tail = inflater.unconsumed_tail
            if not tail and pos < end:
                tail = pread(pos, min(CHUNK, end - pos))
                pos += len(tail)
            elif not tail and last < CHUNK:
                break  # input used up and no output held back
            try:
                data = inflater.decompress(tail, CHUNK)  # bounded: no zip bomb in memory
            except zlib.error as exc:
                raise RestoreImageError(f"member {m.name!r}: corrupt deflate data: "
                                        f"{exc}") from exc
            last = len(data)
        out += len(data)
        if out > m.file_size:
            raise RestoreImageError(f"member {m.name!r} inflates beyond its declared size "
                                    f"{m.file_size}")
        crc = zlib.crc32(data, crc)
        if data:
            yield data
    if out != m.file_size or crc != m.crc:
        raise RestoreImageError(
            f"member {m.name!r}: CRC-32 {crc:08x} / size {out}, expected "
            f"{m.crc:08x} / {m.file_size}")


def verify_member(m: Member, pread: PRead) -> None:
    """Raise unless ``m`` decodes to its declared size and CRC-32."""
    for _ in iter_member(m, pread):
        pass


class DirectorySink:
    """Writes each member to ``root/<member name>`` atomically."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def write_member(self, member: Member, chunks: Iterator[bytes]) -> None:
        check_name(member.name)
        path = self.root / member.name
        if member.name.endswith("/"):
            path.mkdir(parents=True, exist_ok=True)
            for _ in chunks:
                pass
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_file(path) as f:
                for chunk in chunks:
                    f.write(chunk)
        except OSError as exc:
            raise RestoreImageError(f"cannot write {path}: {exc}") from exc


class MemorySink:
    """Keeps small members (manifests, plists) in memory, by name."""

    def __init__(self, limit: int = 64 << 20) -> None:
        self.limit = limit
        self.data: dict[str, bytes] = {}

    def write_member(self, member: Member, chunks: Iterator[bytes]) -> None:
        if member.file_size > self.limit:
            raise RestoreImageError(f"member {member.name!r} is too large to hold in memory "
                                    f"({member.file_size} bytes)")
        self.data[member.name] = b"".join(chunks)
