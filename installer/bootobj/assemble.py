"""Assemble boot objects from their parts (formats.md §2, §3).

Stage 2 (``m1n1/boot.bin`` on the ESP)::

    stage2 | dtb… | gzip/xz(kernel Image or U-Boot) | [initramfs] | [vars \\0\\0\\0\\0] | [sig]

An uncompressed kernel has no reliable size, so it goes last (formats.md §3), after the
initramfs and the variable lines (without their NULs, which would end the scan)::

    stage2 | dtb… | [initramfs] | [vars] | kernel Image | [sig]

It boots fastest: a filler FDT (no compatible, so never chosen) pads the kernel to a
2 MiB offset, and stage 1 loads boot.bin on a 2 MiB boundary, so stage 2 boots the kernel
where it lies instead of inflating (~21 instructions a byte) or copying it; boot.bin is
~2.6x larger.

Without variables no terminator is written: stage 1 appends its forwarded ``chosen.*`` lines
right after the loaded file, and a scanner that stops at four NULs would never see them.

A UEFI firmware without an Image header (Debian's U-Boot ``u-boot.bin``) is the
(Pippin) tagged payload ``pippin_firmware | LE u32 size | bytes``, stored as is (stage 2
enters it at its first byte; it needs no kernel and takes no initramfs)::

    stage2 | dtb… | firmware | [vars \\0\\0\\0\\0] | [sig]

Stage 1 (registered with the boot policy)::

    stage1 | vars | \\0\\0\\0\\0

Every input is checked before anything is written, so a bad input gives one clear error
and no output. Compression is deterministic (fixed gzip header), so equal inputs give equal bytes.
"""

from __future__ import annotations

import gzip
import lzma
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from installer.bootobj import scan, sign, version
from installer.bootobj import vars as bvars
from installer.errors import BootObjectError

# Magic numbers of the formats the kernel's initramfs unpacker accepts (besides raw cpio).
_INITRAMFS_MAGICS = {
    b"070701": "newc cpio",
    b"\x1f\x8b": "gzip",
    b"\xfd7zXZ\x00": "xz",
    b"\x28\xb5\x2f\xfd": "zstd",
    b"\x02\x21\x4c\x18": "lz4",
    b"BZh": "bzip2",
    b"\x89LZO": "lzo",
    b"\x5d\x00\x00": "lzma",
}
MAX_TAGGED_INITRAMFS = 0xFFFF_FFFF
# zlib's default: 2.5 s instead of 6.6 s for a 33 MB kernel, 0.2% larger, and stage 2
# inflates it as fast (measured: tests/bench/bench_bootchain.py).
GZIP_LEVEL = 6


class Compression(StrEnum):
    GZIP = "gzip"
    XZ = "xz"
    NONE = "none"


class InitramfsMode(StrEnum):
    TAG = "tag"  # m1n1_initramfs + LE u32 size + the bytes as given (any kernel format)
    GZIP = "gzip"  # a gzip member holding the newc cpio


@dataclass(frozen=True, slots=True)
class Stage2Parts:
    """Everything that goes into ``boot.bin``, in order."""

    stage2: bytes
    dtbs: tuple[bytes, ...] = ()
    kernel: bytes | None = None
    compression: Compression = Compression.GZIP
    initramfs: bytes | None = None
    initramfs_mode: InitramfsMode = InitramfsMode.TAG
    variables: tuple[bvars.Variable, ...] = ()
    gzip_level: int = GZIP_LEVEL  # 1 (fastest) .. 9 (smallest)
    firmware: bytes | None = None  # UEFI firmware without an Image header (u-boot.bin)


def gzip_member(data: bytes, level: int = GZIP_LEVEL) -> bytes:
    """One gzip member with a fixed header (no name, mtime 0, OS unknown; XFL 2 at level 9,
    4 at 1, else 0 as gzip writes it), so the bytes depend only on zlib's deflate output."""
    if not 1 <= level <= 9:
        raise BootObjectError(f"gzip level {level} is not between 1 and 9")
    z = zlib.compressobj(level, zlib.DEFLATED, -15, 9)
    body = z.compress(data) + z.flush()
    trailer = struct.pack("<II", zlib.crc32(data), len(data) & 0xFFFF_FFFF)
    xfl = 2 if level == 9 else 4 if level == 1 else 0
    return b"\x1f\x8b\x08\x00\x00\x00\x00\x00" + bytes([xfl, 0xFF]) + body + trailer


def _inflate(data: bytes, what: str) -> bytes:
    """Whole content of a gzip file (for validating and re-compressing an input)."""
    try:
        out = gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as exc:
        raise BootObjectError(f"{what}: corrupt gzip data ({exc})") from exc
    return out


