"""OS packages (formats.md §10): download the zip, check its SHA-256, unpack it safely.

A package is a zip with partition images (written raw) and directories (copied into a
partition, ``esp/`` in practice). The download (parallel ranges, resumable:
:mod:`installer.pkgdownload`) goes to the cache under a temporary name and is renamed only
when complete and verified, so a lying server leaves nothing behind.
Unpacking refuses absolute names, ``..`` and links; the result feeds
:class:`installer.platform.base.DirPayloads`.
"""

from __future__ import annotations

import hashlib
import io
import logging
import shutil
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO
from urllib.parse import unquote, urlsplit

import requests

from installer.catalog import OsEntry
from installer.errors import CatalogError, NetworkError
from installer.pkgdownload import fetch_plain, fetch_url
from vendorfw.atomic import atomic_file

log = logging.getLogger(__name__)
CHUNK = 1 << 20
BytesProgress = Callable[[int, int], None]  # done, total (0 when unknown)


def _sha256_file(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def check_sha256(digest: str, want: str | None, what: str,
                 outcome: str = "nothing was installed") -> None:
    """Raise unless ``digest`` (hex) is the catalog's ``want`` (None: nothing to check)."""
    if want is not None and digest != want.lower():
        raise NetworkError(f"{what}: SHA-256 {digest[:16]}… does not match the catalog's "
                           f"{want[:16]}…", hint="the server sent other bytes than the "
                           f"catalog describes; {outcome}")


@dataclass(frozen=True)
class PackageFile:
    """The verified package zip and the bytes this run took from the network for it (0
    for a cached copy or a local file, such as a bundle's)."""

    path: Path
    network_bytes: int


def fetch_package(entry: OsEntry, session: requests.Session, cache_dir: Path,
                  progress: BytesProgress | None = None,
                  timeout: tuple[float, float] = (10.0, 60.0),
                  connections: int = 8) -> PackageFile:
    """The package zip of ``entry`` in ``cache_dir``: reused when the cached copy matches
    the catalog's SHA-256, copied from a path, or downloaded over ``connections`` parallel
    ranges (continuing a killed run's partial download, :mod:`installer.pkgdownload`)."""
    assert entry.package is not None
    src = entry.package
    parts = urlsplit(src)
    name = PurePosixPath(unquote(parts.path)).name or "package.zip"
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CatalogError(f"cannot create {cache_dir}: {exc.strerror or exc}") from exc
    dest = cache_dir / name
    if entry.sha256 and dest.is_file():
        if _sha256_file(dest) == entry.sha256.lower():
            log.info("package %s: cached copy matches the catalog", name)
            return PackageFile(dest, 0)
        log.warning("package %s: the cached copy does not match the catalog's SHA-256; "
                    "deleted it", name)
        dest.unlink(missing_ok=True)
    if parts.scheme in ("http", "https"):
        log.info("downloading %s", src)
        got = fetch_url(src, dest, session, sha256=entry.sha256, connections=connections,
                        timeout=timeout, progress=progress)
        return PackageFile(dest, got.network_bytes)
    path = Path(unquote(parts.path)) if parts.scheme == "file" else Path(src)
    try:
        with path.open("rb") as fin, atomic_file(dest) as fout:
            h = hashlib.sha256()
            while chunk := fin.read(CHUNK):
                h.update(chunk)
                fout.write(chunk)
            check_sha256(h.hexdigest(), entry.sha256, f"package {src}")
    except OSError as exc:
        raise CatalogError(f"cannot read package {src}: {exc.strerror or exc}") from exc
    return PackageFile(dest, 0)


def _extract(zip_path: Path, out_dir: Path, skip: frozenset[str] = frozenset()) -> dict[
        str, zipfile.ZipInfo]:
    """Unpack ``zip_path`` into ``out_dir`` (made fresh) but the members in ``skip``, after
    checking each name (relative, no ``..``) and that no member is a symbolic link; returns
    every member by name."""
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    try:
        with zipfile.ZipFile(zip_path) as zf:
            infos = {i.filename: i for i in zf.infolist()}
            for info in infos.values():
                p = PurePosixPath(info.filename)
                if p.is_absolute() or ".." in p.parts or "\\" in info.filename:
                    raise CatalogError(f"package {zip_path.name}: unsafe member name "
                                       f"{info.filename!r}")
                if stat_is_link(info.external_attr >> 16):
                    raise CatalogError(f"package {zip_path.name}: member {info.filename!r} "
                                       "is a symbolic link")
                if info.filename in skip:
                    continue
                target = out_dir.joinpath(*p.parts)
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as fin, target.open("wb") as fout:
                    shutil.copyfileobj(fin, fout, CHUNK)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError) as exc:
        raise CatalogError(f"package {zip_path.name} is not a readable zip: {exc}") from exc
    except OSError as exc:
        raise CatalogError(f"cannot unpack {zip_path.name}: {exc.strerror or exc}") from exc
    return infos


