"""The firmware path proven in whole boots, as a user runs it: `pippin install` on a fresh
simulated Mac, `scripts/make-uefi-media`, `scripts/qemu-boot --check [--media]`.

- "UEFI environment only": stage 1 → stage 2 → Debian's U-Boot → systemd-boot on the media
  → Linux, whose initramfs runs Pippin's hook and finds the installed ESP from /chosen.
- "Pippin demo Linux": stage 2 boots the kernel; the same report; then the firmware changes
  after the install (a file added to the raw dump, `vendorfw update` against the ESP) and
  the next boot sees the new manifest.
- Media without an EFI program: U-Boot gives up, --check says so.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import subprocess
import tarfile
from pathlib import Path

import pytest

from installer.bootobj import scan
from installer.demo.site import DEMO_LINUX, UEFI_ONLY
from tests.support import installfix
from tests.support.installfix import (
    MTOOLS_ENV,
    new_sim,
    partition_numbers,
    partition_start,
    partuuid,
    run_install,
)

pytestmark = [pytest.mark.qemu, pytest.mark.timeout(600)]

demo_cache = installfix.demo_cache
demo_site = installfix.demo_site
session = installfix.session

OK = re.compile(r"^boot ok: ESP (\S+), vendorfw (\d+)/(\d+) files verified, [0-9.]+ s$")


def qemu_boot(repo_root: Path, xdg: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(repo_root / "scripts" / "qemu-boot"), *args, "--timeout", "240"],
                          capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
                          env=dict(os.environ, XDG_CACHE_HOME=str(xdg)))


@pytest.fixture(scope="module")
def media(tmp_path_factory, repo_root, test_assets) -> Path:
    out = tmp_path_factory.mktemp("media") / "media.img"
    r = subprocess.run([str(repo_root / "scripts" / "make-uefi-media"), str(out)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return out


def esp_of(sim: Path) -> tuple[str, int]:
    n = partition_numbers(sim)["EFI"]
    return partuuid(sim, n), partition_start(sim, n)


def test_uefi_only_boots_the_media_through_u_boot_and_systemd_boot(
        tmp_path, demo_cache, session, repo_root, media):
    sim = new_sim(tmp_path / "mac.img")
    res = run_install(demo_cache, session, sim, UEFI_ONLY)
    esp, start = esp_of(sim)
    boot = subprocess.run(["mtype", "-i", f"{sim}@@{start}", "::/m1n1/boot.bin"], check=True,
                          capture_output=True, env=MTOOLS_ENV).stdout
    kinds = [p.kind for p in scan.scan(boot, scan.payload_start(boot))]
    assert kinds == ["firmware"]  # stage 2 + Debian's U-Boot
    assert res.kernel_layout == "firmware (U-Boot, which boots an EFI program from a disk)"
    r = qemu_boot(repo_root, tmp_path / "xdg", str(sim), "--media", str(media), "--check")
    log = (tmp_path / "xdg" / "pippin" / "qemu-boot.log").read_text(errors="replace")
    assert r.returncode == 0, r.stdout + r.stderr + log[-3000:]
    m = OK.match(r.stdout.strip())
    assert m, r.stdout
    assert m[1] == esp
    assert m[2] == m[3]
    assert int(m[3]) >= 10
    # the whole chain ran, in order
    marks = ["pippin stage1", "pippin stage2: UEFI firmware at", "U-Boot 2023.01",
             "Found EFI removable media binary efi/boot/bootaa64.efi",
             "PIPPIN-DEMO: Linux started by UEFI (U-Boot -> systemd-boot)",
             f"PIPPIN-ESP: partuuid={esp} device=/dev/vd", "PIPPIN-DEMO-DONE"]
    at = [log.find(s) for s in marks]
    assert -1 not in at, list(zip(marks, at, strict=True))
    assert at == sorted(at), list(zip(marks, at, strict=True))
    # /chosen set by stage 2 reached Linux through U-Boot's EFI
    assert f"PIPPIN-DEMO: chosen/asahi,efi-system-partition={esp}" in log
    assert "PIPPIN-DEMO: chosen/asahi,m1n1-stage2-version=0.1.0" in log

    # the same machine with media that has no EFI program: U-Boot's message, a clear reason
    bare = tmp_path / "bare.img"
    bare.write_bytes(media.read_bytes())
    subprocess.run(["mdel", "-i", f"{bare}@@1M", "::/EFI/BOOT/BOOTAA64.EFI"], check=True,
                   env=MTOOLS_ENV)
    r = qemu_boot(repo_root, tmp_path / "xdg", str(sim), "--media", str(bare), "--check")
    assert r.returncode == 1
    assert r.stdout == ('boot failed: U-Boot found no EFI program on any disk ("EFI boot '
                        'manager: Cannot load any image"; is efi/boot/bootaa64.efi on the '
                        'media?)\n')
    assert "console log:" in r.stderr


def add_to_raw_dump(sim: Path, esp_start: int, work: Path, members: dict[str, bytes]) -> Path:
    """Copy the ESP's asahi/ out, add files to its all_firmware.tar.gz, return the ESP copy."""
    esp = work / "esp"
    esp.mkdir()
    subprocess.run(["mcopy", "-s", "-i", f"{sim}@@{esp_start}", "::/asahi", "::/vendorfw",
                    str(esp)], check=True, env=MTOOLS_ENV)
    dump = esp / "asahi" / "all_firmware.tar.gz"
    old = tarfile.open(dump)
    with tarfile.open(work / "new.tar.gz", "w:gz") as new:
        for info in old.getmembers():
            new.addfile(info, old.extractfile(info) if info.isfile() else None)
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            new.addfile(info, io.BytesIO(data))
    old.close()
    os.replace(work / "new.tar.gz", dump)
    return esp


