"""Fetch members of a restore image: parallel validated ranges, resumable, verified.

:func:`fetch_members` plans the byte ranges of the wanted members
(:mod:`installer.ipsw.ranges`), fetches them over ``connections`` parallel requests (an idle
connection takes over half of a busy one's rest, :mod:`installer.ipsw.schedule`) into
the persistent range cache (:mod:`installer.ipsw.cache`), and hands each member to a sink
as soon as all its bytes are there and its CRC-32 checked. Every response is validated
(206 + exact Content-Range); a failed or short response is retried from the last byte
received, with exponential backoff, until ``retries`` consecutive attempts make no
progress or the run has spent its budget of failed requests (``retry_budget`` plus one per
good answer). A member whose CRC is wrong (a lying server) is fetched again, the bytes that
two downloads disagree on first (:mod:`installer.ipsw.suspects`), until the same wrong
bytes keep coming back or its rounds run out. Nothing is held in memory beyond one block
per connection.

For a local path the members are read from the file directly (no cache).
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import requests

from installer.errors import NetworkError, PippinError, RestoreImageError
from installer.ipsw.cache import BLOCK, RangeCache
from installer.ipsw.member import (
    DirectorySink,
    MemberSink,
    MemorySink,
    iter_member,
    verify_member,
)
from installer.ipsw.ranges import PlanOptions, coalesce, subtract
from installer.ipsw.remote import Archive, Member, local_path, open_archive
from installer.ipsw.schedule import WorkQueue
from installer.ipsw.suspects import Suspects
from installer.net.http import RetryableNetworkError, UnreachableError, get_range, reason

log = logging.getLogger(__name__)
CHUNK = 256 << 10
ALIGN = 64 << 10  # large spans are cut into requests at multiples of this


class MemberState(StrEnum):
    QUEUED = "queued"
    DONE = "done"
    REFETCH = "refetch"  # CRC mismatch: its bytes are fetched again


@dataclass(frozen=True, slots=True)
class FetchProgress:
    """What a progress renderer needs: bytes, speed (bytes/s), ETA (s), member status."""

    done: int
    total: int
    speed: float
    eta: float | None
    member: str | None = None
    state: MemberState | None = None


ProgressFn = Callable[[FetchProgress], None]


@dataclass(frozen=True, slots=True)
class TraceEvent:
    """One step of one connection (for a timeline): ``kind`` is ``request`` (sent),
    ``response`` (headers in) or ``end`` (range done, cut or failed); on the caller's
    thread (``conn`` -1) ``verify``, ``verified`` and ``delivered`` (a member's check
    began, passed, and the sink has it)."""

    t: float  # clock() seconds
    conn: int
    kind: str
    start: int
    end: int


TraceFn = Callable[[TraceEvent], None]  # called from worker threads


@dataclass(frozen=True, slots=True)
class FetchOptions:
    plan: PlanOptions = field(default_factory=PlanOptions)
    timeout: tuple[float, float] = (10.0, 30.0)
    retries: int = 8  # consecutive attempts without progress, per range
    retry_budget: int = 64  # failed requests a run may spend, plus one per good answer
    member_rounds: int = 8  # fetches of one member's bytes before its CRC failure is final
    refetch_budget: int = 64 << 20  # bytes a run may fetch again, plus its total once
    backoff: float = 0.2  # first retry delay (s); doubles up to max_backoff
    max_backoff: float = 5.0
    keep_cache: bool = False  # keep fetched ranges after success (default: remove them)
    #: An idle connection cuts a busy one's range in flight only when this much is left
    #: (what the server sent past the cut is wasted).
    split_in_flight: int = 16 << 20


@dataclass(frozen=True, slots=True)
class FetchResult:
    members: tuple[str, ...]
    needed_bytes: int  # bytes of the members' spans
    downloaded_bytes: int  # body bytes received in this run
    cached_bytes: int  # bytes already in the cache when the run began
    requests: int
    retries: int
    seconds: float
    refetched: tuple[str, ...] = ()  # members whose bytes failed CRC once and came again
    steals: int = 0  # ranges an idle connection took over from a busy one


def fetch_members(
    archive: Archive,
    names: Sequence[str],
    sink: MemberSink,
    *,
    session: requests.Session | None = None,
    cache_root: Path | None = None,
    options: FetchOptions = FetchOptions(),
    progress: ProgressFn | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    trace: TraceFn | None = None,
) -> FetchResult:
    """Fetch ``names`` from ``archive`` (see :func:`installer.ipsw.remote.open_archive`)
    and deliver each, verified, to ``sink``. Remote archives need ``session`` and
    ``cache_root`` (the parent of per-archive cache directories). ``trace`` receives
    every connection's steps (benchmarks draw a timeline from them)."""
    members = sorted({archive.get(n) for n in names}, key=lambda m: m.start)
    if not archive.is_remote:
        return _fetch_local(archive, members, sink, progress, clock)
    if session is None or cache_root is None:
        raise ValueError("remote archives need a session and a cache_root")
    cache = RangeCache(cache_root, archive.identity_key(), archive.size)
    ok = False
    try:
        result = _Run(archive, members, sink, session, cache, options, progress, clock,
                      sleep, trace).run()
        ok = True
        return result
    finally:
        # Done with these bytes; but a cache that also holds an interrupted fetch's ranges
        # (e.g. the stub set, while this run read only BuildManifest.plist) stays.
        spans = coalesce(((m.start, m.end) for m in members), options.plan.max_gap)
        try:
            empty = ok and not options.keep_cache and cache.release(spans)
        except RestoreImageError as exc:  # the members are out; a stale cache is harmless
            log.warning("%s", exc.message)
            empty = False
        if empty:
            cache.remove()
        else:
            cache.close()
        if trace is not None:
            trace(TraceEvent(clock(), -1, "cache", 0, 0))


