"""Image4 payloads (IM4P): type, description and the decompressed payload.

The decoder is vendorfw's (:func:`vendorfw.im4p.decode_im4p`: pyimg4 for the DER, LZFSE,
and LZSS behind a ``complzss`` header, every hostile input a one-line error); this module
only turns its errors into the installer's.
"""

from __future__ import annotations

from installer.errors import RestoreImageError
from vendorfw.errors import CollectError
from vendorfw.im4p import Im4p, decode_im4p

__all__ = ["Im4p", "read_im4p"]


def read_im4p(data: bytes, name: str = "IM4P") -> Im4p:
    """Parse an IM4P and decompress its payload; errors name ``name``."""
    try:
        return decode_im4p(data, name)
    except CollectError as exc:
        raise RestoreImageError(exc.message, hint=exc.hint) from exc
