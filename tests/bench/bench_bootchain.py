"""Benchmark: Pippin's boot chain (stage 1 → stage 2 → kernel) against booting the same
Debian arm64 kernel + initramfs directly with QEMU -kernel/-initrd, side by side; then the
UEFI path (stage 1 → stage 2 → U-Boot → systemd-boot → Linux) against the direct-kernel
path the installer writes (raw kernel layout), both with the demo guest's initramfs.

Measured under `-icount shift=0` (one guest instruction = 1 ns of virtual time, so the
loaders' "at N us" lines and the kernel's printk clock count instructions), plus wall time
without icount, and the binary sizes against the 128 KiB stage-1 budget.
The UEFI comparison reads the guest's own clock: a tiny static arm64 program (built here
with the pinned Zig) prints CNTVCT_EL0 as /init starts (the counter counts from reset, so
ticks x 16 = instructions at QEMU's 62.5 MHz), and systemd-boot records its entry and
hand-off times (LoaderTimeInitUSec/ExecUSec, read from efivarfs by the guest).
Run: .venv/bin/python tests/bench/bench_bootchain.py [--quick] [--uefi-only]
"""

from __future__ import annotations

import argparse
import os
import re
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from installer.bootobj import assemble  # noqa: E402
from installer.bootobj import vars as bvars  # noqa: E402
from installer.demo import guest, media  # noqa: E402
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


COUNTER_ZIG = """const std = @import("std");
pub fn main() void {
    const c = asm volatile ("mrs %[r], cntvct_el0" : [r] "=r" (-> u64));
    const f = asm volatile ("mrs %[r], cntfrq_el0" : [r] "=r" (-> u64));
    var buf: [64]u8 = undefined;
    const s = std.fmt.bufPrint(&buf, "PIPPIN-COUNTER: {d} {d}\\n", .{ c, f }) catch return;
    _ = std.os.linux.write(1, s.ptr, s.len);
}
"""


def counter_program(work: Path) -> bytes:
    """A static aarch64 Linux program printing the counter (pinned Zig from .venv)."""
    (work / "cnt.zig").write_text(COUNTER_ZIG)
    env = dict(os.environ, ZIG_GLOBAL_CACHE_DIR=str(ROOT / ".cache" / "zig"))
    subprocess.run([sys.executable, "-m", "ziglang", "build-exe", "cnt.zig", "-target",
                    "aarch64-linux-musl", "-O", "ReleaseSmall", "-fstrip", "-femit-bin=cnt"],
                   cwd=work, env=env, check=True)
    return (work / "cnt").read_bytes()


def counter_ns(console: str) -> int:
    m = re.search(r"PIPPIN-COUNTER: (\d+) (\d+)", console)
    if not m:
        raise SystemExit("no PIPPIN-COUNTER line:\n" + console[-2000:])
    return int(m[1]) * 1_000_000_000 // int(m[2])


def efi_us(console: str, name: str) -> int:
    m = re.search(rf"PIPPIN-EFI: {name}=(\d+)", console)
    if not m:
        raise SystemExit(f"no {name} from systemd-boot:\n" + console[-2000:])
    return int(m[1])


