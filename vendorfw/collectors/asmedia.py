"""ASMedia ASM2214A xHCI firmware, carved out of the kernelcache (formats.md §7).

The kernelcache is an IM4P (LZFSE, LZSS or raw payload); a raw Mach-O is accepted as is.
In the decoded image the first ``2214A_RCFG`` marks the blob: a LE u32 at +0x2F holds its
size, which must be 0x18000, and the bytes start at +0x33.
"""

from __future__ import annotations

import logging
import struct

from vendorfw.collectors import Result, problem
from vendorfw.errors import CollectError
from vendorfw.im4p import decode_im4p
from vendorfw.model import FirmwareFile, Problem
from vendorfw.source import FirmwareSource

log = logging.getLogger(__name__)

NAME = "asmedia/asm2214a-apple.bin"
MARKER = b"2214A_RCFG"
SIZE_AT = 0x2F
DATA_AT = 0x33
SIZE = 0x18000
_MACHO = (b"\xcf\xfa\xed\xfe", b"\xca\xfe\xba\xbe")  # 64-bit Mach-O, fat binary


def collect(source: FirmwareSource) -> Result:
    """The ASMedia blob of ``source.kernelcache`` (nothing without a kernelcache)."""
    path = source.kernelcache
    if path is None:
        return [], []
    try:
        data = path.read_bytes()
        image = data if data.startswith(_MACHO) else decode_im4p(data, str(path)).payload
        del data
        blob = extract(image, str(path))
    except OSError as exc:
        return [], [Problem(str(path), f"cannot read: {exc.strerror or exc}")]
    except CollectError as exc:
        return [], [problem(str(path), exc)]
    log.info("asmedia: %d-byte blob from %s", len(blob), path)
    return [FirmwareFile(NAME, data=blob)], []


def extract(image: bytes, where: str) -> bytes:
    """The 0x18000-byte blob after the first ``2214A_RCFG`` in a decoded kernelcache."""
    at = image.find(MARKER)
    if at < 0:
        raise CollectError(f"{where}: no ASMedia firmware ({MARKER.decode()}) in the kernelcache")
    if at + DATA_AT > len(image):
        raise CollectError(f"{where}: ASMedia header truncated at offset {at:#x}")
    (size,) = struct.unpack_from("<I", image, at + SIZE_AT)
    if size != SIZE:
        raise CollectError(f"{where}: ASMedia firmware size is {size:#x}, expected {SIZE:#x}")
    blob = image[at + DATA_AT : at + DATA_AT + SIZE]
    if len(blob) != SIZE:
        raise CollectError(f"{where}: ASMedia firmware truncated ({len(blob):#x} bytes)")
    return blob
