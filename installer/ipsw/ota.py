"""IPSW vs OTA layout, and decoding the OTA BaseSystem (BXDIFF50 wrapping a PBZX stream).

formats.md §11: OTA zips prefix members with ``AssetData/boot/`` (``AssetData/Restore/`` for
the Bootability bundle); the BaseSystem is
``AssetData/payloadv2/basesystem_patches/arm64eBaseSystem.dmg``: ``BXDIFF50``, 8 skipped
bytes, LE u64 size, u64 csize (0), u64 zxsize, a 20-byte SHA-1 (of the decoded image), then
PBZX: ``pbzx`` + BE u64 block size, then chunks of BE u64 usize, BE u64 csize and the data
(xz unless usize == csize). Decoding streams: one chunk in memory at a time.
"""

from __future__ import annotations

import hashlib
import lzma
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from installer.errors import RestoreImageError
from vendorfw.atomic import atomic_file

OTA_BASESYSTEM = "AssetData/payloadv2/basesystem_patches/arm64eBaseSystem.dmg"
BXDIFF_MAGIC = b"BXDIFF50"
PBZX_MAGIC = b"pbzx"
MAX_BLOCK = 64 << 20  # larger PBZX blocks are refused (memory bound)


@dataclass(frozen=True, slots=True)
class Layout:
    ota: bool
    boot_prefix: str
    restore_prefix: str
    basesystem: str = OTA_BASESYSTEM


IPSW = Layout(False, "", "")
OTA = Layout(True, "AssetData/boot/", "AssetData/Restore/")


def detect_layout(names: Sequence[str]) -> Layout:
    """OTA when the manifest sits under ``AssetData/boot/``, IPSW when at the top."""
    have = set(names)
    if "BuildManifest.plist" in have:
        return IPSW
    if "AssetData/boot/BuildManifest.plist" in have:
        return OTA
    raise RestoreImageError("not a restore image: no BuildManifest.plist "
                            "(neither at the top nor under AssetData/boot/)")


def _exact(read: Callable[[int], bytes], n: int, what: str) -> bytes:
    parts = []
    left = n
    while left:
        b = read(left)
        if not b:
            raise RestoreImageError(f"BXDIFF50: truncated {what}")
        parts.append(b)
        left -= len(b)
    return b"".join(parts)


def _unxz(data: bytes, usize: int, at: int) -> bytes:
    """One PBZX chunk's xz stream, decoded to at most ``usize + 1`` bytes: a chunk that
    claims a small size but inflates to gigabytes is refused without holding them."""
    d = lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
    try:
        out = d.decompress(data, max_length=usize + 1)
    except lzma.LZMAError as exc:
        raise RestoreImageError(f"PBZX: bad xz chunk at output {at}: {exc}") from exc
    if len(out) > usize:
        raise RestoreImageError(f"PBZX: xz chunk at output {at} decodes to more than "
                                f"the {usize} bytes its header says")
    if not d.eof or d.unused_data:
        raise RestoreImageError(f"PBZX: bad xz chunk at output {at}: truncated or "
                                "followed by garbage")
    return out


def decode_bxdiff50(src: BinaryIO, write: Callable[[bytes], object]) -> int:
    """Decode a BXDIFF50/PBZX BaseSystem from ``src`` into ``write``; return its size."""
    head = _exact(src.read, 60, "header")
    if head[:8] != BXDIFF_MAGIC:
        raise RestoreImageError("BaseSystem patch: no BXDIFF50 magic")
    size, csize, zxsize = struct.unpack_from("<QQQ", head, 16)
    sha1 = head[40:60]
    if csize != 0:
        raise RestoreImageError(f"BXDIFF50: control size {csize} (only full images supported)")
    pb = _exact(src.read, 12, "PBZX header")
    if pb[:4] != PBZX_MAGIC:
        raise RestoreImageError("BXDIFF50: payload is not PBZX")
    (block,) = struct.unpack(">Q", pb[4:])
    if not 0 < block <= MAX_BLOCK:
        raise RestoreImageError(f"PBZX: block size {block} out of range")
    h = hashlib.sha1(usedforsecurity=False)
    out = 0
    consumed = 12
    while out < size:
        usize, clen = struct.unpack(">QQ", _exact(src.read, 16, "PBZX chunk header"))
        if usize > block or clen > block + (block >> 4) + 4096 or usize == 0:
            raise RestoreImageError(f"PBZX: chunk sizes {usize}/{clen} out of range")
        data = _exact(src.read, clen, "PBZX chunk")
        consumed += 16 + clen
        if usize != clen:
            data = _unxz(data, usize, out)
        if len(data) != usize or out + usize > size:
            raise RestoreImageError(f"PBZX: chunk decodes to {len(data)} bytes, "
                                    f"header says {usize}")
        h.update(data)
        write(data)
        out += usize
    if consumed != zxsize:
        raise RestoreImageError(f"BXDIFF50: PBZX stream is {consumed} bytes, header says "
                                f"{zxsize}")
    if any(sha1) and h.digest() != sha1:
        raise RestoreImageError("BXDIFF50: SHA-1 of the decoded BaseSystem does not match")
    return out


def decode_bxdiff50_file(src: Path, dst: Path) -> int:
    """Decode ``src`` into ``dst`` atomically."""
    try:
        with open(src, "rb") as f, atomic_file(dst) as out:
            return decode_bxdiff50(f, out.write)
    except OSError as exc:
        raise RestoreImageError(f"cannot decode {src} into {dst}: {exc}") from exc
