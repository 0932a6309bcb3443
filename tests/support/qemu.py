"""Boot real arm64 kernels (and Pippin's loaders) under qemu-system-aarch64 for tests.

Assets come from scripts/fetch-test-assets (.cache/test-assets): a Debian arm64 kernel, its
modules (with modules.dep) and a static arm64 busybox. The guest's serial console is captured
to a file and returned; a guest `poweroff -f` (PSCI) ends QEMU, a timeout kills it.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from installer.demo import guest

ROOT = Path(__file__).resolve().parents[2]
ASSETS = ROOT / ".cache" / "test-assets"
MACHINE = "virt,virtualization=on"
CPU = "max,pauth-impdef=on"  # impdef pointer auth: much faster under TCG
MEMORY = "512M"


@dataclass(frozen=True)
class Kernel:
    image: Path
    version: str
    modules: Path  # lib/modules/<version>
    busybox: Path


@dataclass(frozen=True)
class QemuResult:
    console: str
    returncode: int | None
    timed_out: bool


def kernel_assets() -> Kernel:
    if not (ASSETS / ".complete").exists():
        raise RuntimeError("run scripts/fetch-test-assets first")
    version = (ASSETS / "kernel-version").read_text().strip()
    return Kernel(ASSETS / "Image", version, ASSETS / "lib" / "modules" / version,
                  ASSETS / "busybox")


def module_closure(kernel: Kernel, names: Iterable[str]) -> list[str]:
    """Relative paths of the named modules and their dependencies, dependencies first
    (the demo guest's resolver, installer/demo/guest.py)."""
    return [m for m, _deps in guest.module_closure(kernel.modules, names)]


def build_initramfs(out: Path, *, kernel: Kernel, init: str, modules: Sequence[str] = (),
                    files: Mapping[str, bytes | Path] | None = None) -> Path:
    """A newc initramfs (GNU cpio) with busybox, ``/init`` = ``init`` (a busybox sh script),
    the named modules with their dependencies under /lib/modules/<ver>/, and extra ``files``
    (path → bytes or host Path; a Path to a directory is copied as a tree)."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for d in ("bin", "sbin", "dev", "proc", "sys", "run", "tmp", "mnt", "newroot"):
            (root / d).mkdir()
        shutil.copy2(kernel.busybox, root / "bin" / "busybox")
        (root / "bin" / "sh").symlink_to("busybox")
        (root / "init").write_text(init)
        (root / "init").chmod(0o755)
        if modules:
            mdir = root / "lib" / "modules" / kernel.version
            mods = module_closure(kernel, modules)
            for rel in mods:
                (mdir / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(kernel.modules / rel, mdir / rel)
            (mdir / "modules.dep").write_text(
                "".join(f"{m}:\n" for m in mods))  # busybox modprobe reads this
            (mdir / "load-order").write_text("\n".join(mods) + "\n")
        for name, content in (files or {}).items():
            dest = root / name.lstrip("/")
            dest.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, Path) and content.is_dir():
                shutil.copytree(content, dest, symlinks=True)
            elif isinstance(content, Path):
                shutil.copy2(content, dest)
            else:
                dest.write_bytes(content)
        listing = subprocess.run(["find", "."], cwd=root, check=True, capture_output=True).stdout
        with open(out, "wb") as f:
            subprocess.run(["cpio", "-o", "-H", "newc", "-R", "0:0", "--quiet"], cwd=root,
                           input=listing, stdout=f, check=True)
    return out


# The guest-side helper every test init can start with: mounts, busybox applets, modules.
INIT_PRELUDE = """#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
if [ -f /lib/modules/*/load-order ]; then
    for m in $(cat /lib/modules/*/load-order); do insmod /lib/modules/*/"$m"; done
fi
"""


def virt_dtb(workdir: Path, *, chosen: Mapping[str, str] | None = None,
             memory: str = MEMORY) -> Path:
    """QEMU virt's own device tree, compacted (dumpdtb pads to 1 MiB, which the kernel
    refuses), with string properties added to /chosen via fdtput."""
    raw = workdir / "virt-raw.dtb"
    out = workdir / "virt.dtb"
    subprocess.run(["qemu-system-aarch64", "-M", f"{MACHINE},dumpdtb={raw}", "-cpu", CPU,
                    "-m", memory, "-nodefaults", "-display", "none"],
                   check=True, capture_output=True)
    subprocess.run(["dtc", "-q", "-I", "dtb", "-O", "dtb", "-p", "4096", "-o", str(out),
                    str(raw)], check=True, capture_output=True)
    for prop, value in (chosen or {}).items():
        subprocess.run(["fdtput", "-t", "s", str(out), "/chosen", prop, value], check=True,
                       capture_output=True)
    return out


def run_qemu(*, kernel: Path, initrd: Path | None = None, dtb: Path | None = None,
             append: str = "console=ttyAMA0 panic=-1", disks: Sequence[tuple[Path, int]] = (),
             memory: str = MEMORY, timeout: float = 240, extra: Sequence[str] = (),
             workdir: Path | None = None) -> QemuResult:
    """Boot ``kernel`` (any image with an arm64 Image header: a Linux kernel or a Pippin
    stage) and return the serial console. ``disks`` are (raw image, logical block size)."""
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        log = Path(tmp) / "console.log"
        argv = ["qemu-system-aarch64", "-M", MACHINE, "-cpu", CPU, "-m", memory, "-smp", "1",
                "-nodefaults", "-display", "none", "-no-reboot", "-serial", f"file:{log}",
                "-kernel", str(kernel)]
        if append:
            argv += ["-append", append]
        if initrd is not None:
            argv += ["-initrd", str(initrd)]
        if dtb is not None:
            argv += ["-dtb", str(dtb)]
        for i, (img, bs) in enumerate(disks):
            argv += ["-drive", f"if=none,format=raw,file={img},id=d{i}",
                     "-device", f"virtio-blk-device,drive=d{i},logical_block_size={bs},"
                     f"physical_block_size={bs}"]
        argv += list(extra)
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        timed_out = False
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
            timed_out = True
        console = log.read_text(errors="replace") if log.exists() else ""
        if proc.returncode not in (0, None) and not timed_out and not console:
            console = out.decode(errors="replace")
        return QemuResult(console, None if timed_out else proc.returncode, timed_out)
