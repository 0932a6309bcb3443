"""Where the collectors read Apple's files from.

Collectors see a :class:`Tree`: a read-only directory tree addressed by relative,
``/``-separated paths (``""`` is the root). Two kinds exist: :class:`DirTree`, a directory
on disk (a macOS-style tree or an unpacked raw dump), and the raw dump read straight out of
``all_firmware.tar.gz`` into one spool file (``vendorfw.dumptree.DumpTree``), which costs no
file per member to create and delete.

A :class:`FirmwareSource` names each input inside its tree (any may be missing; a collector
without input contributes nothing). :meth:`FirmwareSource.from_tree` recognises two layouts.

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

import abc
import contextlib
import dataclasses
import hashlib
import logging
import mmap
import os
from collections.abc import Iterator
from dataclasses import dataclass, fields
from pathlib import Path

from vendorfw.errors import CollectError
from vendorfw.model import Content

log = logging.getLogger(__name__)

Buffer = bytes | mmap.mmap | memoryview

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


def join(*parts: str) -> str:
    """Relative tree paths joined with ``/`` (empty parts, such as the root, dropped)."""
    return "/".join(p for p in parts if p)


def basename(rel: str) -> str:
    return rel.rpartition("/")[2]


class Tree(abc.ABC):
    """A read-only directory tree; methods take paths relative to its root.

    ``is_dir``/``is_file`` follow symlinks (within the tree); ``is_link`` looks at the entry
    itself. Reading methods raise ``OSError`` like the filesystem would.
    """

    label: str  # names the tree in messages

    @abc.abstractmethod
    def shown(self, rel: str) -> str:
        """``rel`` as a user can find it (a filesystem path, or ``<archive>:<member>``)."""

    @abc.abstractmethod
    def is_dir(self, rel: str) -> bool: ...

    @abc.abstractmethod
    def is_file(self, rel: str) -> bool: ...

    @abc.abstractmethod
    def is_link(self, rel: str) -> bool: ...

    @abc.abstractmethod
    def resolve(self, rel: str) -> str | None:
        """The link-free path ``rel`` leads to, or None when it dangles or leaves the tree."""

    @abc.abstractmethod
    def listdir(self, rel: str) -> list[str]:
        """Names in the directory ``rel`` (any order)."""

    @abc.abstractmethod
    def read(self, rel: str) -> bytes: ...

    @abc.abstractmethod
    def size(self, rel: str) -> int: ...

    @abc.abstractmethod
    def content(self, rel: str) -> Content:
        """The file's bytes, read lazily later (for :class:`~vendorfw.model.FirmwareFile`)."""

    @abc.abstractmethod
    def mapped(self, rel: str) -> contextlib.AbstractContextManager[Buffer]:
        """The file's bytes as a read-only buffer, paged in on demand."""

    def digest(self, rel: str) -> bytes:
        """SHA-256 of a file, in chunks so memory does not grow with the file."""
        h = hashlib.sha256()
        for chunk in self.content(rel).chunks():
            h.update(chunk)
        return h.digest()

    def hashed(self, rel: str) -> Content:
        """:meth:`content` with its ``digest`` filled in (packaging then need not hash a
        spool slice again)."""
        return dataclasses.replace(self.content(rel), digest=self.digest(rel))

    def walk(self, top: str) -> Iterator[tuple[str, list[str], list[str]]]:
        """Like ``os.walk`` (top-down, ``dirnames`` may be pruned in place): directories and
        links to directories go to ``dirnames``, but links are not descended into."""
        try:
            names = self.listdir(top)
        except OSError:
            return
        dirs: list[str] = []
        files: list[str] = []
        for n in names:
            (dirs if self.is_dir(join(top, n)) else files).append(n)
        yield top, dirs, files
        for d in dirs:
            if not self.is_link(join(top, d)):
                yield from self.walk(join(top, d))

    def escapes(self, rel: str, within: str) -> bool:
        """True when ``rel`` is a symlink whose target lies outside ``within`` (or dangles).
        Walks do not follow directory links, so only the file itself needs checking."""
        if not self.is_link(rel):
            return False
        target = self.resolve(rel)
        return target is None or not (within == "" or target == within
                                      or target.startswith(within + "/"))


