"""Restore-image fetching on a shaped link: Pippin vs naive remotezip, side by side.

A synthetic IPSW (tests/support/ipswgen) is served by nginx behind the shaping proxy
(tests/support/faultproxy): one RTT per connection and per request, a bandwidth cap shared
by all connections and a per-connection cap (one TCP flow on a long path cannot fill the
link). For each workload and link it fetches the same members three ways:

- block reader: a generic block cache in the style the issue describes for the best-known
  installer (one connection, aligned 1 MiB blocks, read-ahead doubling from 1 to 64 blocks
  while reads stay sequential, ``zipfile`` on top). It is this bench's own sketch of the
  idea, not that installer's code, so its figures only indicate the approach;
- naive remotezip: ``RemoteZip(url).read(name)`` member by member, one connection;
- exact ranges, 1 connection: Pippin's fetcher with ``connections=1`` (no splitting);
- Pippin: 8 connections, large members split, small neighbours coalesced.

ideal = needed bytes / link bandwidth + one RTT. Printed: wall time, wall / ideal, and
bytes sent / needed bytes. Not pass/fail. After the table, Pippin's per-connection timeline
for each case (where the time goes: the directory read, each connection's first request,
the requests, the uneven tail) from the fetcher's trace events.

    .venv/bin/python tests/bench/bench_ipsw.py [--quick] [--size 300M] [--only pippin]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import shutil
import signal
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import remotezip
import requests

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from installer.ipsw import manifest, ota  # noqa: E402
from installer.ipsw.cache import wait_released  # noqa: E402
from installer.ipsw.fetch import FetchOptions, TraceEvent, fetch_members  # noqa: E402
from installer.ipsw.member import DirectorySink, MemorySink  # noqa: E402
from installer.ipsw.ranges import PlanOptions  # noqa: E402
from installer.ipsw.remote import Archive, open_archive  # noqa: E402
from installer.net.session import NetConfig, make_session  # noqa: E402
from tests.support import faultproxy, ipswgen, nginx  # noqa: E402

MBIT = 1e6 / 8
LINKS = {
    "80ms, 100 Mbit/s, 20/conn": (0.080, 100 * MBIT, 20 * MBIT),
    "20ms, 100 Mbit/s, 50/conn": (0.020, 100 * MBIT, 50 * MBIT),
}


class BlockReader(io.RawIOBase):
    """A seekable file over HTTP in aligned 1 MiB blocks with a growing read-ahead."""

    def __init__(self, url: str, session: requests.Session, block: int = 1 << 20) -> None:
        self.url, self.s, self.block = url, session, block
        head = session.get(url, headers={"Range": "bytes=0-0"}, timeout=30)
        self.size = int(head.headers["Content-Range"].split("/")[1])
        self.blocks: dict[int, bytes] = {}
        self.pos, self.last, self.ahead = 0, -2, 1

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, off: int, whence: int = 0) -> int:
        self.pos = {0: off, 1: self.pos + off, 2: self.size + off}[whence]
        return self.pos

    def _fill(self, idx: int) -> None:
        self.ahead = min(64, self.ahead * 2) if idx == self.last + 1 else 1
        n = min(self.ahead, -(-self.size // self.block) - idx)
        lo, hi = idx * self.block, min(self.size, (idx + n) * self.block) - 1
        data = self.s.get(self.url, headers={"Range": f"bytes={lo}-{hi}"}, timeout=60).content
        for i in range(n):
            self.blocks[idx + i] = data[i * self.block:(i + 1) * self.block]
        self.last = idx + n - 1

    def readinto(self, b: Any) -> int:
        if self.pos >= self.size:
            return 0
        idx, off = divmod(self.pos, self.block)
        if idx not in self.blocks:
            self._fill(idx)
        chunk = self.blocks[idx][off:off + len(b)]
        b[:len(chunk)] = chunk
        self.pos += len(chunk)
        return len(chunk)


def blocks(url: str, names: list[str], out: Path) -> None:
    with requests.Session() as s:
        s.trust_env = False
        raw = BlockReader(url, s)
        with zipfile.ZipFile(io.BufferedReader(raw, 1 << 16)) as zf:
            for n in names:
                (out / hashlib.sha256(n.encode()).hexdigest()).write_bytes(zf.read(n))


def naive(url: str, names: list[str], out: Path) -> None:
    with requests.Session() as s:
        s.trust_env = False  # loopback only, whatever proxies the environment names
        rz = remotezip.RemoteZip(url, session=s)
        for n in names:
            data = rz.read(n)
            (out / hashlib.sha256(n.encode()).hexdigest()).write_bytes(data)
        rz.close()


class Timeline:
    """What one Pippin run did when: the directory read and every connection's steps."""

    def __init__(self) -> None:
        self.t0 = self.dir_end = self.done = 0.0
        self.events: list[TraceEvent] = []
        self.steals = 0

    def render(self, width: int = 64) -> list[str]:
        if not self.events:
            return []
        end = max(self.done, max(e.t for e in self.events)) - self.t0
        scale = width / max(end, 1e-9)
        rows = [f"  dir read  |{'#' * max(1, round((self.dir_end - self.t0) * scale)):<{width}}|"
                f" {self.dir_end - self.t0:5.2f}s"]
        finish = []
        dev = [e for e in self.events if e.conn < 0]
        if dev:
            cells = [" "] * width
            began = None
            for e in dev:
                t = e.t - self.t0
                if e.kind == "verify":
                    began = t
                elif e.kind == "delivered" and began is not None:
                    for i in range(int(began * scale), min(width, int(t * scale) + 1)):
                        cells[i] = "v"
            busy = sum(b.t - a.t for a, b in zip(dev, dev[1:], strict=False)
                       if a.kind == "verify" and b.kind == "delivered")
            last = max(e.t for e in dev if e.kind == "delivered") - self.t0
            marks = {e.kind: e.t - self.t0 for e in dev}
            rows.append(f"  members   |{''.join(cells)}| check+write {busy:5.2f}s, last "
                        f"{last:5.2f}s; rounds done {marks.get('round', 0):5.2f}s, cache "
                        f"released {marks.get('cache', 0):5.2f}s")
        for conn in sorted({e.conn for e in self.events if e.conn >= 0}):
            evs = [e for e in self.events if e.conn == conn]
            cells = [" "] * width
            sent = None
            got = 0
            first = None
            for e in evs:
                t = e.t - self.t0
                if e.kind == "request":
                    sent = t
                elif e.kind == "response" and sent is not None:
                    first = t if first is None else first
                    for i in range(int(sent * scale), min(width, int(t * scale) + 1)):
                        cells[i] = "~"
                    sent = t
                elif e.kind == "end" and sent is not None:
                    for i in range(int(sent * scale), min(width, int(t * scale) + 1)):
                        cells[i] = "="
                    got += e.end - e.start
                    sent = None
            last = evs[-1].t - self.t0
            finish.append(last)
            reqs = sum(e.kind == "request" for e in evs)
            rows.append(f"  conn {conn:<4} |{''.join(cells)}| first byte {first or 0:5.2f}s, "
                        f"{reqs:3d} req, {got / 1e6:6.1f} MB, done {last:5.2f}s")
        rows.append(f"  ~ request sent, waiting for the answer; = receiving; v checking and "
                    f"writing members. Tail: first connection idle at {min(finish):.2f}s, "
                    f"last byte {max(finish):.2f}s, fetch returned {self.done - self.t0:.2f}s; "
                    f"{self.steals} steals")
        return rows


