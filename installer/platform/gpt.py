"""Read a GPT from a disk image (512-byte sectors), and patch an APFS container superblock.

Writing the GPT is left to ``sgdisk``; reading it ourselves keeps the sim's model read
fast and independent of sgdisk's text output. Numbers from disk are checked before use.
"""

from __future__ import annotations

import os
import struct
import uuid
import zlib
from dataclasses import dataclass

from installer.errors import BackendError

SECTOR = 512


@dataclass(frozen=True, slots=True)
class GptEntry:
    number: int  # 1-based entry index, as sgdisk and diskutil (diskNsM) count
    type_guid: str
    uuid: str
    first_lba: int
    last_lba: int
    name: str

    @property
    def start(self) -> int:
        return self.first_lba * SECTOR

    @property
    def size(self) -> int:
        return (self.last_lba - self.first_lba + 1) * SECTOR


@dataclass(frozen=True, slots=True)
class GptTable:
    disk_guid: str
    entries: tuple[GptEntry, ...]


def read_gpt(fd: int, size: int, where: str) -> GptTable:
    hdr = os.pread(fd, 92, SECTOR)
    if len(hdr) < 92 or hdr[:8] != b"EFI PART":
        raise BackendError(f"{where}: no GPT header at sector 1")
    hsize = struct.unpack_from("<I", hdr, 12)[0]
    if not 92 <= hsize <= SECTOR:
        raise BackendError(f"{where}: GPT header size {hsize} is invalid")
    full = bytearray(os.pread(fd, hsize, SECTOR))
    crc = struct.unpack_from("<I", full, 16)[0]
    full[16:20] = b"\0\0\0\0"
    if zlib.crc32(bytes(full)) != crc:
        raise BackendError(f"{where}: GPT header CRC mismatch")
    disk_guid = str(uuid.UUID(bytes_le=bytes(hdr[56:72]))).upper()
    lba, count, esize = struct.unpack_from("<QII", hdr, 72)
    if not (128 <= esize <= 4096 and count <= 1024 and lba * SECTOR + count * esize <= size):
        raise BackendError(f"{where}: GPT entry array out of range")
    arr = os.pread(fd, count * esize, lba * SECTOR)
    if zlib.crc32(arr) != struct.unpack_from("<I", hdr, 88)[0]:
        raise BackendError(f"{where}: GPT entry array CRC mismatch")
    entries = []
    for i in range(count):
        e = arr[i * esize:(i + 1) * esize]
        if e[:16] == bytes(16):
            continue
        first, last = struct.unpack_from("<QQ", e, 32)
        if not (0 < first <= last and (last + 1) * SECTOR <= size):
            raise BackendError(f"{where}: GPT entry {i + 1} has an invalid range")
        entries.append(GptEntry(
            number=i + 1,
            type_guid=str(uuid.UUID(bytes_le=bytes(e[:16]))).upper(),
            uuid=str(uuid.UUID(bytes_le=bytes(e[16:32]))).upper(),
            first_lba=first,
            last_lba=last,
            name=e[56:128].decode("utf-16-le", errors="replace").split("\0", 1)[0],
        ))
    return GptTable(disk_guid, tuple(entries))


def fletcher64(block: bytes) -> int:
    """APFS object checksum over everything after the 8-byte checksum field."""
    s1 = s2 = 0
    mod = 0xFFFFFFFF
    for (w,) in struct.iter_unpack("<I", block[8:]):
        s1 = (s1 + w) % mod
        s2 = (s2 + s1) % mod
    c1 = mod - ((s1 + s2) % mod)
    c2 = mod - ((s1 + c1) % mod)
    return (c2 << 32) | c1


def set_apfs_block_count(fd: int, offset: int, new_size: int, where: str) -> None:
    """Resize an APFS container's superblock (block 0) to ``new_size`` bytes."""
    block = bytearray(os.pread(fd, 4096, offset))
    if len(block) != 4096 or block[32:36] != b"NXSB":
        raise BackendError(f"{where}: no APFS container superblock")
    bsize = struct.unpack_from("<I", block, 36)[0]
    if bsize != 4096 or new_size % bsize:
        raise BackendError(f"{where}: unsupported APFS block size {bsize}")
    struct.pack_into("<Q", block, 40, new_size // bsize)
    struct.pack_into("<Q", block, 0, fletcher64(bytes(block)))
    os.pwrite(fd, bytes(block), offset)
