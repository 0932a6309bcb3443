"""Benchmark: plan + sim execution of a full install on a 512 GB sparse simulated Mac.

Prints, side by side: Pippin (sparse-aware writes, extent-based safety hashing) against a
naive baseline on the same image (every image byte written, unowned ranges read in full),
with the bytes actually written against the bytes the plan must write.
Run: .venv/bin/python tests/bench/bench_disk.py [--quick]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from installer.catalog import load_catalog  # noqa: E402
from installer.disk.plan import Choices, Space, plan_install  # noqa: E402
from installer.platform.base import DirPayloads  # noqa: E402
from installer.platform.journal import run_plan  # noqa: E402
from installer.platform.safety import unowned  # noqa: E402
from installer.platform.sim import SimBackend  # noqa: E402
from installer.platform.simmac import SimMac  # noqa: E402
from installer.platform.sparse import allocated_bytes, data_extents  # noqa: E402
from installer.sizes import GB, GiB, MiB, format_size  # noqa: E402

BLOCK = 4096


def nonzero_bytes(path: Path) -> int:
    """Bytes in non-zero 4 KiB blocks: what must reach the disk for this file."""
    n = 0
    with open(path, "rb") as f:
        while blk := f.read(BLOCK):
            if blk.count(0) != len(blk):
                n += len(blk)
    return n


def make_image(path: Path, size: int, data: int, rng: random.Random) -> None:
    """``size`` bytes, of which ``data`` bytes (in 1 MiB runs) are non-zero."""
    with open(path, "wb") as f:
        f.truncate(size)
        step = max(MiB, size // max(1, data // MiB))
        for off in range(0, size, step):
            if data <= 0:
                break
            f.seek(off)
            f.write(rng.randbytes(min(MiB, data)))
            data -= MiB


def metadata_bytes(tmp: Path, stub_size: int, esp_size: int) -> int:
    """What mkapfs and mkfs.fat write on fresh scratch files of the same sizes."""
    total = 0
    for argv, size in ((["mkapfs", "-L", "x"], stub_size), (["mkfs.fat", "-F", "32"], esp_size)):
        f = tmp / "scratch.img"
        with open(f, "wb") as fh:
            fh.truncate(size)
        subprocess.run([*argv, str(f)], check=True, capture_output=True)
        total += nonzero_bytes(f)
        f.unlink()
    return total


def naive_scan_rate(path: Path, sample: int) -> float:
    """Bytes/s of reading an image region in full (what a scan without SEEK_DATA costs)."""
    h = hashlib.sha256()
    t = time.perf_counter()
    with open(path, "rb") as f:
        left = sample
        while left > 0:
            buf = f.read(min(8 * MiB, left))
            if not buf:
                break
            h.update(buf)
            left -= len(buf)
    return sample / (time.perf_counter() - t)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="smaller images, smaller scan sample")
    args = ap.parse_args()
    rng = random.Random(4)
    boot_size, boot_data = (64 * MiB, 16 * MiB) if args.quick else (GiB, 256 * MiB)
    root_size, root_data = (256 * MiB, 32 * MiB) if args.quick else (4 * GiB, 512 * MiB)
    sample = GiB if args.quick else 4 * GiB

    tmp = Path(tempfile.mkdtemp(prefix="bench-disk-", dir=ROOT / ".cache"
                                if (ROOT / ".cache").is_dir() else None))
    try:
        pkg = tmp / "pkg"
        (pkg / "esp" / "m1n1").mkdir(parents=True)
        (pkg / "esp" / "m1n1" / "boot.bin").write_bytes(rng.randbytes(600 * 1024))
        make_image(pkg / "boot.img", boot_size, boot_data, rng)
        make_image(pkg / "root.img", root_size, root_data, rng)
        img = tmp / "mac.img"

        t0 = time.perf_counter()
        SimMac.create(img, device="j314sap", disk_size=512 * GB, macos_used=200 * GB)
        t_create = time.perf_counter() - t0
        cat = load_catalog(ROOT / "tests" / "fixtures" / "catalog" / "installer_data.json", "x")
        entry = cat.find("Fedora Asahi Remix 44 Server")

        t0 = time.perf_counter()
        backend = SimBackend(img)
        plan = plan_install(backend.read_model(), entry,
                            Choices(space=Space.RESIZE, resize_to="60%", size="max"))
        t_plan = time.perf_counter() - t0

        alloc0 = allocated_bytes(img)
        t0 = time.perf_counter()
        run_plan(backend, plan, DirPayloads(pkg), tmp / "journal.json")
        t_exec = time.perf_counter() - t0
        written = allocated_bytes(img) - alloc0

        from installer.catalog import STUB_SIZE

        esp = next(o for o in plan.ops if type(o).__name__ == "CreatePartition")
        required = (nonzero_bytes(pkg / "boot.img") + nonzero_bytes(pkg / "root.img")
                    + 600 * 1024 + metadata_bytes(tmp, STUB_SIZE, esp.size))
        ranges = unowned(img.stat().st_size, plan.owned)
        unowned_bytes = sum(e - s for s, e in ranges)
        fd = os.open(img, os.O_RDONLY)
        try:  # what one safety pass reads: the allocated extents of the unowned ranges
            scan_read = sum(e - s for r in ranges for s, e in data_extents(fd, *r))
        finally:
            os.close(fd)
        t0 = time.perf_counter()
        backend.snapshot(plan.owned)
        t_snapshot = time.perf_counter() - t0

        # naive baseline: every byte of each image written, unowned ranges read in full
        t0 = time.perf_counter()
        naive = tmp / "naive.img"
        with open(naive, "wb") as f:
            f.truncate(img.stat().st_size)
        starts = {o.ref: o.start for o in plan.ops if type(o).__name__ == "CreatePartition"}
        for op in plan.ops:
            if type(op).__name__ == "WriteImage":
                subprocess.run(["dd", f"if={pkg / op.image}", f"of={naive}", "bs=4M",
                                "conv=notrunc", "oflag=seek_bytes", f"seek={starts[op.ref]}",
                                "status=none"], check=True)
        t_naive_write = time.perf_counter() - t0
        naive_written = allocated_bytes(naive)
        rate = naive_scan_rate(img, sample)
        t_naive_scan = 2 * unowned_bytes / rate  # before and after, like the safety check

        print(f"disk: 512 GB sparse simulated Mac; plan: {len(plan.ops)} operations, "
              f"OS {format_size(plan.os_size)}")
        print(f"{'':34}{'pippin':>14}{'naive':>16}{'ratio':>10}")
        t_p = t_plan + t_exec
        t_n = t_naive_write + t_naive_scan
        print(f"{'plan + execute + verify (s)':34}{t_p:14.2f}{t_n:16.1f}{t_n / t_p:9.1f}x"
              f"   (naive scan estimated from a {format_size(sample)} sample at "
              f"{rate / 1e9:.2f} GB/s)")
        print(f"{'bytes written':34}{written:14,}{naive_written:16,}"
              f"{naive_written / max(1, written):9.1f}x")
        print(f"{'bytes the plan must write':34}{required:14,}")
        print(f"{'written / required':34}{written / required:14.3f}   (target <= 1.01)")
        print(f"{'image allocated after install':34}{allocated_bytes(img):14,}")
        print(f"{'safety pass: bytes read':34}{scan_read:14,}{unowned_bytes:16,}"
              f"{unowned_bytes / max(1, scan_read):9.0f}x")
        print(f"{'safety pass (s)':34}{t_snapshot:14.3f}{unowned_bytes / rate:16.1f}")
        print(f"{'plan (s)':34}{t_plan:14.4f}")
        print(f"{'create 512 GB sim (s)':34}{t_create:14.2f}")
        return 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
