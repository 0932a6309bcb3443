"""From a restore image and a Mac's identity to the members an install needs.

Reads the BuildManifest (the only member fetched here), picks the build identity and lists
the members for a stub install or for firmware extraction (formats.md §11).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import requests

from installer.ipsw import manifest, ota
from installer.ipsw.fetch import read_members
from installer.ipsw.remote import Archive


class Purpose(StrEnum):
    STUB = "stub"
    FIRMWARE = "firmware"


@dataclass(frozen=True, slots=True)
class Needed:
    identity: manifest.BuildIdentity
    layout: ota.Layout
    members: tuple[str, ...]
    build_manifest: bytes  # the whole BuildManifest.plist, as fetched
    product_version: str
    build_version: str

    @property
    def basesystem(self) -> str:
        return manifest.basesystem_member(self.identity, self.layout)


def needed_members(
    archive: Archive,
    *,
    board_id: int,
    chip_id: int,
    device_class: str,
    purpose: Purpose = Purpose.STUB,
    session: requests.Session | None = None,
    cache_root: Path | None = None,
) -> Needed:
    """The build identity for this Mac and the members ``purpose`` needs."""
    layout = ota.detect_layout(archive.names())
    name = f"{layout.boot_prefix}BuildManifest.plist"
    data = read_members(archive, [name], session=session, cache_root=cache_root)[name]
    bm = manifest.parse_build_manifest(data)
    ident = manifest.select_identity(bm, board_id=board_id, chip_id=chip_id,
                                     device_class=device_class, ota=layout.ota)
    pick = manifest.stub_members if purpose is Purpose.STUB else manifest.firmware_members
    members = pick(archive.names(), ident, layout)
    return Needed(ident, layout, tuple(members), data, bm.product_version, bm.build_version)
