"""Read a firmware package (firmware.cpio, firmware.tar, manifest.txt or a vendorfw/ dir)
and check it against its manifest: hashes, links, layout (formats.md §6).

Members are hashed while streaming; nothing is extracted, so hostile names are reported,
never followed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import libarchive

from vendorfw import archiveio
from vendorfw.errors import ArchiveError, ManifestError
from vendorfw.manifest import MANIFEST_ENTRY, Manifest, check_name
from vendorfw.package import CPIO_ROOT, DIR_PERM, FILE_PERM

MAX_MANIFEST = 16 << 20
READ_BLOCK = 1 << 20


class Kind(StrEnum):
    CPIO = "cpio"
    TAR = "tar"
    MANIFEST = "manifest"


@dataclass(frozen=True, slots=True)
class Member:
    """One archive entry as stored (name without the ``vendorfw/`` prefix)."""

    name: str
    type: str  # "dir", "file", "link" (hard link), "symlink", "other"
    mode: int
    size: int
    sha256: str | None
    link_to: str | None
    nlink: int
    ino: int
    owner_time: tuple[int, int, int]  # uid, gid, mtime


@dataclass(frozen=True, slots=True)
class Package:
    """What a package holds: its members in order and its manifest (if any)."""

    path: Path
    kind: Kind
    members: tuple[Member, ...]
    manifest: Manifest | None

    def files(self) -> dict[str, str]:
        """Name → content hash of every file and hard link (the manifest's view)."""
        if self.kind is Kind.MANIFEST:
            assert self.manifest is not None
            return self.manifest.hashes()
        return {
            m.name: m.sha256
            for m in self.members
            if m.sha256 is not None and not m.name.startswith("\0")  # outside vendorfw/
        }


def detect(path: Path) -> tuple[Path, Kind]:
    """Resolve a package path (a vendorfw/ dir means its firmware.cpio) and its kind."""
    if path.is_dir():
        for name in ("firmware.cpio", "manifest.txt"):
            if (path / name).is_file():
                return detect(path / name)
        raise ArchiveError(f"{path}: no firmware.cpio or manifest.txt in this directory")
    try:
        with open(path, "rb") as f:
            head = f.read(512)
    except OSError as exc:
        raise ArchiveError(f"cannot read {path}: {exc.strerror}") from exc
    if head.startswith(b"070701"):
        return path, Kind.CPIO
    if head.startswith((b"070702", b"070707", b"\xc7\x71", b"\x71\xc7")):
        raise ArchiveError(f"{path}: cpio, but not the newc format firmware.cpio must use")
    if len(head) == 512 and (head[257:262] == b"ustar" or head == bytes(512)):  # empty tar
        return path, Kind.TAR
    if head.startswith((b"FILE ", b"LINK ")) or head == b"":
        return path, Kind.MANIFEST
    raise ArchiveError(f"{path}: not a firmware.cpio, firmware.tar or manifest")


def read_package(
    path: Path, manifest_path: Path | None = None, progress: Callable[[int], None] | None = None
) -> Package:
    """Read ``path``. A tar's manifest is ``manifest_path`` or the manifest.txt beside it."""
    path, kind = detect(path)
    if kind is Kind.MANIFEST:
        return Package(path, kind, (), _read_manifest_file(path))
    members, embedded = _read_members(path, kind, progress)
    if kind is Kind.CPIO:
        return Package(path, kind, members, embedded)
    side = manifest_path or path.with_name("manifest.txt")
    return Package(path, kind, members, _read_manifest_file(side) if side.is_file() else None)


def _read_manifest_file(path: Path) -> Manifest:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ManifestError(f"cannot read {path}: {exc.strerror}") from exc
    return _decode_manifest(data, str(path))


def _decode_manifest(data: bytes, where: str) -> Manifest:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ManifestError(f"{where}: manifest is not UTF-8 text") from exc
    return Manifest.parse(text, where)


def _read_members(
    path: Path, kind: Kind, progress: Callable[[int], None] | None
) -> tuple[tuple[Member, ...], Manifest | None]:
    fmt = "cpio" if kind is Kind.CPIO else "tar"
    members: list[Member] = []
    hashes: dict[str, str] = {}
    manifest: Manifest | None = None
    with archiveio.translated(f"reading {path}"), libarchive.file_reader(
        str(path), format_name=fmt, filter_name="none", block_size=READ_BLOCK
    ) as archive:
        for entry in archive:
            raw = archiveio.entry_path(entry)
            name = _strip(raw, kind)
            link = archiveio.entry_link(entry) if (entry.islnk or entry.issym) else None
            if entry.islnk and link is not None:
                link = _strip(link, kind)
            sha: str | None = None
            if entry.isdir:
                typ = "dir"
            elif entry.issym:
                typ = "symlink"
            elif entry.islnk:
                typ = "link"
                sha = hashes.get(link or "")
                _drain(entry, None)  # data of a hard link (if any) is not the content
            elif entry.isreg:
                typ = "file"
                if kind is Kind.CPIO and name == MANIFEST_ENTRY:
                    data = _drain(entry, None, keep=True)
                    manifest = _decode_manifest(data, f"{path}:{raw}")
                else:
                    sha = _drain(entry, progress).hex()
                    hashes[name] = sha
            else:
                typ = "other"
            members.append(
                Member(
                    name,
                    typ,
                    entry.mode & 0o7777 | (entry.filetype & 0o170000),
                    entry.size or 0,
                    sha,
                    link,
                    archiveio.entry_nlink(entry),
                    archiveio.entry_ino(entry),
                    (entry.uid, entry.gid, int(entry.mtime or 0)),
                )
            )
    return tuple(members), manifest


def _strip(raw: str, kind: Kind) -> str:
    """Name relative to the firmware root; cpio names keep a marker when outside it."""
    raw = raw.rstrip("/") if raw != "/" else raw
    if kind is Kind.CPIO:
        if raw == CPIO_ROOT:
            return ""
        if raw.startswith(CPIO_ROOT + "/"):
            return raw[len(CPIO_ROOT) + 1 :]
        return "\0" + raw  # outside vendorfw/: flagged by verify
    return raw


def _drain(entry: libarchive.entry.ArchiveEntry, progress: Callable[[int], None] | None,
           keep: bool = False) -> bytes:
    """Hash (or, for the manifest, collect) an entry's data without holding it all."""
    h = hashlib.sha256()
    kept = bytearray()
    for block in entry.get_blocks(READ_BLOCK):
        h.update(block)
        if keep:
            kept += block
            if len(kept) > MAX_MANIFEST:
                raise ManifestError(
                    f"{archiveio.entry_path(entry)}: manifest larger than {MAX_MANIFEST} B"
                )
        if progress:
            progress(len(block))
    return bytes(kept) if keep else h.digest()


def verify(pkg: Package) -> list[str]:
    """Problems of ``pkg`` against its manifest and §6 (empty list: it is good)."""
    if pkg.manifest is None:
        where = "no manifest.txt beside it" if pkg.kind is Kind.TAR else "no manifest entry"
        return [f"{pkg.path}: {where}"]
    if pkg.kind is Kind.MANIFEST:
        return []
    problems: list[str] = []
    cpio = pkg.kind is Kind.CPIO
    dirs: set[str] = set()
    order: list[str] = []
    by_name: dict[str, Member] = {}
    for i, m in enumerate(pkg.members):
        shown = _shown(m.name, cpio)
        if m.name.startswith("\0"):
            problems.append(f"{shown}: outside {CPIO_ROOT}/")
            continue
        if m.name == "" and cpio:
            if i != 0 or m.type != "dir":
                problems.append(f"{CPIO_ROOT}: must be the first entry, a directory")
            dirs.add("")
            continue
        why = check_name(m.name) if m.name != MANIFEST_ENTRY else None
        if why is not None:
            problems.append(f"{shown}: {why}")
            continue
        if m.owner_time != (0, 0, 0):
            problems.append(f"{shown}: uid, gid and mtime must be 0")
        parent = m.name.rpartition("/")[0]
        if cpio and parent not in dirs:
            problems.append(f"{shown}: its directory has no entry before it")
        if m.type == "dir":
            if m.mode != 0o040000 | DIR_PERM:
                problems.append(f"{shown}: directory mode {m.mode:o}, expected 40755")
            dirs.add(m.name)
            continue
        if m.type not in ("file", "link"):
            problems.append(f"{shown}: {m.type} entries are not allowed")
            continue
        if m.mode & 0o7777 != FILE_PERM or (m.type == "file" and m.mode >> 12 != 0o10):
            problems.append(f"{shown}: file mode {m.mode:o}, expected 100644")
        if m.name == MANIFEST_ENTRY and cpio:
            if i != len(pkg.members) - 1:
                problems.append(f"{shown}: the manifest must be the last entry")
            continue
        if m.name in by_name:
            problems.append(f"{shown}: appears twice")
        by_name[m.name] = m
        order.append(m.name)
    if cpio and (not pkg.members or pkg.members[-1].name != MANIFEST_ENTRY):
        problems.append(f"{CPIO_ROOT}/{MANIFEST_ENTRY}: missing as the last entry")
    problems += _check_against_manifest(pkg.manifest, order, by_name, cpio)
    return problems


def _shown(name: str, cpio: bool) -> str:
    if name.startswith("\0"):
        return name[1:]
    return f"{CPIO_ROOT}/{name}" if cpio and name else name


def _check_against_manifest(
    manifest: Manifest, order: list[str], by_name: dict[str, Member], cpio: bool
) -> list[str]:
    problems: list[str] = []
    listed = [e.name for e in manifest.entries]
    for name in sorted(set(order) - set(listed)):
        problems.append(f"{_shown(name, cpio)}: not in the manifest")
    for name in [n for n in listed if n not in by_name]:
        problems.append(f"{_shown(name, cpio)}: in the manifest but missing")
    if not problems and order != listed:
        problems.append("files are not in manifest order")
    nlinks: dict[str, int] = {}
    for e in manifest.entries:
        nlinks[e.link_to or e.name] = nlinks.get(e.link_to or e.name, 0) + 1
    first_ino = {n: m.ino for n, m in by_name.items()}
    for e in manifest.entries:
        m = by_name.get(e.name)
        if m is None:
            continue
        shown = _shown(e.name, cpio)
        if m.sha256 != e.sha256:
            problems.append(f"{shown}: SHA-256 does not match the manifest")
        want_nlink = nlinks[e.link_to or e.name]
        if e.link_to is None:
            if m.type != "file":
                problems.append(f"{shown}: should carry the data (manifest FILE)")
        elif cpio:
            if m.size != 0 or m.ino != first_ino.get(e.link_to):
                problems.append(f"{shown}: should be a data-less hard link to {e.link_to}")
        elif m.type != "link" or m.link_to != e.link_to:
            problems.append(f"{shown}: should be a hard link to {e.link_to}")
        if cpio and m.nlink != want_nlink:
            problems.append(f"{shown}: nlink {m.nlink}, expected {want_nlink}")
    return problems