def test_demo_linux_check_then_firmware_update_is_seen_on_next_boot(
        tmp_path, demo_cache, session, repo_root):
    sim = new_sim(tmp_path / "mac.img")
    res = run_install(demo_cache, session, sim, DEMO_LINUX)
    assert res.kernel_layout.startswith("raw (")  # stage 2 boots the kernel in place
    esp, start = esp_of(sim)
    xdg = tmp_path / "xdg"
    r = qemu_boot(repo_root, xdg, str(sim), "--check")
    assert r.returncode == 0, r.stdout + r.stderr
    m = OK.match(r.stdout.strip())
    assert m, r.stdout
    assert m[1] == esp
    assert m[2] == m[3]
    before = int(m[3])
    log = (xdg / "pippin" / "qemu-boot.log").read_text(errors="replace")
    assert "PIPPIN-DEMO: Linux started by Pippin's boot chain" in log
    assert "U-Boot" not in log

    # a new Bluetooth firmware (and its patch table) in the raw dump, re-extracted with
    # `vendorfw update`, written back onto the image's ESP
    bt = "firmware/bluetooth/BCM4378B1_22.2.540.2069_PCIE_macOS_Shikoku_USI"
    copy = add_to_raw_dump(sim, start, tmp_path, {bt + ".bin": b"\x5a" * 20000,
                                                  bt + ".ptb": b"\xa5" * 3000})
    u = subprocess.run([str(repo_root / ".venv" / "bin" / "vendorfw"), "update", "--esp",
                        str(copy), "--no-progress"], capture_output=True, text=True,
                       env=dict(os.environ, XDG_CACHE_HOME=str(xdg)))
    assert u.returncode == 0, u.stderr
    assert "2 added" in u.stdout
    subprocess.run(["mcopy", "-o", "-s", "-i", f"{sim}@@{start}", str(copy / "vendorfw"),
                    str(copy / "asahi"), "::/"], check=True, env=MTOOLS_ENV)
    r = qemu_boot(repo_root, xdg, str(sim), "--check")
    assert r.returncode == 0, r.stdout + r.stderr
    m = OK.match(r.stdout.strip())
    assert m, r.stdout
    assert int(m[3]) == before + 2
    assert m[2] == m[3]
    log = (xdg / "pippin" / "qemu-boot.log").read_text(errors="replace")
    want = hashlib.sha256(b"\x5a" * 20000).hexdigest()
    assert f"PIPPIN-FW: ok brcm/brcmbt4378b1-apple,shikoku-u.bin 20000 {want}" in log

