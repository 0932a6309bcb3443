"""Helpers for the release tests and benchmark: build a release with the real
scripts/make-release, serve folders of it with nginx, and run the bootstrap the way a user
does (``curl -fsSL URL/install | sh -s -- ARGS``) in a clean environment."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from installer.release.bundle import render_install
from tests.support import nginx

ROOT = Path(__file__).resolve().parents[2]
MAKE_RELEASE = ROOT / "scripts" / "make-release"


@dataclass(frozen=True)
class Built:
    out: Path
    bundle: Path
    latest: Path
    install: Path
    version: str
    size: int
    sha256: str


def latest_fields(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines())


def make_release(out: Path, base_url: str, *extra: str) -> Built:
    r = subprocess.run([str(MAKE_RELEASE), "--out", str(out), "--base-url", base_url, *extra],
                       capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    f = latest_fields(out / "latest")
    return Built(out, out / f["file"], out / "latest", out / "install", f["version"],
                 int(f["size"]), f["sha256"])


def scenario(built: Built, dest: Path, base_url: str, *, bundle: bytes | None = None,
             latest: bytes | None = None) -> Path:
    """A served folder with the release's files (hard links) and an ``install`` made for
    ``base_url`` the way make-release makes it; ``bundle``/``latest`` replace those files."""
    dest.mkdir(parents=True)
    for p in (built.bundle, built.latest):
        os.link(p, dest / p.name)
    if bundle is not None:
        (dest / built.bundle.name).unlink()
        (dest / built.bundle.name).write_bytes(bundle)
    if latest is not None:
        (dest / "latest").unlink()
        (dest / "latest").write_bytes(latest)
    (dest / "install").write_bytes(render_install(built.version, base_url, built.bundle.name,
                                                  built.size, built.sha256))
    return dest


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    """A user's environment: no venv on PATH, own HOME, cache and TMPDIR under ``home``."""
    path = ":".join(p for p in os.environ.get("PATH", "/usr/bin:/bin").split(":")
                    if ".venv" not in p)
    for d in ("xdg", "tmp"):
        (home / d).mkdir(parents=True, exist_ok=True)
    env = {"PATH": path, "HOME": str(home), "XDG_CACHE_HOME": str(home / "xdg"),
           "TMPDIR": str(home / "tmp"), "LANG": "C.UTF-8"}
    env.update(extra)
    return env


@dataclass(frozen=True)
class Run:
    rc: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def err_lines(self) -> list[str]:
        return [ln for ln in self.stderr.splitlines() if ln.strip()]


def curl_sh(url: str, env: dict[str, str], *args: str, timeout: float = 900,
            user: int | None = None) -> Run:
    """``curl -fsSL URL | sh -s -- ARGS`` (as ``user`` via setpriv when given)."""
    quoted = " ".join("'" + a.replace("'", "'\\''") + "'" for a in args)
    line = f"curl -fsSL '{url}' | sh -s -- {quoted}"
    argv = ["sh", "-c", line]
    if user is not None:
        argv = [shutil.which("setpriv") or "setpriv", f"--reuid={user}", f"--regid={user}",
                "--clear-groups", *argv]
    t0 = time.monotonic()
    r = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout,
                       stdin=subprocess.DEVNULL)
    return Run(r.returncode, r.stdout, r.stderr, time.monotonic() - t0)


@dataclass(frozen=True)
class Served:
    server: nginx.Nginx
    root: Path
    built: Built

    def url(self, sub: str) -> str:
        return self.server.url(sub)

    def requests_for(self, sub: str) -> list[str]:
        return [ln for ln in self.server.log_lines() if f" /{sub}/" in ln]


#: Paths under the served root that answer 500 (nginx cannot fail a static file otherwise).
FAIL_500 = """
        location = /e500-latest/latest { return 500; }
        location ~ ^/e500-bundle/pippin-.*\\.tar\\.gz$ { return 500; }
"""


@pytest.fixture(scope="session")
def served_release(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A release built by scripts/make-release (host runtime) into ``<root>/rel``, with
    nginx serving ``<root>`` on loopback for the whole session."""
    root = tmp_path_factory.mktemp("release-www")
    prefix = tmp_path_factory.mktemp("release-nginx")
    with nginx.serve(root, prefix, extra=FAIL_500) as server:
        built = make_release(root / "rel", server.url("rel"))
        yield Served(server, root, built)
