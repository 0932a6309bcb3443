"""One file over parallel validated range requests, resumable across processes (OS packages,
for an install and for a bundle alike).

One TCP flow on a long path rarely fills the link, so the first request learns the size and
the server's validator (ETag, Last-Modified) and the missing bytes are cut into parts fetched
over ``connections`` connections at once, each written at its offset and retried from the
last byte received.

The bytes go to ``.NAME.partial`` beside the destination; ``.NAME.partial.json`` records the
validator and the byte ranges that are complete (written atomically, after the data it
claims is fsynced). A run killed midway (even ``kill -9``) leaves both, and the next run
fetches only the missing ranges, unless the server's validator changed, then it starts
over. The finished file is checked against the catalog's SHA-256 before it takes its name; a
wrong digest deletes it. A server that does not answer ranges gets one plain download.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import requests

from installer.errors import NetworkError
from installer.net.http import (
    RetryableNetworkError,
    UnreachableError,
    get_range,
    reason,
    request_error,
)
from vendorfw.atomic import atomic_file, fsync_dir, write_bytes

log = logging.getLogger(__name__)
CHUNK = 256 << 10
SAVE_EVERY = 1.0  # seconds between sidecar updates
BACKOFF, BACKOFF_MAX = 0.1, 2.0  # seconds before a retry without progress (doubling)
Progress = Callable[[int, int], None]  # done, total (0 when unknown)
Span = tuple[int, int]  # [start, end)


class NoRanges(NetworkError):
    """The server does not answer range requests."""


class ServerFileChanged(RetryableNetworkError):
    """A range answer carries another validator than the download started with."""


@dataclass(frozen=True)
class Validator:
    """What identifies one version of the remote file."""

    size: int
    etag: str | None
    last_modified: str | None

    @classmethod
    def of(cls, resp: requests.Response, size: int) -> Validator:
        return cls(size, resp.headers.get("ETag"), resp.headers.get("Last-Modified"))

    def same(self, other: Validator) -> bool:
        if self.size != other.size:
            return False
        if self.etag and other.etag:
            return self.etag == other.etag
        return self.last_modified == other.last_modified


@dataclass(frozen=True)
class Downloaded:
    """A finished download: its size, the bytes this run received over the network, and
    the bytes a killed run had already left on disk."""

    size: int
    network_bytes: int
    resumed_bytes: int


def partial_paths(dest: Path) -> tuple[Path, Path]:
    """The partial data file and its sidecar for ``dest``."""
    data = dest.with_name(f".{dest.name}.partial")
    return data, data.with_name(data.name + ".json")


def discard_partial(dest: Path) -> None:
    for p in partial_paths(dest):
        p.unlink(missing_ok=True)


def merge(spans: list[Span]) -> list[Span]:
    out: list[Span] = []
    for s, e in sorted(x for x in spans if x[1] > x[0]):
        if out and s <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return out


def missing(done: list[Span], total: int) -> list[Span]:
    gaps, pos = [], 0
    for s, e in merge(done):
        if s > pos:
            gaps.append((pos, s))
        pos = max(pos, e)
    if pos < total:
        gaps.append((pos, total))
    return gaps


def cut(gaps: list[Span], connections: int, part_min: int) -> list[Span]:
    """The gaps cut into about ``connections`` parts of at least ``part_min`` bytes."""
    want = sum(e - s for s, e in gaps)
    n = max(1, min(connections, -(-want // part_min)))
    step = max(part_min, -(-want // n)) if want else part_min
    return [(i, min(e, i + step)) for s, e in gaps for i in range(s, e, step)]


def _load_sidecar(path: Path, url: str, sha256: str | None,
                  v: Validator) -> list[Span] | None:
    """The complete ranges of a killed run's record when it was a download of the same
    file: the same validator, from the same URL or for the same catalog SHA-256 (a mirror,
    or the demo server on another port). None for no record, a damaged one or another file."""
    try:
        doc = json.loads(path.read_text())
        old = Validator(int(doc["size"]), doc.get("etag"), doc.get("last_modified"))
        spans = [(int(s), int(e)) for s, e in doc["done"]]
        same = doc.get("url") == url or (sha256 is not None
                                          and doc.get("sha256") == sha256.lower())
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not same or any(not 0 <= s <= e <= old.size for s, e in spans):
        return None
    if sha256 is None and not (old.etag or old.last_modified):
        return None  # nothing would tell another file of the same size apart
    if not old.same(v):
        log.warning("%s: the file on the server changed since the partial download; "
                    "starting over", path.name.removeprefix(".").removesuffix(".partial.json"))
        return None
    return merge(spans)


class _Run:
    """The shared state of one download: the partial file, the parts in flight, progress."""

    def __init__(self, url: str, dest: Path, session: requests.Session, v: Validator,
                 done: list[Span], timeout: tuple[float, float], retries: int,
                 progress: Progress | None, sha256: str | None) -> None:
        self.url, self.session, self.v, self.sha256 = url, session, v, sha256
        self.data, self.sidecar = partial_paths(dest)
        self.done = done
        self.timeout, self.retries, self.progress = timeout, retries, progress
        self.lock = threading.Lock()
        self.active: dict[int, Span] = {}  # part id -> [start, pos) received so far
        self.count = sum(e - s for s, e in done)
        self.network = 0
        self.fd = -1
        self.abort = threading.Event()  # one part failed (or the caller was interrupted)
        self.busy = False  # a worker may still write to fd: do not close it

    def save(self) -> None:
        """Record the complete ranges (after the bytes they claim are on disk)."""
        with self.lock:
            spans = merge(self.done + list(self.active.values()))
        os.fdatasync(self.fd)
        doc = {"url": self.url, "sha256": self.sha256 and self.sha256.lower(),
               "size": self.v.size, "etag": self.v.etag,
               "last_modified": self.v.last_modified, "done": spans}
        write_bytes(self.sidecar, json.dumps(doc).encode())

    def add(self, part: int, span: Span, n: int) -> None:
        with self.lock:
            self.active[part] = span
            self.count += n
            self.network += n
            if self.progress:
                self.progress(self.count, self.v.size)

    def finish(self, part: int, span: Span) -> None:
        with self.lock:
            self.active.pop(part, None)
            self.done = merge([*self.done, span])

    def part(self, pid: int, start: int, end: int) -> None:
        pos, fails = start, 0
        while pos < end:
            at = pos
            try:
                resp, _, _, _ = get_range(self.session, self.url, pos, end, total=self.v.size,
                                          timeout=self.timeout)
                with resp:
                    if not Validator.of(resp, self.v.size).same(self.v):
                        raise ServerFileChanged(f"GET {self.url}: the file on the server "
                                                "changed during the download")
                    for chunk in resp.iter_content(CHUNK):
                        if self.abort.is_set():
                            return
                        chunk = chunk[: end - pos]
                        os.pwrite(self.fd, chunk, pos)
                        pos += len(chunk)
                        self.add(pid, (start, pos), len(chunk))
                        if pos >= end:
                            break
                if pos < end:
                    raise RetryableNetworkError(f"GET {self.url}: body ended at byte {pos} "
                                                f"of {end}")
            except ServerFileChanged:
                raise
            except (RetryableNetworkError, requests.RequestException) as exc:
                fails = 0 if pos > at else fails + 1
                if fails > self.retries:
                    msg = exc.message if isinstance(exc, NetworkError) else reason(exc)
                    raise NetworkError(f"GET {self.url}: {msg} (gave up after {fails} "
                                       "attempts)") from exc
                log.info("retrying %s at %d: %s", self.url, pos, exc)
                if self.abort.wait(min(BACKOFF_MAX, BACKOFF * (2 ** fails - 1))):
                    return
        self.finish(pid, (start, end))


def _probe(url: str, session: requests.Session,
           timeout: tuple[float, float]) -> Validator:
    try:  # one byte: learn the size and the validator
        resp, _, _, total = get_range(session, url, 0, 1, timeout=timeout)
    except UnreachableError:
        raise
    except NetworkError as exc:  # 200 to a range, an empty file (416), an HTTP error
        raise NoRanges(exc.message) from exc
    with resp:
        return Validator.of(resp, total)


def _sha256_fd(fd: int) -> str:
    h = hashlib.sha256()
    with open(fd, "rb", closefd=False) as r:
        r.seek(0)
        while chunk := r.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def wrong_digest(what: str, got: str, want: str) -> NetworkError:
    return NetworkError(f"{what}: SHA-256 {got[:16]}… does not match the catalog's "
                        f"{want[:16]}…; deleted the download",
                        hint="the server sent other bytes than the catalog describes; "
                        "nothing was kept")


def fetch_ranged(url: str, dest: Path, session: requests.Session, *, sha256: str | None,
                 connections: int = 8, part_min: int = 1 << 20,
                 timeout: tuple[float, float] = (10.0, 60.0), retries: int = 5,
                 progress: Progress | None = None,
                 save_every: float = SAVE_EVERY) -> Downloaded:
    """Download ``url`` to ``dest`` over parallel ranges, continuing a killed run's partial
    file when the server's file is the same. Raises :class:`NoRanges` when the first range
    request fails for another reason than an unreachable host (the caller then makes one
    plain request, :func:`fetch_plain`, which reports its own error)."""
    v = _probe(url, session, timeout)
    data, sidecar = partial_paths(dest)
    fd = _open_locked(data, dest)
    run: _Run | None = None
    try:
        done = _usable(sidecar, url, sha256, v, fd)
        run = _Run(url, dest, session, v, done, timeout, retries, progress, sha256)
        run.fd = fd
        resumed = run.count
        if resumed:
            log.info("%s: resuming, %d of %d bytes already on disk", dest.name, resumed,
                     v.size)
        os.ftruncate(fd, v.size)
        parts = cut(missing(done, v.size), connections, part_min)
        if progress:
            progress(run.count, v.size)
        _run_parts(run, parts, connections, save_every)
        run.save()
        got = _sha256_fd(fd)
        if sha256 is not None and got != sha256.lower():
            discard_partial(dest)
            raise wrong_digest(url, got, sha256)
        os.fsync(fd)
        os.replace(data, dest)
        sidecar.unlink(missing_ok=True)
        fsync_dir(dest.parent)
    except ServerFileChanged:
        discard_partial(dest)
        raise
    except OSError as exc:
        raise NetworkError(f"cannot write {data}: {exc.strerror or exc}") from exc
    finally:
        if not (run is not None and run.busy):  # never under a writing thread's feet
            os.close(fd)  # and with it the lock
    log.info("downloaded %s (%d bytes, %d over the network in %d parts)", url, v.size,
             run.network, len(parts))
    return Downloaded(v.size, run.network, resumed)


def _open_locked(data: Path, dest: Path) -> int:
    """The partial file, opened and locked (one download of a file at a time)."""
    try:
        fd = os.open(data, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise NetworkError(f"cannot write {data}: {exc.strerror or exc}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise NetworkError(f"another Pippin is downloading {dest.name}",
                           hint="wait for it to finish, then run this again") from None
    return fd


def _usable(sidecar: Path, url: str, sha256: str | None, v: Validator, fd: int) -> list[Span]:
    """The complete ranges a killed run left that still hold for the server's file; the
    partial file is emptied when there are none."""
    done = _load_sidecar(sidecar, url, sha256, v)
    if done is not None and os.fstat(fd).st_size == v.size:
        return done
    # killed before its first record, a damaged record, another file: no trust
    sidecar.unlink(missing_ok=True)
    os.ftruncate(fd, 0)
    return []


def _run_parts(run: _Run, parts: list[Span], connections: int, save_every: float) -> None:
    queue = list(enumerate(parts))
    errors: list[BaseException] = []
    qlock = threading.Lock()
    stop = threading.Event()

    def saver() -> None:  # on a clock, so a stalled or killed run loses little
        while not stop.wait(save_every):
            try:
                run.save()
            except OSError as exc:
                log.warning("cannot record the partial download: %s", exc.strerror or exc)

    def worker() -> None:
        while True:
            with qlock:
                if errors or not queue:
                    return
                pid, (s, e) = queue.pop(0)
            try:
                run.part(pid, s, e)
            except BaseException as exc:  # noqa: BLE001 - thread entry: handed to the caller
                with qlock:
                    errors.append(exc)
                run.abort.set()  # the others stop at their next chunk
                return

    threads = [threading.Thread(target=worker, daemon=True)
               for _ in range(min(connections, len(parts)))]
    keeper = threading.Thread(target=saver, daemon=True)
    try:
        keeper.start()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        run.abort.set()
        stop.set()
        keeper.join()
        run.busy = any(t.is_alive() for t in threads)  # interrupted while they read
        with contextlib.suppress(OSError):
            run.save()  # what arrived stays usable for the next run
    if errors:
        raise errors[0]


def fetch_plain(url: str, dest: Path, session: requests.Session, *, sha256: str | None,
                timeout: tuple[float, float] = (10.0, 60.0),
                progress: Progress | None = None) -> Downloaded:
    """One plain GET of ``url`` into ``dest`` (atomic, SHA-256 checked); not resumable."""
    discard_partial(dest)
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
                if sha256 is not None and h.hexdigest() != sha256.lower():
                    raise wrong_digest(url, h.hexdigest(), sha256)
        except requests.RequestException as exc:
            raise request_error(url, exc) from exc
        except OSError as exc:
            raise NetworkError(f"cannot write {dest}: {exc.strerror or exc}") from exc
    return Downloaded(done, done, 0)


def fetch_url(url: str, dest: Path, session: requests.Session, *, sha256: str | None,
              connections: int = 8, part_min: int = 1 << 20,
              timeout: tuple[float, float] = (10.0, 60.0),
              retries: int = 5, progress: Progress | None = None) -> Downloaded:
    """:func:`fetch_ranged`, or :func:`fetch_plain` from a server that ignores ranges."""
    try:
        return fetch_ranged(url, dest, session, sha256=sha256, connections=connections,
                            part_min=part_min, timeout=timeout, retries=retries,
                            progress=progress)
    except NoRanges as exc:
        log.info("%s: %s; one plain download instead", url, exc.message)
    return fetch_plain(url, dest, session, sha256=sha256, timeout=timeout, progress=progress)
