"""OS packages (formats.md §10): download the zip, check its SHA-256, unpack it safely.

A package is a zip with partition images (written raw) and directories (copied into a
partition, ``esp/`` in practice). The download goes to the cache under a temporary name
and is renamed only when complete and verified, so a lying server leaves nothing behind.
Unpacking refuses absolute names, ``..`` and links; the result feeds
:class:`installer.platform.base.DirPayloads`.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

import requests

from installer.catalog import OsEntry
from installer.errors import CatalogError, NetworkError
from installer.net.http import request_error
from vendorfw.atomic import atomic_file

log = logging.getLogger(__name__)
CHUNK = 1 << 20
BytesProgress = Callable[[int, int], None]  # done, total (0 when unknown)


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _check(digest: str, want: str | None, what: str) -> None:
    if want is not None and digest != want.lower():
        raise NetworkError(f"{what}: SHA-256 {digest[:16]}… does not match the catalog's "
                           f"{want[:16]}…", hint="the server sent other bytes than the "
                           "catalog describes; nothing was installed")


def fetch_package(entry: OsEntry, session: requests.Session, cache_dir: Path,
                  progress: BytesProgress | None = None,
                  timeout: tuple[float, float] = (10.0, 60.0)) -> Path:
    """The package zip of ``entry`` in ``cache_dir`` (downloaded, or reused when the
    cached copy matches the catalog's SHA-256)."""
    assert entry.package is not None
    src = entry.package
    parts = urlsplit(src)
    name = PurePosixPath(unquote(parts.path)).name or "package.zip"
    cache_dir.mkdir(parents=True, exist_ok=True)
    dest = cache_dir / name
    if entry.sha256 and dest.is_file() and _sha256_file(dest) == entry.sha256.lower():
        log.info("package %s: cached copy matches the catalog", name)
        return dest
    if parts.scheme in ("http", "https"):
        _download(src, dest, session, entry.sha256, progress, timeout)
    else:
        path = Path(unquote(parts.path)) if parts.scheme == "file" else Path(src)
        try:
            with path.open("rb") as fin, atomic_file(dest) as fout:
                h = hashlib.sha256()
                while chunk := fin.read(CHUNK):
                    h.update(chunk)
                    fout.write(chunk)
                _check(h.hexdigest(), entry.sha256, f"package {src}")
        except OSError as exc:
            raise CatalogError(f"cannot read package {src}: {exc.strerror or exc}") from exc
    return dest


def _download(url: str, dest: Path, session: requests.Session, sha256: str | None,
              progress: BytesProgress | None, timeout: tuple[float, float]) -> None:
    log.info("downloading %s", url)
    try:
        resp = session.get(url, stream=True, timeout=timeout,
                           headers={"Accept-Encoding": "identity"})
    except requests.RequestException as exc:
        raise request_error(url, exc) from exc
    with resp:
        if resp.status_code != 200:
            raise NetworkError(f"GET {url}: HTTP {resp.status_code}")
        total = int(resp.headers.get("Content-Length") or 0)
        h = hashlib.sha256()
        done = 0
        try:
            with atomic_file(dest) as f:
                for chunk in resp.iter_content(CHUNK):
                    h.update(chunk)
                    f.write(chunk)
                    done += len(chunk)
                    if progress:
                        progress(done, total)
                if total and done != total:
                    raise NetworkError(f"GET {url}: got {done} of {total} bytes")
                _check(h.hexdigest(), sha256, f"package {url}")
        except requests.RequestException as exc:
            raise request_error(url, exc) from exc
        except OSError as exc:
            raise NetworkError(f"cannot write {dest}: {exc.strerror or exc}") from exc


def unpack_package(zip_path: Path, out_dir: Path, entry: OsEntry) -> Path:
    """Unpack ``zip_path`` into ``out_dir`` (fresh) and check it has what the entry needs
    (every partition's ``image`` and ``source``, with the image SHA-256 when given)."""
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    try:
        with zipfile.ZipFile(zip_path) as zf:
            for info in zf.infolist():
                p = PurePosixPath(info.filename)
                if p.is_absolute() or ".." in p.parts or "\\" in info.filename:
                    raise CatalogError(f"package {zip_path.name}: unsafe member name "
                                       f"{info.filename!r}")
                if stat_is_link(info.external_attr >> 16):
                    raise CatalogError(f"package {zip_path.name}: member {info.filename!r} "
                                       "is a symbolic link")
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
    for part in entry.partitions:
        if part.image:
            img = out_dir / part.image
            if not img.is_file():
                raise CatalogError(f"package {zip_path.name} lacks image {part.image}")
            if img.stat().st_size % 4096:
                raise CatalogError(f"package image {part.image} is not a multiple of 4 KiB")
            _check(_sha256_file(img), part.sha256, f"package image {part.image}")
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
            _download(src, dest, session, None, None, timeout)
        else:
            try:
                shutil.copyfile(Path(unquote(parts.path)) if parts.scheme == "file"
                                else Path(src), dest)
            except OSError as exc:
                raise CatalogError(f"cannot read catalog extra {src}: {exc.strerror}") from exc
        out.append(dest)
    return out
