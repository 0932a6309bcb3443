"""Stage 2 with a UEFI firmware payload (Debian's U-Boot, no Image header) in QEMU: a signed
boot.bin under stage 1's key reaches U-Boot; a tampered or truncated U-Boot never runs, and
the chain says why in one line."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from installer.bootobj import assemble, sign
from installer.bootobj import vars as bvars
from installer.demo.bootcheck import run_console
from tests.support import bootchain as bc
from tests.support import qemu

pytestmark = pytest.mark.qemu

KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))


def boot_bin(u_boot: bytes, *, signed: bool) -> bytes:
    return assemble.assemble_stage2(
        assemble.Stage2Parts(bc.stage_bytes("stage2"), firmware=u_boot),
        KEY if signed else None)


def stage1(tmp_path: Path, *, key: bool) -> Path:
    pub = sign.public_bytes(KEY.public_key()) if key else None
    s1 = tmp_path / "stage1.bin"
    s1.write_bytes(assemble.assemble_stage1(bc.stage_bytes("stage1"),
                                            bvars.stage1_config(bc.ESP_UUID, public_key=pub)))
    return s1


def boot(tmp_path: Path, data: bytes, *, key: bool) -> str:
    disk = bc.chain_disk(tmp_path / "disk.img", {"m1n1/boot.bin": data})
    argv = ["qemu-system-aarch64", "-M", qemu.MACHINE, "-cpu", qemu.CPU, "-m", qemu.MEMORY,
            "-smp", "1", "-nodefaults", "-display", "none", "-no-reboot", "-serial", "stdio",
            "-kernel", str(stage1(tmp_path, key=key)),
            "-drive", f"if=none,format=raw,file={disk},id=d0",
            "-device", "virtio-blk-device,drive=d0"]
    # U-Boot finds nothing to boot on this disk and stops at its prompt: run_console ends it
    console, _rc, timed_out = run_console(argv, tmp_path / "console.log", 120)
    assert not timed_out, console[-3000:]
    return console


def refusals(console: str) -> list[str]:
    return [ln.strip() for ln in console.splitlines() if "refusing to boot" in ln]


def test_signed_u_boot_under_a_key_runs_with_the_fdt_at_ram_base(tmp_path, u_boot):
    console = boot(tmp_path, boot_bin(u_boot, signed=True), key=True)
    assert "pippin stage1: m1n1/boot.bin: signature good" in console
    assert (f"pippin stage2: UEFI firmware at 48400000 ({len(u_boot)} bytes), fdt 40000000 "
            "(passed in," in console)
    assert "U-Boot 2023.01" in console
    assert "devicetree: board" in console  # it took the tree stage 2 put at RAM base
    assert refusals(console) == []


@pytest.mark.parametrize("how", ["tampered", "truncated"])
def test_damaged_signed_u_boot_is_refused_by_stage1(tmp_path, u_boot, how):
    data = boot_bin(u_boot, signed=True)
    if how == "tampered":
        at = len(bc.stage_bytes("stage2")) + 19 + 4096  # inside U-Boot's code
        data = data[:at] + bytes([data[at] ^ 0x40]) + data[at + 1:]
    else:
        data = data[: len(data) - 200_000]
    console = boot(tmp_path, data, key=True)
    assert refusals(console) == [
        f"pippin stage1: refusing to boot: stage 2 m1n1/boot.bin is not validly signed "
        f"({'BadSignature' if how == 'tampered' else 'Unsigned'}) and m1n1/boot.bin.old is "
        "unusable (NotFound)"]
    assert "U-Boot" not in console


def test_truncated_u_boot_without_a_key_is_refused_by_stage2(tmp_path, u_boot):
    data = boot_bin(u_boot, signed=False)[:-300_000]
    console = boot(tmp_path, data, key=False)
    assert refusals(console) == [
        "pippin stage2: refusing to boot: payload at +0: TruncatedPayload"]
    assert "U-Boot" not in console