def uefi_vs_direct() -> None:
    """Reset -> UEFI program entry and -> /init: the UEFI path against the direct kernel."""
    k = qemu.kernel_assets()
    assets = qemu.ASSETS
    with tempfile.TemporaryDirectory(dir=ROOT / ".cache") as tmp:
        work = Path(tmp)
        extra = {"bin/pippin-counter": (stat.S_IFREG | 0o755, counter_program(work))}
        initrd = guest.guest_initramfs(guest.KernelAssets.from_dir(assets), ROOT /
                                       "initramfs-hooks", who="bench", extra=extra)
        raw = assemble.assemble_stage2(assemble.Stage2Parts(
            stage2=bc.stage_bytes("stage2"), kernel=k.image.read_bytes(),
            compression=assemble.Compression.NONE, initramfs=initrd,
            variables=(bvars.Variable("chosen.bootargs", BOOTARGS + " quiet"),)))
        u_boot = (assets / "u-boot.bin").read_bytes()
        uefi = assemble.assemble_stage2(assemble.Stage2Parts(
            stage2=bc.stage_bytes("stage2"), firmware=u_boot))
        # U-Boot reads /config/bootdelay from its control tree: the same chain with QEMU's
        # tree + bootdelay 0 as a payload DTB (stage 2 puts it at RAM base) shows U-Boot's
        # own cost without Debian's 2 s countdown.
        dtb = qemu.virt_dtb(work)
        subprocess.run(["fdtput", "-c", str(dtb), "/config"], check=True)
        subprocess.run(["fdtput", "-t", "i", str(dtb), "/config", "bootdelay", "0"], check=True)
        nodelay = assemble.assemble_stage2(assemble.Stage2Parts(
            stage2=bc.stage_bytes("stage2"), dtbs=(dtb.read_bytes(),), firmware=u_boot))
        disk = bc.chain_disk(work / "disk.img", {"m1n1/raw.bin": raw, "m1n1/uefi.bin": uefi,
                                                  "m1n1/nodelay.bin": nodelay})
        med = media.make_media(work / "media.img", assets, extra=extra)

        def run(obj: str, disks: list[tuple[Path, int]]) -> str:
            s1 = work / f"s1-{obj}.bin"
            s1.write_bytes(assemble.assemble_stage1(bc.stage_bytes("stage1"), (
                bvars.Variable("chosen.asahi,efi-system-partition", bc.ESP_UUID),
                bvars.Variable("chainload", f"{bc.ESP_UUID};m1n1/{obj}"))))
            r = qemu.run_qemu(kernel=s1, disks=disks, append="", extra=ICOUNT, timeout=900)
            assert guest.DEMO_MARKER in r.console, r.console[-3000:]
            return r.console

        d = run("raw.bin", [(disk, 512)])
        u = run("uefi.bin", [(disk, 512), (med, 512)])
        z = run("nodelay.bin", [(disk, 512), (med, 512)])
    d_s2 = us(d, r"pippin stage2 \S+ \(\S+\)")
    d_entry = us(d, r"booting")
    d_init = counter_ns(d) // 1000

    def uefi_marks(c: str) -> tuple[int, int, int, int, int]:
        return (us(c, r"pippin stage2 \S+ \(\S+\)"), us(c, r"booting"),
                efi_us(c, "LoaderTimeInitUSec"), efi_us(c, "LoaderTimeExecUSec"),
                counter_ns(c) // 1000)

    u_s2, u_fw, u_prog, u_exec, u_init = uefi_marks(u)
    zm = uefi_marks(z)
    print()
    print("UEFI path vs direct-kernel path (the raw kernel layout the installer writes), "
          "-icount shift=0, in M instructions (= ms of virtual time)")
    print(f"{'milestone from reset':<44}{'direct':>12}{'UEFI':>12}{'UEFI, delay 0':>16}")
    rows = [
        ("stage 2 entry", d_s2, u_s2, zm[0]),
        ("stage 2 done: kernel / U-Boot entry", d_entry, u_fw, zm[1]),
        ("UEFI program entry (systemd-boot)", None, u_prog, zm[2]),
        ("kernel EFI stub entry (systemd-boot exec)", None, u_exec, zm[3]),
        ("/init (guest counter)", d_init, u_init, zm[4]),
    ]
    for label, a, b, c in rows:
        fa = "-" if a is None else f"{a / 1000:,.1f}"
        print(f"{label:<44}{fa:>12}{b / 1000:>12,.1f}{c / 1000:>16,.1f}")
    print(f"UEFI / direct to /init: {u_init / d_init:.2f}x ({zm[4] / d_init:.2f}x with "
          f"bootdelay 0); U-Boot entry to systemd-boot: {(u_prog - u_fw) / 1000:,.1f} M "
          f"({(zm[2] - zm[1]) / 1000:,.1f} M with bootdelay 0)")
    print("(stage 1's share varies run to run: it polls virtio while QEMU reads the file "
          "from the host, and under icount that wait is counted in instructions)")
    print(f"stage 2's share of the boot to /init: direct {(d_entry - d_s2) / d_init:.2%}, "
          f"UEFI {(u_fw - u_s2) / u_init:.3%}, UEFI delay 0 {(zm[1] - zm[0]) / zm[4]:.3%} "
          "(target < 5%)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="one wall-clock run instead of three")
    ap.add_argument("--uefi-only", action="store_true", help="only the UEFI comparison")
    args = ap.parse_args()
    if args.uefi_only:
        uefi_vs_direct()
        return
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
    print(f"{'reset -> kernel entry (raw kernel)':<40}{raw_us:>12,}{raw_us * 1000:>16,}"
          "   <- the layout the installer writes when the ESP has room (bootobj/layout.py)")
    print(f"chain overhead / kernel boot to init: gzip kernel {entry_us / k_direct:.1%}, "
          f"raw kernel {raw_us / k_direct:.1%} (target <= 5%)")
    print()
    print(f"wall clock, {runs} run(s) each, to GUEST-INIT-DONE (TCG, no icount)")
    md, mc = min(wall_d), min(wall_c)
    print(f"{'direct -kernel/-initrd':<40}{md:>10.2f} s")
    print(f"{'pippin stage1 -> stage2 -> kernel':<40}{mc:>10.2f} s   ratio {mc / md:.2f}x")
    uefi_vs_direct()


if __name__ == "__main__":
    main()
