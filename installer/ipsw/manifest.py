"""BuildManifest.plist: build identities, identity selection, and the members an install needs.

Facts from formats.md §11. ``parse_build_manifest`` is the parse edge (plist dicts in,
frozen values out; errors name the bad key); the rest is pure.
"""

from __future__ import annotations

import fnmatch
import logging
import plistlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from xml.parsers.expat import ExpatError

from installer.errors import RestoreImageError
from installer.ipsw.ota import Layout

log = logging.getLogger(__name__)

#: Manifest entries the stub never needs (the BaseSystem is listed separately).
EXCLUDED_KEYS = frozenset({"BaseSystem", "OS", "Ap,SystemVolumeCanonicalMetadata",
                           "RestoreRamDisk", "RestoreTrustCache"})
VARIANT_ERASE = "macOS Customer"
VARIANT_UPDATE = "macOS Customer Software Update"


@dataclass(frozen=True, slots=True)
class ManifestEntry:
    key: str
    path: str
    fud: bool
    loaded_by_iboot: bool
    loaded_by_iboot_stage1: bool


@dataclass(frozen=True, slots=True)
class BuildIdentity:
    board_id: int
    chip_id: int
    device_class: str
    restore_behavior: str
    variant: str
    build_number: str
    entries: tuple[ManifestEntry, ...]
    index: int  # position in BuildIdentities (to filter the plist)

    def path(self, key: str) -> str | None:
        for e in self.entries:
            if e.key == key:
                return e.path
        return None


@dataclass(frozen=True, slots=True)
class BuildManifest:
    product_version: str
    build_version: str
    identities: tuple[BuildIdentity, ...]


def _plist(data: bytes, what: str) -> dict[str, Any]:
    try:
        obj = plistlib.loads(data)
    except (plistlib.InvalidFileException, ExpatError, ValueError, TypeError) as exc:
        raise RestoreImageError(f"{what} is not a valid plist: {exc}") from exc
    if not isinstance(obj, dict):
        raise RestoreImageError(f"{what}: top level is not a dictionary")
    return obj


def _int(value: Any, key: str) -> int:
    try:
        return int(value, 16) if isinstance(value, str) else int(value)
    except (TypeError, ValueError) as exc:
        raise RestoreImageError(f"BuildManifest.plist: {key} {value!r} is not a number") from exc


def parse_build_manifest(data: bytes) -> BuildManifest:
    """Parse BuildManifest.plist bytes into frozen values."""
    top = _plist(data, "BuildManifest.plist")
    raw = top.get("BuildIdentities")
    if not isinstance(raw, list) or not raw:
        raise RestoreImageError("BuildManifest.plist: BuildIdentities missing or empty")
    idents = []
    for i, ident in enumerate(raw):
        where = f"BuildIdentities[{i}]"
        if not isinstance(ident, dict):
            raise RestoreImageError(f"BuildManifest.plist: {where} is not a dictionary")
        info = ident.get("Info")
        manifest = ident.get("Manifest")
        if not isinstance(info, dict) or not isinstance(manifest, dict):
            raise RestoreImageError(f"BuildManifest.plist: {where} lacks Info or Manifest")
        entries = []
        for key, ent in manifest.items():
            einfo = ent.get("Info") if isinstance(ent, dict) else None
            path = einfo.get("Path") if isinstance(einfo, dict) else None
            if not isinstance(path, str):
                continue  # entries without a file (digests only)
            assert isinstance(einfo, dict)
            entries.append(ManifestEntry(str(key), path, bool(einfo.get("IsFUDFirmware")),
                                         bool(einfo.get("IsLoadedByiBoot")),
                                         bool(einfo.get("IsLoadedByiBootStage1"))))
        for k in ("ApBoardID", "ApChipID"):
            if k not in ident:
                raise RestoreImageError(f"BuildManifest.plist: {where} lacks {k}")
        idents.append(BuildIdentity(
            _int(ident["ApBoardID"], f"{where}.ApBoardID"),
            _int(ident["ApChipID"], f"{where}.ApChipID"),
            str(info.get("DeviceClass", "")).lower(), str(info.get("RestoreBehavior", "")),
            str(info.get("Variant", "")), str(info.get("BuildNumber", "")),
            tuple(entries), i))
    return BuildManifest(str(top.get("ProductVersion", "")),
                         str(top.get("ProductBuildVersion", "")), tuple(idents))