def pippin(connections: int,
           timeline: Timeline | None = None) -> Callable[[str, list[str], Path], None]:
    def run(url: str, names: list[str], out: Path) -> None:
        s = make_session(NetConfig())
        t0 = time.monotonic()
        arc = open_archive(url, s, warm=connections)
        t_dir = time.monotonic()
        opts = FetchOptions(plan=PlanOptions(connections=connections))
        trace = timeline.events.append if timeline is not None else None
        res = fetch_members(arc, names, DirectorySink(out), session=s,
                            cache_root=out / ".cache", options=opts, trace=trace)
        if timeline is not None:
            timeline.t0, timeline.dir_end, timeline.steals = t0, t_dir, res.steals
            timeline.done = time.monotonic()
        s.close()

    return run


def workloads(arc: Archive) -> dict[str, list[str]]:
    sink = MemorySink()
    fetch_members(arc, ["BuildManifest.plist"], sink)
    bm = manifest.parse_build_manifest(sink.data["BuildManifest.plist"])
    ident = manifest.select_identity(bm, board_id=0x04, chip_id=0x6000, device_class="j314sap")
    names = arc.names()
    return {
        "firmware": manifest.firmware_members(names, ident, ota.IPSW, basesystem=False),
        "stub": manifest.stub_members(names, ident, ota.IPSW),
    }


