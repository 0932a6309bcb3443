"""``diskutil``/``ioreg`` answers rendered from a state dictionary, in the structure of the
recorded outputs (tests/fixtures/diskutil: keys, nesting, value types).

The state: ``disks`` (``id``, ``size``, ``internal``, ``block``, ``media``, ``bus``,
``parts``: ``id``, ``content``, ``offset``, ``size``, ``uuid``), ``containers`` (``ref``,
``uuid``, ``store``, ``ceiling``, ``free``, ``volumes``: ``id``, ``name``, ``roles``,
``used``, ``uuid``, ``mount``) and ``mounted`` (partition id → mount point).
"""

from __future__ import annotations

from typing import Any

State = dict[str, Any]


class Unknown(Exception):
    """A device the state does not have (diskutil's own wording)."""


def disk_of(s: State, dev: str) -> dict[str, Any]:
    for d in s["disks"]:
        if d["id"] == dev or any(p["id"] == dev for p in d["parts"]):
            found: dict[str, Any] = d
            return found
    raise Unknown(f"Could not find disk: {dev}")


def part(s: State, pid: str) -> dict[str, Any]:
    for p in disk_of(s, pid)["parts"]:
        if p["id"] == pid:
            found: dict[str, Any] = p
            return found
    raise Unknown(f"Could not find disk: {pid}")


def volume(s: State, vid: str) -> tuple[dict[str, Any], dict[str, Any]]:
    for c in s["containers"]:
        for v in c["volumes"]:
            if v["id"] == vid:
                return c, v
    raise Unknown(f"Could not find volume: {vid}")


def render_list(s: State, only: str | None) -> dict[str, Any]:
    """``diskutil list -plist [disk]``."""
    adp, all_disks, whole = [], [], []
    for d in s["disks"]:
        if only and d["id"] != only:
            continue
        parts = sorted(d["parts"], key=lambda p: p["offset"])
        adp.append({"Content": "GUID_partition_scheme", "DeviceIdentifier": d["id"],
                    "OSInternal": False, "Size": d["size"],
                    "Partitions": [{"Content": p["content"], "DeviceIdentifier": p["id"],
                                    "DiskUUID": p["uuid"], "Size": p["size"]}
                                   for p in parts]})
        all_disks += [d["id"]] + [p["id"] for p in parts]
        whole.append(d["id"])
    if only is None:
        for c in s["containers"]:
            adp.append({"APFSPhysicalStores": [{"DeviceIdentifier": c["store"]}],
                        "APFSVolumes": [{"DeviceIdentifier": v["id"], "VolumeName": v["name"],
                                         "CapacityInUse": v["used"], "Size": c["ceiling"]}
                                        for v in c["volumes"]],
                        "Content": "Apple_APFS_Container", "DeviceIdentifier": c["ref"],
                        "OSInternal": False, "Partitions": [], "Size": c["ceiling"]})
            all_disks += [c["ref"]] + [v["id"] for v in c["volumes"]]
            whole.append(c["ref"])
    return {"AllDisks": all_disks, "AllDisksAndPartitions": adp, "VolumesFromDisks": [],
            "WholeDisks": whole}


def render_apfs_list(s: State) -> dict[str, Any]:
    """``diskutil apfs list -plist``."""
    return {"Containers": [{
        "APFSContainerUUID": c["uuid"], "CapacityCeiling": c["ceiling"],
        "CapacityFree": c["free"], "ContainerReference": c["ref"],
        "DesignatedPhysicalStore": c["store"], "Fusion": False,
        "PhysicalStores": [{"DeviceIdentifier": c["store"], "Size": c["ceiling"]}],
        "Volumes": [{"APFSVolumeUUID": v["uuid"], "CapacityInUse": v["used"],
                     "DeviceIdentifier": v["id"], "Name": v["name"], "Roles": v["roles"]}
                    for v in c["volumes"]],
    } for c in s["containers"]]}


def render_info(s: State, dev: str) -> dict[str, Any]:
    """``diskutil info -plist <dev>`` for a volume, a whole disk or a partition."""
    dev = dev.removeprefix("/dev/")
    try:
        c, v = volume(s, dev)
    except Unknown:
        pass
    else:
        return {"DeviceIdentifier": dev, "VolumeName": v["name"], "Internal": True,
                "VirtualOrPhysical": "Virtual", "TotalSize": c["ceiling"],
                "APFSContainerReference": c["ref"], "MountPoint": v.get("mount") or ""}
    d = disk_of(s, dev)
    base = {"Internal": d["internal"], "BusProtocol": d["bus"], "VirtualOrPhysical":
            "Physical", "DeviceBlockSize": d["block"], "MediaName": d["media"]}
    if dev == d["id"]:
        return {**base, "DeviceIdentifier": dev, "WholeDisk": True, "TotalSize": d["size"],
                "Content": "GUID_partition_scheme"}
    p = part(s, dev)
    return {**base, "DeviceIdentifier": dev, "WholeDisk": False, "TotalSize": p["size"],
            "Size": p["size"], "Content": p["content"], "DiskUUID": p["uuid"],
            "PartitionMapPartitionOffset": p["offset"],
            "MountPoint": s.get("mounted", {}).get(dev, "")}


def render_ioreg(dev: dict[str, Any]) -> dict[str, Any]:
    """``ioreg -alp IODeviceTree``: the root's compatible/target-type/model and the
    ``chosen`` node's ids and firmware versions (``dev``: board, chip, os_fw, sys_fw,
    compatible, target, model)."""
    chosen = {"IORegistryEntryName": "chosen",
              "board-id": int(dev["board"]).to_bytes(4, "little"),
              "chip-id": int(dev["chip"]).to_bytes(4, "little"),
              "firmware-version": str(dev["os_fw"]).encode() + b"\0",
              "system-firmware-version": str(dev["sys_fw"]).encode() + b"\0"}
    return {"IORegistryEntryName": "device-tree",
            "compatible": str(dev["compatible"]).encode() + b"\0AppleARM\0",
            "target-type": str(dev["target"]).encode() + b"\0",
            "model": str(dev["model"]).encode() + b"\0",
            "IORegistryEntryChildren": [{"IORegistryEntryName": "cpus"}, chosen]}
