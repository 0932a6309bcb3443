"""A small zip writer: ZIP64, sparse stored members, and (for tests) hostile layouts.

`zipfile` cannot write a multi-GB member without materialising its bytes, nor produce the
broken archives the hostile-input tests need. The demo restore image (a sparse multi-GB
decoy) and the test fixtures write zips with this. Everything it writes is checked against
`zipfile` by the tests that use it.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field
from typing import BinaryIO

STORED = 0
DEFLATED = 8
_FF32 = 0xFFFFFFFF
_DOS_TIME = (6 << 11) | (30 << 5)  # 06:30:00
_DOS_DATE = ((2024 - 1980) << 9) | (6 << 5) | 1  # 2024-06-01


@dataclass
class _Entry:
    name: bytes
    method: int
    crc: int
    csize: int
    usize: int
    offset: int
    zip64: bool


def zero_crc(size: int) -> int:
    """CRC-32 of ``size`` zero bytes, without allocating them all."""
    block = bytes(min(size, 64 << 20))
    crc = 0
    left = size
    while left:
        n = min(left, len(block))
        crc = zlib.crc32(block[:n] if n < len(block) else block, crc)
        left -= n
    return crc


@dataclass
class ZipWriter:
    """Append members to ``f`` (opened "wb"), then :meth:`close` writes the central directory."""

    f: BinaryIO
    force_zip64: bool = False
    entries: list[_Entry] = field(default_factory=list)

    def _local(self, e: _Entry, extra_local: bytes = b"") -> None:
        if e.zip64:
            extra = struct.pack("<HHQQ", 1, 16, e.usize, e.csize) + extra_local
            cs = us = _FF32
        else:
            extra, cs, us = extra_local, e.csize, e.usize
        self.f.write(
            struct.pack(
                "<IHHHHHIIIHH", 0x04034B50, 45 if e.zip64 else 20, 0, e.method,
                _DOS_TIME, _DOS_DATE, e.crc, cs, us, len(e.name), len(extra),
            )
        )
        self.f.write(e.name + extra)

    def add(self, name: str, data: bytes, *, method: int = STORED, zip64: bool = False,
            extra_local: bytes = b"") -> int:
        """Add a member holding ``data``; return its local header offset."""
        payload = data
        if method == DEFLATED:
            co = zlib.compressobj(6, zlib.DEFLATED, -15)
            payload = co.compress(data) + co.flush()
        e = _Entry(name.encode(), method, zlib.crc32(data), len(payload), len(data),
                   self.f.tell(), zip64 or self.force_zip64 or self.f.tell() >= _FF32)
        self._local(e, extra_local)
        self.f.write(payload)
        self.entries.append(e)
        return e.offset

    def add_sparse(self, name: str, size: int, *, zip64: bool = True) -> int:
        """Add a stored member of ``size`` zero bytes as a hole in the file (never in memory)."""
        e = _Entry(name.encode(), STORED, zero_crc(size), size, size, self.f.tell(),
                   zip64 or self.force_zip64 or size >= _FF32 or self.f.tell() >= _FF32)
        self._local(e)
        self.f.seek(size, 1)
        self.entries.append(e)
        return e.offset

    def add_entry(self, e: _Entry) -> None:
        """Register a raw central-directory entry (hostile layouts: overlaps, bad sizes)."""
        self.entries.append(e)

    def close(self, *, cd_offset_delta: int = 0) -> None:
        """Write the central directory (ZIP64 records when needed) and the end record."""
        cd_start = self.f.tell()
        for e in self.entries:
            ex = b""
            us, cs, off = e.usize, e.csize, e.offset
            fields = []
            if e.zip64 or us >= _FF32:
                fields.append(us)
                us = _FF32
            if e.zip64 or cs >= _FF32:
                fields.append(cs)
                cs = _FF32
            if e.zip64 or off >= _FF32:
                fields.append(off)
                off = _FF32
            if fields:
                ex = struct.pack("<HH", 1, 8 * len(fields)) + struct.pack(
                    f"<{len(fields)}Q", *fields)
            self.f.write(
                struct.pack(
                    "<IHHHHHHIIIHHHHHII", 0x02014B50, (3 << 8) | 45, 45 if fields else 20, 0,
                    e.method, _DOS_TIME, _DOS_DATE, e.crc, cs, us, len(e.name), len(ex), 0, 0,
                    0, 0o100644 << 16, off,
                )
            )
            self.f.write(e.name + ex)
        cd_end = self.f.tell()
        cd_size = cd_end - cd_start
        cd_off = cd_start + cd_offset_delta
        n = len(self.entries)
        zip64 = self.force_zip64 or cd_off >= _FF32 or n >= 0xFFFF or any(
            e.zip64 for e in self.entries)
        if zip64:
            self.f.write(struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 45, 45, 0, 0, n, n,
                                     cd_size, cd_off))
            self.f.write(struct.pack("<IIQI", 0x07064B50, 0, cd_end, 1))
        self.f.write(
            struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, min(n, 0xFFFF), min(n, 0xFFFF),
                        min(cd_size, _FF32), _FF32 if zip64 else cd_off, 0)
        )
        self.f.truncate()


def raw_entry(name: str, *, offset: int, csize: int, usize: int, crc: int = 0,
              method: int = STORED, zip64: bool = False) -> _Entry:
    """A central-directory entry with arbitrary (possibly lying) fields."""
    return _Entry(name.encode(), method, crc, csize, usize, offset, zip64)
