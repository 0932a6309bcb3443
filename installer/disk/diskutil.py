"""Parse macOS ``diskutil … -plist`` outputs into the disk model (pure: bytes in, values out).

``diskutil list -plist`` gives whole disks and partition ids, ``diskutil info -plist <dev>``
each partition's offset and type, ``diskutil apfs list -plist`` containers, volumes and
roles, ``resizeContainer … limits -plist`` the resize bounds. Every error names the key.
"""

from __future__ import annotations

import plistlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from installer.disk.model import (
    Container,
    Disk,
    DiskModel,
    Partition,
    PartKind,
    ResizeLimits,
    Volume,
    kind_of,
)
from installer.errors import BackendError


def load_plist(data: bytes, what: str) -> dict[str, Any]:
    try:
        doc = plistlib.loads(data)
    except (plistlib.InvalidFileException, ValueError, TypeError) as exc:
        raise BackendError(f"{what}: not a property list ({exc})") from exc
    if not isinstance(doc, dict):
        raise BackendError(f"{what}: top level is not a dict")
    return doc


def _get(d: Mapping[str, Any], key: str, typ: type, what: str) -> Any:
    if key not in d:
        raise BackendError(f"{what}: key {key} is missing")
    v = d[key]
    if not isinstance(v, typ) or (typ is int and isinstance(v, bool)):
        raise BackendError(f"{what}: key {key} is not {typ.__name__}")
    return v


def _opt_int(d: Mapping[str, Any], key: str, default: int, what: str) -> int:
    v = d.get(key, default)
    if not isinstance(v, int) or isinstance(v, bool):
        raise BackendError(f"{what}: key {key} is not int")
    return v


def _list(d: Mapping[str, Any], key: str, what: str) -> list[dict[str, Any]]:
    v = d.get(key, [])
    if not isinstance(v, list) or not all(isinstance(x, dict) for x in v):
        raise BackendError(f"{what}: key {key} is not a list of dicts")
    return v


@dataclass(frozen=True, slots=True)
class ListedDisk:
    ref: str
    size: int
    content: str
    partitions: tuple[tuple[str, str, int, str], ...]  # (id, content, size, DiskUUID)
    apfs_stores: tuple[str, ...]  # physical stores, for synthesized APFS containers


def parse_list(data: bytes) -> tuple[ListedDisk, ...]:
    what = "diskutil list -plist"
    doc = load_plist(data, what)
    out = []
    for d in _list(doc, "AllDisksAndPartitions", what):
        ref = _get(d, "DeviceIdentifier", str, what)
        w = f"{what} {ref}"
        parts = tuple(
            (_get(p, "DeviceIdentifier", str, w), str(p.get("Content", "")),
             _get(p, "Size", int, w), str(p.get("DiskUUID", "")))
            for p in _list(d, "Partitions", w)
        )
        stores = tuple(_get(s, "DeviceIdentifier", str, w)
                       for s in _list(d, "APFSPhysicalStores", w))
        out.append(ListedDisk(ref, _get(d, "Size", int, w), str(d.get("Content", "")), parts,
                              stores))
    return tuple(out)


@dataclass(frozen=True, slots=True)
class ApfsContainer:
    ref: str
    uuid: str
    ceiling: int
    free: int
    stores: tuple[str, ...]
    volumes: tuple[Volume, ...]


def parse_apfs_list(data: bytes) -> tuple[ApfsContainer, ...]:
    what = "diskutil apfs list -plist"
    doc = load_plist(data, what)
    out = []
    for c in _list(doc, "Containers", what):
        ref = _get(c, "ContainerReference", str, what)
        w = f"{what} {ref}"
        stores = [_get(s, "DeviceIdentifier", str, w) for s in _list(c, "PhysicalStores", w)]
        designated = c.get("DesignatedPhysicalStore")
        if isinstance(designated, str) and designated not in stores:
            stores.insert(0, designated)
        vols = []
        for v in _list(c, "Volumes", w):
            roles = v.get("Roles", [])
            if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
                raise BackendError(f"{w}: key Roles is not a list of strings")
            vols.append(Volume(
                device=_get(v, "DeviceIdentifier", str, w), name=str(v.get("Name", "")),
                roles=tuple(roles), used=_opt_int(v, "CapacityInUse", 0, w),
                uuid=str(v.get("APFSVolumeUUID", "")),
            ))
        out.append(ApfsContainer(
            ref, str(c.get("APFSContainerUUID", "")), _get(c, "CapacityCeiling", int, w),
            _get(c, "CapacityFree", int, w), tuple(stores), tuple(vols),
        ))
    return tuple(out)


