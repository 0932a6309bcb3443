"""Image4 payloads (IM4P, formats.md §11) decoded to their plain bytes.

pyimg4 parses the DER container. Payloads come raw, LZFSE-compressed (``bvx2`` blocks,
decoded with the ``lzfse`` module) or LZSS-compressed behind a ``complzss`` header. pyimg4's
own LZSS path hands the header to the decoder too (pyimg4 0.8.8 returns wrong bytes), so the
``complzss`` header is parsed here and only the compressed stream goes to ``lzss``.
Every failure becomes a :class:`CollectError` that names the file.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

import asn1  # type: ignore[import-untyped]  # pyimg4's DER library
import lzfse
import lzss  # type: ignore[import-not-found]  # pyimg4's LZSS codec
import pyimg4

from vendorfw.errors import CollectError

_COMPLZSS_HEADER = 0x180

# What pyimg4 and its helpers raise on hostile DER or a corrupt stream (found by fuzzing
# 0.8.8: asn1.Error, pyimg4's ValueError subclasses, UnicodeDecodeError, and TypeError /
# AttributeError / IndexError when a truncated sequence yields None).
_PARSE_ERRORS = (
    asn1.Error,
    ValueError,
    TypeError,
    AttributeError,
    IndexError,
    lzfse.error,
    lzss.error,
    pyimg4.CompressionError,
)


@dataclass(frozen=True, slots=True)
class Im4p:
    """A decoded Image4 payload."""

    fourcc: str
    description: str
    payload: bytes


def decode_im4p(data: bytes, where: str) -> Im4p:
    """Decode the IM4P held in ``data``; ``where`` names it in errors."""
    if not data.startswith(b"\x30"):
        raise CollectError(f"{where}: not an Image4 file (no DER SEQUENCE)")
    try:
        im4p = pyimg4.IM4P(data)
        payload = im4p.payload
        if payload is None:
            raise CollectError(f"{where}: IM4P without a payload")
        if payload.encrypted:
            raise CollectError(f"{where}: IM4P payload is encrypted")
        fourcc = str(im4p.fourcc)
        description = str(im4p.description)
        compression = payload.compression
        raw: bytes = payload.data
        declared: int = payload.size
    except _PARSE_ERRORS as exc:
        raise CollectError(f"{where}: malformed IM4P: {exc}") from exc
    if compression == pyimg4.Compression.LZFSE:
        out = _lzfse(raw, where)
        if declared and len(out) != declared:
            raise CollectError(
                f"{where}: LZFSE payload is {len(out)} bytes, the header says {declared}"
            )
    elif compression == pyimg4.Compression.LZSS:
        out = decode_complzss(raw, where)
    elif raw.startswith((b"bvx2", b"bvx1", b"bvxn", b"bvx-")):
        raise CollectError(f"{where}: truncated LZFSE payload (no end-of-stream block)")
    else:
        out = raw
    return Im4p(fourcc=fourcc, description=description, payload=out)


def _lzfse(raw: bytes, where: str) -> bytes:
    try:
        out: bytes = lzfse.decompress(raw)
    except lzfse.error as exc:
        raise CollectError(f"{where}: corrupt LZFSE payload: {exc}") from exc
    return out


def decode_complzss(data: bytes, where: str) -> bytes:
    """Decode ``complzss`` data: magic, BE adler32, BE size, BE compressed size, 0x180 header."""
    if len(data) < _COMPLZSS_HEADER or not data.startswith(b"complzss"):
        raise CollectError(f"{where}: truncated complzss header")
    adler, size, csize = struct.unpack_from(">III", data, 8)
    end = _COMPLZSS_HEADER + csize
    if end > len(data):
        raise CollectError(f"{where}: complzss stream is truncated ({len(data)} < {end} bytes)")
    try:
        out: bytes = lzss.decompress(data[_COMPLZSS_HEADER:end])
    except lzss.error as exc:
        raise CollectError(f"{where}: corrupt LZSS payload: {exc}") from exc
    if len(out) < size:
        raise CollectError(f"{where}: LZSS payload is {len(out)} bytes, the header says {size}")
    out = out[:size]
    if zlib.adler32(out) != adler:
        raise CollectError(f"{where}: LZSS payload checksum mismatch")
    return out
