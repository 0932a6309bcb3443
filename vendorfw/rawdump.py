"""The raw firmware dump ``all_firmware.tar.gz`` (formats.md §8): safe unpack, and pack.

Unpacking treats the archive as hostile. Every member name must be relative without ``..``;
only directories, regular files, hard links to earlier files and symlinks are accepted.
Nothing is ever written through a symlink: symlinks are created last, each only under real
directories, and each must resolve inside the tree. A failure removes the partial tree.

Packing is deterministic (sorted names, uid/gid/mtime 0, no gzip timestamp), so the same
tree always gives the same bytes.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import libarchive

from vendorfw import archiveio
from vendorfw.archiveio import DIR, FILE, SYMLINK
from vendorfw.atomic import atomic_file
from vendorfw.errors import ArchiveError
from vendorfw.source import FirmwareSource, find_kernelcache

log = logging.getLogger(__name__)

RAWDUMP_NAME = "all_firmware.tar.gz"
MAX_UNPACKED = 8 << 30  # a real dump is a few hundred MB; this stops a decompression bomb
MAX_MEMBERS = 200_000  # a real dump has a few thousand; this stops a bomb of empty files
BLOCK = 1 << 20


@dataclass(frozen=True, slots=True)
class UnpackStats:
    files: int
    bytes: int
    symlinks: int


def _member_name(raw: str) -> str:
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


class _Unpacker:
    def __init__(self, root: Path, limit: int, progress: Callable[[int], None] | None) -> None:
        self.root = root
        self.real_root = os.path.realpath(root)
        self.limit = limit
        self.progress = progress
        self.files: set[str] = set()
        self.symlinks: list[tuple[str, str]] = []
        self.total = 0

    def _dir(self, rel: str) -> None:
        """Create ``rel`` (and parents) as real directories; never follow a symlink."""
        path = self.root
        for part in rel.split("/") if rel else []:
            path = path / part
            try:
                os.mkdir(path, 0o755)
            except FileExistsError:
                if path.is_symlink() or not path.is_dir():
                    raise ArchiveError(
                        f"{path.relative_to(self.root)} is both a directory "
                        "and a file or link"
                    ) from None

    def file(self, name: str, entry: libarchive.entry.ArchiveEntry) -> None:
        self._dir(name.rpartition("/")[0])
        # a repeated member replaces the earlier one; unlink first so that truncating does
        # not also rewrite a file that an earlier hard link shares the inode with
        if name in self.files:
            os.unlink(self.root / name)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(self.root / name, flags, 0o644)
        except OSError as exc:
            raise ArchiveError(f"cannot create {name}: {exc.strerror}") from exc
        with os.fdopen(fd, "wb") as out:
            for block in entry.get_blocks(BLOCK):
                self.total += len(block)
                if self.total > self.limit:
                    raise ArchiveError(
                        f"unpacks to more than {self.limit} bytes",
                        hint="this is not a firmware dump (or it is damaged)",
                    )
                out.write(block)
                if self.progress:
                    self.progress(len(block))
        self.files.add(name)

    def hardlink(self, name: str, target_raw: str) -> None:
        target = _member_name(target_raw)
        if target not in self.files:
            raise ArchiveError(
                f"hard link {name} -> {target_raw!r} names no earlier file"
            )
        self._dir(name.rpartition("/")[0])
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.root / name)
        os.link(self.root / target, self.root / name, follow_symlinks=False)
        self.files.add(name)

    def make_symlinks(self) -> None:
        for name, target in self.symlinks:
            if target.startswith("/") or not target or "\0" in target:
                raise ArchiveError(f"symlink {name} -> {target!r} is absolute")
            parent = name.rpartition("/")[0]
            self._dir(parent)
            real_parent = os.path.realpath(self.root / parent)
            if real_parent != os.path.join(self.real_root, parent).rstrip("/"):
                raise ArchiveError(f"symlink {name} lies below another symlink")
            try:
                os.symlink(target, self.root / name)
            except FileExistsError:
                raise ArchiveError(f"symlink {name} clashes with a file") from None
            resolved = os.path.realpath(self.root / name)
            if os.path.commonpath([resolved, self.real_root]) != self.real_root:
                raise ArchiveError(
                    f"symlink {name} -> {target} points outside the dump"
                )


def unpack(
    archive: Path,
    dest: Path,
    progress: Callable[[int], None] | None = None,
    limit: int = MAX_UNPACKED,
    max_members: int = MAX_MEMBERS,
) -> UnpackStats:
    """Unpack ``archive`` into the existing empty directory ``dest``; on error ``dest`` is
    emptied again and :class:`ArchiveError` names the archive and the offending member."""
    if any(dest.iterdir()):  # on failure dest is emptied: never do that to someone's files
        raise ArchiveError(f"cannot unpack {archive}: {dest} is not empty")
    u = _Unpacker(dest, limit, progress)
    try:
        with archiveio.translated(f"reading {archive}"), libarchive.file_reader(
            str(archive), format_name="tar", block_size=BLOCK
        ) as reader:
            for count, entry in enumerate(reader, 1):
                raw = archiveio.entry_path(entry)
                if count > max_members:
                    raise ArchiveError(f"more than {max_members} members",
                                       hint="this is not a firmware dump (or it is damaged)")
                if entry.isdir and raw.strip("/") in (".", ""):
                    continue  # the archive root ("./", as in `tar -C dump -czf … .`)
                name = _member_name(raw)
                if entry.islnk:
                    u.hardlink(name, archiveio.entry_link(entry))
                elif entry.isdir:
                    u._dir(name)
                elif entry.issym:
                    u.symlinks.append((name, archiveio.entry_link(entry)))
                elif entry.isreg:
                    u.file(name, entry)
                else:
                    raise ArchiveError(f"member {raw!r} is a device or fifo")
        u.make_symlinks()
    except ArchiveError as exc:
        _empty(dest)
        raise ArchiveError(f"{archive}: {exc.message}", hint=exc.hint) from exc
    except OSError as exc:
        _empty(dest)
        raise ArchiveError(f"cannot unpack {archive} into {dest}: {exc}") from exc
    log.info("unpacked %s: %d files, %d bytes", archive, len(u.files), u.total)
    return UnpackStats(len(u.files), u.total, len(u.symlinks))


def _empty(d: Path) -> None:
    for child in d.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


@contextlib.contextmanager
def open_source(
    src: Path, tmp_parent: Path | None = None, progress: Callable[[int], None] | None = None
) -> Iterator[FirmwareSource]:
    """The collectors' inputs from ``src``: a directory holding ``all_firmware.tar.gz``
    (unpacked into a temporary directory for the duration) + ``kernelcache*``, an unpacked
    raw dump, or a macOS-style tree."""
    dump = src / RAWDUMP_NAME
    if not dump.is_file():
        yield FirmwareSource.from_dir(src)
        return
    kernelcache = find_kernelcache(src)
    try:
        tmpdir = tempfile.TemporaryDirectory(prefix="vendorfw-dump-", dir=tmp_parent)
    except OSError as exc:
        where = tmp_parent or tempfile.gettempdir()
        raise ArchiveError(f"cannot unpack {dump} into {where}: {exc.strerror or exc}",
                           hint="pass --tmpdir DIR (an existing, writable directory)") from exc
    with tmpdir as tmp:
        root = Path(tmp)
        unpack(dump, root, progress)
        yield FirmwareSource.from_dir(root, kernelcache, archive=dump)


def write_dump(
    tree: Path,
    asahi: Path,
    kernelcache: Path | None = None,
    progress: Callable[[int], None] | None = None,
) -> tuple[Path, ...]:
    """Write the re-extraction inputs into ``asahi`` (formats.md §5, §8): ``tree`` packed as
    ``all_firmware.tar.gz`` and, when given, a copy of ``kernelcache`` under its own name
    (it must start with ``kernelcache``). Each file is replaced atomically. Returns the paths
    written."""
    if kernelcache is not None and not kernelcache.name.startswith("kernelcache"):
        raise ArchiveError(f"{kernelcache}: a kernelcache beside the dump must be named "
                           "kernelcache* (re-extraction looks for that name)")
    out = asahi / RAWDUMP_NAME
    pack(tree, out, progress)
    if kernelcache is None:
        return (out,)
    kc_out = asahi / kernelcache.name
    try:
        with open(kernelcache, "rb") as src, atomic_file(kc_out) as dst:
            while chunk := src.read(BLOCK):
                dst.write(chunk)
                if progress:
                    progress(len(chunk))
    except OSError as exc:
        raise ArchiveError(f"cannot copy {kernelcache} to {kc_out}: {exc.strerror or exc}") from exc
    return out, kc_out


def pack(src_dir: Path, out: Path, progress: Callable[[int], None] | None = None) -> int:
    """Write ``src_dir``'s tree as a deterministic ``out`` (tar.gz, atomically); returns the
    number of members. Symlinks are kept and must stay inside the tree."""
    real_root = os.path.realpath(src_dir)
    entries: list[tuple[str, Path]] = []
    for dirpath, dirnames, filenames in os.walk(src_dir):
        dirnames.sort(key=str.encode)
        rel_dir = os.path.relpath(dirpath, src_dir)
        for n in [*dirnames, *filenames]:
            rel = n if rel_dir == "." else f"{rel_dir}/{n}"
            entries.append((rel, Path(dirpath, n)))
    entries.sort(key=lambda e: os.fsencode(e[0]))
    try:
        _write_tgz(src_dir, out, entries, real_root, progress)
    except OSError as exc:
        raise ArchiveError(f"cannot write {out} from {src_dir}: {exc}") from exc
    return len(entries)


def _write_tgz(
    src_dir: Path,
    out: Path,
    entries: list[tuple[str, Path]],
    real_root: str,
    progress: Callable[[int], None] | None,
) -> None:
    with atomic_file(out) as f:
        sink = archiveio.Sink(f, str(out))
        try:
            _write_members(sink, out, entries, real_root, progress)
        except ArchiveError:
            sink.check()  # a disk-full OSError says more than libarchive's "write error"
            raise
        sink.check()


def _write_members(
    sink: archiveio.Sink,
    out: Path,
    entries: list[tuple[str, Path]],
    real_root: str,
    progress: Callable[[int], None] | None,
) -> None:
    with archiveio.translated(f"writing {out}"), libarchive.custom_writer(
        sink, "pax_restricted", filter_name="gzip",
        options="gzip:!timestamp,gzip:compression-level=6", block_size=BLOCK,
    ) as archive:
        for rel, path in entries:
            if path.is_symlink():
                target = os.readlink(path)
                resolved = os.path.realpath(path)
                if target.startswith("/") or os.path.commonpath([resolved, real_root]) != real_root:
                    raise ArchiveError(f"{path}: symlink to {target} leaves {real_root}")
                e = archiveio.new_entry(rel, SYMLINK, 0o777, symlink=target)
                archiveio.write_entry(archive, e)
            elif path.is_dir():
                archiveio.write_entry(archive, archiveio.new_entry(rel, DIR, 0o755))
            elif path.is_file():
                size = path.stat().st_size
                archiveio.write_entry(archive, archiveio.new_entry(rel, FILE, 0o644, size))
                written = 0
                with open(path, "rb") as src:
                    while written < size and (chunk := src.read(min(BLOCK, size - written))):
                        archiveio.write_data(archive, chunk)
                        written += len(chunk)
                        if progress:
                            progress(len(chunk))
                if written != size:
                    raise ArchiveError(f"{path} shrank while it was being packed")
            else:
                raise ArchiveError(f"{path}: only files, directories and symlinks can be packed")
            archiveio.finish_entry(archive)
