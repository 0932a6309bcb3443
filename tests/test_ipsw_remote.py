"""Reading a restore image's directory over HTTP (nginx) and from disk; hostile zips."""

from __future__ import annotations

import io
import socket
import struct
import threading
import zipfile
import zlib

import pytest
import requests

from installer.errors import NetworkError, RestoreImageError
from installer.ipsw.fetch import fetch_members
from installer.ipsw.member import DirectorySink, MemorySink
from installer.ipsw.remote import open_archive, resolve_source
from tests.support import ipswfix
from tests.support.ipswfix import fast_options
from tests.support.zipwriter import DEFLATED, ZipWriter, raw_entry

session = ipswfix.session  # fixture (``served`` comes from conftest.py)


def test_remote_directory_matches_zipfile_incl_zip64(served, session):
    arc = open_archive(served.server.url(served.ipsw.path.name), session)
    with zipfile.ZipFile(served.ipsw.path) as zf:
        infos = {i.filename: i for i in zf.infolist()}
    assert arc.size == served.ipsw.path.stat().st_size
    assert set(arc.names()) == set(infos)
    for m in arc.members:
        zi = infos[m.name]
        assert (m.start, m.compress_size, m.file_size, m.crc) == (
            zi.header_offset, zi.compress_size, zi.file_size, zi.CRC)
    # The decoy pushes everything after it beyond 4 GiB: ZIP64 offsets are really used.
    assert max(m.start for m in arc.members) > 1 << 32
    decoy = arc.get(served.ipsw.decoys[0])
    assert decoy.file_size == served.ipsw.sizes[decoy.name] >= 1 << 30


def test_local_path_and_file_url_read_the_same(served, session, tmp_path):
    remote = open_archive(served.server.url(served.ipsw.path.name), session)
    local = open_archive(str(served.ipsw.path))
    assert local.members == remote.members
    assert open_archive(f"file://{served.ipsw.path}").members == remote.members
    out = tmp_path / "out"
    fetch_members(local, ["BuildManifest.plist"], DirectorySink(out))
    assert (out / "BuildManifest.plist").read_bytes()[:6] == b"<?xml "


def test_ipsw_base_mirror_rewrites_only_the_directory(tmp_path):
    url = "https://updates.cdn-apple.com/2023/x/UniversalMac_13.5_22G74_Restore.ipsw"
    assert resolve_source(url, None) == url
    assert resolve_source(url, "http://mirror.lan/ipsw/") == (
        "http://mirror.lan/ipsw/UniversalMac_13.5_22G74_Restore.ipsw")
    assert resolve_source(url, str(tmp_path)) == str(
        tmp_path / "UniversalMac_13.5_22G74_Restore.ipsw")


def _zip(entries, *, raw=()):
    buf = io.BytesIO()
    zw = ZipWriter(buf)
    for name, data in entries:
        zw.add(name, data)
    for e in raw:
        zw.add_entry(e)
    zw.close()
    return buf.getvalue()


def _hostile_cases():
    ok = _zip([("a.bin", b"A" * 100), ("b.bin", b"B" * 100)])
    yield "garbage", b"this is not a zip file at all" * 10, "not a readable zip"
    yield "truncated", ok[: len(ok) - 30], "not a readable zip"
    yield "traversal", _zip([("../../etc/passwd", b"x")]), "hostile member name"
    yield "absolute", _zip([("/etc/passwd", b"x")]), "hostile member name"
    yield "inner-dotdot", _zip([("Firmware/../../x", b"x")]), "hostile member name"
    yield "backslash", _zip([("..\\x.bin", b"x")]), "hostile member name"
    yield "dot-part", _zip([("a/b", b"1"), ("a/./b", b"2")]), "hostile member name"
    yield "duplicate", _zip([("a", b"1"), ("a", b"2")]), "appears twice"
    yield "overlap", _zip([("a.bin", b"A" * 100)],
                          raw=[raw_entry("b.bin", offset=10, csize=50, usize=50)]), "overlap"
    yield "beyond-file", _zip([("a.bin", b"A" * 100)],
                              raw=[raw_entry("big.dmg", offset=0, csize=1 << 40,
                                             usize=1 << 40, zip64=True)]), "beyond"
    # Central directory offset pointing past the end of the file.
    bad = bytearray(ok)
    eocd = bad.rfind(b"PK\x05\x06")
    struct.pack_into("<I", bad, eocd + 16, len(ok) + 1000)
    yield "cd-offset", bytes(bad), "not a readable zip|beyond"


HOSTILE = list(_hostile_cases())


@pytest.mark.parametrize(("case", "data", "msg"), HOSTILE, ids=[c[0] for c in HOSTILE])
def test_hostile_zip_is_refused_locally_and_remotely(served, session, case, data, msg):
    path = served.root / f"hostile-{case}.zip"
    path.write_bytes(data)
    for source in (str(path), served.server.url(path.name)):
        with pytest.raises(RestoreImageError, match=msg):
            open_archive(source, session)


def test_bug_end_record_claiming_a_huge_directory_is_not_downloaded(served, session):
    """An end record whose central directory spans the whole (100 MiB) file made the
    directory parser fetch all of it into memory before failing on its magic."""
    path = served.root / "huge-cd.zip"
    with open(path, "wb") as f:
        zw = ZipWriter(f)
        zw.add("a.bin", b"A" * 100)
        f.seek(100 << 20)
        zw.close()
    data = bytearray(path.read_bytes()[-22:])
    size = path.stat().st_size
    struct.pack_into("<IIH", data, 12, size - 22, 0, 0)  # CD size, CD offset, comment
    with open(path, "r+b") as f:
        f.seek(size - 22)
        f.write(data)
    before = len(served.server.log_lines())
    with pytest.raises(RestoreImageError, match="read .*refusing"):
        open_archive(served.server.url(path.name), session)
    sent = sum(int(line.split()[-2]) for line in served.server.log_lines()[before:]
               if "huge-cd.zip" in line)
    assert sent < 1 << 20


