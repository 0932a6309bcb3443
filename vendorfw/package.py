"""Write firmware.cpio, firmware.tar and manifest.txt (formats.md §6) from firmware files.

Two passes, both streaming in chunks so memory stays at one chunk whatever the tree size:
1. :func:`plan_package` hashes every file (SHA-256) and groups identical contents; the first
   file of a content is stored, later ones become hard links. The group size is needed up
   front because the first newc header must already carry the final nlink.
2. :func:`write_package` reads each stored file once more and feeds both archives from the
   same chunks, re-hashing to catch a file that changed between the passes.

libarchive writes the bytes. The newc layout is expressed with explicit inode numbers and
link counts: data travels with the first entry of a link set, later entries have size 0.
The kernel's initramfs unpacker, GNU cpio, busybox cpio and bsdcpio all accept this.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import libarchive

from vendorfw import archiveio
from vendorfw.archiveio import DIR, FILE
from vendorfw.errors import ArchiveError
from vendorfw.manifest import MANIFEST_ENTRY, Manifest
from vendorfw.model import FirmwareFile

Progress = Callable[[int], None]
"""Called with the number of bytes just processed."""

CHUNK = 1 << 20
CPIO_ROOT = "vendorfw"
DIR_PERM = 0o755
FILE_PERM = 0o644


def ustar_problem(name: str) -> str | None:
    """Why firmware.tar (ustar, §6) cannot hold ``name`` or one of its directory entries
    (stored as ``dir/``), or None. A path must fit the 100-byte name field, or split at a
    '/' into a prefix of ≤ 155 bytes and a non-empty name of ≤ 100."""
    parts = name.split("/")
    paths = ["/".join(parts[:i]) + "/" for i in range(1, len(parts))] + [name]
    for path in paths:
        raw = path.encode()
        if len(raw) > 100 and not any(
            byte == 0x2F and i <= 155 and 0 < len(raw) - i - 1 <= 100
            for i, byte in enumerate(raw)
        ):
            return f"path too long for firmware.tar (ustar): {path[:40]}…"
    return None


@dataclass(frozen=True, slots=True)
class PlannedFile:
    """A firmware file with its hash and its place in a hard-link set."""

    file: FirmwareFile
    sha256: str
    size: int
    link_to: str | None  # the first file with the same content, None if this is it
    nlink: int  # number of names sharing this content


@dataclass(frozen=True, slots=True)
class Plan:
    """Everything needed to write the package, in manifest order."""

    files: tuple[PlannedFile, ...]
    manifest: Manifest

    @property
    def stored_bytes(self) -> int:
        return sum(p.size for p in self.files if p.link_to is None)

    @property
    def links(self) -> int:
        return sum(1 for p in self.files if p.link_to is not None)


def iter_chunks(f: FirmwareFile) -> Iterator[bytes | memoryview]:
    """The content of ``f`` in chunks of at most CHUNK bytes."""
    if f.data is not None:
        view = memoryview(f.data)
        for off in range(0, len(view), CHUNK):
            yield view[off : off + CHUNK]
        return
    content = f.content
    assert content is not None  # FirmwareFile guarantees one of data/source
    try:
        yield from content.chunks(CHUNK)
    except OSError as exc:
        raise ArchiveError(f"cannot read {content} (for {f.name}): {exc.strerror or exc}"
                           ) from exc


def _hash(f: FirmwareFile, progress: Progress | None) -> tuple[str, int]:
    known = f.content
    if known is not None and known.immutable and known.digest is not None:
        if progress:
            progress(known.size)
        return known.digest.hex(), known.size
    h = hashlib.sha256()
    size = 0
    for chunk in iter_chunks(f):
        h.update(chunk)
        size += len(chunk)
        if progress:
            progress(len(chunk))
    return h.hexdigest(), size


def plan_package(files: list[FirmwareFile], progress: Progress | None = None) -> Plan:
    """Hash the files (in the given, manifest, order) and decide which become hard links."""
    hashed = [(f, *_hash(f, progress)) for f in files]
    manifest = Manifest.build((f.name, digest) for f, digest, _ in hashed)
    counts: dict[str, int] = {}
    for _, digest, _ in hashed:
        counts[digest] = counts.get(digest, 0) + 1
    planned = tuple(
        PlannedFile(f, digest, size, entry.link_to, counts[digest])
        for (f, digest, size), entry in zip(hashed, manifest.entries, strict=True)
    )
    return Plan(planned, manifest)


class _Layout:
    """Directory entries before contents, and deterministic inode numbers."""

    def __init__(self, archive: Any, prefix: str) -> None:
        self.archive = archive
        self.prefix = prefix
        self.dirs: set[str] = set()
        self.next_ino = 1
        self.inodes: dict[str, int] = {}

    def path(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def add_dir(self, name: str) -> None:
        self.dirs.add(name)
        entry = archiveio.new_entry(name, DIR, DIR_PERM, ino=self._ino(), nlink=2)
        archiveio.write_entry(self.archive, entry)
        archiveio.finish_entry(self.archive)

    def parents(self, name: str) -> None:
        parts = self.path(name).split("/")[:-1]
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if d not in self.dirs:
                self.add_dir(d)

    def _ino(self) -> int:
        self.next_ino += 1
        return self.next_ino - 1

    def start_file(self, p: PlannedFile, hardlink_entries: bool) -> bool:
        """Write the header of ``p``; True when its data must follow."""
        self.parents(p.file.name)
        path = self.path(p.file.name)
        if p.link_to is None:
            ino = self.inodes[p.sha256] = self._ino()
            entry = archiveio.new_entry(path, FILE, FILE_PERM, p.size, ino=ino, nlink=p.nlink)
        elif hardlink_entries:  # tar: a typeflag-1 entry naming the first file
            entry = archiveio.new_entry(
                path, FILE, FILE_PERM, 0, nlink=p.nlink, hardlink=self.path(p.link_to)
            )
        else:  # newc: same inode, nlink in every entry, no data
            ino = self.inodes[p.sha256]
            entry = archiveio.new_entry(path, FILE, FILE_PERM, 0, ino=ino, nlink=p.nlink)
        archiveio.write_entry(self.archive, entry)
        return p.link_to is None

    def add_bytes(self, name: str, data: bytes) -> None:
        self.parents(name)
        entry = archiveio.new_entry(self.path(name), FILE, FILE_PERM, len(data), ino=self._ino())
        archiveio.write_entry(self.archive, entry)
        archiveio.write_data(self.archive, data)
        archiveio.finish_entry(self.archive)


def write_package(
    plan: Plan,
    cpio_out: BinaryIO | None,
    tar_out: BinaryIO | None,
    progress: Progress | None = None,
) -> None:
    """Write firmware.cpio and/or firmware.tar for ``plan`` to the given binary streams."""
    sinks = [
        archiveio.Sink(out, name)
        for out, name in ((cpio_out, "firmware.cpio"), (tar_out, "firmware.tar"))
        if out is not None
    ]
    try:
        with archiveio.translated("writing firmware archives"), _writers(
            cpio_out is not None, sinks
        ) as ws:
            _write_entries(plan, ws, progress)
    except ArchiveError:
        for sink in sinks:
            sink.check()  # the underlying OSError says more than libarchive's "write error"
        raise
    for sink in sinks:
        sink.check()


def _write_entries(plan: Plan, ws: list[tuple[Any, str]], progress: Progress | None) -> None:
    layouts = [_Layout(a, prefix) for a, prefix in ws]
    for lay in layouts:
        if lay.prefix:
            lay.add_dir(lay.prefix)
    for p in plan.files:
        needs_data = [lay.start_file(p, hardlink_entries=not lay.prefix) for lay in layouts]
        if any(needs_data):
            _copy_data(p, layouts, progress)
        for lay in layouts:
            archiveio.finish_entry(lay.archive)
    manifest = plan.manifest.text().encode()
    for lay in layouts:
        if lay.prefix:  # only the cpio carries the manifest (§6)
            lay.add_bytes(MANIFEST_ENTRY, manifest)


def _copy_data(p: PlannedFile, layouts: list[_Layout], progress: Progress | None) -> None:
    content = p.file.content
    h = None if content is not None and content.immutable else hashlib.sha256()
    size = 0
    for chunk in iter_chunks(p.file):
        size += len(chunk)
        if size > p.size:
            break
        if h is not None:  # a file on disk may change between the passes
            h.update(chunk)
        for lay in layouts:
            archiveio.write_data(lay.archive, chunk)
        if progress:
            progress(len(chunk))
    if size != p.size or (h is not None and h.hexdigest() != p.sha256):
        raise ArchiveError(f"{p.file.name} changed while it was being packaged")


@contextlib.contextmanager
def _writers(with_cpio: bool, sinks: list[archiveio.Sink]) -> Iterator[list[tuple[Any, str]]]:
    """libarchive writers: newc for the cpio (first sink when ``with_cpio``), ustar else."""
    specs = [("cpio_newc", CPIO_ROOT) if with_cpio and i == 0 else ("ustar", "")
             for i in range(len(sinks))]
    with contextlib.ExitStack() as stack:
        # custom_writer pads the last block to 1 byte: nothing follows the trailer
        yield [
            (stack.enter_context(libarchive.custom_writer(sink, fmt, block_size=CHUNK)), pre)
            for sink, (fmt, pre) in zip(sinks, specs, strict=True)
        ]


@dataclass(frozen=True, slots=True)
class Written:
    """What :func:`write_package_files` put into a directory."""

    files: int
    links: int
    stored_bytes: int
    paths: tuple[Path, ...]


def write_package_files(plan: Plan, out_dir: Path, progress: Progress | None = None) -> Written:
    """firmware.cpio, firmware.tar and manifest.txt in ``out_dir`` (which the caller makes
    atomic, e.g. with :func:`vendorfw.atomic.atomic_dir`)."""
    cpio_path, tar_path, man_path = (
        out_dir / "firmware.cpio",
        out_dir / "firmware.tar",
        out_dir / "manifest.txt",
    )
    try:
        with open(cpio_path, "wb") as c, open(tar_path, "wb") as t:
            write_package(plan, c, t, progress)
        man_path.write_text(plan.manifest.text(), encoding="utf-8")
    except OSError as exc:
        raise ArchiveError(f"cannot write the firmware package in {out_dir}: {exc}") from exc
    return Written(len(plan.files), plan.links, plan.stored_bytes, (cpio_path, tar_path, man_path))
