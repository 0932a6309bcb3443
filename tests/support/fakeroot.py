"""A fake initramfs root for running initramfs-hooks/common/vendorfw-load on the host.

The core reads everything below ``VENDORFW_ROOT``: ``proc/device-tree``, ``proc/cmdline``,
``sys/class/block`` (laid out like the kernel's: class links to device directories that hold
their partitions), and ``dev/`` (regular files holding the real GPT disk and partition bytes
made by sgdisk/mkfs.fat/mtools). The host kernel here cannot mount vfat, so ``mount -t vfat``
is the one shim: it reads the real FAT image with mtools into the mount point (refusing a
non-FAT image as mount would) and insists on ``-o ro``. tmpfs mounts are real. ``modprobe``
and ``sleep`` are shims too: modprobe records modules and can make the disk appear (a driver
binding), sleep counts polls without sleeping and can make the disk appear on the Nth poll
or move a fake ``proc/uptime`` on (a slow lookup between polls).

``shell`` is ``dash`` (with only the host tools a generator must install, GNU cpio, mawk)
or ``busybox`` (busybox sh with busybox applets only, as in a busybox initramfs).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.support import diskimg, hookenv

# What the core calls (besides shell builtins); the generators' adapters install these.
TOOLS = ["cat", "tr", "head", "grep", "sed", "awk", "od", "dd", "cpio", "mkdir", "rm",
         "rmdir", "mv", "cp", "ln", "find", "wc"]
SHIMMED = ["mount", "umount", "modprobe", "sleep"]

MOUNT_SHIM = r"""#!/bin/sh
printf '%s\n' "$*" >>"$SHIM_LOG/mount.log"
case " $* " in
*" -t vfat "*)
    case " $* " in *" -o ro "*) ;; *) echo "shim: vfat must be mounted ro" >&2; exit 1 ;; esac
    eval "dev=\${$(($# - 1))}"; eval "mnt=\${$#}"
    MTOOLS_SKIP_CHECK=1 /usr/bin/mdir -i "$dev" ::/ >/dev/null 2>&1 || {
        echo "mount: wrong fs type" >&2; exit 32; }
    MTOOLS_SKIP_CHECK=1 /usr/bin/mcopy -s -n -m -i "$dev" '::/*' "$mnt/" 2>/dev/null
    : >"$mnt/.shim-mounted"
    exit 0 ;;
esac
exec $REAL_MOUNT "$@"
"""

UMOUNT_SHIM = r"""#!/bin/sh
printf '%s\n' "$*" >>"$SHIM_LOG/umount.log"
if [ -e "$1/.shim-mounted" ]; then
    /usr/bin/find "$1" -mindepth 1 -delete
    exit 0
fi
exec $REAL_UMOUNT "$@"
"""

MODPROBE_SHIM = r"""#!/bin/sh
printf '%s\n' "$1" >>"$SHIM_LOG/modprobe.log"
if [ "$1" = "${SHIM_DISK_MODULE-}" ]; then /bin/sh "$SHIM_LOG/attach"; fi
case " ${SHIM_MODULES_OK-} " in *" $1 "*) exit 0 ;; esac
exit 1
"""

SLEEP_SHIM = r"""#!/bin/sh
printf '%s\n' "$1" >>"$SHIM_LOG/sleep.log"
if [ -n "${SHIM_UPTIME_STEP-}" ]; then  # the guest clock moves by this much per poll
    read -r t _ <"$VENDORFW_ROOT/proc/uptime"
    /usr/bin/awk -v t="$t" -v s="$SHIM_UPTIME_STEP" 'BEGIN { printf "%.2f 0.00\n", t + s }' \
        >"$VENDORFW_ROOT/proc/uptime"