def _fetch_one(data, name, tmp_path, served, session):
    path = served.root / f"h-{tmp_path.name}.zip"
    path.write_bytes(data)
    for source in (str(path), served.server.url(path.name)):
        arc = open_archive(source, session)
        out = tmp_path / "out"
        with pytest.raises(RestoreImageError) as ei:
            fetch_members(arc, [name], DirectorySink(out), session=session,
                          cache_root=tmp_path / "cache", options=fast_options())
        assert not (out / name).exists()  # never a half-written output
        yield ei.value.message


def test_wrong_crc_is_an_error_not_a_file(served, session, tmp_path):
    data = bytearray(_zip([("a.bin", b"A" * 5000)]))
    cd = data.rfind(b"PK\x01\x02")
    struct.pack_into("<I", data, cd + 16, zlib.crc32(b"other"))
    for msg in _fetch_one(bytes(data), "a.bin", tmp_path, served, session):
        assert "CRC-32" in msg


def test_local_header_naming_another_file(served, session, tmp_path):
    data = bytearray(_zip([("a.bin", b"A" * 100)]))
    data[30:35] = b"z.bin"
    for msg in _fetch_one(bytes(data), "a.bin", tmp_path, served, session):
        assert "local header names" in msg


def test_deflate_bomb_beyond_declared_size(served, session, tmp_path):
    buf = io.BytesIO()
    zw = ZipWriter(buf)
    zw.add("bomb.bin", bytes(50 << 20), method=DEFLATED)
    zw.entries[0].usize = 1000  # the directory lies about the size
    zw.close()
    for msg in _fetch_one(buf.getvalue(), "bomb.bin", tmp_path, served, session):
        assert "inflates beyond" in msg


def test_oversized_local_extra_field(served, session, tmp_path):
    buf = io.BytesIO()
    zw = ZipWriter(buf)
    zw.add("a.bin", b"A" * 100, extra_local=struct.pack("<HH", 0x7777, 4000) + bytes(4000))
    zw.add("b.bin", b"B" * 100)
    zw.close()
    sink = MemorySink()
    arc = open_archive(_put(served, tmp_path, buf.getvalue()))
    fetch_members(arc, ["b.bin"], sink)  # neighbours still fine
    assert sink.data["b.bin"] == b"B" * 100
    # The span to the next header covers it: readable (normal zips have no gaps).
    fetch_members(arc, ["a.bin"], sink)
    assert sink.data["a.bin"] == b"A" * 100


def _put(served, tmp_path, data):
    path = served.root / f"x-{tmp_path.name}.zip"
    path.write_bytes(data)
    return str(path)


def test_local_extra_field_overrunning_the_next_member(served, session, tmp_path):
    data = bytearray(_zip([("a.bin", b"A" * 100), ("b.bin", b"B" * 100)]))
    struct.pack_into("<H", data, 28, 60000)  # a.bin's local extra length
    for msg in _fetch_one(bytes(data), "a.bin", tmp_path, served, session):
        assert "overruns" in msg


def test_bug_nginx_that_lost_its_port_is_not_mistaken_for_ready(served, tmp_path,
                                                                   monkeypatch):
    """Two xdist workers' nginx could draw the same free port; the one that lost the bind
    used to take the winner's listening socket as its own and serve the wrong root."""
    from tests.support import nginx

    taken = iter([served.server.port])
    real = nginx.free_port
    monkeypatch.setattr(nginx, "free_port", lambda: next(taken, None) or real())
    root = tmp_path / "www"
    root.mkdir()
    (root / "mine.txt").write_text("mine")
    with nginx.serve(root, tmp_path / "prefix") as srv:
        assert srv.port != served.server.port
        assert requests.get(srv.url("mine.txt"), timeout=10).text == "mine"


@pytest.mark.parametrize("url", ["http://", "http://bad host/x.ipsw"])
def test_bug_malformed_url_fails_at_once(session, url):
    """A malformed URL was retried six times with backoff (3.5 s) before the same error."""
    sleeps: list[float] = []
    with pytest.raises(NetworkError) as ei:
        open_archive(url, session, sleep=sleeps.append)
    assert sleeps == []
    assert "attempts" not in ei.value.message


def test_server_that_hangs_up_is_named_in_one_line(session):
    """A server that accepts and closes: the error says so, without urllib3's reprs."""
    with socket.create_server(("127.0.0.1", 0)) as srv:
        port = srv.getsockname()[1]

        def hang_up():
            for _ in range(6):
                c, _ = srv.accept()
                c.recv(4096)
                c.close()

        t = threading.Thread(target=hang_up, daemon=True)
        t.start()
        with pytest.raises(NetworkError) as ei:
            open_archive(f"http://127.0.0.1:{port}/x.ipsw", session, sleep=lambda _s: None)
        t.join(10)
    assert ei.value.message == (f"GET http://127.0.0.1:{port}/x.ipsw last 65536 bytes: "
                                "Remote end closed "
                                "connection without response (after 6 attempts)")
