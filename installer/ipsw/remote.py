"""Open a restore image (URL or local path) and read its central directory.

Over HTTP the stock parser (``zipfile`` via ``remotezip.RemoteZip``, ZIP64 included) reads
the tail of the file through a fetcher whose every range is validated
(:func:`installer.net.http.get_range`). The listing is then checked for hostile layouts
before anyone plans a download from it: names that escape a directory, entries that overlap
or reach past the central directory, impossible sizes.
"""

from __future__ import annotations

import io
import logging
import os
import struct
import threading
import time
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote, urlsplit

import remotezip
import requests

from installer.errors import NetworkError, RestoreImageError
from installer.net.http import RetryableNetworkError, get_range, request_error

log = logging.getLogger(__name__)

LOCAL_HEADER = 30
LOCAL_SIG = b"PK\x03\x04"
#: Room for a local header's extra field (which may differ from the central one, up to
#: 64 KiB) and a data descriptor, when no next header bounds a member.
EXTRA_SLACK = 0xFFFF + 24
STORED, DEFLATED = 0, 8
#: Largest read the directory parser may make over HTTP (a real IPSW's central directory is
#: well under 1 MiB): a lying end record cannot make it download gigabytes into memory.
MAX_DIRECTORY_READ = 64 << 20


@dataclass(frozen=True, slots=True)
class Member:
    """One archive member. ``start``/``end`` bound the bytes a fetch needs: the local header,
    its name and extra field, and the compressed data (``end`` is exclusive)."""

    name: str
    start: int
    end: int
    compress_size: int
    file_size: int
    crc: int
    method: int

    @property
    def compression(self) -> str:
        return {STORED: "stored", DEFLATED: "deflate"}.get(self.method, f"method {self.method}")


@dataclass(frozen=True, slots=True)
class Archive:
    """A restore image's directory: where it is, how big, and its members by offset."""

    source: str
    size: int
    cd_offset: int
    members: tuple[Member, ...]

    @property
    def is_remote(self) -> bool:
        return is_url(self.source)

    def names(self) -> list[str]:
        return [m.name for m in self.members]

    def get(self, name: str) -> Member:
        for m in self.members:
            if m.name == name:
                return m
        raise RestoreImageError(f"{name!r} is not a member of {self.source}",
                                hint="list the members with `pippin ipsw ls`")

    def identity_key(self) -> str:
        """Identifies the archive content for the range cache (URL-independent)."""
        crcs = ",".join(f"{m.crc:08x}{m.start:x}" for m in self.members)
        return f"{self.size}:{self.cd_offset}:{len(self.members)}:{crcs}"


def is_url(source: str) -> bool:
    return urlsplit(source).scheme in ("http", "https")


def local_path(source: str) -> Path:
    """A local path from a path or ``file://`` URL."""
    parts = urlsplit(source)
    if parts.scheme == "file":
        return Path(unquote(parts.path))
    return Path(source)


def resolve_source(url: str, ipsw_base: str | None) -> str:
    """Apply an ``IPSW_BASE`` mirror (URL or local directory): keep only the file name."""
    if not ipsw_base:
        return url
    name = PurePosixPath(urlsplit(url).path).name
    if is_url(ipsw_base):
        return ipsw_base.rstrip("/") + "/" + name
    return str(local_path(ipsw_base) / name)


class _ValidatingFetcher(remotezip.RemoteFetcher):  # type: ignore[misc]
    """remotezip's fetcher, with every answer checked (206, exact Content-Range) and retried."""

    def __init__(self, url: str, session: requests.Session, **kwargs: Any) -> None:
        self._timeout: tuple[float, float] = kwargs.pop("timeout")
        self._retries: int = kwargs.pop("retries")
        self._sleep: Callable[[float], None] = kwargs.pop("sleep")
        kwargs.pop("support_suffix_range", None)
        super().__init__(url, session)
        self.size: int | None = None

    def fetch(self, data_range: tuple[int, int | None], stream: bool = False) -> Any:
        lo, hi = data_range
        end = None if hi is None else hi + 1
        want = -lo if end is None else end - lo
        if want > MAX_DIRECTORY_READ:
            raise RestoreImageError(f"{self._url}: the zip directory asks for a {want}-byte "
                                    f"read (more than {MAX_DIRECTORY_READ}); refusing it")
        err: NetworkError | None = None
        for attempt in range(self._retries + 1):
            try:
                resp, first, last, size = get_range(self._session, self._url, lo, end,
                                                    total=self.size, timeout=self._timeout)
                with resp:
                    data = b"".join(resp.iter_content(1 << 16))
                if len(data) != last - first:
                    raise RetryableNetworkError(f"GET {self._url}: short body "
                                                f"({len(data)} of {last - first} bytes)")
                self.size = size
                return remotezip.PartialBuffer(io.BytesIO(data), first, len(data), False)
            except requests.RequestException as exc:
                err = request_error(self._url, exc)
                err.__cause__ = exc
                if not isinstance(err, RetryableNetworkError):
                    raise err from exc
            except RetryableNetworkError as exc:
                err = exc
            if attempt < self._retries:
                self._sleep(min(0.1 * 2**attempt, 2.0))
        assert err is not None  # the loop ran at least once
        raise NetworkError(f"{err.message} (after {self._retries + 1} attempts)",
                           hint=err.hint) from err