@dataclass(frozen=True, slots=True)
class DiskInfo:
    ref: str
    offset: int | None
    size: int
    content: str
    uuid: str
    internal: bool
    physical: bool
    block_size: int
    mount_point: str | None


def parse_info(data: bytes) -> DiskInfo:
    what = "diskutil info -plist"
    d = load_plist(data, what)
    ref = _get(d, "DeviceIdentifier", str, what)
    w = f"{what} {ref}"
    size = d.get("TotalSize", d.get("Size"))
    if not isinstance(size, int) or isinstance(size, bool):
        raise BackendError(f"{w}: key TotalSize is missing")
    off = d.get("PartitionMapPartitionOffset")
    if off is not None and (not isinstance(off, int) or isinstance(off, bool)):
        raise BackendError(f"{w}: key PartitionMapPartitionOffset is not int")
    vp = d.get("VirtualOrPhysical", "Physical")
    mp = d.get("MountPoint")
    return DiskInfo(
        ref=ref, offset=off, size=size, content=str(d.get("Content", "")),
        uuid=str(d.get("DiskUUID", "")), internal=bool(d.get("Internal", False)),
        physical=vp != "Virtual", block_size=_opt_int(d, "DeviceBlockSize", 4096, w),
        mount_point=mp if isinstance(mp, str) and mp else None,
    )


def parse_limits(data: bytes, current_default: int = 0) -> ResizeLimits:
    what = "diskutil apfs resizeContainer limits -plist"
    d = load_plist(data, what)
    current = _get(d, "CurrentSize", int, what)
    pref = _get(d, "MinimumSizePreferred", int, what)
    return ResizeLimits(current, pref, _opt_int(d, "MaximumSize", current, what))


def group_of(groups: Mapping[str, tuple[str, ...]], volume_uuid: str) -> str:
    """The VGID of the group holding ``volume_uuid``, or ""."""
    return next((g for g, vols in groups.items() if volume_uuid in vols), "")


def parse_volume_groups(data: bytes) -> dict[str, tuple[str, ...]]:
    """``diskutil apfs listVolumeGroups <ctr> -plist`` → {group UUID: volume UUIDs}."""
    what = "diskutil apfs listVolumeGroups -plist"
    doc = load_plist(data, what)
    out: dict[str, tuple[str, ...]] = {}
    for g in _list(doc, "Groups", what):
        gid = _get(g, "APFSVolumeGroupUUID", str, what)
        out[gid] = tuple(_get(v, "APFSVolumeUUID", str, what) for v in _list(g, "Volumes", what))
    return out


def build_model(
    listed: tuple[ListedDisk, ...],
    containers: tuple[ApfsContainer, ...],
    infos: Mapping[str, DiskInfo],
    limits: Mapping[str, ResizeLimits],
    stubs: Mapping[str, bool],
    groups: Mapping[str, str] | None = None,
) -> DiskModel:
    """Join the outputs: physical disks with partitions (offsets from ``infos``) and the
    APFS container each partition backs (``groups``: container ref → VGID of its System
    volume). Synthesized container disks are not listed as disks of their own."""
    groups = groups or {}
    by_store = {s: c for c in containers for s in c.stores}
    synthesized = {d.ref for d in listed if d.apfs_stores}
    disks = []
    for ld in listed:
        if ld.ref in synthesized:
            continue
        info = infos.get(ld.ref)
        parts = []
        for pid, content, size, duuid in ld.partitions:
            pinfo = infos.get(pid)
            if pinfo is None or pinfo.offset is None:
                raise BackendError(f"diskutil info -plist {pid}: no PartitionMapPartitionOffset")
            kind = kind_of(content)
            ctr = None
            ac = by_store.get(pid)
            if ac is not None:
                ctr = Container(ac.ref, ac.uuid, ac.ceiling, ac.free, ac.volumes,
                                stubs.get(ac.ref), groups.get(ac.ref, ""))
            index = int(pid.rsplit("s", 1)[1]) if "s" in pid[4:] else 0
            parts.append(Partition(
                ref=pid, index=index, kind=kind, start=pinfo.offset, size=size,
                name=content, uuid=duuid or pinfo.uuid,
                type_guid=content if kind is PartKind.OTHER else "", container=ctr,
                limits=limits.get(pid),
            ))
        disks.append(Disk(
            ref=ld.ref, size=ld.size, block_size=info.block_size if info else 4096,
            internal=info.internal if info else False,
            physical=info.physical if info else True, partitions=tuple(parts),
        ))
    return DiskModel(tuple(disks))
