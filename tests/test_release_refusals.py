"""The bootstrap refuses, in one line and without running anything from the bundle: a
tampered or truncated bundle, the script cut at any line boundary, 404/500 on either file,
a ``latest`` that names another digest, no network, off a Mac, not root, no Python 3.11.

"Nothing ran" is checked by what a started Pippin would leave: its log file under
``$XDG_CACHE_HOME/pippin/``; and the temporary directory must be gone (``$TMPDIR`` empty).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest

from tests.support import releasefix
from tests.support.nginx import free_port
from tests.support.releasefix import clean_env, curl_sh, scenario

served_release = releasefix.served_release
NOBODY = 65534


def nothing_ran(home: Path) -> None:
    assert not (home / "xdg" / "pippin").exists()  # no pippin process started (no log)
    assert list((home / "tmp").iterdir()) == []  # the temp dir is removed


def refused(r: releasefix.Run, line: str, home: Path) -> None:
    assert r.rc != 0
    assert r.err_lines == [line], r.stderr
    assert r.stdout == ""
    nothing_ran(home)


def env_for(tmp_path: Path, **kw: str) -> dict[str, str]:
    return clean_env(tmp_path / "home", PIPPIN_ALLOW_NON_MAC="1", **kw)


def test_tampered_bundle(served_release, tmp_path):
    b = served_release.built
    data = bytearray(b.bundle.read_bytes())
    data[len(data) // 2] ^= 0x01
    scenario(b, served_release.root / "tampered", served_release.url("tampered"),
             bundle=bytes(data))
    r = curl_sh(served_release.url("tampered/install"), env_for(tmp_path))
    have = hashlib.sha256(data).hexdigest()
    refused(r, f"pippin: {b.bundle.name} has SHA-256 {have}, expected {b.sha256} (altered in "
            "transfer or on the server); nothing was run", tmp_path / "home")


def test_truncated_bundle(served_release, tmp_path):
    b = served_release.built
    cut = b.bundle.read_bytes()[: b.size - 1000]
    scenario(b, served_release.root / "truncated", served_release.url("truncated"),
             bundle=cut)
    r = curl_sh(served_release.url("truncated/install"), env_for(tmp_path))
    refused(r, f"pippin: {b.bundle.name} is {len(cut)} bytes, expected {b.size} (cut short or "
            "altered in transfer); nothing was run", tmp_path / "home")


def test_latest_naming_another_digest(served_release, tmp_path):
    b = served_release.built
    other = "ab" * 32
    latest = b.latest.read_bytes().replace(b.sha256.encode(), other.encode())
    scenario(b, served_release.root / "otherdigest", served_release.url("otherdigest"),
             latest=latest)
    base = served_release.url("otherdigest")
    r = curl_sh(f"{base}/install", env_for(tmp_path))
    refused(r, f"pippin: {base}/latest names {b.bundle.name} with SHA-256 {other}, but this "
            f"script was made for {b.bundle.name} with {b.sha256}; nothing was run (fetch the "
            "install script again)", tmp_path / "home")
    assert not any(b.bundle.name in ln for ln in served_release.requests_for("otherdigest"))


@pytest.mark.parametrize("what", ["latest", "bundle"])
def test_404(served_release, tmp_path, what):
    b = served_release.built
    d = scenario(b, served_release.root / f"e404-{what}", served_release.url(f"e404-{what}"))
    (d / ("latest" if what == "latest" else b.bundle.name)).unlink()
    base = served_release.url(f"e404-{what}")
    r = curl_sh(f"{base}/install", env_for(tmp_path))
    name = "latest" if what == "latest" else b.bundle.name
    refused(r, f"pippin: cannot download {base}/{name}: HTTP 404", tmp_path / "home")


@pytest.mark.parametrize("what", ["latest", "bundle"])
def test_500(served_release, tmp_path, what):
    """releasefix.FAIL_500 makes nginx answer 500 for these two paths."""
    b = served_release.built
    scenario(b, served_release.root / f"e500-{what}", served_release.url(f"e500-{what}"))
    base = served_release.url(f"e500-{what}")
    r = curl_sh(f"{base}/install", env_for(tmp_path))
    name = "latest" if what == "latest" else b.bundle.name
    refused(r, f"pippin: cannot download {base}/{name}: HTTP 500", tmp_path / "home")


def test_404_on_the_install_script_itself(served_release, tmp_path):
    url = served_release.url("nowhere/install")
    r = curl_sh(url, env_for(tmp_path))
    # curl -f says why in one line; sh reads an empty script and runs nothing (the pipe's
    # status is sh's: 0; `set -o pipefail` would make it curl's)
    assert r.err_lines == ["curl: (22) The requested URL returned error: 404"]
    nothing_ran(tmp_path / "home")


def test_no_network(served_release, tmp_path):
    """PIPPIN_BASE at a port where nothing listens: one line naming the URL."""
    base = f"http://127.0.0.1:{free_port()}/rel"
    r = curl_sh(served_release.url("rel/install"), env_for(tmp_path, PIPPIN_BASE=base))
    refused(r, f"pippin: cannot download {base}/latest: could not connect (no network, or "
            "the server is down)", tmp_path / "home")


def test_proxy_variables_reach_curl(served_release, tmp_path):
    """http_proxy is honoured: with a proxy that is down, the bootstrap's download fails
    (the script itself is fed to sh directly, as if fetched before the proxy was set)."""
    env = env_for(tmp_path, http_proxy=f"http://127.0.0.1:{free_port()}")
    r = subprocess.run(["sh", "-s"], input=served_release.built.install.read_bytes(), env=env,
                       capture_output=True, timeout=60)
    run = releasefix.Run(r.returncode, r.stdout.decode(), r.stderr.decode(), 0.0)
    refused(run, f"pippin: cannot download {served_release.url('rel')}/latest: could not "
            "connect (no network, or the server is down)", tmp_path / "home")


def test_script_cut_at_every_line_boundary(served_release, tmp_path):
    """A download cut short runs nothing: each prefix of whole lines, fed to sh."""
    b = served_release.built
    lines = b.install.read_bytes().splitlines(keepends=True)
    home = tmp_path / "home"
    env = env_for(tmp_path)
    before = len(served_release.server.log_lines())
    for n in range(len(lines)):
        r = subprocess.run(["sh", "-s"], input=b"".join(lines[:n]), env=env,
                           capture_output=True, timeout=60)
        err = r.stderr.decode().splitlines()
        if n <= 1:  # nothing but the #! line: an empty script
            assert (r.returncode, err) == (0, []), n
            continue
        assert r.returncode != 0, n
        assert err[-1] == ("pippin: this install script is incomplete (cut short while "
                           "downloading); nothing was run, fetch it again"), (n, err)
        assert len(err) <= 2, (n, err)  # a shell syntax error may come first
        nothing_ran(home)
    assert len(served_release.server.log_lines()) == before  # no download was started


def test_off_a_mac_without_the_override(served_release, tmp_path):
    env = clean_env(tmp_path / "home")
    r = curl_sh(served_release.url("rel/install"), env)
    u = os.uname()
    refused(r, f"pippin: Pippin installs onto Apple Silicon Macs, not {u.sysname} {u.machine} "
            "(set PIPPIN_ALLOW_NON_MAC=1 to try it on a simulated Mac)", tmp_path / "home")


def test_not_root_names_the_sudo_line(served_release, tmp_path):
    home = tmp_path / "home"
    env = env_for(tmp_path)
    home.chmod(0o777)
    for d in ("xdg", "tmp"):
        (home / d).chmod(0o777)
    url = served_release.url("rel/install")
    r = curl_sh(url, env, "--dry-run", "--name", "Bob's Linux", user=NOBODY)
    refused(r, f"pippin: the installer needs root; run: curl -fsSL {served_release.url('rel')}"
            "/install | sudo sh -s -- --dry-run --name 'Bob'\\''s Linux'", home)


def python_shims(tmp_path: Path, body: str) -> str:
    """A PATH dir whose python3, python3.11, python3.12 and python3.13 all run ``body``."""
    shim = tmp_path / "shim"
    shim.mkdir()
    for name in ("python3", "python3.11", "python3.12", "python3.13"):
        (shim / name).write_text("#!/bin/sh\n" + body)
        (shim / name).chmod(0o755)
    return str(shim)


def test_no_python_311(served_release, tmp_path):
    """No runtime in the bundle and only an old python3 on PATH."""
    shim = python_shims(tmp_path, 'case "$*" in *version_info*) exit 1 ;; '
                        "*python_version*) echo 3.9.6 ;; esac\n")
    env = env_for(tmp_path)
    env["PATH"] = f"{shim}:{env['PATH']}"
    r = curl_sh(served_release.url("rel/install"), env)
    refused(r, "pippin: Pippin needs Python 3.11 or newer: this bundle carries no runtime for "
            "this machine and python3 is 3.9.6 (install Python 3.11+, e.g. from python.org)",
            tmp_path / "home")


def test_mirror_is_checked_against_its_latest(served_release, tmp_path):
    """PIPPIN_BASE elsewhere: the bundle must match that server's `latest`."""
    b = served_release.built
    data = bytearray(b.bundle.read_bytes())
    data[100] ^= 0xFF
    scenario(b, served_release.root / "mirror", served_release.url("mirror"),
             bundle=bytes(data))
    base = served_release.url("mirror")
    r = curl_sh(served_release.url("rel/install"), env_for(tmp_path, PIPPIN_BASE=base))
    refused(r, f"pippin: {b.bundle.name} has SHA-256 {hashlib.sha256(data).hexdigest()}, "
            f"expected {b.sha256} (altered in transfer or on the server); nothing was run",
            tmp_path / "home")
    assert any(f"GET /mirror/{b.bundle.name} " in ln
               for ln in served_release.requests_for("mirror"))


