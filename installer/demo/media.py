"""``scripts/make-uefi-media OUT.img``: a stand-in for "a UEFI OS installer on a USB stick".

A GPT disk image with one FAT32 EFI system partition holding systemd-boot as the removable
media loader (``EFI/BOOT/BOOTAA64.EFI``), a loader entry, the Debian arm64 kernel (an EFI
stub) and the demo guest's initramfs (:mod:`installer.demo.guest`, with Pippin's initramfs
hook core). Booted through stage 2 → U-Boot → systemd-boot → Linux (formats.md §14), the
guest loads the vendor firmware from the *installed* ESP named in ``/chosen``.

Built with the real tools (sgdisk, mkfs.fat, mtools) into ``OUT.img.tmp``, then renamed.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from pathlib import Path

from installer.demo.guest import KernelAssets, guest_initramfs
from installer.disk.model import TYPE_GUIDS, PartKind
from installer.errors import PippinError
from installer.platform.base import Runner, SubprocessRunner
from installer.sizes import MiB
from vendorfw.hooks import DEFAULT_SOURCE as HOOKS_DIR

log = logging.getLogger(__name__)

MEDIA_PARTUUID = "5eb0c2a1-7d3e-4f60-9a1b-2c3d4e5f6a7b"  # fixed: the same bytes every run
SYSTEMD_BOOT = "systemd-bootaa64.efi"
ENTRY = "pippin-demo.conf"
LOADER_CONF = f"timeout 0\ndefault {ENTRY}\n"
ENTRY_CONF = """title Pippin demo (UEFI media)
linux /Image
initrd /initrd.img
options console=ttyAMA0 panic=-1 quiet
"""


_HINT = "install gdisk, dosfstools and mtools"


def _mtools(*argv: str) -> list[str]:
    """An mtools argv on a bare FAT image (no geometry checks, as everywhere in Pippin)."""
    return ["env", "MTOOLS_SKIP_CHECK=1", *argv]


def make_media(out: Path, assets: Path, *, hooks: Path = HOOKS_DIR,
               extra: dict[str, tuple[int, bytes]] | None = None,
               runner: Runner | None = None) -> Path:
    """Write the media image to ``out`` (replacing it only once complete); ``extra`` files
    go into the initramfs (see :func:`installer.demo.guest.guest_initramfs`)."""
    run = runner or SubprocessRunner()
    kernel = KernelAssets.from_dir(assets)
    efi = assets / SYSTEMD_BOOT
    for p in (kernel.image, efi):
        if not p.is_file():
            raise PippinError(f"{p} is missing", hint="run scripts/fetch-test-assets")
    initrd = guest_initramfs(kernel, hooks, who="UEFI (U-Boot -> systemd-boot)", extra=extra)
    payload = kernel.image.stat().st_size + len(initrd) + efi.stat().st_size
    esp_size = (payload // MiB + 16) * MiB  # room for FAT32 metadata and the directories
    tmp = out.with_name(out.name + ".tmp")
    with tempfile.TemporaryDirectory(prefix="pippin-media-") as work_dir:
        work = Path(work_dir)
        files = {
            "EFI/BOOT/BOOTAA64.EFI": efi,
            "loader/loader.conf": work / "loader.conf",
            f"loader/entries/{ENTRY}": work / "entry.conf",
            "Image": kernel.image,
            "initrd.img": work / "initrd.img",
        }
        (work / "loader.conf").write_text(LOADER_CONF)
        (work / "entry.conf").write_text(ENTRY_CONF)
        (work / "initrd.img").write_bytes(initrd)
        fat = work / "esp.fat"
        with open(fat, "wb") as f:
            f.truncate(esp_size)
        run.check(["mkfs.fat", "-F", "32", "-n", "PIPPINMEDIA", "-i", "5EB0C2A1", str(fat)],
                  hint=_HINT)
        for d in ("EFI", "EFI/BOOT", "loader", "loader/entries"):
            run.check(_mtools("mmd", "-i", str(fat), "::/" + d), hint=_HINT)
        for dest, src in files.items():
            run.check(_mtools("mcopy", "-i", str(fat), str(src), "::/" + dest), hint=_HINT)
        try:  # OUT.tmp goes away unless it becomes OUT
            with open(tmp, "wb") as f:
                f.truncate(esp_size + 2 * MiB)
            esp_type = TYPE_GUIDS[PartKind.EFI]
            run.check(["sgdisk", "-o", "-n", f"1:2048:+{esp_size // 512}", "-t", f"1:{esp_type}",
                       "-c", "1:EFI", "-u", f"1:{MEDIA_PARTUUID}",
                       "-U", "5eb0c2a1-0000-4000-8000-000000000001", str(tmp)], hint=_HINT)
            with open(fat, "rb") as src_f, open(tmp, "r+b") as dst_f:
                dst_f.seek(MiB)
                while chunk := src_f.read(4 * MiB):
                    dst_f.write(chunk)
                dst_f.flush()
                os.fsync(dst_f.fileno())
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    os.replace(tmp, out)
    log.info("wrote %s (%d bytes, ESP PARTUUID %s)", out, esp_size + 2 * MiB, MEDIA_PARTUUID)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="make-uefi-media",
        description="Write a GPT disk image with one FAT EFI system partition: systemd-boot "
                    "as EFI/BOOT/BOOTAA64.EFI, a loader entry, the Debian arm64 kernel and "
                    "an initramfs with Pippin's initramfs hook (a stand-in for a UEFI OS "
                    "installer on a USB stick). Boot it with: scripts/qemu-boot SIM_IMAGE "
                    "--media OUT.img")
    ap.add_argument("out", type=Path, help="the image to write (replaced when complete)")
    ap.add_argument("--assets", type=Path, required=True,
                    help="scripts/fetch-test-assets output (.cache/test-assets)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="make-uefi-media: %(message)s")
    try:
        out = make_media(args.out, args.assets, runner=SubprocessRunner(dict(os.environ)))
    except PippinError as exc:
        print(f"make-uefi-media: error: {exc.message}", file=sys.stderr)
        if exc.hint:
            print(f"make-uefi-media: hint: {exc.hint}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"make-uefi-media: error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {out} (ESP PARTUUID {MEDIA_PARTUUID})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
