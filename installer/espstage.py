"""Everything the installer adds to the new ESP, formats.md §5.

:func:`write_new_esp` stages the tree locally (``vendorfw/``, ``asahi/…``, ``m1n1/boot.bin``
through the downgrade-safe update, the kernel layout of boot.bin, the catalog copy and
extras, the install log last) and hands it to the target. The install flow
(:mod:`installer.install`) calls it once the stub is written.
"""

from __future__ import annotations

import io
import json
import logging
import plistlib
import shutil
from pathlib import Path

from installer.bootobj import espupdate, layout
from installer.catalog import OsEntry, PartitionType
from installer.device import DeviceFacts
from installer.disk.model import Partition
from installer.errors import PippinError
from installer.firmware import FirmwareOutput
from installer.ipsw.select import Needed
from installer.ospackage import ZipPayloads
from installer.platform.base import DirPayloads
from installer.stub import stub_system_version
from installer.targets.base import InstallTarget

log = logging.getLogger("installer.install")  # the install's log (ESP asahi/installer.log)

#: Where an entry with ``copy_installer_data`` gets the catalog it came from, on its ESP.
CATALOG_COPY = "installer_data.json"


def write_new_esp(work: Path, entry: OsEntry, facts: DeviceFacts, needed: Needed,
                  fetched: Path, fw: FirmwareOutput, vgid: str, boot_bin: bytes,
                  stage1_path: Path, stage1_len: int, esp_uuid: str, log_buf: io.StringIO,
                  target: InstallTarget, esp_part: Partition,
                  payloads: DirPayloads | ZipPayloads | None,
                  catalog_data: bytes) -> layout.Choice:
    """Everything the installer adds to the ESP (formats.md §5), the install log last;
    the kernel layout of m1n1/boot.bin it chose."""
    staging = work / "esp"
    _stage_esp(staging, entry, facts, needed, fetched, fw, vgid, boot_bin)
    choice = _kernel_layout(staging, payloads, esp_part.size)
    if catalog_data and any(p.type is PartitionType.EFI and p.copy_installer_data
                            for p in entry.partitions):
        (staging / "asahi" / CATALOG_COPY).write_bytes(catalog_data)
    if (work / "extras").is_dir():
        shutil.copytree(work / "extras", staging / "asahi" / "extras")
    log.info("stage 1 (%d bytes) at %s; ESP %s", stage1_len, stage1_path, esp_uuid)
    (staging / "asahi" / "installer.log").write_text(log_buf.getvalue())
    target.write_esp(esp_part, staging)
    return choice


def layout_note(entry: OsEntry) -> tuple[str, ...]:
    """What the plan says about m1n1/boot.bin's kernel layout (decided once the package is
    here: the plan itself needs no download)."""
    esp = next((p for p in entry.partitions if p.type is PartitionType.EFI), None)
    if not entry.package or esp is None:
        return ()
    return (f"m1n1/boot.bin: a compressed kernel is stored raw (booted in place, the fast "
            f"layout) when {layout.COPIES} copies fit on the ESP beside the firmware, "
            "else it stays compressed",)


def boot_bin(payloads: DirPayloads | ZipPayloads | None, prebuilt: Path) -> bytes:
    """m1n1/boot.bin: the package's (a Pippin stage 2 with payloads), else bare stage 2."""
    if payloads is not None:
        p = payloads.root / "esp" / "m1n1" / "boot.bin"
        if p.is_file():
            return p.read_bytes()
    return _read(prebuilt / "stage2.bin")


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise PippinError(f"cannot read {path}: {exc.strerror}",
                          hint="run from a Pippin checkout (bootchain/prebuilt/)") from exc


def _kernel_layout(staging: Path, payloads: DirPayloads | ZipPayloads | None,
                   esp_size: int) -> layout.Choice:
    """Issue 13: the raw kernel layout when the ESP has room (installer/bootobj/layout.py)."""
    pkg_esp = payloads.root / "esp" if payloads is not None else None
    choice = layout.choose_staged(staging, pkg_esp, esp_size)
    log.info("m1n1/boot.bin: kernel layout %s", choice.describe())
    return choice


def _stage_esp(staging: Path, entry: OsEntry, facts: DeviceFacts, needed: Needed,
               fetched: Path, fw: FirmwareOutput, vgid: str, boot_bin: bytes) -> None:
    """Everything the installer adds to the ESP (formats.md §5), as a local tree."""
    asahi = staging / "asahi"
    asahi.mkdir(parents=True)
    shutil.copytree(fw.vendorfw, staging / "vendorfw")
    shutil.copyfile(fw.rawdump, asahi / fw.rawdump.name)
    shutil.copyfile(fw.kernelcache, asahi / fw.kernelcache.name)
    b = needed.layout.boot_prefix
    for name in ("BuildManifest.plist", "RestoreVersion.plist", "SystemVersion.plist"):
        if (fetched / (b + name)).is_file():
            shutil.copyfile(fetched / (b + name), asahi / name)
    (asahi / "AdminUserRecoveryInfo.plist").write_bytes(plistlib.dumps({}))
    info = {
        "vgid": vgid,
        "system_version": str(stub_system_version(fetched, needed).get("ProductVersion", "")),
        "manifest_info": {
            "build_number": needed.identity.build_number or needed.build_version,
            "variant": needed.identity.variant,
            "device_class": needed.identity.device_class,
            "board_id": needed.identity.board_id,
            "chip_id": needed.identity.chip_id,
        },
        "admin_users": {},
        "os_name": entry.name.strip(),
        "device": facts.device_class,
    }
    (asahi / "stub_info.json").write_text(json.dumps(info, indent=1) + "\n")
    espupdate.update_esp(staging, boot_bin)
