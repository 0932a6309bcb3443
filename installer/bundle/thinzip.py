"""Thin zips: a valid zip holding only some members of a restore image, under their names.

Each member's compressed data is copied byte for byte from the source image (read through
``pread``: the range cache or the local file), so its CRC-32, sizes and compression method
stay those of the source's central directory. The local header keeps the source's version,
flags (minus the data-descriptor bit: sizes and CRC are written up front), method, time,
date, name and extra fields (minus any ZIP64 field, written again when needed). ZIP64
fields are used where a size or offset reaches ``zip64_at`` (4 GiB - 1; tests lower it).
The result is what :func:`installer.ipsw.remote.open_archive` and ``zipfile`` read.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from installer.errors import BundleError, RestoreImageError
from installer.ipsw.remote import LOCAL_HEADER, LOCAL_SIG, Member

PRead = Callable[[int, int], bytes]
CHUNK = 1 << 20
FF32 = 0xFFFFFFFF
ZIP64_EXTRA = 0x0001
_LOCAL = struct.Struct("<4sHHHHHIIIHH")
_CENTRAL = struct.Struct("<4sHHHHHHIIIHHHHHII")
_EOCD = struct.Struct("<4sHHHHIIH")
_EOCD64 = struct.Struct("<4sQHHIIQQQQ")
_LOCATOR = struct.Struct("<4sIQI")


@dataclass(frozen=True, slots=True)
class ThinZip:
    size: int
    sha256: str
    members: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _Written:
    name: bytes
    version: int
    flags: int
    method: int
    time: int
    date: int
    member: Member
    offset: int


class _Hashing:
    """Counts and hashes what is written to ``f``."""

    def __init__(self, f: BinaryIO) -> None:
        self.f, self.pos, self.h = f, 0, hashlib.sha256()

    def write(self, data: bytes) -> None:
        self.f.write(data)
        self.h.update(data)
        self.pos += len(data)


def _strip_zip64(extra: bytes) -> bytes:
    """``extra`` without its ZIP64 field (the writer adds its own when needed)."""
    out, i = bytearray(), 0
    while i + 4 <= len(extra):
        tag, n = struct.unpack_from("<HH", extra, i)
        if tag != ZIP64_EXTRA:
            out += extra[i:i + 4 + n]
        i += 4 + n
    return bytes(out)


def _zip64_field(values: Sequence[int]) -> bytes:
    return (struct.pack("<HH", ZIP64_EXTRA, 8 * len(values))
            + b"".join(struct.pack("<Q", v) for v in values)) if values else b""


def _local_header(m: Member, pread: PRead, zip64_at: int,
                  offset: int) -> tuple[_Written, bytes, int]:
    """The member's new local header (written at ``offset``), its record, and where its
    data starts in the source."""
    hdr = pread(m.start, LOCAL_HEADER)
    (sig, version, flags, method, time, date, _crc, _cs, _us, name_len,
     extra_len) = _LOCAL.unpack(hdr)
    if sig != LOCAL_SIG:
        raise RestoreImageError(f"member {m.name!r}: no local header at offset {m.start}")
    if method != m.method:
        raise RestoreImageError(f"member {m.name!r}: local header says method {method}, "
                                f"the directory {m.method}")
    tail = pread(m.start + LOCAL_HEADER, name_len + extra_len)
    name, extra = tail[:name_len], _strip_zip64(tail[name_len:])
    big = m.compress_size >= zip64_at or m.file_size >= zip64_at
    if big:
        extra = _zip64_field([m.file_size, m.compress_size]) + extra
        version = max(version, 45)
    flags &= ~0x0008
    w = _Written(name, version, flags, method, time, date, m, offset)
    rec = _LOCAL.pack(LOCAL_SIG, version, flags, method, time, date, m.crc,
                      FF32 if big else m.compress_size, FF32 if big else m.file_size,
                      len(name), len(extra)) + name + extra
    return w, rec, m.start + LOCAL_HEADER + name_len + extra_len


def _central(w: _Written, zip64_at: int) -> bytes:
    m = w.member
    big: list[int] = []
    usize, csize, off = m.file_size, m.compress_size, w.offset
    if usize >= zip64_at:
        big.append(usize)
        usize = FF32
    if csize >= zip64_at:
        big.append(csize)
        csize = FF32
    if off >= zip64_at:
        big.append(off)
        off = FF32
    extra = _zip64_field(big)
    version = max(w.version, 45) if big else w.version
    is_dir = m.name.endswith("/")
    attrs = ((0o40755 << 16) | 0x10) if is_dir else (0o100644 << 16)
    return _CENTRAL.pack(b"PK\x01\x02", (3 << 8) | version, version, w.flags, w.method,
                         w.time, w.date, m.crc, csize, usize, len(w.name), len(extra), 0, 0,
                         0, attrs, off) + w.name + extra


def write_thin_zip(f: BinaryIO, members: Sequence[Member], pread: PRead, *,
                   zip64_at: int = FF32,
                   progress: Callable[[int], None] | None = None) -> ThinZip:
    """Write ``members`` (their data read from the source through ``pread``) as a zip to
    ``f``; the caller makes ``f`` atomic. ``progress`` gets the bytes copied."""
    out = _Hashing(f)
    written: list[_Written] = []
    for m in sorted(members, key=lambda x: x.start):
        w, rec, data_at = _local_header(m, pread, zip64_at, out.pos)
        out.write(rec)
        left, pos = m.compress_size, data_at
        while left:
            chunk = pread(pos, min(CHUNK, left))
            if not chunk:
                raise RestoreImageError(f"member {m.name!r}: source ended at {pos}")
            out.write(chunk)
            pos += len(chunk)
            left -= len(chunk)
            if progress:
                progress(len(chunk))
        written.append(w)
    cd_start = out.pos
    for w in written:
        out.write(_central(w, zip64_at))
    cd_size = out.pos - cd_start
    count = len(written)
    if count >= 0xFFFF or cd_start >= zip64_at or cd_size >= zip64_at:
        at = out.pos
        out.write(_EOCD64.pack(b"PK\x06\x06", 44, (3 << 8) | 45, 45, 0, 0, count, count,
                               cd_size, cd_start))
        out.write(_LOCATOR.pack(b"PK\x06\x07", 0, at, 1))
        out.write(_EOCD.pack(b"PK\x05\x06", 0, 0, min(count, 0xFFFF), min(count, 0xFFFF),
                             min(cd_size, FF32), min(cd_start, FF32), 0))
    else:
        out.write(_EOCD.pack(b"PK\x05\x06", 0, 0, count, count, cd_size, cd_start, 0))
    return ThinZip(out.pos, out.h.hexdigest(), tuple(w.member.name for w in written))


def file_pread(path: Path) -> tuple[PRead, Callable[[], None]]:
    """A ``pread`` over a local file, and its closer."""
    try:
        f = path.open("rb")
    except OSError as exc:
        raise BundleError(f"cannot read {path}: {exc.strerror}") from exc

    def pread(off: int, n: int) -> bytes:
        f.seek(off)
        data = f.read(n)
        if len(data) != n:
            raise RestoreImageError(f"{path}: truncated at offset {off + len(data)}")
        return data
    return pread, f.close
