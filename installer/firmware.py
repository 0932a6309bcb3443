"""Vendor firmware for the ESP, from the fetched restore-image members (formats.md §5, §8).

1. The raw dump ``all_firmware.tar.gz``: ``firmware/`` (the BaseSystem's
   ``usr/share/firmware``), ``fud_firmware/`` (FUD Image4 files by manifest path, plus
   ``<device class>/<ManifestKey>.im4p`` symlinks), packed deterministically.
2. The kernelcache beside it (``kernelcache.release.*``, the ASMedia source).
3. ``vendorfw/`` from both through :func:`vendorfw.build.build_vendorfw`, the same code
   ``vendorfw update`` runs inside a booted Linux.

The BaseSystem (an OTA's decoded from BXDIFF50 first) is opened by the caller's
:data:`ImageOpener` when it gives one: on a Mac, ``hdiutil attach`` read-only
(:meth:`installer.targets.base.InstallTarget.image_opener`), so ``firmware/`` comes from the
real APFS image; its failure to attach is an error. Without one (the simulated Mac) it is
unpacked with libarchive: the demo/test images carry a tar there; a real Apple BaseSystem is
an APFS disk image that libarchive cannot open, so off a Mac the dump then lacks
``firmware/`` (Wi-Fi and Bluetooth) and a warning says so.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

from installer.errors import RestoreImageError
from installer.ipsw import manifest, ota
from installer.ipsw.select import Needed
from vendorfw import rawdump
from vendorfw.build import Report, build_vendorfw
from vendorfw.errors import VendorFwError

log = logging.getLogger(__name__)

#: Opens a disk image read-only for a ``with`` block: (image, a fresh scratch path to use
#: as its mount point) → the root of the image's file tree. Raises a PippinError (one line
#: naming the image) when it cannot.
ImageOpener = Callable[[Path, Path], AbstractContextManager[Path]]


@dataclass(frozen=True, slots=True)
class FirmwareOutput:
    rawdump: Path  # all_firmware.tar.gz
    kernelcache: Path
    vendorfw: Path  # the vendorfw/ directory
    report: Report
    warnings: tuple[str, ...]


def _basesystem_firmware(fetched: Path, needed: Needed, dump: Path, work: Path,
                         open_image: ImageOpener | None) -> str | None:
    """The BaseSystem's usr/share/firmware into ``dump/firmware``; a warning or None."""
    src = fetched / needed.basesystem
    if needed.layout.ota:
        decoded = work / "basesystem.dmg"
        ota.decode_bxdiff50_file(src, decoded)
        src = decoded
    if open_image is not None:
        with open_image(src, work / "basesystem") as root:
            fw = root / "usr" / "share" / "firmware"
            if not fw.is_dir():
                return f"the BaseSystem {src.name} has no usr/share/firmware"
            _copy_tree(fw, dump / "firmware", src)
        return None
    tree = work / "basesystem"
    tree.mkdir()
    try:
        rawdump.unpack(src, tree)
    except VendorFwError as exc:
        msg = (f"cannot read the BaseSystem on this platform ({exc.message}); Wi-Fi and "
               "Bluetooth firmware are missing from the raw dump")
        log.warning("%s", msg)
        return msg
    fw = tree / "usr" / "share" / "firmware"
    if fw.is_dir():
        os.rename(fw, dump / "firmware")
        return None
    return "the BaseSystem has no usr/share/firmware"


def _copy_tree(src: Path, dst: Path, image: Path) -> None:
    """Copy a tree out of a mounted (read-only) image: contents and symlinks, not modes (a
    read-only mount's modes would make the copy undeletable)."""
    try:
        for d, dirs, files in os.walk(src):
            rel = Path(d).relative_to(src)
            (dst / rel).mkdir(parents=True, exist_ok=True)
            for name in sorted(dirs + files):
                s, t = Path(d) / name, dst / rel / name
                if s.is_symlink():
                    t.symlink_to(os.readlink(s))
                    if name in dirs:
                        dirs.remove(name)  # a link to a directory stays a link
                elif name in files:
                    shutil.copyfile(s, t)
    except OSError as exc:
        raise RestoreImageError(f"copying usr/share/firmware out of {image}: {exc}") from exc


def build_firmware(fetched: Path, needed: Needed, out: Path,
                   progress: Callable[[int], None] | None = None,
                   open_image: ImageOpener | None = None) -> FirmwareOutput:
    """Write ``out/all_firmware.tar.gz``, ``out/kernelcache.*`` and ``out/vendorfw/``;
    ``open_image`` reads the BaseSystem (libarchive when None)."""
    b = needed.layout.boot_prefix
    ident = needed.identity
    kc_path = ident.path("KernelCache")
    if kc_path is None:
        raise RestoreImageError(f"build identity {ident.device_class} has no KernelCache")
    out.mkdir(parents=True, exist_ok=True)
    warnings: list[str] = []
    with tempfile.TemporaryDirectory(prefix="pippin-fw-", dir=out) as tmp:
        work = Path(tmp)
        dump = work / "dump"
        dump.mkdir()
        w = _basesystem_firmware(fetched, needed, dump, work, open_image)
        if w:
            warnings.append(w)
        fud = dump / "fud_firmware"
        for e in manifest.fud_entries(ident):
            src = fetched / (b + e.path)
            dst = fud / e.path
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
            link = fud / ident.device_class / f"{e.key}.im4p"
            link.parent.mkdir(parents=True, exist_ok=True)
            if not link.exists():
                link.symlink_to(os.path.relpath(dst, link.parent))
        tgz = out / rawdump.RAWDUMP_NAME
        rawdump.pack(dump, tgz, progress)
        kc = out / Path(kc_path).name
        shutil.copyfile(fetched / (b + kc_path), kc)
        report = build_vendorfw(out, out / "vendorfw", progress, tmp_parent=work)
    for p in report.problems:
        warnings.append(f"firmware: {p.path}: {p.reason}")
    log.info("vendorfw: %d files, %d links, %d problems", report.files, report.links,
             len(report.problems))
    return FirmwareOutput(tgz, kc, out / "vendorfw", report, tuple(warnings))
