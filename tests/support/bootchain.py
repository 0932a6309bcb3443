"""Helpers for the boot-chain tests and benchmark: build Pippin's loaders, assemble stage-1
and stage-2 boot objects, put boot.bin on a GPT/FAT disk, boot the chain in QEMU and read
back what the guest saw in /proc/device-tree/chosen."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.support import diskimg, qemu  # noqa: F401  (diskimg re-exported for tests)

ROOT = Path(__file__).resolve().parents[2]
BOOTCHAIN = ROOT / "bootchain"
PREBUILT = BOOTCHAIN / "prebuilt"
ZIG_CACHE = ROOT / ".cache" / "zig"
ESP_UUID = "6a1f3b7e-2c4d-4e5f-8a9b-0c1d2e3f4a5b"

# The guest prints every /chosen property as hex (values are binary or NUL-terminated),
# then powers off.
CHOSEN_INIT = qemu.INIT_PRELUDE + r"""
for f in /proc/device-tree/chosen/*; do
    printf 'CHOSEN %s=%s\n' "${f##*/}" "$(od -An -v -tx1 "$f" | tr -d ' \n')"
done
echo GUEST-INIT-DONE
poweroff -f
"""


def zig(*args: str, cwd: Path = BOOTCHAIN,
        timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """Run the pinned Zig from .venv with the repository-local global cache."""
    env = dict(os.environ, ZIG_GLOBAL_CACHE_DIR=str(ZIG_CACHE))
    return subprocess.run([sys.executable, "-m", "ziglang", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def stage_bytes(name: str) -> bytes:
    return (PREBUILT / f"{name}.bin").read_bytes()


def chosen(console: str) -> dict[str, bytes]:
    """The CHOSEN lines printed by CHOSEN_INIT, decoded."""
    out: dict[str, bytes] = {}
    for line in console.splitlines():
        if line.startswith("CHOSEN ") and "=" in line:
            name, _, hexval = line[7:].partition("=")
            out[name] = bytes.fromhex(hexval.strip())
    return out


@dataclass(frozen=True)
class Boot:
    console: str
    returncode: int | None
    timed_out: bool

    @property
    def refused(self) -> str | None:
        """The loader's one-line refusal, if it printed one."""
        for line in self.console.splitlines():
            if "refusing to boot" in line:
                return line.strip()
        return None

    @property
    def kernel_started(self) -> bool:
        return "Booting Linux" in self.console or "Linux version" in self.console


def chain_disk(path: Path, files: Mapping[str, bytes], *, sector: int = 512,
               partuuid: str = ESP_UUID, extra: Sequence[diskimg.Part] = ()) -> Path:
    """A GPT disk with [extra partitions…, ESP(partuuid) holding files]."""
    size = 300 * diskimg.MiB if sector == 4096 else 96 * diskimg.MiB
    esp = diskimg.Part("EFI", size, partuuid=partuuid, fat=16 if sector == 4096 else 32,
                       files=dict(files))
    diskimg.make_gpt_disk(path, [*extra, esp], sector_size=sector)
    return path


def boot_chain(workdir: Path, stage1_obj: bytes, disk: Path, *, sector: int = 512,
               timeout: float = 120, extra: Sequence[str] = ()) -> Boot:
    """Boot stage 1 (as QEMU -kernel) with `disk` attached; returns the console."""
    s1 = workdir / "stage1-obj.bin"
    s1.write_bytes(stage1_obj)
    r = qemu.run_qemu(kernel=s1, disks=[(disk, sector)], timeout=timeout, append="",
                      extra=extra)
    return Boot(r.console, r.returncode, r.timed_out)
