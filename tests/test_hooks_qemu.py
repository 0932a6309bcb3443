"""The common core in a real Debian arm64 kernel under QEMU: an initramfs built around
vendorfw-load, an FDT with /chosen/asahi,efi-system-partition, a GPT virtio disk whose ESP
holds vendorfw/firmware.cpio written by vendorfw. The guest switches root to a tmpfs root
that reports what it sees; the boot must continue in every case."""

from __future__ import annotations

import hashlib
import re

import pytest

from tests.support import hookenv, qemu

pytestmark = pytest.mark.qemu

FILES = hookenv.sample_files()
CPIO = hookenv.firmware_cpio(FILES)
MANIFEST = hookenv.manifest_text(FILES)


def boot(tmp_path, *, esp_files=None, prop=True, wait=5, append_cpio=None, sector=512):
    k = qemu.kernel_assets()
    disks = []
    if esp_files is not None:
        disks = [(hookenv.esp_disk(tmp_path / "disk.img", esp_files, sector=sector), sector)]
    chosen = {"asahi,efi-system-partition": hookenv.ESP_UUID} if prop else {}
    dtb = qemu.virt_dtb(tmp_path, chosen=chosen)
    initrd = hookenv.guest_initramfs(tmp_path / "initrd", k, wait=wait, append_cpio=append_cpio)
    res = qemu.run_qemu(kernel=k.image, initrd=initrd, dtb=dtb, disks=disks, timeout=120,
                        workdir=tmp_path)
    assert not res.timed_out, res.console[-4000:]
    # the boot went on to the real root whatever happened to the firmware
    assert "NEWROOT-BOOTED" in res.console, res.console[-4000:]
    assert "REPORT-END" in res.console, res.console[-4000:]
    return res.console


def guest_files(console: str) -> dict[str, str]:
    return dict(m.groups() for m in re.finditer(r"^FILE: \./(\S+) ([0-9a-f]{64})\r?$",
                                                 console, re.M))


def assert_firmware(console: str) -> None:
    mounts = re.findall(r"^MOUNT: (\S+) (\S+) (\S+) (\S+)", console, re.M)
    assert mounts == [("vendorfw", "/lib/firmware/vendor", "tmpfs", mounts[0][3])], console
    assert "mode=755" in mounts[0][3]
    want = {n: hashlib.sha256(d).hexdigest() for n, d in FILES.items()}
    want[".vendorfw.manifest"] = hashlib.sha256(MANIFEST.encode()).hexdigest()
    assert guest_files(console) == want
    manifest = [ln.rstrip("\r") for ln in re.findall(r"^MANIFEST: (.*)$", console, re.M)]
    assert manifest == MANIFEST.splitlines()


def assert_no_firmware(console: str, message: str) -> None:
    assert re.search(r"pippin: .*" + re.escape(message), console), console[-4000:]
    assert "MOUNT:" not in console
    assert "FILE:" not in console


@pytest.mark.parametrize("sector", [512, 4096])
def test_esp_path(tmp_path, sector):
    console = boot(tmp_path, esp_files={"vendorfw/firmware.cpio": CPIO}, sector=sector)
    assert_firmware(console)
    assert f"pippin: loaded 5 firmware files from ESP {hookenv.ESP_UUID}" in console
    # inside the initramfs the firmware is reachable as /lib/firmware/vendor too
    assert re.search(r"INITRAMFS: .* vendor -> /vendorfw", console)


def test_fast_path_second_initrd(tmp_path):
    """firmware.cpio concatenated after the initramfs, as a bootloader loads it; no disk and
    no property, so only the fast path can deliver the files."""
    console = boot(tmp_path, prop=False, append_cpio=CPIO)
    assert_firmware(console)
    assert "pippin: firmware loaded by the bootloader (5 files)" in console


def test_property_missing(tmp_path):
    console = boot(tmp_path, esp_files={"vendorfw/firmware.cpio": CPIO}, prop=False)
    assert_no_firmware(console, "asahi,efi-system-partition: firmware will not be loaded")


def test_cpio_missing(tmp_path):
    console = boot(tmp_path, esp_files={"vendorfw/manifest.txt": MANIFEST.encode()})
    assert_no_firmware(console, "no vendorfw/firmware.cpio on ESP")


def test_corrupt_cpio(tmp_path):
    console = boot(tmp_path, esp_files={"vendorfw/firmware.cpio": CPIO[: len(CPIO) * 2 // 3]})
    assert_no_firmware(console, "firmware not loaded")


def test_disk_never_appears_bounded_wait(tmp_path):
    console = boot(tmp_path, wait=2)
    assert_no_firmware(console, f"ESP {hookenv.ESP_UUID} did not appear within 2s")
    m = re.search(r"EARLY-DONE t0=([\d.]+) t1=([\d.]+)", console)
    assert m, console[-3000:]
    waited = float(m[2]) - float(m[1])
    assert 2.0 <= waited < 3.5, waited