def select_identity(bm: BuildManifest, *, board_id: int, chip_id: int, device_class: str,
                    ota: bool = False) -> BuildIdentity:
    """The identity for this Mac: board, chip, device class and the Erase (IPSW) or
    Update (OTA) variant."""
    behavior, variant = ("Update", VARIANT_UPDATE) if ota else ("Erase", VARIANT_ERASE)
    for ident in bm.identities:
        if (ident.board_id == board_id and ident.chip_id == chip_id
                and ident.device_class == device_class.lower()
                and ident.restore_behavior == behavior and ident.variant == variant):
            return ident
    known = sorted({f"{i.device_class} (board 0x{i.board_id:02X}, chip 0x{i.chip_id:04X})"
                    for i in bm.identities})
    raise RestoreImageError(
        f"no {variant!r} build identity for {device_class} board 0x{board_id:02X} "
        f"chip 0x{chip_id:04X} in {bm.product_version} ({bm.build_version})",
        hint="this restore image supports: " + ", ".join(known))


def filtered_manifest(data: bytes, identity: BuildIdentity) -> bytes:
    """BuildManifest.plist reduced to the chosen identity (what the stub's Preboot holds)."""
    top = _plist(data, "BuildManifest.plist")
    top["BuildIdentities"] = [top["BuildIdentities"][identity.index]]
    return plistlib.dumps(top)


def _match(names: Sequence[str], pattern: str) -> list[str]:
    if pattern.endswith("/**"):
        base = pattern[:-2]
        return [n for n in names if n.startswith(base) and not n.endswith("/")]
    return [n for n in names if fnmatch.fnmatchcase(n, pattern)]


def stub_members(names: Sequence[str], identity: BuildIdentity, layout: Layout) -> list[str]:
    """Members a stub macOS install needs from this image, in archive-name order."""
    b, r = layout.boot_prefix, layout.restore_prefix
    optional = [f"{b}RestoreVersion.plist", f"{b}SystemVersion.plist",
                f"{b}PlatformSupport.plist", f"{b}usr/standalone/bootcaches.plist",
                f"{r}BootabilityBundle/Restore/Firmware/Bootability.dmg.trustcache"]
    want = {f"{b}BuildManifest.plist"}
    have = set(names)
    for name in optional:
        if name in have:
            want.add(name)
        else:
            log.warning("restore image lacks %s", name)
    want.update(_match(names, f"{r}BootabilityBundle/Restore/Bootability/**"))
    want.update(_match(names, f"{b}Firmware/Manifests/restore/{identity.variant}/**"))
    for e in identity.entries:
        if e.key in EXCLUDED_KEYS or e.key.startswith("Cryptex"):
            continue
        want.add(b + e.path)
    want.add(basesystem_member(identity, layout))
    return _require(names, want)


def firmware_members(names: Sequence[str], identity: BuildIdentity, layout: Layout, *,
                     basesystem: bool = True) -> list[str]:
    """Members vendor-firmware extraction needs: the manifest, kernelcache (ASMedia), FUD
    firmware Image4 files, and (unless ``basesystem=False``) the BaseSystem, whose
    ``usr/share/firmware`` holds the Wi-Fi and Bluetooth trees."""
    b = layout.boot_prefix
    want = {f"{b}BuildManifest.plist"}
    kc = identity.path("KernelCache")
    if kc is None:
        raise RestoreImageError(f"build identity {identity.device_class} has no KernelCache")
    want.add(b + kc)
    want.update(b + e.path for e in fud_entries(identity))
    if basesystem:
        want.add(basesystem_member(identity, layout))
    return _require(names, want)


def fud_entries(identity: BuildIdentity) -> list[ManifestEntry]:
    """FUD firmware: IsFUDFirmware, not loaded by iBoot (stage 1 or 2), an .im4p file."""
    return [e for e in identity.entries if e.fud and not e.loaded_by_iboot
            and not e.loaded_by_iboot_stage1 and e.path.endswith(".im4p")]


def basesystem_member(identity: BuildIdentity, layout: Layout) -> str:
    if layout.ota:
        return layout.basesystem
    path = identity.path("BaseSystem")
    if path is None:
        raise RestoreImageError(f"build identity {identity.device_class} has no BaseSystem")
    return path


def _require(names: Sequence[str], want: set[str]) -> list[str]:
    have = set(names)
    missing = sorted(want - have)
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise RestoreImageError("restore image lacks needed members: "
                                + ", ".join(missing[:3]) + more)
    order = {n: i for i, n in enumerate(names)}
    return sorted(want, key=order.__getitem__)