@pytest.mark.parametrize(("n", "latest"), list(enumerate([
    b"version=0.1.0\nfile=../../etc/passwd\nsize=1\nsha256=" + b"a" * 64 + b"\n",
    b"version=0.1.0\nfile=pippin-0.1.0.tar.gz\nsize=12x\nsha256=" + b"a" * 64 + b"\n",
    b"version=0.1.0\nfile=pippin-0.1.0.tar.gz\nsize=12\nsha256=" + b"a" * 63 + b"\n",
    b"<html>not found</html>\n",
])))
def test_hostile_latest_on_a_mirror(served_release, tmp_path, n, latest):
    b = served_release.built
    name = f"hostile{n}"
    scenario(b, served_release.root / name, served_release.url(name), latest=latest)
    base = served_release.url(name)
    r = curl_sh(served_release.url("rel/install"), env_for(tmp_path, PIPPIN_BASE=base))
    refused(r, f"pippin: {base}/latest is not a Pippin release index (version, file, size, "
            "sha256); nothing was run", tmp_path / "home")


def test_no_python_the_wheels_fit(served_release, tmp_path):
    """Pythons >= 3.11 that the bundle has no wheels for (e.g. a newer CPython): every one
    is tried, then one line says why the last one failed."""
    shim = python_shims(tmp_path, 'case "$*" in *version_info*) exit 0 ;; esac\n'
                        'echo "ERROR: No matching distribution found for pylzss==0.3.4" >&2\n'
                        "exit 1\n")
    env = env_for(tmp_path)
    env["PATH"] = f"{shim}:{env['PATH']}"
    r = curl_sh(served_release.url("rel/install"), env)
    refused(r, "pippin: cannot install the bundle's wheels with any Python here; "
            f"{shim}/python3.11: ERROR: No matching distribution found for pylzss==0.3.4",
            tmp_path / "home")


def test_mirror_bundle_larger_than_its_latest_says(served_release, tmp_path):
    """A server that sends more than the index announced is cut off, not stored."""
    b = served_release.built
    scenario(b, served_release.root / "bigger", served_release.url("bigger"),
             bundle=b.bundle.read_bytes() + bytes(4096))
    base = served_release.url("bigger")
    r = curl_sh(served_release.url("rel/install"), env_for(tmp_path, PIPPIN_BASE=base))
    refused(r, f"pippin: cannot download {base}/{b.bundle.name}: larger than the {b.size} "
            "bytes expected", tmp_path / "home")
