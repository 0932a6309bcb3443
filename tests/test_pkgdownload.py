"""OS packages over parallel, resumable range requests (installer/pkgdownload.py, through
installer/ospackage.fetch_package), against real nginx and the fault proxy: the bytes arrive
whole over several connections; a server without Range gets one plain download; a download
killed -9 midway (a real process) continues from the bytes on disk; a file changed on the
server between runs starts over; a wrong SHA-256 deletes the download and says so."""

from __future__ import annotations

import fcntl
import functools
import hashlib
import http.server
import json
import logging
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from installer.errors import NetworkError
from installer.net.session import NetConfig, make_session
from installer.ospackage import fetch_package
from installer.pkgdownload import (
    NoRanges,
    cut,
    fetch_ranged,
    fetch_url,
    missing,
    partial_paths,
)
from tests.support import faultproxy, nginx
from tests.support.pkgfetch import entry_for

ROOT = Path(__file__).resolve().parents[1]
SIZE = 9 << 20


@pytest.fixture
def www(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    data = random.Random(14).randbytes(SIZE)
    (root / "pkg.zip").write_bytes(data)
    with nginx.serve(root, tmp_path / "nginx") as srv:
        yield srv, data


@pytest.fixture
def session():
    s = make_session(NetConfig(read_timeout=5.0, no_proxy=("127.0.0.1",)))
    yield s
    s.close()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def leftovers(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir()) if d.exists() else []


def test_missing_and_cut_cover_exactly_the_gaps():
    gaps = missing([(10, 20), (0, 5), (18, 30)], 100)
    assert gaps == [(5, 10), (30, 100)]
    parts = cut(gaps, 4, 8)
    assert sum(e - s for s, e in parts) == 75
    assert all(s < e for s, e in parts)
    assert parts[0] == (5, 10)
    assert missing([(0, 100)], 100) == []


def test_parallel_ranges_bring_the_whole_file(tmp_path, www, session):
    srv, data = www
    seen = []
    dest = tmp_path / "out.zip"
    got = fetch_ranged(srv.url("pkg.zip"), dest, session, sha256=sha(data), connections=4,
                       part_min=1 << 20, progress=lambda d, t: seen.append((d, t)))
    assert (got.size, got.network_bytes, got.resumed_bytes) == (len(data), len(data), 0)
    assert dest.read_bytes() == data
    assert seen[-1] == (len(data), len(data))
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)  # never goes backwards
    ranges = [ln for ln in srv.log_lines() if "/pkg.zip" in ln and " 206 " in ln]
    assert len(ranges) == 5, ranges  # the one-byte probe, then four parts
    assert leftovers(tmp_path) == ["nginx", "out.zip", "www"]  # no partial, no sidecar


def test_fetch_package_downloads_in_parallel_and_counts_network_bytes(tmp_path, www, session):
    srv, data = www
    seen = []
    got = fetch_package(entry_for(srv.url("pkg.zip"), sha(data)), session, tmp_path / "c",
                        lambda d, t: seen.append((d, t)), connections=3)
    assert got.path.read_bytes() == data
    assert got.network_bytes == len(data)
    assert seen[-1] == (len(data), len(data))
    assert len([ln for ln in srv.log_lines() if " 206 " in ln]) == 4
    again = fetch_package(entry_for(srv.url("pkg.zip"), sha(data)), session, tmp_path / "c")
    assert again.network_bytes == 0  # the verified cached copy


def test_bundled_package_is_not_counted_as_downloaded(tmp_path, session):
    """A bundle's package is a local file: copied, verified, and 0 network bytes."""
    data = random.Random(3).randbytes(100_000)
    src = tmp_path / "stick" / "os" / "pkg.zip"
    src.parent.mkdir(parents=True)
    src.write_bytes(data)
    got = fetch_package(entry_for(str(src), sha(data)), session, tmp_path / "cache")
    assert got.path.read_bytes() == data
    assert got.network_bytes == 0


