"""`pippin ipsw …` as a user runs it: real processes, real nginx, exit codes, one-line errors."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from installer.ipsw import manifest, ota
from tests.support import ipswfix

ROOT = Path(__file__).resolve().parent.parent


def pippin(tmp_path, *args, env=None, timeout=120):
    e = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    e.update(PYTHONPATH=str(ROOT), XDG_CACHE_HOME=str(tmp_path / "xdg"), **(env or {}))
    return subprocess.run([sys.executable, "-m", "installer.cli", "ipsw", *args], env=e,
                          capture_output=True, text=True, timeout=timeout)


def test_ls_json_matches_the_zip(served, tmp_path):
    r = pippin(tmp_path, "ls", served.server.url(served.ipsw.path.name), "--json")
    assert r.returncode == 0, r.stderr
    rows = {row["name"]: row for row in json.loads(r.stdout)}
    with zipfile.ZipFile(served.ipsw.path) as zf:
        for zi in zf.infolist():
            assert rows[zi.filename]["size"] == zi.file_size
            assert rows[zi.filename]["compressed"] == zi.compress_size
    assert rows["BuildManifest.plist"]["compression"] == "deflate"
    assert any('"pippin/' in line for line in served.server.log_lines())  # User-Agent


def test_identities_and_needed(served, tmp_path):
    url = served.server.url(served.ipsw.path.name)
    r = pippin(tmp_path, "identities", url, "--json")
    assert r.returncode == 0, r.stderr
    ids = json.loads(r.stdout)["identities"]
    assert {(i["device_class"], i["board_id"], i["chip_id"]) for i in ids} == {
        ("j274ap", "0x22", "0x8103"), ("j314sap", "0x04", "0x6000"),
        ("j413ap", "0x28", "0x8112"), ("j316cap", "0x0A", "0x6001")}
    r = pippin(tmp_path, "needed", url, "--device-class", "j314sap", "--board", "0x04",
               "--chip", "0x6000", "--json")
    assert r.returncode == 0, r.stderr
    with zipfile.ZipFile(served.ipsw.path) as zf:
        bm = manifest.parse_build_manifest(zf.read("BuildManifest.plist"))
        names = zf.namelist()
    ident = manifest.select_identity(bm, board_id=4, chip_id=0x6000, device_class="j314sap")
    assert json.loads(r.stdout)["members"] == manifest.stub_members(names, ident, ota.IPSW)
    r = pippin(tmp_path, "needed", url, "--device-class", "j314sap", "--board", "0x04",
               "--chip", "0x6000", "--firmware")
    assert "kernelcache.release.j314" in r.stdout.split()


def test_fetch_with_mirror_override(served, tmp_path):
    """IPSW_BASE sends a CDN URL to the mirror; members arrive verified."""
    cdn = f"https://updates.cdn-apple.com/2099/x/{served.ipsw.path.name}"
    names = ["BuildManifest.plist", "kernelcache.release.j413"]
    (tmp_path / "list").write_text(names[1] + "\n")
    r = pippin(tmp_path, "fetch", cdn, "--member", names[0], "--members-from",
               str(tmp_path / "list"), "--out", str(tmp_path / "out"), "--json",
               env={"IPSW_BASE": served.server.base_url})
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["members"] == names
    ipswfix.assert_identical(tmp_path / "out", served.ipsw, names)
    # A local directory works as a mirror too.
    r = pippin(tmp_path, "ls", cdn, env={"IPSW_BASE": str(served.root)})
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize(
    ("args", "rc", "msg"),
    [
        (["ls", "{base}/missing.ipsw"], 1, "HTTP 404"),
        (["fetch", "{url}", "--member", "nope.bin", "--out", "{tmp}/o"], 1,
         "'nope.bin' is not a member"),
        (["fetch", "{url}", "--out", "{tmp}/o"], 2, "give --member"),
        (["needed", "{url}", "--device-class", "j314sap", "--board", "zz", "--chip", "1"], 2,
         "not a number"),
        (["ls", "{tmp}/absent.ipsw"], 1, "no such file"),
    ],
)
def test_errors_are_one_line(served, tmp_path, args, rc, msg):
    fmt = {"base": served.server.base_url, "url": served.server.url(served.ipsw.path.name),
           "tmp": str(tmp_path)}
    r = pippin(tmp_path, *[a.format(**fmt) for a in args])
    assert r.returncode == rc
    assert msg in r.stderr
    assert "Traceback" not in r.stderr
    if rc == 1:
        assert r.stderr.startswith("pippin: error: ")
        lines = r.stderr.splitlines()
        assert len(lines) == 1 or (len(lines) == 2 and lines[1].startswith("pippin: hint: "))
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_bug_make_test_ipsw_creates_the_directory_and_errors_in_one_line(tmp_path):
    """scripts/make-test-ipsw into a missing directory ended in a FileNotFoundError
    traceback; now the parent is created, the image appears only when complete, and an
    unwritable target is one line with exit 1."""
    def gen(*args):
        return subprocess.run([sys.executable, "-m", "tests.support.ipswgen", *args],
                              env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT,
                              capture_output=True, text=True, timeout=120)

    out = tmp_path / "new" / "x.ipsw"
    r = gen(str(out), "--size", "4M", "--decoy-size", "1M", "--ota")
    assert r.returncode == 0, r.stderr
    with zipfile.ZipFile(out) as zf:
        assert "AssetData/boot/BuildManifest.plist" in zf.namelist()
    assert sorted(p.name for p in out.parent.iterdir()) == ["x.ipsw"]
    (tmp_path / "file").write_text("")
    r = gen(str(tmp_path / "file" / "x.ipsw"))
    assert r.returncode == 1
    assert r.stderr.startswith("make-test-ipsw: error: cannot write ")
    assert len(r.stderr.strip().splitlines()) == 1


def test_bug_refused_connection_is_one_short_line(tmp_path):
    """A refused connection printed urllib3's 'Retrying …' warning for every attempt (18
    lines) and an error quoting its nested pool repr; now one line says why."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: connections are refused
        r = pippin(tmp_path, "ls", f"http://127.0.0.1:{port}/x.ipsw")
    assert r.returncode == 1
    assert r.stderr.splitlines() == [
        f"pippin: error: cannot reach 127.0.0.1:{port}: Connection refused",
        "pippin: hint: check the network connection and proxy settings"]
    assert "Retrying" in (tmp_path / "xdg" / "pippin" / "pippin.log").read_text()
