"""A fault-injecting, link-shaping HTTP proxy between the client under test and nginx.

It accepts both origin-form (``GET /x``, used as a reverse proxy) and absolute-form
(``GET http://host/x``, used through ``HTTP_PROXY``) requests, forwards them to one upstream
over a keep-alive connection per client connection, and can misbehave per request:

- ``Fault("status", code=503)``: answer an error instead;
- ``Fault("drop", at=N)``: send N body bytes, then close the connection;
- ``Fault("truncate", at=N)``: same, with full headers (a short body);
- ``Fault("stall", at=N)``: send N body bytes, then hang until the client gives up
  (with ``seconds=S``: pause S seconds, then send the rest);
- ``Fault("full200")``: answer a Range request with ``200`` and the whole file;
- ``Fault("shift", by=K)``: serve the range K bytes later, with an honest Content-Range;
- ``Fault("lie", by=K)``: serve the range K bytes later, claiming the requested range;
- ``Fault("corrupt")``: flip one byte, headers correct;
- ``Fault("badcr", by=K)``: the right body, under a ``Content-Range`` K bytes off.

``flaky(rate, seed)`` picks one of those at random for ``rate`` of the range requests: a
flaky mirror. The choice depends only on the seed, the range asked for and how often it was
asked before, not on the order in which threads reach the proxy.

``stall_total=N`` stalls every response once N body bytes went out in all (to kill a
client mid-way at a known point). ``drop_every=N`` closes any connection after every N body
bytes it carried. The shaping options model a long path: one ``rtt`` per new connection
and per request, a bandwidth cap shared by all connections (``rate``) and one per
connection (``conn_rate``), in bytes/s.
"""

from __future__ import annotations

import contextlib
import random
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO
from urllib.parse import urlsplit

CHUNK = 32 << 10


@dataclass(frozen=True)
class Fault:
    kind: str
    at: int = 0
    by: int = 0
    code: int = 503
    seconds: float = 0.0  # a stall's length (0: until the client gives up)


Schedule = Callable[[int, "str | None"], "Fault | None"]


def none(_n: int, _range: str | None) -> Fault | None:
    return None


def every(k: int, fault: Fault, *, limit: int | None = None) -> Schedule:
    """``fault`` on every k-th request (the first included), at most ``limit`` times."""

    def sched(n: int, rng: str | None) -> Fault | None:
        if rng is None or n % k:
            return None
        if limit is not None and n // k >= limit:
            return None
        return fault

    return sched


def first(count: int, fault: Fault) -> Schedule:
    """``fault`` on the first ``count`` range requests after the listing."""
    return lambda n, rng: fault if rng is not None and n < count else None


FLAKY_KINDS = ("drop", "truncate", "status", "shift", "lie", "corrupt", "badcr", "full200",
               "stall")


def flaky(rate: float, seed: int, *, stall: float = 2.0,
          kinds: tuple[str, ...] = FLAKY_KINDS) -> Schedule:
    """A mirror where ``rate`` of the range answers are faulty, each fault one of ``kinds``
    (at a random byte of the answer, shifted by a random amount); stalls last ``stall`` s."""
    asked: dict[str, int] = {}
    lock = threading.Lock()

    def sched(_n: int, rng: str | None) -> Fault | None:
        if rng is None:
            return None
        with lock:
            k = asked.get(rng, 0)
            asked[rng] = k + 1
        r = random.Random(f"{seed}:{rng}:{k}")
        if r.random() >= rate:
            return None
        a, _, b = rng.removeprefix("bytes=").partition("-")
        suffix = not a
        length = int(b) if suffix else int(b) - int(a) + 1
        ok = [x for x in kinds if not (suffix and x in ("shift", "lie", "badcr"))]
        kind = r.choice(ok)
        return Fault(kind, at=r.randrange(max(1, length)), by=r.randrange(1, 8192),
                     seconds=stall)

    return sched


@dataclass
class Record:
    index: int
    range: str | None
    status: int
    sent: int
    fault: str | None


@dataclass
class _Bucket:
    """A pacing clock: the time at which its link is free again (rate in bytes/s)."""

    rate: float
    t: float = 0.0


_SHAPE_LOCK = threading.Lock()


