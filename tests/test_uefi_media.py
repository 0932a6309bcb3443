"""scripts/make-uefi-media: the GPT + FAT image read back with sgdisk and mtools, the
initramfs inside with libarchive; bad input is one line and no output."""

from __future__ import annotations

import subprocess

import libarchive
import pytest

from installer.demo import media
from installer.errors import PippinError
from installer.platform.base import Result, SubprocessRunner
from tests.support.installfix import MTOOLS_ENV


@pytest.fixture(scope="module")
def image(tmp_path_factory, test_assets):
    out = tmp_path_factory.mktemp("media") / "media.img"
    assert media.main([str(out), "--assets", str(test_assets)]) == 0
    return out


def mtype(img, path: str) -> bytes:
    return subprocess.run(["mtype", "-i", f"{img}@@1M", "::/" + path], check=True,
                          capture_output=True, env=MTOOLS_ENV).stdout


def test_gpt_has_one_esp_with_the_fixed_partuuid(image):
    out = subprocess.run(["sgdisk", "-i", "1", str(image)], check=True, capture_output=True,
                         text=True).stdout
    assert "C12A7328-F81F-11D2-BA4B-00A0C93EC93B (EFI system partition)" in out
    assert f"Partition unique GUID: {media.MEDIA_PARTUUID.upper()}" in out
    assert "Partition name: 'EFI'" in out
    assert "First sector: 2048 " in out
    p2 = subprocess.run(["sgdisk", "-i", "2", str(image)], capture_output=True, text=True)
    assert "does not exist" in p2.stdout + p2.stderr


def test_esp_holds_systemd_boot_entry_kernel_initramfs(image, test_assets):
    assert mtype(image, "EFI/BOOT/BOOTAA64.EFI") == (
        test_assets / "systemd-bootaa64.efi").read_bytes()
    assert mtype(image, "EFI/BOOT/BOOTAA64.EFI")[:2] == b"MZ"
    assert mtype(image, "loader/loader.conf") == b"timeout 0\ndefault pippin-demo.conf\n"
    entry = mtype(image, "loader/entries/pippin-demo.conf").decode()
    assert "linux /Image\ninitrd /initrd.img\noptions console=ttyAMA0" in entry
    assert mtype(image, "Image") == (test_assets / "Image").read_bytes()


def test_initramfs_carries_the_hook_core_and_its_modules(image, repo_root, test_assets):
    names: dict[str, bytes] = {}
    with libarchive.memory_reader(mtype(image, "initrd.img")) as arch:
        for e in arch:
            names[e.pathname] = b"".join(e.get_blocks())
    for f in ("vendorfw-load", "vendorfw-lib.sh"):
        want = (repo_root / "initramfs-hooks" / "common" / f).read_bytes()
        assert names[f"usr/lib/pippin/{f}"] == want
    assert b"VENDORFW_MODULES=" in names["etc/pippin/vendorfw.conf"]
    ver = (test_assets / "kernel-version").read_text().strip()
    dep = names[f"lib/modules/{ver}/modules.dep"].decode()
    assert "kernel/fs/fat/vfat.ko: kernel/fs/fat/fat.ko" in dep
    assert f"lib/modules/{ver}/kernel/drivers/block/virtio_blk.ko" in names
    init = names["init"].decode()
    assert init.index("vendorfw-load early") < init.index("vendorfw-load handoff /newroot")
    assert "switch_root /newroot" in init


def test_missing_assets_is_one_line_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "m.img"
    assert media.main([str(out), "--assets", str(tmp_path / "nowhere")]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("make-uefi-media: error: no kernel in ")
    assert err[1] == "make-uefi-media: hint: run scripts/fetch-test-assets"
    assert list(tmp_path.iterdir()) == []


def test_script_help(repo_root):
    r = subprocess.run([str(repo_root / "scripts" / "make-uefi-media"), "--help"],
                       capture_output=True, text=True)
    assert r.returncode == 0
    assert "usage: scripts/make-uefi-media OUT.img" in r.stderr
    r = subprocess.run([str(repo_root / "scripts" / "make-uefi-media")], capture_output=True,
                       text=True)
    assert r.returncode == 2




class _FailingSgdisk(SubprocessRunner):
    """The real tools, but sgdisk fails the way it does on a bad image."""

    def run(self, argv, *, stdin=None):
        if argv[0] == "sgdisk":
            return Result(tuple(argv), 2, b"", b"Problem opening the disk image\n")
        return super().run(argv, stdin=stdin)


def test_bug_failed_sgdisk_leaves_no_tmp_image(tmp_path, test_assets):
    """A failure after OUT.img.tmp was created used to leave it behind."""
    out = tmp_path / "m.img"
    with pytest.raises(PippinError) as exc:
        media.make_media(out, test_assets, runner=_FailingSgdisk())
    assert exc.value.message == "sgdisk failed (exit 2): Problem opening the disk image"
    assert exc.value.hint == "install gdisk, dosfstools and mtools"
    assert list(tmp_path.iterdir()) == []