def _warm(session: requests.Session, url: str, timeout: tuple[float, float]) -> None:
    try:
        session.head(url, timeout=timeout).close()
    except requests.RequestException as exc:  # best effort: the fetch will connect anyway
        log.debug("warm-up HEAD %s failed: %s", url, exc)


def _open_remote(source: str, session: requests.Session, timeout: tuple[float, float],
                 retries: int, sleep: Callable[[float], None]) -> Archive:
    try:
        with remotezip.RemoteZip(source, session=session, fetcher=_ValidatingFetcher,
                                 timeout=timeout, retries=retries, sleep=sleep) as rz:
            infos, cd_offset = rz.infolist(), rz.start_dir
            size = rz.size()
    except (zipfile.BadZipFile, remotezip.RemoteZipError, ValueError, EOFError,
            struct.error, OSError) as exc:
        raise RestoreImageError(f"{source} is not a readable zip: {exc}") from exc
    return _checked(source, int(size), cd_offset, infos)


def open_archive(
    source: str,
    session: requests.Session | None = None,
    *,
    timeout: tuple[float, float] = (10.0, 30.0),
    retries: int = 5,
    sleep: Callable[[float], None] = time.sleep,
    warm: int = 0,
) -> Archive:
    """Read and check the directory of the zip at ``source`` (http(s) URL or local path).

    ``warm=N`` opens N-1 more connections (HEAD requests) while the directory is read, so
    that a parallel fetch right after does not pay a connection set-up round trip.
    """
    if is_url(source):
        if session is None:
            raise ValueError("a session is needed for URLs")
        warmers = [threading.Thread(target=_warm, args=(session, source, timeout),
                                    daemon=True) for _ in range(max(0, warm - 1))]
        for t in warmers:
            t.start()
        try:
            return _open_remote(source, session, timeout, retries, sleep)
        finally:
            for t in warmers:
                t.join()
    path = local_path(source)
    try:
        with zipfile.ZipFile(path) as zf:
            infos, cd_offset = zf.infolist(), zf.start_dir
        size = os.path.getsize(path)
    except FileNotFoundError as exc:
        raise RestoreImageError(f"{path}: no such file") from exc
    except (zipfile.BadZipFile, ValueError, EOFError, struct.error, OSError) as exc:
        raise RestoreImageError(f"{path} is not a readable zip: {exc}") from exc
    return _checked(source, size, cd_offset, infos)


def check_name(name: str) -> None:
    """Refuse member names that could escape an output directory, or name one path twice
    (``a/./b`` is ``a/b``)."""
    p = PurePosixPath(name)
    if (not name or "\\" in name or "\x00" in name or p.is_absolute()
            or any(part in ("..", ".", "") for part in name.rstrip("/").split("/"))
            or (len(name) > 1 and name[1] == ":")):
        raise RestoreImageError(f"hostile member name {name!r} in the zip directory")


def _checked(source: str, size: int, cd_offset: int,
             infos: Sequence[zipfile.ZipInfo]) -> Archive:
    if not 0 <= cd_offset <= size:
        raise RestoreImageError(f"{source}: central directory offset {cd_offset} is beyond "
                                f"the file ({size} bytes)")
    seen: set[str] = set()
    rows = []
    for zi in infos:
        check_name(zi.filename)
        if zi.filename in seen:
            raise RestoreImageError(f"{source}: member {zi.filename!r} appears twice")
        seen.add(zi.filename)
        name_len = len(zi.orig_filename.encode("utf-8" if zi.flag_bits & 0x800 else "cp437"))
        data_min = zi.header_offset + LOCAL_HEADER + name_len
        if zi.header_offset < 0 or data_min + zi.compress_size > cd_offset:
            raise RestoreImageError(
                f"{source}: member {zi.filename!r} ({zi.compress_size} bytes at "
                f"{zi.header_offset}) reaches beyond the central directory at {cd_offset}")
        if zi.compress_type == STORED and zi.compress_size != zi.file_size:
            raise RestoreImageError(f"{source}: stored member {zi.filename!r} has "
                                    f"different sizes ({zi.compress_size}/{zi.file_size})")
        rows.append((zi, data_min))
    rows.sort(key=lambda r: r[0].header_offset)
    members = []
    for i, (zi, data_min) in enumerate(rows):
        nxt = rows[i + 1][0].header_offset if i + 1 < len(rows) else cd_offset
        end_min = data_min + zi.compress_size
        if end_min > nxt:
            raise RestoreImageError(f"{source}: members {zi.filename!r} and "
                                    f"{rows[i + 1][0].filename!r} overlap")
        # Up to the next header (no gap in normal zips), but never more unlisted bytes
        # than a valid local header could need.
        end = min(nxt, end_min + EXTRA_SLACK)
        members.append(Member(zi.filename, zi.header_offset, end, zi.compress_size,
                              zi.file_size, zi.CRC, zi.compress_type))
    return Archive(source, size, cd_offset, tuple(members))
