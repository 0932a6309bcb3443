"""A raw firmware dump held in one spool file: the tree of its members, checked as hostile.

``all_firmware.tar.gz`` has about a thousand members. Creating and later deleting a file
for each costs more than everything else the extraction does (two metadata operations per
member, a few milliseconds each on a busy disk), so the member data go one after another
into a single unnamed temporary file (the *spool*) and this tree records, per path, a
directory, a slice of the spool, or a symlink target. Collectors read it through the
:class:`~vendorfw.source.Tree` interface; :meth:`DumpTree.materialize` writes it out as a
real directory when one is wanted.

The member checks live here: names must be relative without ``..``; a path cannot be both
a directory and a file or link; a hard link must name an earlier file (it then shares that
file's slice); symlinks are added after all other members, never below another symlink,
and must resolve inside the tree (a dangling one is kept, as on disk).
"""

from __future__ import annotations

import contextlib
import mmap
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from vendorfw.errors import ArchiveError
from vendorfw.model import Content
from vendorfw.source import Buffer, Tree, join

MAX_HOPS = 40  # symlinks followed while resolving one path (Linux's limit)


@dataclass(frozen=True, slots=True)
class _Dir:
    pass


@dataclass(frozen=True, slots=True, eq=False)  # identity: hard links share one object
class _File:
    offset: int
    size: int


@dataclass(frozen=True, slots=True)
class _Link:
    target: str


_Entry = _Dir | _File | _Link
_DIR = _Dir()


def member_name(raw: str) -> str:
    """The checked relative path of a member (``./`` and a trailing ``/`` dropped)."""
    name = raw
    while name.startswith("./"):
        name = name[2:]
    name = name.rstrip("/")
    if raw.startswith("/"):
        raise ArchiveError(f"member {raw!r} has an absolute path")
    parts = name.split("/")
    if not name or "\0" in name or any(p in ("", ".", "..") for p in parts):
        raise ArchiveError(f"member {raw!r} has an unsafe path")
    return name


