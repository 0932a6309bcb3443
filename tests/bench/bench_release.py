"""Benchmark: `curl -fsSL …/install | sh -s -- --dry-run` (release bundle over nginx on
loopback) against `scripts/pippin install --dry-run` from this checkout, side by side.

Measured: seconds from the start of the command to the plan on stdout (the installer's
first screen in --dry-run), for a first run (empty user cache: the demo site is generated)
and a second run (warm cache), plus the bundle's size and make-release's time.
Run: .venv/bin/python tests/bench/bench_release.py
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.support import nginx  # noqa: E402
from tests.support.releasefix import clean_env, make_release  # noqa: E402


def until_plan(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(seconds until the plan's first line, seconds until exit)."""
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    first = None
    for line in proc.stdout:
        if first is None and line.lower().startswith("install "):
            first = time.monotonic() - t0
    err = proc.stderr.read() if proc.stderr else ""
    rc = proc.wait()
    total = time.monotonic() - t0
    if rc != 0 or first is None:
        raise SystemExit(f"{argv[:3]} failed ({rc}): {err[-2000:]}")
    return first, total


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.parse_args()
    with tempfile.TemporaryDirectory(dir=ROOT / ".cache") as tmp:
        work = Path(tmp)
        www = work / "www"
        www.mkdir()
        with nginx.serve(www, work / "ngx") as srv:
            t0 = time.monotonic()
            built = make_release(www / "rel", srv.url("rel"))
            build_s = time.monotonic() - t0
            url = srv.url("rel/install")
            line = f"curl -fsSL '{url}' | sh -s -- --target sim:{work}/a.img --dry-run"
            env_a = clean_env(work / "home-a", PIPPIN_ALLOW_NON_MAC="1")
            cold = until_plan(["sh", "-c", line], env_a)
            warm = until_plan(["sh", "-c", line], env_a)
        env_b = dict(os.environ, XDG_CACHE_HOME=str(work / "home-b"))
        argv = [str(ROOT / "scripts" / "pippin"), "install", "--target", f"sim:{work}/b.img",
                "--dry-run"]
        base_cold = until_plan(argv, env_b)
        base_warm = until_plan(argv, env_b)
    mb = built.size / 1e6
    print(f"make-release (wheel cache warm): {build_s:.1f} s; bundle {mb:.1f} MB "
          f"({built.bundle.name})")
    print(f"{'':28} {'curl | sh':>12} {'checkout':>12} {'ratio':>7}")
    for name, a, b in (("first run, plan printed", cold[0], base_cold[0]),
                       ("first run, exit", cold[1], base_cold[1]),
                       ("warm cache, plan printed", warm[0], base_warm[0]),
                       ("warm cache, exit", warm[1], base_warm[1])):
        print(f"{name:28} {a:10.2f} s {b:10.2f} s {a / b:6.2f}x")
    print("(curl | sh downloads and verifies the bundle and pip-installs its wheels on every "
          "run; the checkout's .venv already exists)")


if __name__ == "__main__":
    main()
