"""`pippin install` killed -9 while it downloads the OS package, then run again: the rerun
continues from the bytes already on disk (fewer bytes over the wire) and installs the right
package. Real processes, real nginx serving the demo site, the fault proxy in front of it
holding every package part after 512 KiB so the kill lands mid-download at a known state."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from installer.demo.site import CATALOG_NAME, DEMO_LINUX
from tests.support import faultproxy, installfix, nginx
from tests.support.installfix import new_sim

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.timeout(400)
demo_cache = installfix.demo_cache
demo_site = installfix.demo_site
PACKAGE = "pippin-demo-linux.zip"


def _install(tmp_path: Path, base: str, ipsw_base: str, sim: Path) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env.update(PYTHONPATH=str(ROOT), XDG_CACHE_HOME=str(tmp_path / "xdg"),
               IPSW_BASE=ipsw_base)
    argv = [sys.executable, "-m", "installer.cli", "install", "--catalog",
            f"{base}/{CATALOG_NAME}", "--os", DEMO_LINUX, "--target", f"sim:{sim}", "--yes"]
    return subprocess.Popen(argv, env=env, cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)


def _recorded(sidecar: Path) -> int:
    try:
        return sum(e - s for s, e in json.loads(sidecar.read_text())["done"])
    except (OSError, ValueError, KeyError):
        return 0


def test_install_killed_during_package_download_resumes(tmp_path, demo_site):
    size = next(demo_site.root.rglob(PACKAGE)).stat().st_size
    pkgdir = tmp_path / "xdg" / "pippin" / "packages"
    sidecar = pkgdir / f".{PACKAGE}.partial.json"
    hold = faultproxy.Fault("stall", at=512 << 10)  # until the client gives up (or dies)
    with nginx.serve(demo_site.root, tmp_path / "nginx") as srv, \
            faultproxy.running(srv.port) as px:
        # range requests after the one-byte probe are the package's parts
        px.schedule = lambda n, rng: hold if rng and rng != "bytes=0-0" else None
        sim = new_sim(tmp_path / "mac.img")
        proc = _install(tmp_path, px.url_base, srv.base_url, sim)
        deadline = time.monotonic() + 120
        while (_recorded(sidecar) < (2 << 20) and proc.poll() is None
               and time.monotonic() < deadline):
            time.sleep(0.1)  # polling the record another process writes, bounded
        assert proc.poll() is None, proc.communicate()
        have = _recorded(sidecar)
        assert have >= 2 << 20
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        assert not (pkgdir / PACKAGE).exists()  # nothing unverified took the name
        px.schedule = faultproxy.none
        before = px.sent_bytes()
        again = _install(tmp_path, px.url_base, srv.base_url, sim)
        out, err = again.communicate(timeout=300)
        second = px.sent_bytes() - before
    assert again.returncode == 0, err[-3000:]
    assert f"installed {DEMO_LINUX!r}" in out
    assert second < size - have + (64 << 10)  # the catalog, its .sig, the missing parts
    pkg = pkgdir / PACKAGE
    assert pkg.read_bytes() == next(demo_site.root.rglob(PACKAGE)).read_bytes()
    assert sorted(p.name for p in pkgdir.iterdir()) == [PACKAGE]