def measure(srv: nginx.Nginx, image: Path, link: tuple[float, float, float],
            how: Callable[[str, list[str], Path], None], names: list[str],
            work: Path) -> tuple[float, int]:
    rtt, rate, conn_rate = link
    out = Path(tempfile.mkdtemp(dir=work))
    with faultproxy.running(srv.port, rtt=rtt, rate=rate, conn_rate=conn_rate) as px:
        t0 = time.monotonic()
        how(f"{px.url_base}/{image.name}", names, out)
        wall = time.monotonic() - t0
        sent = px.sent_bytes()
    wait_released()  # Pippin's cache is deleted in the background after the fetch returns
    shutil.rmtree(out)
    return wall, sent


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small image (~1 minute)")
    ap.add_argument("--size", type=ipswgen._size, default=None)
    ap.add_argument("--only", choices=["pippin"], help="only Pippin's column (faster)")
    ap.add_argument("--case", action="append", default=[],
                    help="only cases whose 'workload link' contains this (repeatable)")
    a = ap.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run cleanups (nginx)
    size = a.size or ((48 << 20) if a.quick else (300 << 20))
    work = ROOT / ".cache" / "bench-ipsw"
    shutil.rmtree(work, ignore_errors=True)
    (work / "www").mkdir(parents=True)
    image = work / "www" / "bench.ipsw"
    ipswgen.make_image(image, size=size, seed=7)
    local = open_archive(str(image))
    sets = workloads(local)
    cases = [("firmware", "80ms, 100 Mbit/s, 20/conn"), ("stub", "80ms, 100 Mbit/s, 20/conn"),
             ("firmware", "20ms, 100 Mbit/s, 50/conn"), ("stub", "20ms, 100 Mbit/s, 50/conn")]
    hows: list[tuple[str, Any]] = [
        ("1 MiB blocks, RA 1-64", blocks), ("naive remotezip", naive),
        ("exact ranges, 1 conn", pippin(1)), ("pippin, 8 conns", None)]
    if a.only:
        hows = hows[-1:]
    timelines: list[tuple[str, Timeline]] = []
    print(f"synthetic IPSW: {image.stat().st_size / 1e9:.2f} GB on disk incl. sparse decoy, "
          f"{size / 1e6:.0f} MB of real content")
    print(f"{'workload':<10} {'link':<27} {'needed':>9} {'ideal':>7} | " + " | ".join(
        f"{h:>26}" for h, _ in hows))
    with nginx.serve(work / "www", work / "nginx") as srv:
        for wl, link_name in cases:
            if a.case and not any(c in f"{wl} {link_name}" for c in a.case):
                continue
            names = sets[wl]
            needed = sum(local.get(n).end - local.get(n).start for n in names)
            rtt, rate, _ = LINKS[link_name]
            ideal = needed / rate + rtt
            cells = []
            for _, how in hows:
                if how is None:  # Pippin, traced
                    tl = Timeline()
                    timelines.append((f"{wl}, {link_name}", tl))
                    how = pippin(8, tl)
                wall, sent = measure(srv, image, LINKS[link_name], how, names, work)
                cells.append(f"{wall:6.1f}s {wall / ideal:5.2f}x {sent / needed:5.3f}xB")
            print(f"{wl:<10} {link_name:<27} {needed / 1e6:7.1f}MB {ideal:6.1f}s | "
                  + " | ".join(f"{c:>26}" for c in cells), flush=True)
    print("columns: wall time, wall/ideal, bytes sent/needed (ideal = needed/link + 1 RTT)")
    for title, tl in timelines:
        print(f"\nPippin timeline: {title}")
        print("\n".join(tl.render()))
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
