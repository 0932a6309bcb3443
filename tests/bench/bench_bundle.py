"""Offline bundles on a shaped link (the link model of bench_ipsw: RTT per connection and per
request, a shared bandwidth cap, a per-connection cap), side by side in one run:

1. `pippin bundle create` of the demo catalog (both entries, j314sap) through the shaping
   proxy, against the ideal for its bytes: (catalog + packages + the needed members' spans)
   / link bandwidth + one RTT. Printed: wall, wall/ideal, bytes sent by the proxy / needed.
2. an online install of "Pippin demo Linux" through the same proxy vs the offline install
   of the same entry from the bundle (no proxy, no network use), each onto a fresh simulated
   Mac: wall time and the ratio, with the package + restore-image stages apart.

The demo site is generated beforehand (not timed); its restore image is replaced by a larger
synthetic one (tests/support/ipswgen, same file name) so the image part weighs in.

    .venv/bin/python tests/bench/bench_bundle.py [--quick]
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import shutil
import signal
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from installer.answers import Answers  # noqa: E402
from installer.bundle.create import BundleRequest, create_bundle  # noqa: E402
from installer.demo.site import (  # noqa: E402
    CATALOG_NAME,
    DEMO_LINUX,
    UEFI_ONLY,
    ensure_site,
    image_file_name,
)
from installer.install import InstallDeps, InstallRequest, install  # noqa: E402
from installer.ipsw.remote import open_archive  # noqa: E402
from installer.net.session import NetConfig, make_session  # noqa: E402
from installer.platform.base import SubprocessRunner  # noqa: E402
from installer.platform.simmac import SimMac  # noqa: E402
from installer.sizes import GB  # noqa: E402
from tests.support import faultproxy, ipswgen, nginx  # noqa: E402

MBIT = 1e6 / 8
LINKS = {
    "80ms, 100 Mbit/s, 20/conn": (0.080, 100 * MBIT, 20 * MBIT),
    "20ms, 100 Mbit/s, 50/conn": (0.020, 100 * MBIT, 50 * MBIT),
}
ASSETS = ROOT / ".cache" / "test-assets"
PREBUILT = ROOT / "bootchain" / "prebuilt"


def deps(cache: Path, **kw: object) -> InstallDeps:
    s = make_session(NetConfig(no_proxy=("127.0.0.1",)))
    return InstallDeps(session=s, runner=SubprocessRunner(), cache_dir=cache,
                       prebuilt=PREBUILT, demo_assets=ASSETS, **kw)  # type: ignore[arg-type]


def new_sim(path: Path) -> Path:
    SimMac.create(path, disk_size=64 * GB, macos_used=20 * GB)
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller restore image")
    a = ap.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run cleanups (nginx)
    logging.getLogger("installer").setLevel(logging.ERROR)  # the unpinned-catalog notice
    work = ROOT / ".cache" / "bench-bundle"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    site = ensure_site(work / "site-cache", prebuilt=PREBUILT, assets=ASSETS)
    www = work / "www"
    shutil.copytree(site.root, www)
    size = (48 << 20) if a.quick else (200 << 20)
    (www / image_file_name()).unlink()
    ipswgen.make_image(www / image_file_name(), size=size, seed=7)
    print(f"demo catalog {', '.join(site.entries)}; synthetic restore image with "
          f"{size / 1e6:.0f} MB of content")
    print(f"{'link':<27} {'needed':>9} {'ideal':>7} | {'bundle create':>26} | "
          f"{'online install':>15} {'(pkg+image)':>11} | {'offline install':>15} "
          f"{'(pkg+image)':>11} | {'offline/online':>14}")
    with nginx.serve(www, work / "nginx") as srv:
        for n, (name, (rtt, rate, conn_rate)) in enumerate(LINKS.items()):
            run = work / f"run{n}"
            run.mkdir()
            with faultproxy.running(srv.port, rtt=rtt, rate=rate, conn_rate=conn_rate) as px:
                base = px.url_base
                d = deps(run / "cache", env={"IPSW_BASE": base})
                req = BundleRequest(run / "stick", (UEFI_ONLY, DEMO_LINUX), ("j314sap",),
                                    catalog=f"{base}/{CATALOG_NAME}")
                t0 = time.monotonic()
                r = create_bundle(req, d)
                wall = time.monotonic() - t0
                sent = px.sent_bytes()
                img = r.manifest.images[0]
                arc = open_archive(str(www / Path(img.path).name))
                spans = sum(arc.get(m).end - arc.get(m).start for m in img.members)
                needed = sum(f.size for f in r.manifest.files
                             if not f.path.startswith("ipsw/")) + spans
                ideal = needed / rate + rtt
                online_d = deps(run / "cache-online", env={"IPSW_BASE": base})
                t0 = time.monotonic()
                on = install(InstallRequest(Answers(
                    target=f"sim:{new_sim(run / 'online.img')}", os=DEMO_LINUX,
                    catalog=f"{base}/{CATALOG_NAME}"), auto_space=True), online_d)
                online = time.monotonic() - t0
            off_d = dataclasses.replace(deps(run / "cache-offline"), bundle=run / "stick")
            t0 = time.monotonic()
            off = install(InstallRequest(Answers(target=f"sim:{new_sim(run / 'offline.img')}",
                                                 os=DEMO_LINUX), auto_space=True), off_d)
            offline = time.monotonic() - t0

            def fetch(res: object) -> float:
                s = getattr(res, "seconds", {})
                return float(s.get("package", 0.0) + s.get("restore image", 0.0))
            cell = f"{wall:6.1f}s {wall / ideal:5.2f}x {sent / needed:5.3f}xB"
            print(f"{name:<27} {needed / 1e6:7.1f}MB {ideal:6.1f}s | {cell:>26} | "
                  f"{online:14.1f}s {fetch(on):10.1f}s | {offline:14.1f}s "
                  f"{fetch(off):10.1f}s | {offline / online:13.2f}x", flush=True)
            shutil.rmtree(run, ignore_errors=True)
    print("bundle create: wall, wall/ideal, bytes sent/needed (ideal = needed/link + 1 RTT); "
          "installs: wall and the package + restore-image stages")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
