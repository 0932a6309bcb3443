"""Inputs for the initramfs-hook tests: firmware.cpio made by vendorfw, a guest initramfs
around the common core, and a GPT disk whose ESP carries the cpio."""

from __future__ import annotations

import io
import random
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

from tests.support import diskimg, qemu
from vendorfw.model import FirmwareFile
from vendorfw.package import plan_package, write_package

ROOT = Path(__file__).resolve().parents[2]
HOOKS = ROOT / "initramfs-hooks"
COMMON = HOOKS / "common"
ESP_UUID = "3f2a1c4e-5b6d-4e7f-8a9b-0c1d2e3f4a5b"
GUEST_MODULES = ["virtio_mmio", "virtio_blk", "vfat", "nls_cp437", "nls_ascii", "nls_utf8"]


def sample_files(seed: int = 6) -> dict[str, bytes]:
    """A small firmware set: Wi-Fi, Bluetooth, trackpad, and one duplicate (a LINK)."""
    rnd = random.Random(seed)
    blob = rnd.randbytes(3000)
    return {
        "brcm/brcmfmac4378b1-pcie.apple,shikoku.bin": rnd.randbytes(5000),
        "brcm/brcmfmac4378b1-pcie.apple,shikoku-RASP-u-6.11-X3.txt": b"boardtype=0x0a\n",
        "brcm/brcmbt4378b1-apple,shikoku-u.bin": blob,
        "brcm/brcmbt4378b1-apple,shikoku-m.bin": blob,
        "apple/tpmtfw-j314s.bin": rnd.randbytes(777),
    }


def firmware_cpio(files: Mapping[str, bytes]) -> bytes:
    """firmware.cpio exactly as vendorfw writes it (formats.md §6)."""
    plan = plan_package([FirmwareFile(name, data=data) for name, data in files.items()])
    out = io.BytesIO()
    write_package(plan, out, None)
    return out.getvalue()


def manifest_text(files: Mapping[str, bytes]) -> str:
    return plan_package([FirmwareFile(n, data=d) for n, d in files.items()]).manifest.text()


def guest_modules_dep(kernel: qemu.Kernel, names: Sequence[str]) -> bytes:
    """modules.dep for the guest with real dependencies, so busybox modprobe resolves them."""
    wanted = set(qemu.module_closure(kernel, names))
    lines = [
        line for line in (kernel.modules / "modules.dep").read_text().splitlines()
        if line.partition(":")[0] in wanted
    ]
    return ("\n".join(lines) + "\n").encode()


# The guest init: pseudo filesystems, a tmpfs "real root" at /newroot, the core's two steps
# with the guest clock read around `early`, then switch_root; the new root reports what it
# sees (mounts, files, manifest) and powers off.
GUEST_INIT = """#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs -o mode=0755 root /newroot
mkdir -p /newroot/bin /newroot/proc /newroot/sys /newroot/dev /newroot/lib/firmware
cp /bin/busybox /newroot/bin/busybox
cp /report /newroot/report
export VENDORFW_MODULES="@MODULES@" VENDORFW_WAIT=@WAIT@
read -r t0 _ </proc/uptime
/usr/lib/pippin/vendorfw-load early
read -r t1 _ </proc/uptime
echo "EARLY-DONE t0=$t0 t1=$t1"
ls -la /lib/firmware/ 2>&1 | sed 's/^/INITRAMFS: /'
/usr/lib/pippin/vendorfw-load handoff /newroot
echo HANDOFF-DONE
dmesg | grep 'pippin:' | sed 's/^/KLOG: /'
mount --move /proc /newroot/proc
mount --move /sys /newroot/sys
mount --move /dev /newroot/dev
exec switch_root /newroot /bin/busybox sh /report
"""

REPORT = """/bin/busybox --install -s /bin
echo NEWROOT-BOOTED
grep ' /lib/firmware/vendor ' /proc/mounts | sed 's/^/MOUNT: /'
cd /lib/firmware/vendor 2>/dev/null && find . -type f | sort | while read -r f; do
    echo "FILE: $f $(sha256sum "$f" | cut -d' ' -f1)"
done
cat /lib/firmware/vendor/.vendorfw.manifest 2>/dev/null | sed 's/^/MANIFEST: /'
echo REPORT-END
poweroff -f
"""


def guest_initramfs(out: Path, kernel: qemu.Kernel, *, modules: str = "virtio_mmio virtio_blk vfat",
                    wait: int = 5, append_cpio: bytes | None = None,
                    extra_files: Mapping[str, bytes | Path] | None = None) -> Path:
    """An initramfs with busybox, the common core at /usr/lib/pippin, and GUEST_INIT; when
    ``append_cpio`` is given it is concatenated after it (a bootloader-loaded second initrd)."""
    init = GUEST_INIT.replace("@MODULES@", modules).replace("@WAIT@", str(wait))
    files: dict[str, bytes | Path] = {
        "usr/lib/pippin/vendorfw-load": COMMON / "vendorfw-load",
        "usr/lib/pippin/vendorfw-lib.sh": COMMON / "vendorfw-lib.sh",
        "report": REPORT.encode(),
        f"lib/modules/{kernel.version}/modules.dep": guest_modules_dep(kernel, GUEST_MODULES),
        **(extra_files or {}),
    }
    qemu.build_initramfs(out, kernel=kernel, init=init, modules=GUEST_MODULES, files=files)
    # build_initramfs writes load-order for its own prelude; our init uses modprobe instead
    if append_cpio is not None:
        with open(out, "ab") as f:
            f.write(b"\0" * (-f.tell() % 4))
            f.write(append_cpio)
    return out


def esp_disk(path: Path, files: Mapping[str, bytes | Path], *, sector: int = 512,
             partuuid: str = ESP_UUID, esp_size: int | None = None) -> Path:
    """A GPT disk: a small Linux partition first (so the ESP is partition 2), then the ESP."""
    if esp_size is None:
        esp_size = (40 if sector == 512 else 64) * diskimg.MiB  # FAT16 at 4 KiB needs 64
    diskimg.make_gpt_disk(path, [
        diskimg.Part("root", 2 * diskimg.MiB, type_guid=diskimg.LINUX_TYPE, fat=None),
        diskimg.Part("EFI", esp_size, partuuid=partuuid, files=dict(files),
                      fat=32 if sector == 512 else 16),  # FAT32 needs 65525 clusters
    ], sector_size=sector)
    return path


def copy_core(dest: Path) -> Path:
    """The common core copied into ``dest`` (as an image would hold it)."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("vendorfw-load", "vendorfw-lib.sh"):
        shutil.copy2(COMMON / name, dest / name)
    return dest
