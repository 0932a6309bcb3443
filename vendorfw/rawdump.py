"""The raw firmware dump ``all_firmware.tar.gz`` (formats.md §8): safe unpack, and pack.

Unpacking treats the archive as hostile; :mod:`vendorfw.dumptree` holds the member checks.
The member data are copied by libarchive straight into one spool file (no file, buffer or
open per member), giving a :class:`~vendorfw.dumptree.DumpTree` the collectors read from
(:func:`open_source`) or that is written out as a directory (:func:`unpack`). The number of
members and the unpacked size are bounded before anything is written (decompression bombs).

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
from typing import BinaryIO

import libarchive

from vendorfw import archiveio
from vendorfw.archiveio import DIR, FILE, SYMLINK
from vendorfw.atomic import atomic_file
from vendorfw.dumptree import DumpTree, member_name
from vendorfw.errors import ArchiveError
from vendorfw.source import FirmwareSource, find_kernelcache

log = logging.getLogger(__name__)

RAWDUMP_NAME = "all_firmware.tar.gz"
MAX_UNPACKED = 8 << 30  # a real dump is a few hundred MB; this stops a decompression bomb
MAX_MEMBERS = 200_000  # a real dump has a few thousand; this stops a bomb of empty files
BLOCK = 1 << 20
_BOMB_HINT = "this is not a firmware dump (or it is damaged)"


@dataclass(frozen=True, slots=True)
class UnpackStats:
    files: int
    bytes: int
    symlinks: int


def read_dump(
    archive: Path,
    spool: BinaryIO,
    progress: Callable[[int], None] | None = None,
    limit: int = MAX_UNPACKED,
    max_members: int = MAX_MEMBERS,
) -> DumpTree:
    """Read ``archive`` into the empty spool file ``spool`` (opened for reading and writing;
    the caller owns and closes it); :class:`ArchiveError` names the archive and the
    offending member."""
    tree = DumpTree(spool, archive)
    total = 0
    try:
        with archiveio.translated(f"reading {archive}"), libarchive.file_reader(
            str(archive), format_name="tar", block_size=BLOCK
        ) as reader:
            for count, entry in enumerate(reader, 1):
                raw = archiveio.entry_path(entry)
                if count > max_members:
                    raise ArchiveError(f"more than {max_members} members", hint=_BOMB_HINT)
                if entry.isdir and raw.strip("/") in (".", ""):
                    continue  # the archive root ("./", as in `tar -C dump -czf … .`)
                name = member_name(raw)
                if entry.islnk:
                    tree.add_hardlink(name, member_name(archiveio.entry_link(entry)))
                elif entry.isdir:
                    tree.add_dir(name)
                elif entry.issym:
                    tree.add_symlink(name, archiveio.entry_link(entry))
                elif entry.isreg:
                    offset, size = _copy_member(reader, entry, spool.fileno(), name,
                                                limit - total, limit)
                    tree.add_file(name, offset, size)
                    total += size
                    if progress:
                        progress(size)
                else:
                    raise ArchiveError(f"member {raw!r} is a device or fifo")
        tree.finish()
        tree.unpacked = total
    except ArchiveError as exc:
        raise ArchiveError(f"{archive}: {exc.message}", hint=exc.hint) from exc
    except OSError as exc:
        raise ArchiveError(f"cannot unpack {archive}: {exc.strerror or exc}") from exc
    log.info("read %s: %d files, %d bytes", archive, tree.files, total)
    return tree


def _copy_member(reader: object, entry: libarchive.entry.ArchiveEntry, spool: int, name: str,
                 room: int, limit: int) -> tuple[int, int]:
    """Append the member's data to the spool; returns (offset, size)."""
    size = entry.size or 0
    if size > room:  # the header says so before a byte is written
        raise ArchiveError(f"unpacks to more than {limit} bytes", hint=_BOMB_HINT)
    start = os.lseek(spool, 0, os.SEEK_END)
    archiveio.read_data_into_fd(reader, spool)
    end = os.lseek(spool, 0, os.SEEK_CUR)
    if end - start > size:
        raise ArchiveError(f"member {name} holds more data than its header says")
    if end - start < size:  # a sparse member ending in a hole
        os.ftruncate(spool, start + size)
    return start, size


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
    try:
        with tempfile.TemporaryFile(prefix="vendorfw-spool-", dir=dest) as spool:
            tree = read_dump(archive, spool, progress, limit, max_members)
            tree.materialize(dest)
    except ArchiveError:
        _empty(dest)
        raise
    except OSError as exc:
        _empty(dest)
        raise ArchiveError(f"cannot unpack {archive} into {dest}: {exc}") from exc
    log.info("unpacked %s into %s", archive, dest)
    return UnpackStats(tree.files, tree.unpacked, tree.symlinks)


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
    (read into a spool file in ``tmp_parent`` for the duration) + ``kernelcache*``, an
    unpacked raw dump, or a macOS-style tree."""
    dump = src / RAWDUMP_NAME
    if not dump.is_file():
        yield FirmwareSource.from_dir(src)
        return
    kernelcache = find_kernelcache(src)
    try:
        spool = tempfile.TemporaryFile(prefix="vendorfw-dump-", dir=tmp_parent)
    except OSError as exc:
        where = tmp_parent or tempfile.gettempdir()
        raise ArchiveError(f"cannot unpack {dump} into {where}: {exc.strerror or exc}",
                           hint="pass --tmpdir DIR (an existing, writable directory)") from exc
    with spool:  # unnamed (O_TMPFILE where the kernel has it): nothing is left if killed
        tree = read_dump(dump, spool, progress)
        yield FirmwareSource.from_tree(tree, kernelcache)


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