def check_image(data: bytes, what: str) -> None:
    """An arm64 Linux Image header: ``ARM\\x64`` at 0x38."""
    if len(data) < scan.IMAGE_HEADER_SIZE:
        raise BootObjectError(f"{what}: {len(data)} bytes, too short for an arm64 Image header")
    if not scan.is_image(data):
        raise BootObjectError(
            f"{what}: not an arm64 Image (no ARM\\x64 magic at offset 0x38)",
            hint="give the uncompressed Image or Image.gz, or u-boot-nodtb.bin; a UEFI "
                 "firmware without that header (u-boot.bin) goes in with --firmware",
        )


def check_dtb(data: bytes, what: str) -> None:
    """A whole FDT blob whose ``totalsize`` is its file size."""
    if not data.startswith(scan.FDT_MAGIC):
        raise BootObjectError(f"{what}: not a device tree blob (no d00dfeed magic)")
    try:
        total = scan.fdt_totalsize(data)
    except BootObjectError as exc:
        raise BootObjectError(f"{what}: {exc.message}") from exc
    if total != len(data):
        raise BootObjectError(
            f"{what}: FDT totalsize {total} differs from the file size {len(data)}",
            hint="trailing bytes would be read as the next payload",
        )


def _kernel_payload(kernel: bytes, compression: Compression, level: int) -> bytes:
    if kernel.startswith(scan.GZIP_MAGIC):
        kernel = _inflate(kernel, "kernel")
    elif kernel.startswith(scan.XZ_MAGIC):
        try:
            kernel = lzma.decompress(kernel, format=lzma.FORMAT_XZ)
        except lzma.LZMAError as exc:
            raise BootObjectError(f"kernel: corrupt xz data ({exc})") from exc
    check_image(kernel, "kernel")
    if compression is Compression.GZIP:
        return gzip_member(kernel, level)
    if compression is Compression.XZ:
        # CRC32 check: the one every xz decoder (Linux, Zig std) supports.
        return lzma.compress(kernel, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC32)
    return kernel


def _initramfs_payload(initramfs: bytes, mode: InitramfsMode, level: int) -> bytes:
    if not initramfs:
        raise BootObjectError("initramfs is empty")
    if mode is InitramfsMode.GZIP:
        cpio = _inflate(initramfs, "initramfs") if initramfs.startswith(b"\x1f\x8b") else initramfs
        if not cpio.startswith(scan.CPIO_MAGIC):
            raise BootObjectError(
                "initramfs: --initramfs-mode gzip needs a newc cpio (070701) or its gzip",
                hint="use --initramfs-mode tag for other compressions",
            )
        return gzip_member(cpio, level)
    if not any(initramfs.startswith(m) for m in _INITRAMFS_MAGICS):
        raise BootObjectError(
            "initramfs: not a newc cpio nor a compressed one (gzip, xz, zstd, lz4, bzip2, lzo)"
        )
    if len(initramfs) > MAX_TAGGED_INITRAMFS:
        raise BootObjectError("initramfs: larger than 4 GiB, its size does not fit the tag")
    return scan.INITRAMFS_TAG + struct.pack("<I", len(initramfs)) + initramfs


_NOT_FIRMWARE = {
    b"\x7fELF": "an ELF file (give the raw binary, e.g. u-boot.bin, not u-boot or uboot.elf)",
    scan.GZIP_MAGIC: "gzip data (give it uncompressed; stage 2 enters it as it lies)",
    scan.XZ_MAGIC: "xz data (give it uncompressed; stage 2 enters it as it lies)",
    b"MZ": "a PE/EFI program (give the firmware that runs EFI programs, e.g. u-boot.bin)",
}


def _firmware_payload(firmware: bytes) -> bytes:
    """The tagged firmware payload, after refusing what cannot be a bare firmware image."""
    if len(firmware) < 4096:
        raise BootObjectError(f"firmware: {len(firmware)} bytes is too small for a UEFI "
                              "firmware (u-boot.bin is ~1 MB)")
    for magic, what in _NOT_FIRMWARE.items():
        if firmware.startswith(magic) and not scan.is_image(firmware):
            raise BootObjectError(f"firmware: {what}")
    if len(firmware) > MAX_TAGGED_INITRAMFS:
        raise BootObjectError("firmware: larger than 4 GiB, its size does not fit the tag")
    return scan.FIRMWARE_TAG + struct.pack("<I", len(firmware)) + firmware


