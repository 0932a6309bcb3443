"""Collectors: each turns one kind of Apple firmware into Linux-named files (formats.md §7).

Every collector module exposes ``collect(source) -> (files, problems)``. A collector whose
input is missing returns nothing; a malformed input file becomes a :class:`Problem` naming
the file (and, for warnings the spec asks for, the reason) instead of an exception.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

from vendorfw.errors import CollectError
from vendorfw.model import FirmwareFile, Problem
from vendorfw.source import FirmwareSource

Result = tuple[list[FirmwareFile], list[Problem]]
Collector = Callable[[FirmwareSource], Result]


def file_digest(path: Path) -> bytes:
    """SHA-256 of a file, read in chunks so memory does not grow with the file."""
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").digest()


def link_escapes(path: Path, root: Path) -> bool:
    """True when ``path`` is a symlink whose target lies outside ``root`` (or dangles).

    Walks do not follow directory links, so only the file itself needs checking.
    """
    if not path.is_symlink():
        return False
    try:
        path.resolve(strict=True).relative_to(root.resolve(strict=True))
    except (OSError, ValueError):
        return True
    return False


def problem(path: Path, exc: CollectError) -> Problem:
    """A :class:`Problem` for ``path`` from an error whose message may already name it."""
    reason = exc.message.removeprefix(f"{path}: ")
    return Problem(str(path), reason)


def by_name(files: list[FirmwareFile]) -> list[FirmwareFile]:
    """Files sorted by output name in byte order (the order §6 and §7 require)."""
    return sorted(files, key=lambda f: f.name.encode())