def _fetch_local(archive: Archive, members: list[Member], sink: MemberSink,
                 progress: ProgressFn | None, clock: Callable[[], float]) -> FetchResult:
    path = local_path(archive.source)
    t0 = clock()
    total = sum(m.end - m.start for m in members)
    done = 0
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise RestoreImageError(f"cannot read {path}: {exc}") from exc
    try:
        def pread(off: int, n: int) -> bytes:
            try:
                b = os.pread(fd, n, off)
            except OSError as exc:
                raise RestoreImageError(f"cannot read {path}: {exc}") from exc
            if len(b) != n:
                raise RestoreImageError(f"{path}: truncated at offset {off + len(b)}")
            return b

        for m in members:
            verify_member(m, pread)
            sink.write_member(m, iter_member(m, pread))
            done += m.end - m.start
            if progress:
                progress(FetchProgress(done, total, 0.0, None, m.name, MemberState.DONE))
    finally:
        os.close(fd)
    return FetchResult(tuple(m.name for m in members), total, 0, 0, 0, 0, clock() - t0)


def _staggered(spans: list[tuple[int, int]], salt: int) -> list[tuple[int, int]]:
    """Cut each span at a point that moves with ``salt`` (and the work queue cuts large ones
    at a moved phase), so that a re-fetch does not ask for the ranges it asked before: a
    fault tied to the request (a byte flipped at the start of the body, a fixed shift) then
    lands elsewhere and cannot come back identical, which would make two wrong downloads
    agree."""
    out = []
    for s, e in spans:
        cut = s + (salt * 4099) % (e - s)
        out += [(s, cut), (cut, e)] if s < cut < e else [(s, e)]
    return out


