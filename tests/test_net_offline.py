"""No network: every fetch fails within 5 s with one line naming the host it could not
reach (it took ~11 s: urllib3's connect retries times each caller's own attempts)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LIMIT = 5.0


@pytest.fixture
def refused_port():
    """A loopback port nobody listens on (bound, then closed)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.fixture
def blackhole_port():
    """A port whose listen queue is full and never accepted from: the kernel drops new
    SYNs, so a connect hangs as it does to a host behind a dead link."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(0)
    port = srv.getsockname()[1]
    fillers = []
    for _ in range(8):  # fill the accept queue (backlog 0 still admits one or two)
        c = socket.socket()
        c.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            c.connect(("127.0.0.1", port))
        fillers.append(c)
    time.sleep(0.2)  # let the handshakes that fit complete
    yield port
    for c in fillers:
        c.close()
    srv.close()


def _run(tmp_path, *args):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "XDG_CACHE_HOME": str(tmp_path / "xdg")}
    for k in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY",
              "ALL_PROXY"):
        env.pop(k, None)
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "installer.cli", *args], env=env,
                       capture_output=True, text=True, timeout=60)
    return r, time.monotonic() - t0


def _pippin(tmp_path, *args):
    """The command's result and the seconds it spent beyond starting up: the same
    interpreter start and imports (`pippin --help`) are timed just before and taken off,
    so a loaded machine's slow start does not count as waiting on the network."""
    _, start = _run(tmp_path, "--help")
    r, secs = _run(tmp_path, *args)
    return r, secs - start


def _one_line(r):
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 1, r.stderr
    assert len(lines) <= 2, r.stderr  # the error, and at most its hint
    assert "Traceback" not in r.stderr
    return lines[0]


@pytest.mark.parametrize("verb", ["ls", "fetch"])
def test_bug_offline_fetch_took_11_s_refused(tmp_path, refused_port, verb):
    url = f"http://127.0.0.1:{refused_port}/UniversalMac_13.5_22G90_Restore.ipsw"
    extra = ["--member", "BuildManifest.plist", "--out", str(tmp_path / "o")] \
        if verb == "fetch" else []
    r, secs = _pippin(tmp_path, "ipsw", verb, url, *extra)
    line = _one_line(r)
    assert line == f"pippin: error: cannot reach 127.0.0.1:{refused_port}: Connection refused"
    assert secs < LIMIT, secs


def test_offline_fetch_of_a_host_that_never_answers(tmp_path, blackhole_port):
    url = f"http://127.0.0.1:{blackhole_port}/UniversalMac_13.5_22G90_Restore.ipsw"
    r, secs = _pippin(tmp_path, "ipsw", "fetch", url, "--member", "BuildManifest.plist",
                      "--out", str(tmp_path / "o"))
    line = _one_line(r)
    assert line == f"pippin: error: cannot reach 127.0.0.1:{blackhole_port}: " \
                   "connection timed out"
    assert secs < LIMIT, secs


def test_offline_catalog_and_unknown_host(tmp_path, refused_port):
    r, secs = _pippin(tmp_path, "install", "--dry-run", "--target",
                      f"sim:{tmp_path / 'none.img'}", "--catalog",
                      f"http://127.0.0.1:{refused_port}/installer_data.json")
    assert _one_line(r) == \
        f"pippin: error: cannot reach 127.0.0.1:{refused_port}: Connection refused"
    assert secs < LIMIT, secs
    r, secs = _pippin(tmp_path, "ipsw", "ls", "http://pippin-test.invalid/x.ipsw")
    assert _one_line(r).startswith("pippin: error: cannot reach pippin-test.invalid: ")
    assert secs < LIMIT, secs