def unpack_package(zip_path: Path, out_dir: Path, entry: OsEntry) -> Path:
    """Unpack ``zip_path`` into ``out_dir`` (fresh) and check it has what the entry needs
    (every partition's ``image`` and ``source``, with the image SHA-256 when given)."""
    _extract(zip_path, out_dir)
    for part in entry.partitions:
        if part.image:
            img = out_dir / part.image
            if not img.is_file():
                raise CatalogError(f"package {zip_path.name} lacks image {part.image}")
            if img.stat().st_size % 4096:
                raise CatalogError(f"package image {part.image} is not a multiple of 4 KiB")
            check_sha256(_sha256_file(img), part.sha256, f"package image {part.image}")
        if part.source and not (out_dir / part.source).is_dir():
            raise CatalogError(f"package {zip_path.name} lacks directory {part.source}/")
    return out_dir


def stat_is_link(mode: int) -> bool:
    return (mode & 0o170000) == 0o120000


def fetch_extras(entry: OsEntry, session: requests.Session, out_dir: Path,
                 timeout: tuple[float, float] = (10.0, 60.0)) -> list[Path]:
    """The entry's ``extras`` (URLs or paths) into ``out_dir``, for ESP ``asahi/extras/``."""
    out: list[Path] = []
    for src in entry.extras:
        parts = urlsplit(src)
        name = PurePosixPath(unquote(parts.path)).name
        if not name or name in (".", ".."):
            raise CatalogError(f"catalog extra {src!r} names no file")
        out_dir.mkdir(parents=True, exist_ok=True)
        dest = out_dir / name
        if parts.scheme in ("http", "https"):
            fetch_plain(src, dest, session, sha256=None, timeout=timeout)
        else:
            try:
                shutil.copyfile(Path(unquote(parts.path)) if parts.scheme == "file"
                                else Path(src), dest)
            except OSError as exc:
                raise CatalogError(f"cannot read catalog extra {src}: {exc.strerror}") from exc
        out.append(dest)
    return out


class _HashingReader(io.RawIOBase):
    """A zip member read once, front to back, with a running SHA-256 checked at its end
    (a short or altered member fails before the last byte is handed out as good)."""

    def __init__(self, zf: zipfile.ZipFile, info: zipfile.ZipInfo, want: str | None) -> None:
        self.zf = zf
        self.src = zf.open(info)
        self.name = info.filename
        self.size = info.file_size
        self.want = want
        self.h = hashlib.sha256()
        self.done = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        try:
            data = self.src.read(len(buf))
        except (zipfile.BadZipFile, EOFError, zlib.error) as exc:
            raise CatalogError(f"package image {self.name}: {exc}") from exc
        n = len(data)
        if n:
            buf[:n] = data
            self.h.update(data)
            self.done += n
            return n
        if self.done != self.size:
            raise CatalogError(f"package image {self.name}: {self.done} of {self.size} bytes")
        check_sha256(self.h.hexdigest(), self.want, f"package image {self.name}")
        return 0

    def close(self) -> None:
        if not self.closed:
            self.src.close()
            self.zf.close()
        super().close()


class ZipPayloads:
    """Payloads straight from the package zip: images stream from their members (SHA-256
    checked as they go, no temporary copy of a multi-GB image); directories (``esp/``) are
    unpacked into ``root``, as :func:`unpack_package` would."""

    def __init__(self, zip_path: Path, root: Path, entry: OsEntry) -> None:
        self.zip_path = zip_path
        self.root = root
        self.sha = {p.image: p.sha256 for p in entry.partitions if p.image}

    def image(self, name: str) -> BinaryIO:
        try:
            zf = zipfile.ZipFile(self.zip_path)
            info = zf.getinfo(name)
        except (OSError, zipfile.BadZipFile, KeyError) as exc:
            raise CatalogError(f"package {self.zip_path.name}: cannot open image {name}: "
                               f"{exc}") from exc
        return io.BufferedReader(_HashingReader(zf, info, self.sha.get(name)), CHUNK)

    def tree(self, name: str) -> Path:
        p = self.root / name
        if not p.is_dir():
            raise CatalogError(f"package directory {name}/ is missing")
        return p


def open_package(zip_path: Path, out_dir: Path, entry: OsEntry) -> ZipPayloads:
    """Check the zip's directory against the entry (safe names, no links, every image and
    directory there, images a multiple of 4 KiB) and unpack everything but the images."""
    infos = _extract(zip_path, out_dir, frozenset(p.image for p in entry.partitions
                                                  if p.image))
    for part in entry.partitions:
        if part.image:
            member = infos.get(part.image)
            if member is None:
                raise CatalogError(f"package {zip_path.name} lacks image {part.image}")
            if member.file_size % 4096:
                raise CatalogError(f"package image {part.image} is not a multiple of 4 KiB")
        if part.source and not (out_dir / part.source).is_dir():
            raise CatalogError(f"package {zip_path.name} lacks directory {part.source}/")
    return ZipPayloads(zip_path, out_dir, entry)
