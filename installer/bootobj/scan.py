"""Read the payloads of a stage-2 ``boot.bin`` back (formats.md §3), treating it as hostile.

Mirrors the stage-2 scanner so ``pippin bootobj info`` and ``update-esp`` see what the loader
will see: at each offset one of gzip, xz, FDT, arm64 Image, tagged initramfs, variables,
signature, a tagged UEFI firmware payload (Pippin), or the end (four NULs / end of data).
Compressed streams are decompressed with a size cap, and their content is scanned in turn
(a kernel Image or a newc cpio initramfs).
"""

from __future__ import annotations

import lzma
import struct
import zlib
from dataclasses import dataclass, field
from enum import StrEnum

from installer.bootobj import sign
from installer.bootobj import vars as bvars
from installer.bootobj.version import IMAGE_END, is_pippin, pippin_image_end
from installer.errors import BootObjectError

FDT_MAGIC = b"\xd0\x0d\xfe\xed"
FDT_HEADER_SIZE = 40
GZIP_MAGIC = b"\x1f\x8b"
XZ_MAGIC = b"\xfd7zXZ\x00"
IMAGE_MAGIC = b"ARM\x64"
IMAGE_MAGIC_OFFSET = 0x38
IMAGE_HEADER_SIZE = 0x40
CPIO_MAGIC = b"070701"
INITRAMFS_TAG = b"m1n1_initramfs"
# (Pippin) A UEFI firmware without an Image header (U-Boot's u-boot.bin): tag, LE u32 size,
# the raw bytes; stage 2 enters it at its first byte with the FDT at the platform's place.
FIRMWARE_TAG = b"pippin_firmware"
MAX_DECOMPRESSED = 1 << 30  # a kernel or initramfs larger than 1 GiB is not a boot payload
_CHUNK = 1 << 20


class Kind(StrEnum):
    GZIP = "gzip"
    XZ = "xz"
    FDT = "fdt"
    IMAGE = "image"
    INITRAMFS = "initramfs"
    FIRMWARE = "firmware"
    VARIABLES = "variables"
    SIGNATURE = "signature"


@dataclass(frozen=True, slots=True)
class Payload:
    """One payload: ``size`` bytes at ``offset`` of its container; ``inner`` for streams."""

    kind: Kind
    offset: int
    size: int
    inner: tuple[Payload, ...] = ()
    detail: str = ""
    variables: tuple[bvars.Variable, ...] = field(default=())


def is_image(data: bytes, offset: int = 0) -> bool:
    at = offset + IMAGE_MAGIC_OFFSET
    return data[at : at + 4] == IMAGE_MAGIC


def fdt_totalsize(data: bytes, offset: int = 0) -> int:
    """Validate the FDT header at ``offset``; return its ``totalsize``."""
    if len(data) - offset < FDT_HEADER_SIZE:
        raise BootObjectError(f"FDT at offset {offset}: header truncated")
    magic, total, off_struct, off_strings, off_rsv, version, last_comp = struct.unpack_from(
        ">4s6I", data, offset
    )
    if magic != FDT_MAGIC:
        raise BootObjectError(f"FDT at offset {offset}: bad magic {magic.hex()}")
    if total < FDT_HEADER_SIZE or total > len(data) - offset:
        raise BootObjectError(
            f"FDT at offset {offset}: totalsize {total} does not fit the "
            f"{len(data) - offset} bytes that follow"
        )
    if version < 16 or last_comp > 17:
        raise BootObjectError(f"FDT at offset {offset}: unsupported version {version}")
    size_strings, size_struct = struct.unpack_from(">2I", data, offset + 32)
    for name, start, size in (
        ("memory reservation map", off_rsv, 16),
        ("structure block", off_struct, size_struct),
        ("strings block", off_strings, size_strings),
    ):
        if start < FDT_HEADER_SIZE or start + size > total:
            raise BootObjectError(f"FDT at offset {offset}: {name} lies outside totalsize")
    return int(total)


