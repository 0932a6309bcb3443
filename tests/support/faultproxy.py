"""A fault-injecting, link-shaping HTTP proxy between the client under test and nginx.

It accepts both origin-form (``GET /x``, used as a reverse proxy) and absolute-form
(``GET http://host/x``, used through ``HTTP_PROXY``) requests, forwards them to one upstream
over a keep-alive connection per client connection, and can misbehave per request:

- ``Fault("status", code=503)``: answer an error instead;
- ``Fault("drop", at=N)``: send N body bytes, then close the connection;
- ``Fault("truncate", at=N)``: same, with full headers (a short body);
- ``Fault("stall", at=N)``: send N body bytes, then hang until the client gives up;
- ``Fault("full200")``: answer a Range request with ``200`` and the whole file;
- ``Fault("shift", by=K)``: serve the range K bytes later, with an honest Content-Range;
- ``Fault("lie", by=K)``: serve the range K bytes later, claiming the requested range;
- ``Fault("corrupt")``: flip one byte, headers correct.

``drop_every=N`` closes any connection after every N body bytes it carried. The shaping
options model a long path: one ``rtt`` per new connection and per request, a bandwidth
cap shared by all connections (``rate``) and one per connection (``conn_rate``), bytes/s.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

CHUNK = 32 << 10


@dataclass(frozen=True)
class Fault:
    kind: str
    at: int = 0
    by: int = 0
    code: int = 503


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


@dataclass
class Record:
    index: int
    range: str | None
    status: int
    sent: int
    fault: str | None


@dataclass
class _Bucket:
    rate: float
    t: float = 0.0

    async def take(self, n: int) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        start = max(now, self.t)
        self.t = start + n / self.rate
        delay = self.t - now
        if delay > 0:
            await asyncio.sleep(delay)


@dataclass
class FaultProxy:
    upstream_port: int
    schedule: Schedule = none
    drop_every: int | None = None
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
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._global = _Bucket(self.rate) if self.rate else None
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def url_base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def sent_bytes(self) -> int:
        with self._lock:
            return sum(r.sent for r in self.records)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._stop = asyncio.Event()
        server = self._loop.run_until_complete(
            asyncio.start_server(self._client, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._started.set()
        self._loop.run_until_complete(self._stop.wait())
        server.close()
        tasks = [t for t in asyncio.all_tasks(self._loop)]
        for t in tasks:
            t.cancel()
        self._loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        self._loop.run_until_complete(server.wait_closed())
        self._loop.close()

    def start(self) -> FaultProxy:
        self._thread.start()
        self._started.wait(10)
        return self

    def close(self) -> None:
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(10)

    # --- per connection ---------------------------------------------------------------

    async def _client(self, cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        self.connections += 1
        conn = _Bucket(self.conn_rate) if self.conn_rate else None
        budget = [self.drop_every]
        ur: asyncio.StreamReader | None = None
        uw: asyncio.StreamWriter | None = None
        try:
            if self.rtt:
                await asyncio.sleep(self.rtt)  # the TCP handshake
            while True:
                head = await cr.readuntil(b"\r\n\r\n")
                if ur is None or uw is None or ur.at_eof():
                    ur, uw = await asyncio.open_connection("127.0.0.1", self.upstream_port)
                if not await self._exchange(head, cr, cw, ur, uw, conn, budget):
                    break
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError,
                asyncio.CancelledError):
            pass  # client gone, or the proxy is shutting down
        finally:
            for w in (cw, uw):
                if w is not None:
                    w.close()
                    with contextlib.suppress(Exception):
                        await w.wait_closed()

    async def _exchange(self, head: bytes, cr: asyncio.StreamReader,
                        cw: asyncio.StreamWriter, ur: asyncio.StreamReader,
                        uw: asyncio.StreamWriter, conn: _Bucket | None,
                        budget: list[int | None]) -> bool:
        lines = head.decode("latin-1").split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        if "://" in target:
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
            await asyncio.sleep(self.rtt)
        if fault and fault.kind == "status":
            rec.status = fault.code
            body = b"fault"
            cw.write(f"HTTP/1.1 {fault.code} Fault\r\nContent-Length: {len(body)}\r\n"
                     "Connection: keep-alive\r\n\r\n".encode() + body)
            await cw.drain()
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
        uw.write((req + "Connection: keep-alive\r\n\r\n").encode())
        await uw.drain()
        status_line, rh = await _read_head(ur)
        rec.status = int(status_line.split(" ")[1])
        length = int(rh.get("content-length", "0")) if method != "HEAD" else 0
        if fault and fault.kind == "lie" and "content-range" in rh:
            total = rh["content-range"].split("/")[1]
            rh["content-range"] = f"{rng.removeprefix('bytes=') if rng else ''}/{total}"
            rh["content-range"] = "bytes " + rh["content-range"]
        out = status_line + "\r\n" + "".join(
            f"{k.title()}: {v}\r\n" for k, v in rh.items() if k != "connection")
        cw.write((out + "Connection: keep-alive\r\n\r\n").encode("latin-1"))
        cut = fault.at if fault and fault.kind in ("drop", "truncate", "stall") else None
        left = length
        corrupt = bool(fault and fault.kind == "corrupt")
        while left:
            data = await ur.read(min(CHUNK, left))
            if not data:
                return False
            left -= len(data)
            if corrupt:
                data = bytes([data[0] ^ 0xFF]) + data[1:]
                corrupt = False
            if cut is not None and rec.sent + len(data) >= cut:
                data = data[: cut - rec.sent]
            if budget[0] is not None and len(data) >= budget[0]:
                data = data[: budget[0]]
                cut = rec.sent + len(data)
            await self._shape(len(data), conn)
            cw.write(data)
            await cw.drain()
            rec.sent += len(data)
            if budget[0] is not None:
                budget[0] -= len(data)
            if cut is not None and rec.sent >= cut:
                if fault and fault.kind == "stall":
                    self.stalled += 1
                    await self._stop.wait()
                return False
        return True

    async def _shape(self, n: int, conn: _Bucket | None) -> None:
        if conn is not None:
            await conn.take(n)
        if self._global is not None:
            await self._global.take(n)


async def _read_head(r: asyncio.StreamReader) -> tuple[str, dict[str, str]]:
    head = (await r.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    hdrs = {k.strip().lower(): v.strip() for k, v in
            (ln.split(":", 1) for ln in head[1:] if ":" in ln)}
    return head[0], hdrs


@contextlib.contextmanager
def running(upstream_port: int, **kwargs: object) -> Iterator[FaultProxy]:
    proxy = FaultProxy(upstream_port, **kwargs).start()  # type: ignore[arg-type]
    try:
        yield proxy
    finally:
        proxy.close()