def _plain_server(root: Path):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


def test_server_without_ranges_gets_one_plain_download(tmp_path, session):
    """python's http.server answers a Range request with 200 and the whole file."""
    root = tmp_path / "www"
    root.mkdir()
    data = random.Random(5).randbytes(3 << 20)
    (root / "f.zip").write_bytes(data)
    httpd = _plain_server(root)
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/f.zip"
        with pytest.raises(NoRanges, match="answered 200"):
            fetch_ranged(url, tmp_path / "out.zip", session, sha256=None)
        assert not (tmp_path / "out.zip").exists()
        seen = []
        got = fetch_url(url, tmp_path / "out.zip", session, sha256=sha(data),
                        progress=lambda d, t: seen.append((d, t)))
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert (tmp_path / "out.zip").read_bytes() == data
    assert got.network_bytes == len(data)
    assert seen[-1] == (len(data), len(data))
    assert leftovers(tmp_path) == ["out.zip", "www"]


def test_wrong_sha256_deletes_the_download_and_says_so(tmp_path, www, session):
    srv, _ = www
    dest = tmp_path / "c" / "pkg.zip"
    with pytest.raises(NetworkError, match=r"does not match the catalog's .*; deleted the "
                       "download") as ei:
        fetch_package(entry_for(srv.url("pkg.zip"), "0" * 64), session, dest.parent)
    assert "\n" not in ei.value.message
    assert leftovers(dest.parent) == []  # nothing kept: no file, no partial, no sidecar


def test_failed_download_resumes_from_its_record(tmp_path, www, session):
    """Each part's answer dropped after 1 MiB, then 503s, no retries: the run fails, leaving
    a partial file and its record; the next run (the proxy healthy again) fetches only the
    rest."""
    srv, data = www
    dest = tmp_path / "c" / "pkg.zip"
    dest.parent.mkdir(parents=True)
    drop, down = faultproxy.Fault("drop", at=1 << 20), faultproxy.Fault("status", code=503)
    with faultproxy.running(srv.port, schedule=lambda n, r: None if n == 0 else
                            drop if n <= 3 else down) as px:
        url = f"{px.url_base}/pkg.zip"
        with pytest.raises(NetworkError, match="gave up"):
            fetch_ranged(url, dest, session, sha256=None, connections=3, part_min=1 << 20,
                         retries=0)
        part, sidecar = partial_paths(dest)
        rec = json.loads(sidecar.read_text())
        have = sum(e - s for s, e in rec["done"])
        assert have >= 1 << 20
        assert rec["size"] == len(data)
        assert rec["etag"]
        for s, e in rec["done"]:  # what the record claims is really there
            assert part.read_bytes()[s:e] == data[s:e]
        px.schedule = faultproxy.none
        before = px.sent_bytes()
        got = fetch_ranged(url, dest, session, sha256=sha(data), connections=3,
                           part_min=1 << 20)
        second = px.sent_bytes() - before
    assert got.resumed_bytes == have
    assert got.network_bytes == len(data) - have
    assert second <= len(data) - have + 1
    assert dest.read_bytes() == data
    assert leftovers(dest.parent) == ["pkg.zip"]


