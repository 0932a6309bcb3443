"""The stub macOS volumes' contents (formats.md §11 "Stub contents"), from fetched members.

Input: the directory the restore-image members were fetched into (archive names as paths)
and the :class:`installer.ipsw.select.Needed` that listed them. Output: files in the
System, Preboot and Recovery volume directories (on the sim, the sidecar folders of the
stub container; on a Mac, their mount points).

The stage-1 boot object goes where step 2 picks it up: inside the step-2 app on the System
volume, ``Finish Installation.app/Contents/Resources/boot.bin`` (:data:`STAGE1_PATH`);
step 2 registers it with ``kmutil configure-boot`` (formats.md §2).
"""

from __future__ import annotations

import logging
import plistlib
import shutil
from dataclasses import dataclass
from pathlib import Path

from installer.errors import RestoreImageError
from installer.ipsw import manifest, ota
from installer.ipsw.select import Needed
from vendorfw.atomic import write_bytes

log = logging.getLogger(__name__)

STEP2_APP = "Finish Installation.app"
STAGE1_PATH = f"{STEP2_APP}/Contents/Resources/boot.bin"
CORESERVICES = "System/Library/CoreServices"


@dataclass(frozen=True, slots=True)
class StubVolumes:
    system: Path
    preboot: Path
    recovery: Path


def _copy(src: Path, dst: Path) -> int:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        shutil.copyfile(src, dst)
    except OSError as exc:
        raise RestoreImageError(f"cannot copy {src.name} into the stub: {exc}") from exc
    return dst.stat().st_size


def _plist(path: Path) -> dict[str, object]:
    try:
        doc = plistlib.loads(path.read_bytes())
    except (OSError, plistlib.InvalidFileException, ValueError) as exc:
        raise RestoreImageError(f"{path.name} is not a readable plist: {exc}") from exc
    if not isinstance(doc, dict):
        raise RestoreImageError(f"{path.name}: top level is not a dictionary")
    return doc


def stub_system_version(fetched: Path, needed: Needed) -> dict[str, object]:
    """SystemVersion.plist as the stub's System volume carries it (" (stub)" appended)."""
    src = fetched / f"{needed.layout.boot_prefix}SystemVersion.plist"
    doc: dict[str, object] = (
        _plist(src) if src.is_file() else {"ProductVersion": needed.product_version,
                                           "ProductBuildVersion": needed.build_version})
    visible = str(doc.get("ProductUserVisibleVersion", doc.get("ProductVersion", "")))
    doc["ProductUserVisibleVersion"] = visible + " (stub)"
    return doc


def build_stub(fetched: Path, needed: Needed, vols: StubVolumes, vgid: str,
               stage1: bytes, *, os_name: str) -> int:
    """Write the stub contents; returns the bytes written."""
    b, r = needed.layout.boot_prefix, needed.layout.restore_prefix
    ident = needed.identity
    restore = vols.preboot / vgid / "restore"
    written = 0
    restore.mkdir(parents=True, exist_ok=True)
    write_bytes(restore / "BuildManifest.plist",
                manifest.filtered_manifest(needed.build_manifest, ident))
    for name in ("RestoreVersion.plist", "SystemVersion.plist"):
        if (fetched / (b + name)).is_file():
            written += _copy(fetched / (b + name), restore / name)
    boot_dir = f"{r}BootabilityBundle/Restore/Bootability/"
    trust = f"{r}BootabilityBundle/Restore/Firmware/Bootability.dmg.trustcache"
    manifests = f"{b}Firmware/Manifests/restore/{ident.variant}/"
    paths = {b + e.path for e in ident.entries
             if e.key not in manifest.EXCLUDED_KEYS and not e.key.startswith("Cryptex")}
    for name in needed.members:
        src = fetched / name
        if not src.is_file():
            continue
        if name.startswith(boot_dir):
            written += _copy(src, restore / "Bootability" / name[len(boot_dir):])
        elif name == trust:
            written += _copy(src, restore / "Bootability.trustcache")
        elif name.startswith(manifests) or name in paths:
            written += _copy(src, restore / name[len(b):])
    basesystem = fetched / needed.basesystem
    dmg = vols.recovery / vgid / "usr/standalone/firmware/arm64eBaseSystem.dmg"
    dmg.parent.mkdir(parents=True, exist_ok=True)
    if needed.layout.ota:
        written += ota.decode_bxdiff50_file(basesystem, dmg)
    else:
        written += _copy(basesystem, dmg)
    sysv = vols.system
    for name, dest in (("usr/standalone/bootcaches.plist", "usr/standalone/bootcaches.plist"),
                       ("PlatformSupport.plist", f"{CORESERVICES}/PlatformSupport.plist")):
        if (fetched / (b + name)).is_file():
            written += _copy(fetched / (b + name), sysv / dest)
    (sysv / CORESERVICES).mkdir(parents=True, exist_ok=True)
    write_bytes(sysv / CORESERVICES / "SystemVersion.plist",
                plistlib.dumps(stub_system_version(fetched, needed)))
    app = sysv / STEP2_APP / "Contents"
    (app / "Resources").mkdir(parents=True, exist_ok=True)
    write_bytes(app / "Info.plist", plistlib.dumps({
        "CFBundleName": "Finish Installation", "CFBundleIdentifier": "org.pippin.step2",
        "CFBundlePackageType": "APPL", "PippinOSName": os_name}))
    write_bytes(sysv / STAGE1_PATH, stage1)
    write_bytes(sysv / ".IAPhysicalMedia", plistlib.dumps({
        "AppName": STEP2_APP, "ProductBuildVersion": needed.build_version,
        "ProductVersion": needed.product_version}))
    written += len(stage1)
    log.info("stub contents written (%d bytes, vgid %s)", written, vgid)
    return written
