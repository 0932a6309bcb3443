"""From a restore image and a Mac's identity to the members an install needs.

Reads the BuildManifest, picks the build identity and lists the members for a stub install
or for firmware extraction (formats.md §11); :func:`fetch_needed` also fetches both sets.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import requests

from installer.ipsw import manifest, ota, remote
from installer.ipsw.cache import cache_root as range_cache_root
from installer.ipsw.fetch import (
    FetchOptions,
    FetchProgress,
    FetchResult,
    fetch_members,
    read_members,
)
from installer.ipsw.member import DirectorySink
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


def fetch_needed(url: str, out: Path, *, board_id: int, chip_id: int, device_class: str,
                 session: requests.Session, cache_dir: Path, options: FetchOptions,
                 progress: Callable[[FetchProgress], None] | None = None,
                 ) -> tuple[Needed, FetchResult]:
    """Open the restore image at ``url`` and fetch into ``out`` (created) the members a stub
    install needs plus the firmware members, through the range cache under ``cache_dir``
    (shared with `pippin ipsw fetch`)."""
    archive = remote.open_archive(url, session, timeout=options.timeout)
    cache_root = range_cache_root(cache_dir)
    needed = needed_members(archive, board_id=board_id, chip_id=chip_id,
                            device_class=device_class, session=session, cache_root=cache_root)
    names = sorted(set(needed.members) | set(
        manifest.firmware_members(archive.names(), needed.identity, needed.layout)))
    out.mkdir()
    r = fetch_members(archive, names, DirectorySink(out), session=session,
                      cache_root=cache_root, options=options, progress=progress)
    return needed, r