def fdt_root_compatible(data: bytes, offset: int = 0) -> tuple[str, ...]:
    """The root node's ``compatible`` strings (empty when absent or unreadable)."""
    total = fdt_totalsize(data, offset)
    blob = data[offset : offset + total]
    off_struct, off_strings = struct.unpack_from(">2I", blob, 8)
    size_strings, size_struct = struct.unpack_from(">2I", blob, 32)
    pos, end, depth = off_struct, off_struct + size_struct, 0
    while pos + 4 <= end:
        (token,) = struct.unpack_from(">I", blob, pos)
        pos += 4
        if token == 1:  # BEGIN_NODE: NUL-terminated name, padded to 4
            name_end = blob.find(b"\0", pos, end)
            if name_end < 0:
                return ()
            pos = (name_end + 4) & ~3
            depth += 1
        elif token == 2:  # END_NODE
            depth -= 1
            if depth <= 0:
                return ()
        elif token == 3:  # PROP: len, nameoff, value padded to 4
            if pos + 8 > end:
                return ()
            length, nameoff = struct.unpack_from(">2I", blob, pos)
            value = blob[pos + 8 : pos + 8 + length]
            pos = (pos + 8 + length + 3) & ~3
            if depth == 1 and nameoff < size_strings:
                s = off_strings + nameoff
                pname = blob[s : blob.find(b"\0", s, off_strings + size_strings)]
                if pname == b"compatible":
                    parts = value.rstrip(b"\0").split(b"\0")
                    return tuple(p.decode("ascii", "replace") for p in parts if p)
        elif token == 4:  # NOP
            continue
        else:  # END or garbage
            return ()
    return ()


def _decompress(data: bytes, offset: int, kind: Kind) -> tuple[int, bytes, int]:
    """Decompress one stream at ``offset``: (bytes consumed, first 4 KiB, total size).

    Output is produced 1 MiB at a time and dropped, so a hostile stream costs time, not
    memory, and is cut off at :data:`MAX_DECOMPRESSED`.
    """
    view = memoryview(data)[offset:]
    pos = 0
    head = bytearray()
    total = 0

    def take(out: bytes) -> None:
        nonlocal total
        total += len(out)
        if len(head) < 4096:
            head.extend(out[: 4096 - len(head)])
        if total > MAX_DECOMPRESSED:
            raise BootObjectError(f"{kind} stream at offset {offset} inflates beyond 1 GiB")

    def feed() -> bytes:
        nonlocal pos
        if pos >= len(view):
            raise BootObjectError(f"{kind} stream at offset {offset} is truncated")
        chunk = bytes(view[pos : pos + _CHUNK])
        pos += len(chunk)
        return chunk

    try:
        if kind is Kind.GZIP:
            z = zlib.decompressobj(wbits=31)
            while not z.eof:
                take(z.decompress(z.unconsumed_tail or feed(), _CHUNK))
            # Every call's input ends at `pos` (a fresh chunk or the tail of one); at the end
            # zlib reports what followed the stream in unused_data.
            return pos - len(z.unused_data), bytes(head), total
        x = lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
        while not x.eof:
            take(x.decompress(feed() if x.needs_input else b"", _CHUNK))
        return pos - len(x.unused_data), bytes(head), total
    except (zlib.error, lzma.LZMAError) as exc:
        raise BootObjectError(f"{kind} stream at offset {offset} is corrupt: {exc}") from exc


def _scan_inner(head: bytes, total: int) -> tuple[Payload, ...]:
    """What a decompressed stream holds: a kernel/U-Boot Image or a newc cpio initramfs."""
    if is_image(head):
        return (Payload(Kind.IMAGE, 0, total, detail=_image_detail(head)),)
    if head.startswith(CPIO_MAGIC):
        return (Payload(Kind.INITRAMFS, 0, total, detail="newc cpio"),)
    raise BootObjectError("compressed stream holds neither an arm64 Image nor a newc cpio")


def _image_detail(head: bytes) -> str:
    if len(head) < IMAGE_HEADER_SIZE:
        return ""
    (image_size,) = struct.unpack_from("<Q", head, 0x10)
    return f"image_size {image_size}"


def _finish(data: bytes, end: int, out: list[Payload]) -> None:
    """After the end marker only the signature (§4) or NUL padding may follow."""
    sig = sign.find_signature(data)
    if sig is not None and sig.offset == end:
        out.append(Payload(Kind.SIGNATURE, end, len(data) - end, detail=sig.key_id.hex()))
    elif data[end:].strip(b"\0"):
        raise BootObjectError(f"{len(data) - end} unexpected bytes after the end marker at {end}")


def _lines_before_image(data: bytes, pos: int) -> int | None:
    """The end of the whole text lines at ``pos`` when an arm64 Image follows them directly
    (the layout of an uncompressed kernel, which must be last), else None."""
    while True:
        nl = data.find(b"\n", pos, pos + bvars.MAX_NAME + bvars.MAX_VALUE + 2)
        if nl < 0 or b"\0" in data[pos:nl]:
            return None
        pos = nl + 1
        if is_image(data, pos):
            return pos
        if pos >= len(data) or data[pos] == 0:
            return None


