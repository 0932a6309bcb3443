"""A UEFI firmware payload (Pippin): Debian's u-boot.bin has no Image header, so boot.bin
carries it behind the ``pippin_firmware`` tag + LE u32 size; assembly, read-back, the
signature over it, and the refusals (as the CLI prints them)."""

from __future__ import annotations

import os
import struct

import pytest

from installer.bootobj import assemble, scan, sign
from installer.bootobj.assemble import Stage2Parts
from installer.bootobj.vars import Variable
from installer.cli import main
from installer.errors import BootObjectError
from tests.support.bootobjgen import U_BOOT, dtb, fake_kernel, fake_stage


def test_golden_layout_and_read_back(u_boot):
    virt = dtb("linux,dummy-virt")
    data = assemble.assemble_stage2(Stage2Parts(
        fake_stage(), (virt,), firmware=u_boot,
        variables=(Variable("chosen.pippin,x", "1"),)))
    want = (fake_stage() + virt + b"pippin_firmware" + struct.pack("<I", len(u_boot)) + u_boot
            + b"chosen.pippin,x=1\n\0\0\0\0")
    assert data == want
    got = scan.scan(data, scan.payload_start(data))
    assert [p.kind for p in got] == ["fdt", "firmware", "variables"]
    assert got[1].size == len(u_boot) + 19
    assert got[1].detail == f"{len(u_boot)} bytes UEFI firmware"


def test_signature_covers_the_firmware(u_boot):
    key = sign.generate_key()
    data = assemble.assemble_stage2(Stage2Parts(fake_stage(), firmware=u_boot), key)
    sign.verify(data, key.public_key() and sign.public_bytes(key.public_key()))
    at = len(fake_stage()) + 19 + len(u_boot) // 2  # a byte in the middle of U-Boot
    tampered = data[:at] + bytes([data[at] ^ 1]) + data[at + 1:]
    with pytest.raises(BootObjectError, match="signature"):
        sign.verify(tampered, sign.public_bytes(key.public_key()))


@pytest.mark.parametrize(
    ("firmware", "message"),
    [
        (b"\x7fELF" + bytes(8192), "an ELF file"),
        (b"\x1f\x8b" + bytes(8192), "gzip data"),
        (b"MZ" + bytes(8192), "a PE/EFI program"),
        (b"\x0a\x00\x00\x14" + bytes(100), "too small"),
    ],
)
def test_refusals(firmware, message):
    with pytest.raises(BootObjectError, match=message):
        assemble.assemble_stage2(Stage2Parts(fake_stage(), firmware=firmware))


def test_firmware_and_kernel_exclude_each_other(u_boot):
    with pytest.raises(BootObjectError, match="a kernel or a firmware, not both"):
        assemble.assemble_stage2(Stage2Parts(fake_stage(), kernel=fake_kernel(),
                                             firmware=u_boot))


@pytest.mark.parametrize("cut", [1, 4096, 500_000])
def test_truncated_firmware_is_refused_on_read_back(u_boot, cut):
    data = assemble.assemble_stage2(Stage2Parts(fake_stage(), firmware=u_boot))
    with pytest.raises(BootObjectError, match=r"firmware at offset \d+ says"):
        scan.scan(data[:-cut], scan.payload_start(data))


def test_cli_build_and_info(capsys, tmp_path, monkeypatch, u_boot):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    (tmp_path / "stage2.bin").write_bytes(fake_stage())
    out = tmp_path / "boot.bin"
    assert main(["bootobj", "build", "--stage2", str(tmp_path / "stage2.bin"), "--firmware",
                 str(U_BOOT), "-o", str(out)]) == 0
    assert out.read_bytes() == fake_stage() + b"pippin_firmware" + struct.pack(
        "<I", len(u_boot)) + u_boot
    capsys.readouterr()
    assert main(["bootobj", "info", str(out)]) == 0
    assert f"firmware   {len(u_boot) + 19:>10}  {len(u_boot)} bytes UEFI firmware" in (
        capsys.readouterr().out)


def test_cli_refusal_is_one_line_and_writes_nothing(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    (tmp_path / "stage2.bin").write_bytes(fake_stage())
    (tmp_path / "u-boot.gz").write_bytes(b"\x1f\x8b" + bytes(9000))
    rc = main(["bootobj", "build", "--stage2", str(tmp_path / "stage2.bin"), "--firmware",
               str(tmp_path / "u-boot.gz"), "-o", str(tmp_path / "o")])
    err = capsys.readouterr().err.splitlines()
    assert rc == 1
    assert err[0] == ("pippin: error: firmware: gzip data (give it uncompressed; stage 2 "
                      "enters it as it lies)")
    assert len(err) == 1
    assert not (tmp_path / "o").exists()
    assert not [n for n in os.listdir(tmp_path) if ".tmp" in n]