class DirTree(Tree):
    """A directory on disk."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.label = str(root)

    def path(self, rel: str) -> Path:
        return self.root / rel if rel else self.root

    def shown(self, rel: str) -> str:
        return str(self.path(rel))

    def is_dir(self, rel: str) -> bool:
        return self.path(rel).is_dir()

    def is_file(self, rel: str) -> bool:
        return self.path(rel).is_file()

    def is_link(self, rel: str) -> bool:
        return self.path(rel).is_symlink()

    def resolve(self, rel: str) -> str | None:
        try:
            target = self.path(rel).resolve(strict=True)
            inside = target.relative_to(self.root.resolve(strict=True)).as_posix()
        except (OSError, ValueError, RuntimeError):  # dangling, outside, or a link loop
            return None
        return "" if inside == "." else inside

    def listdir(self, rel: str) -> list[str]:
        return os.listdir(self.path(rel))

    def read(self, rel: str) -> bytes:
        return self.path(rel).read_bytes()

    def size(self, rel: str) -> int:
        return self.path(rel).stat().st_size

    def content(self, rel: str) -> Content:
        return Content.of_path(self.path(rel))

    @contextlib.contextmanager
    def mapped(self, rel: str) -> Iterator[Buffer]:
        with self.path(rel).open("rb") as f:
            if os.fstat(f.fileno()).st_size == 0:
                yield b""
                return
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
                yield mm


@dataclass(frozen=True, slots=True)
class FirmwareSource:
    """The inputs of the collectors: paths inside ``tree`` (``None``: not available) and the
    kernelcache, which always lies beside the dump on disk."""

    tree: Tree | None = None
    firmware: str | None = None
    fud_firmware: str | None = None
    camerad: str | None = None
    factorydata: str | None = None
    als_cal: str | None = None
    kernelcache: Path | None = None

    @classmethod
    def from_dir(cls, root: Path, kernelcache: Path | None = None) -> FirmwareSource:
        """Find the inputs below the directory ``root`` (raw-dump or macOS-style layout).

        ``kernelcache`` (e.g. the one beside a packed raw dump) wins over one in ``root``.
        """
        root = Path(root)
        if not root.is_dir():
            raise CollectError(f"firmware source {root} is not a directory")
        return cls.from_tree(DirTree(root), kernelcache or find_kernelcache(root))

    @classmethod
    def from_tree(cls, tree: Tree, kernelcache: Path | None = None) -> FirmwareSource:
        """Find the inputs in ``tree`` (see the module doc for the two layouts)."""
        found: dict[str, str | None] = {}
        for name, candidates, kind in _LAYOUT:
            found[name] = next((c for c in candidates if (
                tree.is_dir(c) if kind == "dir" else tree.is_file(c))), None)
        if kernelcache is None and all(p is None for p in found.values()):
            raise CollectError(
                f"no firmware sources found in {tree.label}",
                hint="expected an unpacked all_firmware.tar.gz (firmware/, fud_firmware/, "
                "appleh13camerad, com.apple.factorydata/, apple/aop-als-cal.bin, "
                "kernelcache*) or a macOS-style tree (usr/share/firmware/, …)",
            )
        source = cls(tree, **found, kernelcache=kernelcache)
        log.info("firmware source %s: %s", tree.label, source.describe())
        return source

    @classmethod
    def of_paths(cls, kernelcache: Path | None = None, **inputs: Path | None) -> FirmwareSource:
        """Inputs given one by one as absolute or relative filesystem paths (as on a live
        macOS system, where they lie in different places): ``firmware``, ``fud_firmware``,
        ``camerad``, ``factorydata``, ``als_cal``."""
        root = Path(os.path.abspath(os.sep))
        rel = {k: os.path.abspath(v).lstrip(os.sep) for k, v in inputs.items() if v is not None}
        return cls(DirTree(root), **rel, kernelcache=kernelcache)

    def describe(self) -> str:
        """One line naming the inputs that are present."""
        present = [f"{f.name}={getattr(self, f.name)}" for f in fields(self) if f.name != "tree"]
        return ", ".join(p for p in present if not p.endswith("=None")) or "nothing"


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