def test_file_changed_on_the_server_between_runs_starts_over(tmp_path, www, session, caplog):
    srv, data = www
    dest = tmp_path / "c" / "pkg.zip"
    dest.parent.mkdir(parents=True)
    url = srv.url("pkg.zip")
    # a partial download of the old file, recorded with the old validator
    part, sidecar = partial_paths(dest)
    etag0 = _etag(session, url)
    part.write_bytes(data[: 1 << 20] + bytes(len(data) - (1 << 20)))
    sidecar.write_text(json.dumps({"url": url, "size": len(data), "etag": etag0,
                                   "last_modified": None, "done": [[0, 1 << 20]]}))
    got = fetch_ranged(url, dest, session, sha256=sha(data), connections=2, part_min=1 << 20)
    assert got.resumed_bytes == 1 << 20  # same file: the recorded bytes are kept
    assert dest.read_bytes() == data
    # now the server's file changes (same size, new mtime -> new ETag) under a partial
    new = random.Random(99).randbytes(len(data))
    www_file = srv.root / "pkg.zip"
    www_file.write_bytes(new)
    st = www_file.stat()
    os.utime(www_file, (st.st_atime, st.st_mtime + 10))
    dest.unlink()
    part.write_bytes(data[: 1 << 20] + bytes(len(data) - (1 << 20)))
    sidecar.write_text(json.dumps({"url": url, "size": len(data), "etag": etag0,
                                   "last_modified": None, "done": [[0, 1 << 20]]}))
    assert _etag(session, url) != etag0
    with caplog.at_level(logging.WARNING, logger="installer.pkgdownload"):
        got = fetch_ranged(url, dest, session, sha256=sha(new), connections=2,
                           part_min=1 << 20)
    assert got.resumed_bytes == 0
    assert got.network_bytes == len(new)
    assert dest.read_bytes() == new
    assert any("changed since the partial download; starting over" in r.getMessage()
               for r in caplog.records)


def _etag(session, url: str) -> str:
    r = session.head(url, timeout=5)
    return r.headers["ETag"]


def test_corrupted_partial_is_never_used(tmp_path, www, session):
    """Bytes on disk that the record claims but that rotted: the digest catches it, the
    download is deleted, and the next run starts clean."""
    srv, data = www
    dest = tmp_path / "c" / "pkg.zip"
    dest.parent.mkdir(parents=True)
    url = srv.url("pkg.zip")
    part, sidecar = partial_paths(dest)
    bad = bytearray(data[: 1 << 20])
    bad[1234] ^= 0xFF
    part.write_bytes(bytes(bad) + bytes(len(data) - (1 << 20)))
    sidecar.write_text(json.dumps({"url": url, "size": len(data), "etag": _etag(session, url),
                                   "last_modified": None, "done": [[0, 1 << 20]]}))
    with pytest.raises(NetworkError, match="deleted the download"):
        fetch_package(entry_for(url, sha(data)), session, dest.parent)
    assert leftovers(dest.parent) == []
    got = fetch_package(entry_for(url, sha(data)), session, dest.parent)
    assert got.path.read_bytes() == data
    assert got.network_bytes == len(data)


def test_kill_9_midway_then_rerun_downloads_only_the_rest(tmp_path, www):
    """A real process fetching the package through a proxy that stalls after 4 MiB is
    killed -9 once its record holds at least 2 MiB; the rerun (same URL, proxy no longer
    stalling) fetches only what is missing and ends with the right file."""
    srv, data = www
    cache = tmp_path / "cache"
    stall = 4 << 20
    with faultproxy.running(srv.port, stall_total=stall, rtt=0.005) as px:
        url = f"{px.url_base}/pkg.zip"
        cmd = [sys.executable, "-m", "tests.support.pkgfetch", url, sha(data), str(cache)]
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        _, sidecar = partial_paths(cache / "pkg.zip")
        have = 0
        deadline = time.monotonic() + 30
        while have < (2 << 20) and time.monotonic() < deadline and proc.poll() is None:
            try:
                have = sum(e - s for s, e in json.loads(sidecar.read_text())["done"])
            except (OSError, ValueError):
                pass
            time.sleep(0.05)  # polling a file another process writes, bounded by deadline
        assert proc.poll() is None, proc.communicate()
        assert have >= 2 << 20
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        assert proc.returncode == -signal.SIGKILL
        assert not (cache / "pkg.zip").exists()
        px.stall_total = None
        before = px.sent_bytes()
        out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60,
                             check=False)
        second = px.sent_bytes() - before
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout)
    assert Path(res["path"]).read_bytes() == data
    assert res["network_bytes"] <= len(data) - have
    assert second < len(data) - (2 << 20) + (64 << 10)  # the proxy agrees: fewer bytes
    assert leftovers(cache) == ["pkg.zip"]