#: Queue depth of a shaped link, in seconds of traffic: a sender that wakes up late may
#: catch up this much (a real link buffers; without it, thread wake-up jitter costs rate).
BURST = 0.02


def _pace(n: int, buckets: list[_Bucket]) -> None:
    """Send ``n`` bytes when every bucket allows: each advances by its own rate, and the
    chunk leaves at the latest of their finish times (so caps bind, never add up)."""
    if not buckets:
        return
    with _SHAPE_LOCK:
        now = time.monotonic()
        leave = now
        for b in buckets:
            b.t = max(now - BURST, b.t) + n / b.rate
            leave = max(leave, b.t)
    if leave > now:
        time.sleep(leave - now)


class _Closed(Exception):
    """The peer went away or the proxy is shutting down."""


@dataclass
class FaultProxy:
    upstream_port: int
    schedule: Schedule = none
    drop_every: int | None = None
    stall_total: int | None = None  # once this many body bytes went out, everything stalls
    rtt: float = 0.0
    rate: float | None = None
    conn_rate: float | None = None
    records: list[Record] = field(default_factory=list)
    absolute_form: int = 0
    connections: int = 0
    stalled: int = 0
    port: int = 0

    def __post_init__(self) -> None:
        self._n = 0
        self._sent_total = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._global = _Bucket(self.rate) if self.rate else None
        self._socks: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]

    @property
    def url_base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def sent_bytes(self) -> int:
        with self._lock:
            return sum(r.sent for r in self.records)

    def start(self) -> FaultProxy:
        t = threading.Thread(target=self._accept, daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def close(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        with self._lock:
            socks = list(self._socks)
        for s in socks:  # unblock every thread stuck in recv/send
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
        for t in self._threads:
            t.join(10)

    def _track(self, s: socket.socket) -> socket.socket:
        with self._lock:
            self._socks.add(s)
        return s

    def _forget(self, s: socket.socket | None) -> None:
        if s is None:
            return
        with self._lock:
            self._socks.discard(s)
        s.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                c, _ = self._listener.accept()
            except OSError:
                return
            self._track(c)
            t = threading.Thread(target=self._client, args=(c,), daemon=True)
            with self._lock:
                self._threads.append(t)
            t.start()

    # --- per connection ---------------------------------------------------------------

    def _client(self, c: socket.socket) -> None:
        with self._lock:  # counters are bumped from many threads
            self.connections += 1
        conn = _Bucket(self.conn_rate) if self.conn_rate else None
        budget = [self.drop_every]
        up: socket.socket | None = None
        cr = c.makefile("rb")
        ur = None
        try:
            if self.rtt:
                time.sleep(self.rtt)  # the TCP handshake
            while not self._stop.is_set():
                head = _read_head_bytes(cr)
                if up is None:
                    up = self._track(socket.create_connection(("127.0.0.1",
                                                               self.upstream_port)))
                    ur = up.makefile("rb")
                assert ur is not None
                if not self._exchange(head, c, up, ur, conn, budget):
                    break
        except (_Closed, OSError, ValueError):
            pass  # client gone, or the proxy is shutting down
        finally:
            cr.close()
            if ur is not None:
                ur.close()
            self._forget(up)
            self._forget(c)

    def _exchange(self, head: bytes, c: socket.socket, up: socket.socket, ur: BinaryIO,
                  conn: _Bucket | None, budget: list[int | None]) -> bool:
        lines = head.decode("latin-1").split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        if "://" in target:
            with self._lock:
                self.absolute_form += 1
            parts = urlsplit(target)
            target = parts.path + (f"?{parts.query}" if parts.query else "")
        hdrs = {k.strip().lower(): v.strip() for k, v in
                (ln.split(":", 1) for ln in lines[1:] if ":" in ln)}
        rng = hdrs.get("range")
        with self._lock:
            index = self._n
            self._n += 1
        fault = self.schedule(index, rng)
        rec = Record(index, rng, 0, 0, fault.kind if fault else None)
        with self._lock:
            self.records.append(rec)
        if self.rtt:
            time.sleep(self.rtt)
        if fault and fault.kind == "status":
            rec.status = fault.code
            c.sendall(f"HTTP/1.1 {fault.code} Fault\r\nContent-Length: 5\r\n"
                      "Connection: keep-alive\r\n\r\nfault".encode())
            return True
        up_range = rng
        if rng and fault and fault.kind in ("shift", "lie"):
            a, b = rng.removeprefix("bytes=").split("-")
            up_range = f"bytes={int(a) + fault.by}-{int(b) + fault.by}"
        if fault and fault.kind == "full200":
            up_range = None
        req = f"{method} {target} HTTP/1.1\r\nHost: 127.0.0.1:{self.upstream_port}\r\n"
        if up_range:
            req += f"Range: {up_range}\r\n"
        up.sendall((req + "Connection: keep-alive\r\n\r\n").encode())
        rlines = _read_head_bytes(ur).decode("latin-1").split("\r\n")
        status_line = rlines[0]
        rh = {k.strip().lower(): v.strip() for k, v in
              (ln.split(":", 1) for ln in rlines[1:] if ":" in ln)}
        rec.status = int(status_line.split(" ")[1])
        length = int(rh.get("content-length", "0")) if method != "HEAD" else 0
        if fault and fault.kind == "lie" and "content-range" in rh and rng:
            total = rh["content-range"].split("/")[1]
            rh["content-range"] = f"bytes {rng.removeprefix('bytes=')}/{total}"
        if fault and fault.kind == "badcr" and "content-range" in rh:
            span, total = rh["content-range"].removeprefix("bytes ").split("/")
            a, b = (int(x) + fault.by for x in span.split("-"))
            rh["content-range"] = f"bytes {a}-{b}/{total}"
        out = status_line + "\r\n" + "".join(
            f"{k.title()}: {v}\r\n" for k, v in rh.items() if k != "connection")
        c.sendall((out + "Connection: keep-alive\r\n\r\n").encode("latin-1"))
        pause = fault is not None and fault.kind == "stall" and fault.seconds > 0
        pause_at = fault.at if fault is not None and pause else None
        cut = fault.at if fault and fault.kind in ("drop", "truncate", "stall") and not pause \
            else None
        stall = bool(fault and fault.kind == "stall" and not pause)
        left = length
        corrupt = bool(fault and fault.kind == "corrupt")
        while left:
            data = ur.read(min(CHUNK, left))
            if not data:
                return False
            left -= len(data)
            if corrupt:
                data = bytes([data[0] ^ 0xFF]) + data[1:]
                corrupt = False
            if pause_at is not None and rec.sent + len(data) >= pause_at:
                head_n = pause_at - rec.sent  # up to the stall point, a pause, then the rest
                self._shape(head_n, conn)
                c.sendall(data[:head_n])
                rec.sent += head_n
                with self._lock:
                    self._sent_total += head_n
                    self.stalled += 1
                assert fault is not None
                if self._stop.wait(fault.seconds):
                    return False
                data, pause_at = data[head_n:], None
            if self.stall_total is not None:
                with self._lock:
                    room = max(0, self.stall_total - self._sent_total)
                if len(data) >= room:
                    data, cut, stall = data[:room], rec.sent + room, True
            if cut is not None and rec.sent + len(data) >= cut:
                data = data[: cut - rec.sent]
            if budget[0] is not None and len(data) >= budget[0]:
                data = data[: budget[0]]
                cut = rec.sent + len(data)
                rec.fault = "drop_every"
            self._shape(len(data), conn)
            c.sendall(data)
            rec.sent += len(data)
            with self._lock:
                self._sent_total += len(data)
            if budget[0] is not None:
                budget[0] -= len(data)
            if cut is not None and rec.sent >= cut:
                if stall:
                    with self._lock:
                        self.stalled += 1
                    self._stop.wait()
                return False
        return True

    def _shape(self, n: int, conn: _Bucket | None) -> None:
        _pace(n, [b for b in (conn, self._global) if b is not None])


def _read_head_bytes(f: BinaryIO) -> bytes:
    lines = []
    while True:
        line = f.readline(65536)
        if not line:
            raise _Closed
        if line in (b"\r\n", b"\n"):
            return b"".join(lines)
        lines.append(line)


@contextlib.contextmanager
def running(upstream_port: int, **kwargs: object) -> Iterator[FaultProxy]:
    proxy = FaultProxy(upstream_port, **kwargs).start()  # type: ignore[arg-type]
    try:
        yield proxy
    finally:
        proxy.close()
