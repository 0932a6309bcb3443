"""Benchmark: `pippin install` of the demo Linux on the macOS code path (scripts/mac-standin:
diskutil & co. as shims acting on a simulated Mac) against the sim path, same answers, two
identical fresh simulated Macs, in one run: wall time (per stage too), bytes the install left
allocated in the image, and whether the bytes outside the plan's own ranges are identical.

Both run `python -m installer.cli install … --yes --json` as a subprocess (same startup
costs); the demo site is generated once beforehand (not timed).
Run: .venv/bin/python tests/bench/bench_mac.py [--disk-gb N] [--rounds N]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from installer.demo.site import DEMO_LINUX, ensure_site  # noqa: E402
from installer.platform.safety import hash_ranges, unowned  # noqa: E402
from installer.platform.simmac import SimMac, image_allocated  # noqa: E402
from installer.platform.simstate import facts_path, sidecar  # noqa: E402
from installer.sizes import GB, format_size  # noqa: E402
from tests.support.simbench import ASSETS, PREBUILT, stub_bytes  # noqa: E402


def env(xdg: Path) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if k not in ("INSTALLER_DATA", "IPSW_BASE")}
    e.update(XDG_CACHE_HOME=str(xdg), PYTHONPATH=str(ROOT), PIPPIN_ADMIN_PASSWORD="pw")
    return e


def install(prefix: list[str], xdg: Path, *extra: str) -> tuple[float, dict[str, object]]:
    argv = [*prefix, sys.executable, "-m", "installer.cli", "install", "--os", DEMO_LINUX,
            "--stage1", str(PREBUILT / "stage1.bin"), "--admin-user", "alice", "--yes",
            "--json", *extra]
    t0 = time.perf_counter()
    r = subprocess.run(argv, capture_output=True, text=True, env=env(xdg), cwd=ROOT)
    dt = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"install failed: {r.stderr.strip().splitlines()[-1:]}")
    doc: dict[str, object] = json.loads(r.stdout)
    return dt, doc


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--disk-gb", type=int, default=512)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    if not (ASSETS / ".complete").exists():
        print(f"skip: {DEMO_LINUX!r} needs scripts/fetch-test-assets")
        return
    with tempfile.TemporaryDirectory(prefix="bench-mac-", dir=ROOT / ".cache") as tmp:
        work = Path(os.environ.get("BENCH_MAC_KEEP") or tmp)
        xdg = work / "xdg"
        ensure_site(xdg / "pippin", prebuilt=PREBUILT, assets=ASSETS)
        base = work / "base.img"
        # One simulated Mac, copied for each run: mkapfs writes random UUIDs, so two
        # creations would differ byte for byte.
        SimMac.create(base, disk_size=args.disk_gb * GB)
        best: dict[str, tuple[float, dict[str, object], Path]] = {}
        for r in range(args.rounds):  # alternate; keep each path's fastest (the host is shared)
            for name in ("sim path", "mac path"):
                img = work / f"{name[:3]}-{r}.img"
                subprocess.run(["cp", "--sparse=always", str(base), str(img)], check=True)
                subprocess.run(["cp", "-a", str(sidecar(base)), str(sidecar(img))], check=True)
                subprocess.run(["cp", str(facts_path(base)), str(facts_path(img))], check=True)
                if name == "sim path":
                    t, d = install([], xdg, "--target", f"sim:{img}")
                else:
                    t, d = install([str(ROOT / "scripts" / "mac-standin"), "--sim", str(img),
                                    "--admin", "alice:pw", "--"], xdg)
                if name not in best or t < best[name][0]:
                    best[name] = (t, d, img)
        before = image_allocated(base)
        rows = []
        for name in ("sim path", "mac path"):
            t, d, img = best[name]
            rows.append((name, t, image_allocated(img) - before, stub_bytes(img), d["seconds"]))
        t_sim, t_mac = best["sim path"][0], best["mac path"][0]
        d_mac, mac, sim = best["mac path"][1], best["mac path"][2], best["sim path"][2]
        plan = d_mac["plan"]
        assert isinstance(plan, dict)
        owned = [tuple(r) for r in plan["owned"]]
        size = mac.stat().st_size
        ranges = unowned(size, owned)
        ha, hb = hash_ranges(mac, ranges), hash_ranges(sim, ranges)
        same = [a.digest for a in ha] == [b.digest for b in hb]
        for a, b in zip(ha, hb, strict=True):
            if a.digest != b.digest:
                print(f"differs: [{a.start}, {a.end})")
        print(f"demo Linux on copies of one fresh {args.disk_gb} GB simulated Mac, same "
              f"answers; fastest of {args.rounds} alternating runs per path")
        print(f"{'':10} {'wall':>8} {'image bytes':>12} {'stub files':>11}  stages (s)")
        for name, t, alloc, stub, secs in rows:
            assert isinstance(secs, dict)
            stages = ", ".join(f"{k} {v:.1f}" for k, v in secs.items())
            print(f"{name:10} {t:7.1f}s {format_size(alloc):>12} {format_size(stub):>11}  "
                  f"{stages}")
        print(f"mac/sim: wall {t_mac / t_sim:.2f}x, image bytes "
              f"{rows[1][2] / max(rows[0][2], 1):.3f}x, stub files "
              f"{rows[1][3] / max(rows[0][3], 1):.3f}x")
        print(f"bytes outside the plan's own ranges ({len(ranges)} ranges, "
              f"{format_size(sum(e - s for s, e in ranges))}): "
              f"{'identical' if same else 'DIFFERENT'}")
        argv_log = sidecar(mac) / "standin-argv.log"
        print(f"stand-in commands run: {len(argv_log.read_text().splitlines())}")


if __name__ == "__main__":
    main()
