"""Values shared by collectors and packaging.

A collector turns Apple's files into :class:`FirmwareFile` values with their Linux names
(relative to ``vendorfw/``, e.g. ``brcm/brcmfmac4378b1-pcie.apple,shikoku.bin``). Content is
either held (``data``, for small generated files) or read lazily from ``source`` (a file on
disk, or a :class:`Content` slice of the spool a raw dump was read into) so memory does not
grow with the size of the firmware tree.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class Content:
    """Bytes to read later: the whole file ``path``, or ``size`` bytes at ``offset`` of the
    open file ``spool`` (readable while its owner keeps it open; once it is closed, reading
    fails instead of reading whatever reuses the descriptor). ``label`` names it.
    ``digest`` is the SHA-256 when a collector already computed it."""

    label: str
    path: Path | None = None
    spool: BinaryIO | None = None
    offset: int = 0
    size: int = 0
    digest: bytes | None = None

    @property
    def immutable(self) -> bool:
        """A slice of a spool only its owner holds (unnamed): it cannot change under us,
        unlike a file on disk."""
        return self.path is None

    @classmethod
    def of_path(cls, path: Path) -> Content:
        return cls(str(path), path=path)

    def chunks(self, chunk: int = CHUNK) -> Iterator[bytes]:
        """The bytes in pieces of at most ``chunk``; raises OSError when unreadable."""
        if self.path is not None:
            with open(self.path, "rb") as f:
                while piece := f.read(chunk):
                    yield piece
            return
        assert self.spool is not None  # one of path/spool, by construction
        if self.spool.closed:
            raise OSError(9, f"{self.label}: the spool it was read from is closed")
        fd = self.spool.fileno()
        done = 0
        while done < self.size:
            piece = os.pread(fd, min(chunk, self.size - done), self.offset + done)
            if not piece:
                raise OSError(0, f"spool ends {self.size - done} bytes early")
            done += len(piece)
            yield piece

    def read(self) -> bytes:
        if self.path is not None:
            return self.path.read_bytes()
        return b"".join(self.chunks())

    def __str__(self) -> str:
        return self.label


@dataclass(frozen=True, slots=True)
class FirmwareFile:
    """One output file: its Linux name and where its bytes come from."""

    name: str
    data: bytes | None = None
    source: Path | Content | None = None

    def __post_init__(self) -> None:
        if (self.data is None) == (self.source is None):
            raise ValueError("FirmwareFile needs exactly one of data or source")

    @property
    def content(self) -> Content | None:
        """``source`` as :class:`Content` (None for held data)."""
        if isinstance(self.source, Path):
            return Content.of_path(self.source)
        return self.source

    def read(self) -> bytes:
        """The file's bytes."""
        if self.data is not None:
            return self.data
        content = self.content
        assert content is not None  # guaranteed by __post_init__
        return content.read()


@dataclass(frozen=True, slots=True)
class Problem:
    """A source file that was skipped, with the reason (reported, never fatal)."""

    path: str
    reason: str