class _Checked:
    """A member's chunks, remembering the error that ended them (a failed check, as
    opposed to an error of the sink that consumes them)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self.chunks = chunks
        self.error: RestoreImageError | None = None

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        try:
            return next(self.chunks)
        except RestoreImageError as exc:
            self.error = exc
            raise


class _Run:
    """One fetch: workers put events on a queue; the caller's thread consumes them,
    delivers members and reports progress (so sinks and progress run on one thread)."""

    def __init__(self, archive: Archive, members: list[Member], sink: MemberSink,
                 session: requests.Session, cache: RangeCache, opts: FetchOptions,
                 progress: ProgressFn | None, clock: Callable[[], float],
                 sleep: Callable[[float], None], trace: TraceFn | None = None) -> None:
        self.trace = trace
        self.archive, self.members, self.sink = archive, members, sink
        self.session, self.cache, self.opts = session, cache, opts
        self.progress, self.clock, self.sleep = progress, clock, sleep
        self.url = archive.source
        self.events: queue.Queue[tuple[str, Any]] = queue.Queue()
        self.stop = threading.Event()
        self.contact = threading.Event()  # some request got an answer in this run
        self.active: dict[int, requests.Response] = {}  # thread id -> open response
        self.active_lock = threading.Lock()
        self.pending = list(members)
        self.refetched: set[str] = set()
        self.again: set[str] = set()  # members to fetch again in the next round
        self.suspects = Suspects(max_rounds=opts.member_rounds)
        self.refetch_bytes = 0
        self.tally = threading.Lock()
        self.failed_requests = self.good_requests = 0
        self.requests = self.retries = self.downloaded = self.steals = 0
        spans = coalesce(((m.start, m.end) for m in members), opts.plan.max_gap)
        self.total = sum(e - s for s, e in spans)
        have = cache.intervals()
        self.cached = self.total - sum(e - s for a, b in spans for s, e in subtract(a, b, have))
        self.done = self.cached
        self.t0 = clock()
        self.last_report = -1.0

    # --- caller's thread -------------------------------------------------------------

    def run(self) -> FetchResult:
        log.info("fetching %d members (%d bytes, %d cached) from %s over %d connections",
                 len(self.members), self.total, self.cached, self.url,
                 self.opts.plan.connections)
        self._report(None, None, force=True)
        self._deliver_ready()
        while self.pending:
            spans = [(m.start, m.end) for m in self.pending]
            have = self.cache.intervals()
            missing = [r for s, e in coalesce(spans, self.opts.plan.max_gap)
                       for r in subtract(s, e, have)]
            if not missing:
                raise RestoreImageError(f"{self.url}: members still wrong after refetch: "
                                        + ", ".join(m.name for m in self.pending))
            spans = coalesce(missing, self.opts.plan.max_gap)
            phase = 0
            if self.again:  # bad bytes came: give a flaky server a moment
                worst = max(self.suspects.rounds(n) for n in self.again)
                self.sleep(min(self.opts.backoff * 2 ** max(0, worst - 1),
                               self.opts.max_backoff))
                self.again = set()
                spans = _staggered(spans, worst)
                phase = worst * 4099
            self._round(spans, phase)
            self._ev(-1, "round", 0, 0)
        self._report(None, None, force=True)
        log.info("fetched %d members from %s: %d bytes downloaded, %d requests, %d retries, "
                 "%d steals", len(self.members), self.url, self.downloaded, self.requests,
                 self.retries, self.steals)
        return FetchResult(tuple(m.name for m in self.members), self.total, self.downloaded,
                           self.cached, self.requests, self.retries, self.clock() - self.t0,
                           tuple(sorted(self.refetched)), self.steals)

    def _round(self, spans: list[tuple[int, int]], phase: int = 0) -> None:
        po = self.opts.plan
        most = sum(-(-(e - s) // po.min_piece) for s, e in spans)  # requests at most
        n = max(1, min(po.connections, most))
        whole = n == 1  # one connection: each span in one request, file order
        work = WorkQueue(spans, n, align=ALIGN,
                         min_request=1 << 62 if whole else po.min_piece,
                         max_request=1 << 62 if whole else po.max_piece,
                         min_split=self.opts.split_in_flight, phase=phase)
        threads = [threading.Thread(target=self._worker, args=(work, i), daemon=True,
                                    name=f"ipsw-fetch-{i}") for i in range(n)]
        for t in threads:
            t.start()
        left = n
        try:
            while left:
                try:
                    kind, value = self.events.get(timeout=0.5)
                except queue.Empty:
                    continue
                if kind == "bytes":
                    self.done += value
                    self.downloaded += value
                    self._report(None, None)
                elif kind == "request":
                    self.requests += 1
                elif kind == "retry":
                    self.retries += 1
                elif kind in ("piece", "exit"):
                    left -= kind == "exit"
                    self._deliver_ready()
                else:
                    raise value
        finally:
            self.stop.set()
            with self.active_lock:  # unblock workers waiting on a slow server
                for resp in self.active.values():
                    resp.close()
            for t in threads:
                t.join()
            self.stop.clear()
            self.steals += work.steals
        self._deliver_ready()

    def _deliver_ready(self) -> None:
        have = self.cache.intervals()
        again: list[str] = []
        for m in list(self.pending):
            if subtract(m.start, m.end, have):
                continue
            self._ev(-1, "verify", m.start, m.end)
            checked = _Checked(iter_member(m, self.cache.read))
            try:  # one pass: the sink drops the member if its check fails at the end
                self.sink.write_member(m, checked)
            except RestoreImageError as exc:
                if checked.error is not exc:  # the sink's own failure (disk full…)
                    raise
                drop = self.suspects.failed(m, self.cache.read, exc)
                size = sum(e - s for s, e in drop)
                self.refetch_bytes += size
                if self.refetch_bytes > self.opts.refetch_budget + self.total:
                    raise RestoreImageError(f"{exc.message} (gave up: {self.refetch_bytes} "
                                            "bytes fetched again after failed checks)",
                                            hint="try another mirror (IPSW_BASE)") from exc
                log.warning("%s: %s: %s; fetching %d bytes of it again", self.url, m.name,
                            exc.message, size)
                self.refetched.add(m.name)
                for s, e in drop:
                    self.cache.invalidate(s, e)
                again.append(m.name)
                self.again.add(m.name)
                continue
            self._ev(-1, "delivered", m.start, m.end)
            self.pending.remove(m)
            log.debug("%s: %s verified and delivered (%d bytes)", self.url, m.name,
                      m.file_size)
            self._report(m.name, MemberState.DONE, force=True)
        if again:
            # Whole blocks were dropped, neighbours' bytes too (a neighbour verified in
            # this pass was still delivered): count what has to come again.
            self.done = self.total - self._pending_missing()
            for name in again:
                self._report(name, MemberState.REFETCH, force=True)

    def _pending_missing(self) -> int:
        have = self.cache.intervals()
        spans = coalesce(((m.start, m.end) for m in self.pending), self.opts.plan.max_gap)
        return sum(b - a for s, e in spans for a, b in subtract(s, e, have))

    def _report(self, member: str | None, state: MemberState | None,
                force: bool = False) -> None:
        if self.progress is None:
            return
        now = self.clock()
        if not force and now - self.last_report < 0.1:
            return
        self.last_report = now
        elapsed = now - self.t0
        speed = self.downloaded / elapsed if elapsed > 0 else 0.0
        done = min(self.done, self.total)  # a stolen range's overlap may come twice
        eta = (self.total - done) / speed if speed > 0 else None
        self.progress(FetchProgress(done, self.total, speed, eta, member, state))

    # --- worker threads --------------------------------------------------------------

    def _worker(self, work: WorkQueue, me: int) -> None:
        def advance(pos: int) -> int:
            return work.advance(me, pos)

        try:
            while not self.stop.is_set():
                rng = work.next(me)
                if rng is None:
                    break
                for s, e in subtract(rng[0], rng[1], self.cache.intervals()):
                    self._fetch_range(s, e, advance, me)
                self.events.put(("piece", rng))
        except BaseException as exc:  # noqa: BLE001 - worker entry: hand over to caller
            self.stop.set()
            self.events.put(("error", exc))
        finally:
            self.events.put(("exit", me))

    def _over_budget(self) -> bool:
        """Count a failed request; True once the run has failed more than its budget."""
        with self.tally:
            self.failed_requests += 1
            return self.failed_requests > self.opts.retry_budget + self.good_requests

    def _ev(self, conn: int, kind: str, start: int, end: int) -> None:
        if self.trace is not None:
            self.trace(TraceEvent(self.clock(), conn, kind, start, end))

    def _fetch_range(self, start: int, end: int, advance: Callable[[int], int],
                     me: int = 0) -> None:
        """Fetch ``[start, end)``; ``advance(pos)`` reports progress and returns where to
        stop (earlier than ``end`` once another worker took over the rest)."""
        pos = blk = start
        buf = bytearray()  # the block being received (stored whole, under its CRC)
        fails = 0
        while not self.stop.is_set():
            end = min(end, advance(pos))
            if pos >= end:
                return
            attempt_from = before = pos
            self._ev(me, "request", pos, end)
            try:
                try:
                    resp, _, _, _ = get_range(self.session, self.url, pos, end,
                                              total=self.archive.size,
                                              timeout=self.opts.timeout)
                finally:
                    self._ev(me, "response", pos, end)
                self.contact.set()
                with self.tally:
                    self.good_requests += 1
                self.events.put(("request", 1))
                with self.active_lock:
                    self.active[threading.get_ident()] = resp
                try:
                    with resp:
                        for chunk in resp.iter_content(CHUNK):
                            end = min(end, advance(pos))
                            if self.stop.is_set() or pos >= end:
                                return
                            view = memoryview(chunk)[: end - pos]
                            while view:
                                take = min(len(view), BLOCK - pos % BLOCK)
                                buf += view[:take]
                                pos += take
                                view = view[take:]
                                if pos % BLOCK == 0 or pos == end:
                                    self.cache.put(blk, buf)
                                    buf.clear()
                                    blk = pos
                            self.events.put(("bytes", min(len(chunk), pos - before)))
                            before = pos
                            if pos >= end:
                                break
                finally:
                    with self.active_lock:
                        self.active.pop(threading.get_ident(), None)
                    self._ev(me, "end", attempt_from, pos)
                if pos < end:
                    raise RetryableNetworkError(f"GET {self.url}: body ended at byte {pos}, "
                                                f"expected up to {end}")
            except UnreachableError:
                if not self.contact.is_set():  # never got through: no network, say so now
                    raise
                fails += 1  # the host answered before: a blip (a restart, a full backlog)
                self.events.put(("retry", 1))
                if fails > self.opts.retries or self._over_budget():
                    raise
                self.sleep(min(self.opts.backoff * 2 ** max(0, fails - 1),
                               self.opts.max_backoff))
            except (RetryableNetworkError, requests.RequestException) as exc:
                fails = 0 if pos > attempt_from else fails + 1
                self.events.put(("retry", 1))
                over = self._over_budget()
                if fails > self.opts.retries or over:
                    msg = (exc.message if isinstance(exc, PippinError)
                           else f"GET {self.url}: {reason(exc)}")
                    why = (f"{self.failed_requests} failed requests in this run" if over
                           else f"{fails} attempts without progress")
                    raise NetworkError(
                        f"{msg} (gave up after {why})",
                        hint="check the connection or try a mirror (IPSW_BASE)") from exc
                log.info("retrying %s at %d: %s", self.url, pos, exc)
                self.sleep(min(self.opts.backoff * 2 ** max(0, fails - 1),
                               self.opts.max_backoff))


def fetch(
    source: str,
    names: Sequence[str],
    out: Path | MemberSink,
    *,
    session: requests.Session | None = None,
    cache_root: Path | None = None,
    options: FetchOptions = FetchOptions(),
    progress: ProgressFn | None = None,
) -> FetchResult:
    """Open ``source`` (URL or path) and fetch ``names`` into a directory or a sink."""
    archive = open_archive(source, session, timeout=options.timeout)
    sink = DirectorySink(out) if isinstance(out, Path) else out
    return fetch_members(archive, names, sink, session=session, cache_root=cache_root,
                         options=options, progress=progress)


def read_members(archive: Archive, names: Sequence[str], *,
                 session: requests.Session | None = None,
                 cache_root: Path | None = None) -> dict[str, bytes]:
    """Small members (manifests, plists) as bytes, verified."""
    sink = MemorySink()
    fetch_members(archive, names, sink, session=session, cache_root=cache_root)
    return sink.data
