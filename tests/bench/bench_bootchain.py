"""Benchmark: Pippin's boot chain (stage 1 → stage 2 → kernel) against booting the same
Debian arm64 kernel + initramfs directly with QEMU -kernel/-initrd, side by side.

Measured under `-icount shift=0` (one guest instruction = 1 ns of virtual time, so the
loaders' "at N us" lines and the kernel's printk clock count instructions), plus wall time
without icount, and the binary sizes against the 128 KiB stage-1 budget.
Run: .venv/bin/python tests/bench/bench_bootchain.py [--quick]
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from installer.bootobj import assemble  # noqa: E402
from installer.bootobj import vars as bvars  # noqa: E402
from tests.support import bootchain as bc  # noqa: E402
from tests.support import qemu  # noqa: E402

BOOTARGS = "console=ttyAMA0 panic=-1"
ICOUNT = ["-icount", "shift=0"]


def run_init_s(console: str) -> float:
    m = re.search(r"\[\s*([0-9.]+)\] Run /init", console)
    if not m:
        raise SystemExit("kernel did not reach /init:\n" + console[-2000:])
    return float(m.group(1))


def us(console: str, pattern: str) -> int:
    m = re.search(pattern + r" at (\d+) us", console)
    if not m:
        raise SystemExit(f"no '{pattern}' line:\n" + console[-2000:])
    return int(m.group(1))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="one wall-clock run instead of three")
    args = ap.parse_args()
    runs = 1 if args.quick else 3
    k = qemu.kernel_assets()
    with tempfile.TemporaryDirectory(dir=ROOT / ".cache") as tmp:
        work = Path(tmp)
        initrd = qemu.build_initramfs(work / "initrd.cpio", kernel=k, init=bc.CHOSEN_INIT)
        initrd_len = initrd.stat().st_size
        boot = assemble.assemble_stage2(assemble.Stage2Parts(
            stage2=bc.stage_bytes("stage2"), kernel=k.image.read_bytes(),
            initramfs=initrd.read_bytes(),
            variables=(bvars.Variable("chosen.bootargs", BOOTARGS),)))
        # The same chain with the kernel stored raw (`--compress none`: last payload,
        # formats.md §3): stage 2 then only copies it to a 2 MiB boundary.
        raw = assemble.assemble_stage2(assemble.Stage2Parts(
            stage2=bc.stage_bytes("stage2"), kernel=k.image.read_bytes(),
            compression=assemble.Compression.NONE, initramfs=initrd.read_bytes(),
            variables=(bvars.Variable("chosen.bootargs", BOOTARGS),)))
        disk = bc.chain_disk(work / "disk.img", {"m1n1/boot.bin": boot, "m1n1/raw.bin": raw})
        s1raw = work / "s1raw.bin"
        s1raw.write_bytes(assemble.assemble_stage1(bc.stage_bytes("stage1"), (
            bvars.Variable("chosen.asahi,efi-system-partition", bc.ESP_UUID),
            bvars.Variable("chainload", f"{bc.ESP_UUID};m1n1/raw.bin"))))
        s1 = work / "s1.bin"
        s1.write_bytes(assemble.assemble_stage1(bc.stage_bytes("stage1"),
                                                bvars.stage1_config(bc.ESP_UUID)))

        def direct(extra: list[str]) -> str:
            r = qemu.run_qemu(kernel=k.image, initrd=initrd, append=BOOTARGS, extra=extra,
                              timeout=600)
            assert "GUEST-INIT-DONE" in r.console, r.console[-2000:]
            return r.console

        def chain(extra: list[str], stage1: Path = s1) -> str:
            r = qemu.run_qemu(kernel=stage1, disks=[(disk, 512)], append="", extra=extra,
                              timeout=600)
            assert "GUEST-INIT-DONE" in r.console, r.console[-2000:]
            return r.console

        d = direct(ICOUNT)
        c = chain(ICOUNT)
        craw = chain(ICOUNT, s1raw)
        wall_d: list[float] = []
        wall_c: list[float] = []
        for _ in range(runs):
            t = time.monotonic()
            direct([])
            wall_d.append(time.monotonic() - t)
            t = time.monotonic()
            chain([])
            wall_c.append(time.monotonic() - t)

    s1_us = us(c, r"pippin stage1 \S+ \(\S+\)")
    s2_us = us(c, r"pippin stage2 \S+ \(\S+\)")
    entry_us = us(c, r"booting")
    k_direct = run_init_s(d) * 1e6
    k_chain = run_init_s(c) * 1e6
    print(f"boot.bin: {len(boot):,} bytes (gzip -{assemble.GZIP_LEVEL} kernel, "
          f"{k.image.stat().st_size:,} bytes raw; initramfs {initrd_len:,}); "
          f"raw-kernel boot.bin {len(raw):,} bytes")
    print(f"{'binary':<28}{'bytes':>12}{'budget':>12}")
    for name, budget in (("stage1", 128 * 1024), ("stage2", None)):
        size = len(bc.stage_bytes(name))
        print(f"{name + '.bin':<28}{size:>12,}{budget or '-':>12}")
    print()
    print("virtual time under -icount shift=0 (1 us = 1000 guest instructions)")
    print(f"{'phase':<40}{'us':>12}{'~insns':>16}")
    rows = [
        ("reset -> stage 1 entry", s1_us),
        ("stage 1 (vars, GPT, FAT, load)", s2_us - s1_us),
        ("stage 2 (scan, inflate, FDT)", entry_us - s2_us),
        ("reset -> kernel entry (chain total)", entry_us),
        ("kernel entry -> /init (chain)", int(k_chain)),
        ("kernel entry -> /init (direct -kernel)", int(k_direct)),
    ]
    for label, v in rows:
        print(f"{label:<40}{v:>12,}{v * 1000:>16,}")
    raw_us = us(craw, r"booting")
    print(f"{'reset -> kernel entry (raw kernel)':<40}{raw_us:>12,}{raw_us * 1000:>16,}")
    print(f"chain overhead / kernel boot to init: gzip kernel {entry_us / k_direct:.1%}, "
          f"raw kernel {raw_us / k_direct:.1%} (target <= 5%)")
    print()
    print(f"wall clock, {runs} run(s) each, to GUEST-INIT-DONE (TCG, no icount)")
    md, mc = min(wall_d), min(wall_c)
    print(f"{'direct -kernel/-initrd':<40}{md:>10.2f} s")
    print(f"{'pippin stage1 -> stage2 -> kernel':<40}{mc:>10.2f} s   ratio {mc / md:.2f}x")


if __name__ == "__main__":
    main()
