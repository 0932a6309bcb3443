"""Image4 payloads (IM4P) via pyimg4: type, description, and the decompressed payload."""

from __future__ import annotations

from dataclasses import dataclass

import pyimg4

from installer.errors import RestoreImageError


@dataclass(frozen=True, slots=True)
class Im4p:
    fourcc: str
    description: str
    payload: bytes  # decompressed (LZFSE / LZSS handled)


def read_im4p(data: bytes, name: str = "IM4P") -> Im4p:
    """Parse an IM4P and decompress its payload; errors name ``name``."""
    try:
        im4p = pyimg4.IM4P(data)
        payload = im4p.payload
        if payload.encrypted:
            raise RestoreImageError(f"{name}: payload is encrypted")
        if payload.compression not in (pyimg4.Compression.NONE, None):
            payload.decompress()
        return Im4p(str(im4p.fourcc), str(im4p.description), bytes(payload.data))
    except RestoreImageError:
        raise
    except (ValueError, TypeError, IndexError, KeyError, AttributeError) as exc:
        raise RestoreImageError(f"{name} is not a valid IM4P: {exc}") from exc
