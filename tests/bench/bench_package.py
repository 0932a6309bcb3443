"""OS package download on a shaped link: the old single-connection download vs Pippin's
parallel ranged one (installer/pkgdownload.py, through ospackage.fetch_package), side by side.

The link model of bench_ipsw / bench_bundle: the shaping proxy (tests/support/faultproxy) in
front of nginx adds one RTT per connection and per request, caps the bandwidth shared by all
connections and the bandwidth of each connection (one TCP flow on a long path cannot fill
the link). A random "package" of --size bytes is fetched:

- single connection: the download ``fetch_package`` made before (one streaming GET, SHA-256
  on the fly, atomic rename), kept here as the baseline;
- Pippin: ``fetch_package`` (8 connections, parallel validated ranges, SHA-256 checked);
- Pippin, resumed: the same after a run that stopped halfway (its partial file and record
  kept), fetching only the missing half.

ideal = bytes / link bandwidth + one RTT. Printed: wall time, wall / ideal, bytes the proxy
sent / package size, and single / Pippin as a ratio. Not pass/fail.

    .venv/bin/python tests/bench/bench_package.py [--quick] [--size 64M]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import shutil
import signal
import sys
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from installer.net.session import NetConfig, make_session  # noqa: E402
from installer.ospackage import fetch_package  # noqa: E402
from installer.pkgdownload import partial_paths  # noqa: E402
from tests.support import faultproxy, nginx  # noqa: E402
from tests.support.pkgfetch import entry_for  # noqa: E402
from vendorfw.atomic import atomic_file  # noqa: E402

MBIT = 1e6 / 8
LINKS = {
    "80ms, 100 Mbit/s, 20/conn": (0.080, 100 * MBIT, 20 * MBIT),
    "20ms, 100 Mbit/s, 50/conn": (0.020, 100 * MBIT, 50 * MBIT),
}


def single_connection(url: str, dest: Path, session: requests.Session, sha256: str) -> int:
    """The package download as it was: one GET, hashed while written, renamed when good."""
    with session.get(url, stream=True, timeout=(10.0, 60.0),
                     headers={"Accept-Encoding": "identity"}) as resp:
        resp.raise_for_status()
        h = hashlib.sha256()
        done = 0
        with atomic_file(dest) as f:
            for chunk in resp.iter_content(1 << 20):
                h.update(chunk)
                f.write(chunk)
                done += len(chunk)
            if h.hexdigest() != sha256:
                raise RuntimeError("digest mismatch")
    return done


def size_arg(text: str) -> int:
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:].upper(), 1)
    return int(text.rstrip("KMGkmg")) * mult


def half_done(dest: Path, data: bytes, url: str, etag: str, last_modified: str) -> None:
    """What a run stopped halfway leaves: the first half on disk, recorded as complete."""
    part, sidecar = partial_paths(dest)
    half = len(data) // 2
    dest.parent.mkdir(parents=True, exist_ok=True)
    part.write_bytes(data[:half] + bytes(len(data) - half))
    sidecar.write_text(json.dumps({"url": url, "size": len(data), "etag": etag,
                                   "last_modified": last_modified, "done": [[0, half]]}))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a 16 MiB package")
    ap.add_argument("--size", type=size_arg, default=64 << 20, help="package size (64M)")
    a = ap.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run cleanups (nginx)
    size = (16 << 20) if a.quick else a.size
    work = ROOT / ".cache" / "bench-package"
    shutil.rmtree(work, ignore_errors=True)
    (work / "www").mkdir(parents=True)
    data = random.Random(11).randbytes(size)
    (work / "www" / "pkg.zip").write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    session = make_session(NetConfig(no_proxy=("127.0.0.1",)))
    print(f"package of {size / 1e6:.1f} MB; wall s (wall/ideal, sent/size)")
    print(f"{'link':<27} {'ideal':>6} | {'single connection':>19} | {'Pippin':>19} | "
          f"{'Pippin resumed':>19} | {'single/Pippin':>13}")
    with nginx.serve(work / "www", work / "nginx") as srv:
        head = session.head(srv.url("pkg.zip"), timeout=10)
        etag, lm = head.headers["ETag"], head.headers["Last-Modified"]
        for n, (name, (rtt, rate, conn_rate)) in enumerate(LINKS.items()):
            ideal = size / rate + rtt
            cells: list[str] = []
            walls: list[float] = []
            for how in ("single", "pippin", "resumed"):
                with faultproxy.running(srv.port, rtt=rtt, rate=rate, conn_rate=conn_rate) as px:
                    url = f"{px.url_base}/pkg.zip"
                    cache = work / f"run{n}-{how}"
                    cache.mkdir()
                    if how == "resumed":
                        half_done(cache / "pkg.zip", data, url, etag, lm)
                    t0 = time.monotonic()
                    if how == "single":
                        single_connection(url, cache / "pkg.zip", session, digest)
                    else:
                        fetch_package(entry_for(url, digest), session, cache, connections=8)
                    wall = time.monotonic() - t0
                    sent = px.sent_bytes()
                assert (cache / "pkg.zip").read_bytes() == data
                shutil.rmtree(cache)  # one run's copy on disk at a time
                walls.append(wall)
                cells.append(f"{wall:6.2f} ({wall / ideal:4.2f}, {sent / size:4.2f})")
            print(f"{name:<27} {ideal:6.2f} | {cells[0]:>19} | {cells[1]:>19} | "
                  f"{cells[2]:>19} | {walls[0] / walls[1]:12.2f}x", flush=True)
    session.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