def test_file_changed_on_the_server_midway_keeps_nothing(tmp_path, www, session):
    """The server's file is replaced while a part is in flight; the proxy drops that answer,
    and the retry carries another ETag: the download stops and its partial is deleted."""
    srv, data = www
    dest = tmp_path / "c" / "pkg.zip"
    dest.parent.mkdir(parents=True)
    changed = []

    def change(_done: int, _total: int) -> None:
        if not changed:
            f = srv.root / "pkg.zip"
            f.write_bytes(random.Random(7).randbytes(len(data)))
            os.utime(f, (1_000_000_000, 1_000_000_000))
            changed.append(True)

    drop = faultproxy.Fault("drop", at=1 << 20)
    with faultproxy.running(srv.port, schedule=lambda n, r: drop if n == 1 else None) as px, \
            pytest.raises(NetworkError, match="the file on the server changed during the "
                          "download"):
        fetch_ranged(f"{px.url_base}/pkg.zip", dest, session, sha256=sha(data),
                     connections=1, progress=change)
    assert changed
    assert leftovers(dest.parent) == []


def test_second_download_of_the_same_file_is_refused_while_one_runs(tmp_path, www, session):
    srv, data = www
    dest = tmp_path / "c" / "pkg.zip"
    dest.parent.mkdir(parents=True)
    part, _ = partial_paths(dest)
    with part.open("wb") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        with pytest.raises(NetworkError, match="another Pippin is downloading pkg.zip"):
            fetch_ranged(srv.url("pkg.zip"), dest, session, sha256=sha(data))
    got = fetch_ranged(srv.url("pkg.zip"), dest, session, sha256=sha(data))
    assert dest.read_bytes() == data
    assert got.network_bytes == len(data)


def test_cached_package_with_a_wrong_digest_is_deleted_and_fetched_again(tmp_path, www,
                                                                        session, caplog):
    srv, data = www
    cache = tmp_path / "c"
    cache.mkdir()
    (cache / "pkg.zip").write_bytes(data[:-1] + b"\0")
    with caplog.at_level(logging.WARNING, logger="installer.ospackage"):
        got = fetch_package(entry_for(srv.url("pkg.zip"), sha(data)), session, cache)
    assert got.path.read_bytes() == data
    assert got.network_bytes == len(data)
    assert [r.getMessage() for r in caplog.records] == [
        "package pkg.zip: the cached copy does not match the catalog's SHA-256; deleted it"]


@pytest.mark.parametrize("pinned", [True, False])
def test_resume_from_another_url_only_for_the_same_catalog_digest(tmp_path, www, session,
                                                                  pinned):
    """A partial download made through one URL (a mirror, the demo server on another port)
    continues from another only when the catalog's SHA-256 says it is the same file."""
    srv, data = www
    dest = tmp_path / "c" / "pkg.zip"
    dest.parent.mkdir(parents=True)
    want = sha(data) if pinned else None
    down = faultproxy.Fault("status", code=503)
    drop = faultproxy.Fault("drop", at=1 << 20)
    with faultproxy.running(srv.port, schedule=lambda n, r: None if n == 0 else
                            drop if n == 1 else down) as px, \
            pytest.raises(NetworkError, match="gave up"):
        fetch_ranged(f"{px.url_base}/pkg.zip", dest, session, sha256=want, connections=1,
                     retries=0)
    have = sum(e - s for s, e in json.loads(partial_paths(dest)[1].read_text())["done"])
    assert have >= 1 << 20
    got = fetch_ranged(srv.url("pkg.zip"), dest, session, sha256=want, connections=2)
    assert dest.read_bytes() == data
    assert got.resumed_bytes == (have if pinned else 0)
    assert got.network_bytes == len(data) - got.resumed_bytes