KERNEL_ALIGN = 2 << 20  # arm64 boot protocol: the kernel image on a 2 MiB boundary
_FILLER_MIN = 72


def filler_fdt(size: int) -> bytes:
    """A valid, empty FDT of exactly ``size`` bytes (root node only, no compatible, so no
    machine matches it): padding both payload scanners skip by its ``totalsize``."""
    if size < _FILLER_MIN:
        raise BootObjectError(f"filler FDT size {size} is below {_FILLER_MIN}")
    header = struct.pack(">10I", 0xD00DFEED, size, 56, 72, 40, 17, 16, 0, 0, 16)
    structure = struct.pack(">IIII", 1, 0, 2, 9)  # BEGIN_NODE "", END_NODE, END
    return (header + bytes(16) + structure).ljust(size, b"\0")


def _pad_to_kernel_align(offset: int) -> bytes:
    """Filler that moves ``offset`` to the next 2 MiB boundary."""
    gap = -offset % KERNEL_ALIGN
    if gap == 0:
        return b""
    if gap < _FILLER_MIN:
        gap += KERNEL_ALIGN
    return filler_fdt(gap)


def kernel_last(prefix: bytes, variables: Sequence[bvars.Variable], kernel: bytes) -> bytes:
    """``prefix`` (stage 2 and the other payloads), then the variable lines unterminated
    (four NULs would end the scan), a filler that puts the kernel on a 2 MiB offset so stage 2
    boots it in place, and the raw kernel."""
    lines = bvars.encode(list(variables))[: -len(bvars.TERMINATOR)] if variables else b""
    return prefix + _pad_to_kernel_align(len(prefix) + len(lines)) + lines + kernel


def check_stage_image(data: bytes, what: str) -> None:
    """A bare loader image: Image header and, for Pippin's, ``image_size`` = file size."""
    check_image(data, what)
    if version.read_version(data) is None:
        raise BootObjectError(f"{what}: no ##pippin_ver## or ##m1n1_ver## version marker")
    if version.is_pippin(data):
        end = version.pippin_image_end(data)
        if end != len(data):
            raise BootObjectError(
                f"{what}: the file has {len(data) - end} bytes after the image "
                f"(image_size {end})",
                hint="give the bare loader image, not a boot object built from it",
            )


def assemble_stage2(parts: Stage2Parts, signing_key: Ed25519PrivateKey | None = None) -> bytes:
    """The bytes of ``boot.bin``; signed when ``signing_key`` is given."""
    check_stage_image(parts.stage2, "stage 2")
    if sign.find_signature(parts.stage2) is not None:
        raise BootObjectError("stage 2: already carries a signature; give the bare image")
    for i, dtb in enumerate(parts.dtbs, 1):
        check_dtb(dtb, f"device tree #{i}")
    if parts.firmware is not None and parts.kernel is not None:
        raise BootObjectError("give a kernel or a firmware, not both",
                              hint="the firmware (U-Boot) boots the OS itself")
    if parts.initramfs is not None and parts.kernel is None:
        raise BootObjectError("an initramfs needs a kernel")
    out = [parts.stage2, *parts.dtbs]
    if parts.firmware is not None:
        out.append(_firmware_payload(parts.firmware))
    kernel = None if parts.kernel is None else _kernel_payload(parts.kernel, parts.compression,
                                                              parts.gzip_level)
    raw_last = kernel is not None and parts.compression is Compression.NONE
    if kernel is not None and not raw_last:
        out.append(kernel)
    if parts.initramfs is not None:
        out.append(_initramfs_payload(parts.initramfs, parts.initramfs_mode,
                                      parts.gzip_level))
    block = bvars.encode(parts.variables) if parts.variables else b""
    if raw_last and kernel is not None:
        data = kernel_last(b"".join(out), parts.variables, kernel)
    else:
        data = b"".join(out) + block
    if signing_key is not None:
        data = sign.sign(data, signing_key)
    return data


def assemble_stage1(
    stage1: bytes, variables: Sequence[bvars.Variable], *, tethered: bool = False
) -> bytes:
    """The stage-1 boot object: image then its configuration variables. ``tethered``: no
    ``chainload=`` (the loader then waits for a development host, as m1n1 does)."""
    check_stage_image(stage1, "stage 1")
    has_chainload = any(v.name == "chainload" for v in variables)
    if not has_chainload and not tethered:
        raise BootObjectError("stage-1 variables lack chainload=; use stage1_config()")
    if has_chainload and tethered:
        raise BootObjectError("a tethered stage 1 takes no chainload= variable")
    return stage1 + bvars.encode(list(variables))
