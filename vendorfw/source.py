"""Where the collectors read Apple's files from.

A :class:`FirmwareSource` names each input (any may be missing; a collector without input
contributes nothing). :meth:`FirmwareSource.from_dir` recognises two layouts.

Raw-dump layout (formats.md §8: ``all_firmware.tar.gz`` unpacked, ``kernelcache*`` beside it)::

    firmware/                   -> firmware       (holds wifi/ and bluetooth/)
    fud_firmware/               -> fud_firmware   (<jNNN>/Multitouch.im4p, …)
    appleh13camerad             -> camerad
    com.apple.factorydata/      -> factorydata
    apple/aop-als-cal.bin       -> als_cal
    kernelcache*                -> kernelcache    (regular file at the top level)

macOS-style tree (a copy of the relevant parts of a macOS system)::

    usr/share/firmware/                          -> firmware
    fud_firmware/                                -> fud_firmware
    usr/sbin/appleh13camerad | appleh13camerad   -> camerad
    System/Library/Caches/com.apple.factorydata/ | com.apple.factorydata/  -> factorydata
    apple/aop-als-cal.bin | aop-als-cal.bin      -> als_cal
    kernelcache*                                 -> kernelcache (top level)

The raw-dump names win when both exist. With several ``kernelcache*`` files the first in
byte order of the name is used (and the choice is logged). A tree in which none of these
exist is an error, so a mistyped path does not produce an empty firmware package.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, fields
from pathlib import Path

from vendorfw.errors import CollectError

log = logging.getLogger(__name__)

# (field, candidate paths relative to the root, wanted kind), raw-dump name first.
_LAYOUT: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("firmware", ("firmware", "usr/share/firmware"), "dir"),
    ("fud_firmware", ("fud_firmware",), "dir"),
    ("camerad", ("appleh13camerad", "usr/sbin/appleh13camerad"), "file"),
    (
        "factorydata",
        ("com.apple.factorydata", "System/Library/Caches/com.apple.factorydata"),
        "dir",
    ),
    ("als_cal", ("apple/aop-als-cal.bin", "aop-als-cal.bin"), "file"),
)


@dataclass(frozen=True, slots=True)
class FirmwareSource:
    """The inputs of the collectors; ``None`` means "not available"."""

    firmware: Path | None = None
    fud_firmware: Path | None = None
    camerad: Path | None = None
    factorydata: Path | None = None
    als_cal: Path | None = None
    kernelcache: Path | None = None
    # set when ``root`` is a temporary unpack of ``archive``: problems then name the member
    root: Path | None = None
    archive: Path | None = None

    @classmethod
    def from_dir(
        cls, root: Path, kernelcache: Path | None = None, archive: Path | None = None
    ) -> FirmwareSource:
        """Find the inputs below ``root`` (raw-dump or macOS-style layout, see module doc).

        ``kernelcache`` (e.g. the one beside a packed raw dump) wins over one in ``root``.
        ``archive`` says ``root`` is a temporary unpack of it (see :meth:`shown`).
        """
        root = Path(root)
        if not root.is_dir():
            raise CollectError(f"firmware source {root} is not a directory")
        found: dict[str, Path | None] = {}
        for name, candidates, kind in _LAYOUT:
            found[name] = _first(root, candidates, kind)
        found["kernelcache"] = kernelcache or find_kernelcache(root)
        if all(p is None for p in found.values()):
            raise CollectError(
                f"no firmware sources found in {archive or root}",
                hint="expected an unpacked all_firmware.tar.gz (firmware/, fud_firmware/, "
                "appleh13camerad, com.apple.factorydata/, apple/aop-als-cal.bin, "
                "kernelcache*) or a macOS-style tree (usr/share/firmware/, …)",
            )
        source = cls(**found, root=root if archive else None, archive=archive)
        log.info("firmware source %s: %s", archive or root, source.describe())
        return source

    def describe(self) -> str:
        """One line naming the inputs that are present."""
        present = [f"{f.name}={getattr(self, f.name)}" for f in fields(self)
                   if f.name not in ("root", "archive")]
        return ", ".join(p for p in present if not p.endswith("=None")) or "nothing"

    def shown(self, path: str) -> str:
        """``path`` as a user can find it: ``<archive>:<member>`` inside an unpacked dump
        (the temporary directory is gone once the command ends), else unchanged."""
        if self.archive is None or self.root is None:
            return path
        rel = os.path.relpath(path, self.root)
        if rel == os.curdir or rel.startswith(os.pardir):
            return path
        return f"{self.archive}:{rel}"


def _first(root: Path, candidates: tuple[str, ...], kind: str) -> Path | None:
    for rel in candidates:
        p = root / rel
        if (p.is_dir() if kind == "dir" else p.is_file()):
            return p
    return None


def find_kernelcache(root: Path) -> Path | None:
    """The ``kernelcache*`` regular file at the top of ``root`` (first in byte order)."""
    try:
        entries = list(root.iterdir())
    except OSError as exc:
        raise CollectError(f"cannot list {root}: {exc.strerror or exc}") from exc
    caches = sorted(
        (p for p in entries if p.name.startswith("kernelcache") and p.is_file()),
        key=lambda p: os.fsencode(p.name),  # byte order; names need not be UTF-8
    )
    if len(caches) > 1:
        log.warning("several kernelcaches in %s, using %s", root, caches[0].name)
    return caches[0] if caches else None
