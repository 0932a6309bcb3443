"""Packages for a bundle over parallel range requests (installer/bundle/download.py), against
real nginx: the bytes arrive whole over several connections; a wrong SHA-256 keeps nothing;
a server that ignores Range (python's http.server) is reported as such for a plain
download; a location that cannot answer a range falls back too."""

from __future__ import annotations

import functools
import hashlib
import http.server
import random
import threading

import pytest

from installer.bundle.download import NoRanges, fetch_file
from installer.errors import NetworkError
from installer.net.session import NetConfig, make_session
from tests.support import nginx


@pytest.fixture
def www(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    data = random.Random(14).randbytes(9 << 20)
    (root / "pkg.zip").write_bytes(data)
    with nginx.serve(root, tmp_path / "nginx") as srv:
        yield srv, data


@pytest.fixture
def session():
    s = make_session(NetConfig(read_timeout=5.0, no_proxy=("127.0.0.1",)))
    yield s
    s.close()


def test_parallel_ranges_bring_the_whole_file(tmp_path, www, session):
    srv, data = www
    seen = []
    dest = tmp_path / "out.zip"
    n = fetch_file(srv.url("pkg.zip"), dest, session, sha256=hashlib.sha256(data).hexdigest(),
                   connections=4, part_min=1 << 20, progress=lambda d, t: seen.append((d, t)))
    assert n == len(data)
    assert dest.read_bytes() == data
    assert seen[-1] == (len(data), len(data))
    ranges = [ln for ln in srv.log_lines() if "/pkg.zip" in ln and " 206 " in ln]
    assert len(ranges) == 5, ranges  # the one-byte probe, then four parts


def test_wrong_sha256_keeps_nothing(tmp_path, www, session):
    srv, _ = www
    with pytest.raises(NetworkError, match="does not match the catalog's"):
        fetch_file(srv.url("pkg.zip"), tmp_path / "out.zip", session, sha256="0" * 64)
    assert list(tmp_path.iterdir()) == [tmp_path / "www", tmp_path / "nginx"]


def test_server_without_ranges_is_named_for_a_plain_download(tmp_path, session):
    (tmp_path / "f.zip").write_bytes(b"x" * 1000)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/f.zip"
        with pytest.raises(NoRanges, match="answered 200"):
            fetch_file(url, tmp_path / "out.zip", session, sha256=None)
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert not (tmp_path / "out.zip").exists()
