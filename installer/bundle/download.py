"""A whole file over parallel validated range requests (OS packages for a bundle).

One TCP flow on a long path rarely fills the link; the restore-image fetcher splits its
members across connections, and this does the same for a plain file: the first request
learns the size (and brings the first part), the rest is cut into ``connections`` parts
fetched at once, each written at its offset and retried from the last byte received. The
file is checked against the catalog's SHA-256 before it takes its name (atomic). A server
that does not answer ranges gets one plain download instead.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path

import requests

from installer.errors import NetworkError
from installer.net.http import RetryableNetworkError, UnreachableError, get_range, reason
from installer.ospackage import check_sha256
from vendorfw.atomic import atomic_file

log = logging.getLogger(__name__)
CHUNK = 256 << 10
Progress = Callable[[int, int], None]


class NoRanges(NetworkError):
    """The server does not answer range requests."""


def _part(session: requests.Session, url: str, fd: int, start: int, end: int, total: int,
          timeout: tuple[float, float], add: Callable[[int], None], retries: int) -> None:
    pos, fails = start, 0
    while pos < end:
        at = pos
        try:
            resp, _, _, _ = get_range(session, url, pos, end, total=total, timeout=timeout)
            with resp:
                for chunk in resp.iter_content(CHUNK):
                    chunk = chunk[: end - pos]
                    os.pwrite(fd, chunk, pos)
                    pos += len(chunk)
                    add(len(chunk))
                    if pos >= end:
                        break
            if pos < end:
                raise RetryableNetworkError(f"GET {url}: body ended at byte {pos} of {end}")
        except (RetryableNetworkError, requests.RequestException) as exc:
            fails = 0 if pos > at else fails + 1
            if fails > retries:
                msg = exc.message if isinstance(exc, NetworkError) else reason(exc)
                raise NetworkError(f"GET {url}: {msg} (gave up after {fails} attempts)") \
                    from exc
            log.info("retrying %s at %d: %s", url, pos, exc)


def fetch_file(url: str, dest: Path, session: requests.Session, *, sha256: str | None,
               connections: int = 8, part_min: int = 4 << 20,
               timeout: tuple[float, float] = (10.0, 60.0), retries: int = 5,
               progress: Progress | None = None) -> int:
    """Download ``url`` to ``dest`` (atomic, SHA-256 checked); returns its size. Raises
    :class:`NoRanges` when the first range request fails for another reason than an
    unreachable host (the caller then makes one plain request, which reports its error)."""
    lock = threading.Lock()
    done = [0]
    try:  # one byte: learn the size
        probe, _, _, total = get_range(session, url, 0, 1, timeout=timeout)
    except UnreachableError:
        raise
    except NetworkError as exc:  # 200 to a range, an empty file (416), an HTTP error
        raise NoRanges(exc.message) from exc
    probe.close()

    def add(n: int) -> None:
        with lock:
            done[0] += n
            if progress:
                progress(done[0], total)

    with atomic_file(dest) as f:
        fd = f.fileno()
        os.ftruncate(fd, total)
        n = max(1, min(connections, -(-total // part_min)))
        step = -(-total // n)
        bounds = [(i, min(total, i + step)) for i in range(0, total, step)]
        errors: list[BaseException] = []

        def run(s: int, e: int) -> None:
            try:
                _part(session, url, fd, s, e, total, timeout, add, retries)
            except BaseException as exc:  # noqa: BLE001 - thread entry: handed to the caller
                errors.append(exc)
        threads = [threading.Thread(target=run, args=b, daemon=True) for b in bounds]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
        if sha256 is not None:  # the parts came in any order: hash the file once at the end
            f.flush()
            with open(fd, "rb", closefd=False) as r:
                r.seek(0)
                digest = hashlib.file_digest(r, "sha256").hexdigest()
            check_sha256(digest, sha256, url, "nothing was kept")
    log.info("downloaded %s (%d bytes over %d connections)", url, total, len(bounds))
    return total
