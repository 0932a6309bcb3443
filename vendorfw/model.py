"""Values shared by collectors and packaging.

A collector turns Apple's files into :class:`FirmwareFile` values with their Linux names
(relative to ``vendorfw/``, e.g. ``brcm/brcmfmac4378b1-pcie.apple,shikoku.bin``). Content is
either held (``data``, for small generated files) or read lazily from ``source`` so memory
does not grow with the size of the firmware tree.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class FirmwareFile:
    """One output file: its Linux name and where its bytes come from."""

    name: str
    data: bytes | None = None
    source: Path | None = None

    def __post_init__(self) -> None:
        if (self.data is None) == (self.source is None):
            raise ValueError("FirmwareFile needs exactly one of data or source")

    def read(self) -> bytes:
        """The file's bytes."""
        if self.data is not None:
            return self.data
        assert self.source is not None  # guaranteed by __post_init__
        return self.source.read_bytes()


@dataclass(frozen=True, slots=True)
class Problem:
    """A source file that was skipped, with the reason (reported, never fatal)."""

    path: str
    reason: str