class DumpTree(Tree):
    """The members of a dump whose file data lie in the open file ``spool``.

    Built member by member (:meth:`add_dir`, :meth:`add_file`, :meth:`add_hardlink`,
    :meth:`add_symlink`), then :meth:`finish` adds and checks the symlinks.
    """

    def __init__(self, spool: BinaryIO, archive: Path) -> None:
        self.spool = spool
        self.archive = archive
        self.label = str(archive)
        self.entries: dict[str, _Entry] = {"": _DIR}
        self.children: dict[str, set[str]] = {"": set()}
        self._symlinks: list[tuple[str, str]] = []
        self.unpacked = 0  # bytes of file data (set by the reader)

    # ------------------------------------------------------------------ building

    def _put(self, name: str, entry: _Entry) -> None:
        parent, _, leaf = name.rpartition("/")
        self.add_dir(parent)
        self.entries[name] = entry
        self.children[parent].add(leaf)
        if entry is _DIR:
            self.children.setdefault(name, set())

    def add_dir(self, name: str) -> None:
        """``name`` and its parents as directories (each must not be a file or link)."""
        if name == "":
            return
        entry = self.entries.get(name)
        if entry is _DIR:
            return
        if entry is not None:
            raise ArchiveError(f"{name} is both a directory and a file or link")
        self._put(name, _DIR)

    def add_file(self, name: str, offset: int, size: int) -> None:
        """A regular file; a repeated member replaces the earlier one (its hard links keep
        the earlier content, as on disk)."""
        if isinstance(self.entries.get(name), _Dir):
            raise ArchiveError(f"{name} is both a directory and a file or link")
        self._put(name, _File(offset, size))

    def add_hardlink(self, name: str, target: str) -> None:
        entry = self.entries.get(target)
        if not isinstance(entry, _File):
            raise ArchiveError(f"hard link {name} -> {target!r} names no earlier file")
        self.add_file(name, entry.offset, entry.size)

    def add_symlink(self, name: str, target: str) -> None:
        """Recorded now, added by :meth:`finish` (its target may come later)."""
        self._symlinks.append((name, target))

    def finish(self) -> None:
        """Add the symlinks; each must stay inside the tree and not sit below another."""
        for name, target in self._symlinks:
            if target.startswith("/") or not target or "\0" in target:
                raise ArchiveError(f"symlink {name} -> {target!r} is absolute")
            self.add_dir(name.rpartition("/")[0])  # refuses a parent that is a link
            if name in self.entries:
                raise ArchiveError(f"symlink {name} clashes with a file")
            self._put(name, _Link(target))
        for name, target in self._symlinks:
            status = self._walk(name)[1]
            if status == "outside":
                raise ArchiveError(f"symlink {name} -> {target} points outside the dump")
            if status == "loop":
                raise ArchiveError(f"symlink {name} -> {target} is a loop")

    # ------------------------------------------------------------------ resolving

    def _walk(self, rel: str, follow_last: bool = True) -> tuple[str, str]:
        """(link-free path, status): "ok", "missing" (dangles; the path is then lexical),
        "outside" (climbs above the root) or "loop"."""
        entry = self.entries.get(rel)
        if entry is not None and not isinstance(entry, _Link):
            return rel, "ok"  # keys are link-free paths: every parent of one is a _Dir
        todo = [p for p in rel.split("/") if p not in ("", ".")]
        done: list[str] = []
        hops = 0
        while todo:
            part = todo.pop(0)
            if part == ".":
                continue
            if part == "..":
                if not done:
                    return "", "outside"
                done.pop()
                continue
            entry = self.entries.get(join(*done, part))
            if isinstance(entry, _Link) and (todo or follow_last):
                hops += 1
                if hops > MAX_HOPS:
                    return "", "loop"
                todo = [p for p in entry.target.split("/") if p] + todo
                continue
            done.append(part)
            if entry is None or (todo and not isinstance(entry, _Dir)):
                for rest in todo:  # the rest does not exist: resolve it lexically
                    if rest == "..":
                        if not done:
                            return "", "outside"
                        done.pop()
                    elif rest != ".":
                        done.append(rest)
                return "/".join(done), "missing"
        return "/".join(done), "ok"

    def _entry(self, rel: str) -> _Entry | None:
        path, status = self._walk(rel)
        return self.entries.get(path) if status == "ok" else None

    def _file(self, rel: str) -> _File:
        entry = self._entry(rel)
        if not isinstance(entry, _File):
            raise FileNotFoundError(2, "not a file in the dump", self.shown(rel))
        return entry

    # ------------------------------------------------------------------ Tree

    def shown(self, rel: str) -> str:
        return f"{self.archive}:{rel}" if rel else str(self.archive)

    def is_dir(self, rel: str) -> bool:
        return isinstance(self._entry(rel), _Dir)

    def is_file(self, rel: str) -> bool:
        return isinstance(self._entry(rel), _File)

    def is_link(self, rel: str) -> bool:
        path, status = self._walk(rel, follow_last=False)
        return status == "ok" and isinstance(self.entries.get(path), _Link)

    def resolve(self, rel: str) -> str | None:
        path, status = self._walk(rel)
        return path if status == "ok" else None

    def listdir(self, rel: str) -> list[str]:
        path, status = self._walk(rel)
        if status != "ok" or not isinstance(self.entries.get(path), _Dir):
            raise NotADirectoryError(20, "not a directory in the dump", self.shown(rel))
        return list(self.children[path])

    def read(self, rel: str) -> bytes:
        return self.content(rel).read()

    def size(self, rel: str) -> int:
        return self._file(rel).size

    def content(self, rel: str) -> Content:
        f = self._file(rel)
        return Content(self.shown(rel), spool=self.spool, offset=f.offset, size=f.size)

    @contextlib.contextmanager
    def mapped(self, rel: str) -> Iterator[Buffer]:
        f = self._file(rel)
        if f.size == 0:
            yield b""
            return
        start = f.offset - f.offset % mmap.ALLOCATIONGRANULARITY
        with mmap.mmap(self.spool.fileno(), f.offset + f.size - start, access=mmap.ACCESS_READ,
                       offset=start) as mm:
            view = memoryview(mm)[f.offset - start :]
            try:
                yield view
            finally:
                view.release()

    # ------------------------------------------------------------------ writing out

    def materialize(self, dest: Path, chunk: int = 1 << 20) -> None:
        """Write the tree into the empty directory ``dest``: directories, files (members
        sharing a slice become hard links), then symlinks. Never writes through a link:
        none exists until every file is written, and each is created exclusively."""
        firsts: dict[_File, str] = {}
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        for name in sorted(self.entries, key=lambda n: (n.count("/"), n)):
            entry = self.entries[name]
            if name == "" or isinstance(entry, _Link):
                continue
            path = dest / name
            if isinstance(entry, _Dir):
                os.mkdir(path, 0o755)
            elif entry in firsts:
                os.link(dest / firsts[entry], path, follow_symlinks=False)
            else:
                firsts[entry] = name
                fd = os.open(path, flags, 0o644)
                try:
                    for piece in Content(name, spool=self.spool, offset=entry.offset,
                                         size=entry.size).chunks(chunk):
                        os.write(fd, piece)
                finally:
                    os.close(fd)
        for name, target in self._symlinks:
            os.symlink(target, dest / name)

    @property
    def files(self) -> int:
        return sum(isinstance(e, _File) for e in self.entries.values())

    @property
    def symlinks(self) -> int:
        return len(self._symlinks)

    def __repr__(self) -> str:
        return f"DumpTree({self.archive}, {len(self.entries)} entries)"