fi
n=$(/usr/bin/wc -l <"$SHIM_LOG/sleep.log")
if [ "$n" = "${SHIM_DISK_AFTER_SLEEPS-x}" ]; then /bin/sh "$SHIM_LOG/attach"; fi
exit 0
"""


@dataclass
class Result:
    rc: int
    stderr: str
    kmsg: str

    @property
    def log(self) -> str:
        return self.kmsg + self.stderr


class FakeRoot:
    """A fake root plus the PATH the core runs with."""

    def __init__(self, base: Path, shell: str, cache: Path | None = None) -> None:
        self.base = base
        self.cache = cache  # where built disk images are kept for reuse (same inputs)
        self.shell = shell
        self.root = base / "root"
        self.shims = base / "shims"
        self.bin = base / "bin"
        self.log = base / "log"
        for d in (self.root / "proc", self.root / "run", self.root / "dev", self.shims,
                  self.bin, self.log):
            d.mkdir(parents=True, exist_ok=True)
        (self.root / "proc" / "cmdline").write_text("console=ttyAMA0 quiet\n")
        (self.log / "attach").write_text(":\n")
        self.kmsg = base / "kmsg"
        self.kmsg.write_text("")
        self.env: dict[str, str] = {}
        self.shimmed = list(SHIMMED)  # a test may drop one (e.g. no modprobe at all)
        self._tools()

    def _tools(self) -> None:
        for name, text in (("mount", MOUNT_SHIM), ("umount", UMOUNT_SHIM),
                           ("modprobe", MODPROBE_SHIM), ("sleep", SLEEP_SHIM)):
            p = self.shims / name
            p.write_text(text)
            p.chmod(0o755)
        for tool in TOOLS:
            target = "/bin/busybox" if self.shell == "busybox" else shutil.which(tool)
            assert target, tool
            (self.bin / tool).symlink_to(target)

    # ---- inputs ---------------------------------------------------------------------
    def set_property(self, value: bytes | None) -> None:
        chosen = self.root / "proc" / "device-tree" / "chosen"
        chosen.mkdir(parents=True, exist_ok=True)
        prop = chosen / "asahi,efi-system-partition"
        if value is None:
            prop.unlink(missing_ok=True)
        else:
            prop.write_bytes(value)

    def set_cmdline(self, text: str) -> None:
        (self.root / "proc" / "cmdline").write_text(text + "\n")

    def add_disk(self, esp_files: dict[str, bytes | Path], *, sector: int = 512,
                 partuuid: str = hookenv.ESP_UUID, name: str = "vda", esp_fat: bool = True,
                 now: bool = True) -> Path:
        """A real GPT disk (Linux partition 1, ESP partition 2). With ``now`` False the
        sysfs/dev entries are only written into the ``attach`` script, to appear later."""
        size = (40 if sector == 512 else 64) * diskimg.MiB  # FAT16 at 4 KiB needs 64
        parts = [
            diskimg.Part("root", 2 * diskimg.MiB, type_guid=diskimg.LINUX_TYPE, fat=None),
            diskimg.Part("EFI", size, partuuid=partuuid, files=esp_files,
                         fat=(32 if sector == 512 else 16) if esp_fat else None),
        ]
        key = hashlib.sha256(repr((sorted(
            (k, v if isinstance(v, Path) else hashlib.sha256(v).hexdigest())
            for k, v in esp_files.items()), sector, partuuid, esp_fat)).encode()).hexdigest()
        stage = (self.cache or self.base) / f"disk-{key[:16]}"
        img = stage / "disk"
        if not img.exists():
            tmp = stage.with_name(stage.name + f".{os.getpid()}")
            tmp.mkdir(parents=True)
            placed = diskimg.make_gpt_disk(tmp / "disk", parts, sector_size=sector)
            for i, pl in enumerate(placed, 1):
                subprocess.run(["dd", f"if={tmp}/disk", f"of={tmp}/part{i}", "bs=1M",
                                f"skip={pl.offset // diskimg.MiB}",
                                f"count={pl.part.size // diskimg.MiB}", "status=none"],
                               check=True)
            tmp.rename(stage)
        devdir = self.root / "sys" / "devices" / "virtual" / "block" / name
        cls = self.root / "sys" / "class" / "block"
        dev = self.root / "dev"
        script = [
            f"mkdir -p '{devdir}/queue' '{cls}'",
            f"printf 'MAJOR=254\\nMINOR=0\\nDEVNAME={name}\\nDEVTYPE=disk\\n' >'{devdir}/uevent'",
            f"echo {sector} >'{devdir}/queue/logical_block_size'",
            f"ln -s '../../devices/virtual/block/{name}' '{cls}/{name}'",
            f"cp '{img}' '{dev}/{name}'",
        ]
        for i, part in enumerate(parts, 1):
            p = f"{name}{i}"
            script += [
                f"mkdir -p '{devdir}/{p}'",
                f"printf 'DEVNAME={p}\\nDEVTYPE=partition\\nPARTN={i}\\nPARTNAME={part.name}\\n'"
                f" >'{devdir}/{p}/uevent'",
                f"echo {i} >'{devdir}/{p}/partition'",
                f"ln -s '../../devices/virtual/block/{name}/{p}' '{cls}/{p}'",
                f"cp '{stage}/part{i}' '{dev}/{p}'",
            ]
        text = "\n".join(script) + "\n"
        if now:
            subprocess.run(["sh", "-c", text], check=True)
        else:
            (self.log / "attach").write_text(text)
        return dev / f"{name}2"

    # ---- running ----------------------------------------------------------------------
    def run(self, *args: str, env: dict[str, str] | None = None) -> Result:
        shell = ["/bin/busybox", "sh"] if self.shell == "busybox" else ["/usr/bin/dash"]
        real_mount = "/bin/busybox mount" if self.shell == "busybox" else "/usr/bin/mount"
        real_umount = "/bin/busybox umount" if self.shell == "busybox" else "/usr/bin/umount"
        full = {
            "PATH": str(self.bin),
            "VENDORFW_ROOT": str(self.root),
            "VENDORFW_KMSG": str(self.kmsg),
            "VENDORFW_MODULES": "virtio_blk vfat",
            "VENDORFW_WAIT": "1",
            "SHIM_LOG": str(self.log),
            "SHIM_MODULES_OK": "virtio_blk vfat nls_cp437 nls_ascii nls_utf8",
            "REAL_MOUNT": real_mount,
            "REAL_UMOUNT": real_umount,
            **self.env,
            **(env or {}),
        }
        # busybox sh prefers its own applets to PATH, so the shims are shell functions
        # (functions win over applets) defined before the real entry script is sourced.
        wrap = "".join(f'{t}() {{ "{self.shims}/{t}" "$@"; }}\n' for t in self.shimmed)
        script = wrap + f'. "{hookenv.COMMON}/vendorfw-load"\n'
        full["VENDORFW_LIBDIR"] = str(hookenv.COMMON)
        proc = subprocess.run([*shell, "-c", script, "vendorfw-load", *args], env=full,
                              capture_output=True, text=True, timeout=60, cwd=self.base)
        res = Result(proc.returncode, proc.stderr, self.kmsg.read_text())
        self.kmsg.write_text("")
        return res

    def lines(self, name: str) -> list[str]:
        p = self.log / f"{name}.log"
        return p.read_text().splitlines() if p.exists() else []

    def tree(self, top: Path) -> dict[str, bytes]:
        return {str(p.relative_to(top)): p.read_bytes()
                for p in sorted(top.rglob("*")) if p.is_file() and not p.is_symlink()}

    def cleanup_mounts(self) -> None:
        mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
        for m in reversed(mounts):
            if m.startswith(str(self.base)):
                subprocess.run(["umount", "-l", m], check=False)
