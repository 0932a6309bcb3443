"""Collectors: each turns one kind of Apple firmware into Linux-named files (formats.md §7).

Every collector module exposes ``collect(source) -> (files, problems)`` and reads its input
through ``source.tree`` (a directory or a raw dump in its spool, see vendorfw/source.py). A
collector whose input is missing returns nothing; a malformed input file becomes a
:class:`Problem` naming the file as ``tree.shown`` gives it (and, for warnings the spec asks
for, the reason) instead of an exception. A symlink that leads outside the collector's
input directory is a problem too (``Tree.escapes``).
"""

from __future__ import annotations

from collections.abc import Callable

from vendorfw.errors import CollectError
from vendorfw.model import FirmwareFile, Problem
from vendorfw.source import FirmwareSource

Result = tuple[list[FirmwareFile], list[Problem]]
Collector = Callable[[FirmwareSource], Result]


def problem(shown: str, exc: CollectError) -> Problem:
    """A :class:`Problem` for the file shown as ``shown`` from an error that may name it."""
    return Problem(shown, exc.message.removeprefix(f"{shown}: "))


def by_name(files: list[FirmwareFile]) -> list[FirmwareFile]:
    """Files sorted by output name in byte order (the order §6 and §7 require)."""
    return sorted(files, key=lambda f: f.name.encode())