def _tagged_size(data: bytes, pos: int, tag: bytes, what: str, *, empty_ok: bool = True) -> int:
    """The size declared by the ``tag | LE u32 size | bytes`` payload at ``pos``, checked
    against what follows (the initramfs and the UEFI firmware payloads)."""
    rest = len(data) - pos - len(tag) - 4
    if rest < 0:
        raise BootObjectError(f"{what} tag at offset {pos} is truncated")
    (size,) = struct.unpack_from("<I", data, pos + len(tag))
    if size == 0 and not empty_ok:
        raise BootObjectError(f"{what} at offset {pos} is empty (size 0)")
    if size > rest:
        raise BootObjectError(f"{what} at offset {pos} says {size} bytes, only {rest} follow")
    return int(size)


def scan(data: bytes, start: int) -> tuple[Payload, ...]:
    """Scan the payloads of ``data`` from ``start`` (the end of the stage-2 image)."""
    out: list[Payload] = []
    pos = start
    while pos < len(data):
        rest = len(data) - pos
        if data[pos : pos + 4] == bvars.TERMINATOR or (rest < 4 and not data[pos:].strip(b"\0")):
            _finish(data, pos + min(4, rest), out)
            break
        if data.startswith(GZIP_MAGIC, pos) or data.startswith(XZ_MAGIC, pos):
            kind = Kind.GZIP if data.startswith(GZIP_MAGIC, pos) else Kind.XZ
            used, head, total = _decompress(data, pos, kind)
            inner = _scan_inner(head, total)
            out.append(Payload(kind, pos, used, inner, f"{total} bytes inflated"))
            pos += used
        elif data.startswith(FDT_MAGIC, pos):
            total = fdt_totalsize(data, pos)
            compat = ",".join(fdt_root_compatible(data, pos)) or "?"
            out.append(Payload(Kind.FDT, pos, total, detail=f"compatible {compat}"))
            pos += total
        elif data.startswith(INITRAMFS_TAG, pos):
            size = _tagged_size(data, pos, INITRAMFS_TAG, "initramfs")
            total = len(INITRAMFS_TAG) + 4 + size
            out.append(Payload(Kind.INITRAMFS, pos, total, detail=f"{size} bytes tagged"))
            pos += total
        elif data.startswith(FIRMWARE_TAG, pos):
            size = _tagged_size(data, pos, FIRMWARE_TAG, "firmware", empty_ok=False)
            total = len(FIRMWARE_TAG) + 4 + size
            out.append(Payload(Kind.FIRMWARE, pos, total, detail=f"{size} bytes UEFI firmware"))
            pos += total
        elif data.startswith(sign.SIG_TAG, pos):
            found = sign.find_signature(data)
            if found is None or found.offset != pos:
                raise BootObjectError(f"signature payload at offset {pos} does not end the file")
            out.append(Payload(Kind.SIGNATURE, pos, rest, detail=found.key_id.hex()))
            pos = len(data)
        elif rest > IMAGE_MAGIC_OFFSET + 4 and is_image(data, pos):
            # No reliable size: an uncompressed kernel is the last payload (§3), up to a
            # trailing signature.
            head = data[pos : pos + IMAGE_HEADER_SIZE]
            sig = sign.find_signature(data)
            end = sig.offset if sig is not None and sig.offset > pos else len(data)
            out.append(Payload(Kind.IMAGE, pos, end - pos, detail=_image_detail(head)))
            pos = end
        elif data[pos : pos + 1].isalnum() and (lines := _lines_before_image(data, pos)):
            # Unterminated lines right before an uncompressed kernel (it comes last).
            out.append(Payload(Kind.VARIABLES, pos, lines - pos,
                               variables=bvars.parse_text(data[pos:lines])))
            pos = lines
        elif data[pos : pos + 1].isalnum():
            variables, end = bvars.read_block(data, pos)
            out.append(Payload(Kind.VARIABLES, pos, end - pos, variables=variables))
            pos = end
            if end < len(data):
                _finish(data, end, out)
                break
        else:
            raise BootObjectError(
                f"unrecognised payload at offset {pos} (bytes {data[pos:pos + 8].hex()})"
            )
    return tuple(out)


def payload_start(data: bytes) -> int:
    """Where the payloads start: a Pippin image's ``image_size``, or after m1n1's ``STACKBOT``.

    For m1n1, the first ``STACKBOT`` from which the rest scans cleanly is taken (the 8 bytes
    may also occur in the code).
    """
    if is_pippin(data):
        return pippin_image_end(data)
    at = data.find(IMAGE_END)
    first_error: BootObjectError | None = None
    while at >= 0:
        start = at + len(IMAGE_END)
        try:
            scan(data, start)
        except BootObjectError as exc:
            first_error = first_error or exc
        else:
            return start
        at = data.find(IMAGE_END, start)
    if first_error is not None:
        raise first_error
    raise BootObjectError("no STACKBOT end marker: cannot tell where the loader image ends")
