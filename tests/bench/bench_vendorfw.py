"""Benchmark: `vendorfw extract` of a raw dump vs the plain I/O floor for the same work.

Input: an ESP ``asahi/`` directory (all_firmware.tar.gz + kernelcache, formats.md §8) built by
tests/support/fwtree.py; scale 11 is about 1,000 files / 50 MB, as in issue 13, and the run
is repeated at twice that to show that peak memory stays flat.

Measured side by side in one run, alternating, on the same input (wall time, peak RSS from
GNU time):

- Pippin: ``vendorfw extract asahi/ out/`` (unpack, collect, write firmware.cpio +
  firmware.tar + manifest.txt, fsync, atomic rename)
- floor: ``bsdtar -xzf`` of the dump, then ``bsdcpio -o --format newc`` and ``bsdtar -cf``
  of the unpacked tree (no compression, no fsync)

plus the per-phase split of Pippin's job (unpack, collect, package) from an in-process run.
Not pass/fail. Run: .venv/bin/python tests/bench/bench_vendorfw.py [--quick] [--runs N]
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.support.fwtree import make_asahi_dir  # noqa: E402
from vendorfw import rawdump  # noqa: E402
from vendorfw.build import write_vendorfw_dir  # noqa: E402
from vendorfw.collect import collect  # noqa: E402
from vendorfw.package import plan_package  # noqa: E402

VENDORFW = str(Path(sys.executable).parent / "vendorfw")
TIME = "/usr/bin/time"  # GNU time (Debian package "time")


def run_once(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, int]:
    """Wall seconds and peak RSS (KiB) of one run of ``argv``.

    Peak RSS comes from GNU time (its child's wait4), not from our own wait4: a child forked
    from this big Python process inherits our RSS high-water mark across exec.
    """
    stats = cwd / "time.out"
    t0 = time.perf_counter()
    proc = subprocess.run([TIME, "-f", "%M", "-o", str(stats), *argv], cwd=cwd, env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace")
        raise SystemExit(f"benchmark command failed: {argv}: {err[-500:]}")
    return elapsed, int(stats.read_text().split()[-1])


def phases(asahi: Path, out: Path, tmp: Path) -> tuple[float, float, float]:
    """Seconds of unpack, collect and package, in process (what `vendorfw extract` runs)."""
    t0 = time.perf_counter()
    with rawdump.open_source(asahi, tmp) as source:
        t1 = time.perf_counter()
        files, _problems = collect(source)
        t2 = time.perf_counter()
        write_vendorfw_dir(plan_package(files), out)
        t3 = time.perf_counter()
    shutil.rmtree(out)
    return t1 - t0, t2 - t1, t3 - t2


def measure(asahi: Path, work: Path, env: dict[str, str], runs: int) -> dict[str, object]:
    """Alternate Pippin and the floor ``runs`` times; fastest time, largest peak RSS.
    Outputs are removed between runs, outside the timing (both start from nothing)."""
    out, rt = work / "out", work / "rt"
    dump = asahi / rawdump.RAWDUMP_NAME
    floor = (f"bsdtar -xzf {dump} -C rt && cd rt && find . | bsdcpio -o --format newc "
             "--quiet > ../floor.cpio && bsdtar -cf ../floor.tar .")
    res: dict[str, list[tuple[float, int]]] = {"pippin": [], "floor": []}
    split: list[tuple[float, float, float]] = []
    for _ in range(runs):
        shutil.rmtree(out, ignore_errors=True)
        res["pippin"].append(run_once([VENDORFW, "extract", str(asahi), str(out),
                                       "--no-progress"], work, env))
        shutil.rmtree(rt, ignore_errors=True)
        rt.mkdir()
        res["floor"].append(run_once(["sh", "-c", floor], work, env))
        shutil.rmtree(out, ignore_errors=True)
        split.append(phases(asahi, out, work))
    shutil.rmtree(rt, ignore_errors=True)
    best = {k: (min(t for t, _ in v), max(m for _, m in v)) for k, v in res.items()}
    fastest_split = min(split, key=sum)
    return {"pippin": best["pippin"], "floor": best["floor"], "split": fastest_split}


def tree_size(asahi: Path) -> tuple[int, int]:
    files = total = 0
    with tempfile.TemporaryFile(dir=asahi) as spool:
        tree = rawdump.read_dump(asahi / rawdump.RAWDUMP_NAME, spool)
        files, total = tree.files, tree.unpacked
    return files, total


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a smaller dump, one run each")
    ap.add_argument("--runs", type=int, default=None)
    args = ap.parse_args()
    logging.disable(logging.WARNING)  # the in-process runs report the fixture's bad files
    base = 4 if args.quick else 11
    runs = args.runs or (1 if args.quick else 5)
    for tool in ("bsdcpio", "bsdtar", TIME):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} not found (scripts/debian-packages.txt)")
    (ROOT / ".cache").mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench-vendorfw-", dir=ROOT / ".cache") as tmp:
        work = Path(tmp)
        env = dict(os.environ, XDG_CACHE_HOME=str(work / "xdg"))
        rows = []
        for mult in (1, 2):
            scale = 1 + (base - 1) * mult
            asahi = work / f"asahi-{mult}x"
            make_asahi_dir(asahi, work / f"gen-{mult}x", seed=0, scale=scale)
            shutil.rmtree(work / f"gen-{mult}x")
            files, total = tree_size(asahi)
            dump_mb = (asahi / rawdump.RAWDUMP_NAME).stat().st_size / 1e6
            rows.append((mult, files, total, dump_mb, measure(asahi, work, env, runs)))
            shutil.rmtree(asahi)
        print(f"{'input':34} {'Pippin':>8} {'floor':>8} {'ratio':>6}   "
              f"{'unpack':>7} {'collect':>7} {'package':>7}   {'Pippin RSS':>10} "
              f"{'floor RSS':>9}")
        for mult, files, total, dump_mb, r in rows:
            (tp, mp), (tf, mf) = r["pippin"], r["floor"]  # type: ignore[misc]
            u, c, p = r["split"]  # type: ignore[misc]
            name = f"{mult}x: {files} files, {total / 1e6:.0f} MB ({dump_mb:.0f} MB .tar.gz)"
            print(f"{name:34} {tp:7.2f}s {tf:7.2f}s {tp / tf:5.2f}x   "
                  f"{u:6.2f}s {c:6.2f}s {p:6.2f}s   {mp / 1024:8.0f}MB {mf / 1024:7.0f}MB")
        m1, m2 = rows[0][4]["pippin"][1], rows[1][4]["pippin"][1]  # type: ignore[index]
        print(f"\nPippin peak RSS {m1 / 1024:.0f} MB at 1x, {m2 / 1024:.0f} MB at 2x input "
              f"({(m2 - m1) / 1024:+.0f} MB for {rows[1][2] / 1e6 - rows[0][2] / 1e6:+.0f} MB "
              "more input)")
        print(f"runs per case: {runs}, alternating (fastest time, largest peak RSS); Pippin "
              "fsyncs its outputs, the floor does not; phases from an in-process run; "
              "target: ratio <= 1.5x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
