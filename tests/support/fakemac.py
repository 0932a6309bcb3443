"""A fake Mac for the macOS backend: PATH shims that log argv and answer like diskutil & co.

The starting state is read from the recorded fixtures (tests/fixtures/diskutil/<machine>/),
and the answers are rendered in the same plist structure (installer.demo.standin.plists,
shared with the macOS stand-in that acts on a simulated Mac image), so a backend that parses the
recordings parses the fake. The state follows the commands (addPartition, resizeContainer,
addVolume, eraseVolume…), so a whole plan can run against it.

Shim entry: ``python -m tests.support.fakemac <command> <args…>`` with FAKEMAC_STATE and
FAKEMAC_LOG in the environment.
"""

from __future__ import annotations

import json
import os
import plistlib
import sys
from pathlib import Path
from typing import Any

from installer.demo.standin import plists

MiB = 1 << 20
SHIMS = ("diskutil", "newfs_msdos", "hdiutil", "bless", "bputil", "ditto", "test", "ioreg",
         "nvram", "kmutil", "sw_vers")
ROLE = {"D": "Data", "S": "System", "B": "Preboot", "R": "Recovery"}


def _load(p: Path) -> dict[str, Any]:
    return plistlib.loads(p.read_bytes())


def state_from_fixture(fixture: Path, dirs: tuple[str, ...] = ("/Library",)) -> dict[str, Any]:
    lst = _load(fixture / "list.plist")
    apfs = _load(fixture / "apfs-list.plist")
    synthesized = {d["DeviceIdentifier"] for d in lst["AllDisksAndPartitions"]
                   if d.get("APFSPhysicalStores")}
    disks = []
    for d in lst["AllDisksAndPartitions"]:
        if d["DeviceIdentifier"] in synthesized:
            continue
        info = _load(fixture / f"info-{d['DeviceIdentifier']}.plist")
        parts = []
        for p in d.get("Partitions", []):
            pi = _load(fixture / f"info-{p['DeviceIdentifier']}.plist")
            parts.append({"id": p["DeviceIdentifier"], "content": p["Content"],
                          "offset": pi["PartitionMapPartitionOffset"], "size": p["Size"],
                          "uuid": p.get("DiskUUID", "")})
        disks.append({"id": d["DeviceIdentifier"], "size": d["Size"],
                      "internal": info["Internal"], "block": info["DeviceBlockSize"],
                      "media": info["MediaName"], "bus": info["BusProtocol"], "parts": parts})
    containers = []
    for c in apfs["Containers"]:
        containers.append({
            "ref": c["ContainerReference"], "uuid": c["APFSContainerUUID"],
            "store": c["DesignatedPhysicalStore"], "ceiling": c["CapacityCeiling"],
            "free": c["CapacityFree"],
            "volumes": [{"id": v["DeviceIdentifier"], "name": v["Name"], "roles": v["Roles"],
                         "used": v["CapacityInUse"], "uuid": v["APFSVolumeUUID"],
                         "mount": "/" if "System" in v["Roles"] and c["ContainerReference"]
                         == "disk3" else None}
                        for v in c["Volumes"]],
        })
    limits = {}
    for f in fixture.glob("limits-*.plist"):
        limits[f.stem[len("limits-"):]] = _load(f)
    return {"disks": disks, "containers": containers, "limits": limits, "dirs": list(dirs),
            "fail": {}, "serial": 0}


def install(bin_dir: Path, state: dict[str, Any], state_path: Path, log_path: Path,
            repo_root: Path) -> dict[str, str]:
    """Write the shims and the state; return the environment for a Runner."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    for name in SHIMS:
        shim = bin_dir / name
        # -S: the fake needs only the standard library, and starts twice as fast without site
        shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -S "{Path(__file__).resolve()}" '
                        f'{name} "$@"\n')
        shim.chmod(0o755)
    state_path.write_text(json.dumps(state))
    return {"PATH": f"{bin_dir}:/usr/bin:/bin", "FAKEMAC_STATE": str(state_path),
            "FAKEMAC_LOG": str(log_path), "PYTHONPATH": str(repo_root)}


def read_log(log_path: Path) -> list[list[str]]:
    if not log_path.exists():
        return []
    return [json.loads(line) for line in log_path.read_text().splitlines()]


class Fail(Exception):
    pass


class FakeMac:
    def __init__(self, state: dict[str, Any]) -> None:
        self.s = state

    # -- lookups ---------------------------------------------------------------------------
    def disk_of(self, part: str) -> dict[str, Any]:
        for d in self.s["disks"]:
            if any(p["id"] == part for p in d["parts"]) or d["id"] == part:
                return d
        raise Fail(f"Could not find disk: {part}")

    def part(self, pid: str) -> dict[str, Any]:
        for p in self.disk_of(pid)["parts"]:
            if p["id"] == pid:
                return p
        raise Fail(f"Could not find disk: {pid}")

    def container(self, key: str) -> dict[str, Any]:
        for c in self.s["containers"]:
            if key in (c["ref"], c["store"]):
                return c
        raise Fail(f"{key} is not an APFS Container")

    def volume(self, vid: str) -> tuple[dict[str, Any], dict[str, Any]]:
        for c in self.s["containers"]:
            for v in c["volumes"]:
                if v["id"] == vid:
                    return c, v
        raise Fail(f"Could not find volume: {vid}")

    # -- renderers (shared with the macOS stand-in) ----------------------------------------
    def render_list(self, only: str | None) -> dict[str, Any]:
        return plists.render_list(self.s, only)

    def render_apfs_list(self) -> dict[str, Any]:
        return plists.render_apfs_list(self.s)

    def render_groups(self, ref: str) -> dict[str, Any]:
        """One group per Data volume, with the System volume(s) grouped with it; its UUID
        is the Data volume's (as in the recorded fixture)."""
        c = self.container(ref)
        groups = []
        for d in (v for v in c["volumes"] if "Data" in v["roles"]):
            members = [d] + [v for v in c["volumes"] if "System" in v["roles"]
                             and v.get("group") in (None, d["id"])]
            c["group"] = d["uuid"]
            groups.append({"APFSVolumeGroupUUID": d["uuid"], "Volumes": [
                {"APFSVolumeUUID": v["uuid"], "DeviceIdentifier": v["id"], "Name": v["name"],
                 "Roles": v["roles"]} for v in members]})
        return {"Groups": groups}

    def render_info(self, dev: str) -> dict[str, Any]:
        try:
            return plists.render_info(self.s, dev)
        except plists.Unknown as exc:
            raise Fail(str(exc)) from None

    # -- mutations -------------------------------------------------------------------------
    def add_partition(self, after: str, fs: str, label: str, size: int) -> str:
        d = self.disk_of(after)
        parts = sorted(d["parts"], key=lambda p: p["offset"])
        start = 24576 if after == d["id"] else self.part(after)["offset"] + \
            self.part(after)["size"]
        start = -(-start // MiB) * MiB
        nxt = min((p["offset"] for p in parts if p["offset"] >= start),
                  default=(d["size"] - 6 * 4096) // 4096 * 4096)
        if start + size > nxt:
            raise Fail("Error: -69743: The new size must be different than the existing size")
        used = {int(p["id"].rsplit("s", 1)[1]) for p in parts}
        n = next(i for i in range(1, 129) if i not in used)
        pid = f"{d['id']}s{n}"
        self.s["serial"] += 1
        uid = f"00000000-0000-4000-8000-{self.s['serial']:012d}"
        content = {"apfs": "Apple_APFS", "%EFI%": "EFI"}.get(fs, fs.strip("%").upper())
        d["parts"].append({"id": pid, "content": content, "offset": start, "size": size,
                           "uuid": uid})
        if fs == "apfs":
            nums = [int(x["id"][4:]) for x in self.s["disks"]] + \
                [int(c["ref"][4:]) for c in self.s["containers"]]
            ref = f"disk{max(nums) + 1}"
            self.s["containers"].append({
                "ref": ref, "uuid": uid.replace("4000", "5000"), "store": pid,
                "ceiling": size, "free": size - 1_048_576,
                "volumes": [{"id": f"{ref}s1", "name": label, "roles": [], "used": 1_048_576,
                             "uuid": uid.replace("4000", "6000"), "mount": None}]})
        return pid

    def resize(self, pid: str, size: int) -> None:
        p = self.part(pid)
        c = self.container(pid)
        if size < c["ceiling"] - c["free"]:
            raise Fail("Error: -69519: The target disk is too small for this operation")
        d = self.disk_of(pid)
        later = [q["offset"] for q in d["parts"] if q["offset"] > p["offset"]]
        if p["offset"] + size > min(later, default=d["size"]):
            raise Fail("Error: -69519: The target disk is too small for this operation")
        c["free"] += size - c["ceiling"]
        c["ceiling"] = p["size"] = size
        if pid in self.s["limits"]:
            self.s["limits"][pid]["CurrentSize"] = size

    def erase_free(self, pid: str) -> None:
        d = self.disk_of(pid)
        self.part(pid)
        d["parts"] = [p for p in d["parts"] if p["id"] != pid]
        self.s["containers"] = [c for c in self.s["containers"] if c["store"] != pid]

    def run(self, cmd: str, a: list[str]) -> tuple[int, bytes]:
        key = " ".join([cmd, *a])
        for prefix, msg in self.s["fail"].items():
            if key.startswith(prefix):
                raise Fail(msg)

        def pl(obj: Any) -> tuple[int, bytes]:
            return 0, plistlib.dumps(obj)

        if cmd == "test":
            return (0 if a[:1] == ["-d"] and a[1] in self.s["dirs"] else 1), b""
        if cmd == "bless":  # the password arrives on stdin; keep it to check it did
            dev = a[a.index("--device") + 1].removeprefix("/dev/")
            self.volume(dev)
            self.s["blessed"] = {"device": dev, "user": a[a.index("--user") + 1],
                                 "stdin": sys.stdin.read()}
            return 0, b""
        if cmd == "bputil" and a[:2] == ["-d", "-v"]:
            if not any(c.get("group") == a[2] for c in self.s["containers"]):
                raise Fail(f"bputil: no volume group {a[2]}")
            return 0, f"Current local policy for {a[2]}:\nSecurity Mode: Full\n".encode()
        if cmd in ("newfs_msdos", "ditto", "bputil", "hdiutil", "kmutil"):
            return 0, b""
        if cmd == "sw_vers" and "device" in self.s:
            return 0, (self.s["device"]["macos"] + "\n").encode()
        if cmd == "ioreg" and a == ["-alp", "IODeviceTree"] and "device" in self.s:
            return pl(plists.render_ioreg(self.s["device"]))
        if cmd != "diskutil":
            raise Fail(f"{cmd}: not simulated")
        match a:
            case ["list", "-plist"]:
                return pl(self.render_list(None))
            case ["list", "-plist", dev]:
                return pl(self.render_list(self.disk_of(dev)["id"]))
            case ["apfs", "list", "-plist"]:
                return pl(self.render_apfs_list())
            case ["apfs", "listVolumeGroups", ref, "-plist"]:
                return pl(self.render_groups(ref))
            case ["info", "-plist", dev]:
                return pl(self.render_info(dev))
            case ["apfs", "resizeContainer", pid, "limits", "-plist"]:
                if pid not in self.s["limits"]:
                    raise Fail(f"{pid}: no limits")
                return pl(self.s["limits"][pid])
            case ["apfs", "resizeContainer", pid, size]:
                self.resize(pid, int(size))
            case ["addPartition", after, fs, label, size]:
                pid = self.add_partition(after, fs, label, int(size))
                return 0, f"Finished partitioning on {pid}\n".encode()
            case ["apfs", "deleteVolume", vid]:
                c, v = self.volume(vid)
                c["volumes"].remove(v)
            case ["apfs", "addVolume", ref, "apfs", name, "-role", role, *rest]:
                c = self.container(ref)
                n = max([int(v["id"].rsplit("s", 1)[1]) for v in c["volumes"]], default=0) + 1
                self.s["serial"] += 1
                c["volumes"].append({"id": f"{c['ref']}s{n}", "name": name,
                                     "roles": [ROLE[role]], "used": 20480,
                                     "uuid": f"00000000-0000-4000-9000-{self.s['serial']:012d}",
                                     "mount": None, "group": rest[1] if rest else None})
            case ["apfs", "deleteContainer", pid]:
                self.container(pid)
                self.s["containers"] = [c for c in self.s["containers"] if c["store"] != pid]
                self.part(pid)["content"] = "Apple_HFS"
            case ["eraseVolume", "free", "free", pid]:
                self.erase_free(pid)
            case ["mount", pid]:
                self.s.setdefault("mounted", {})[pid] = f"/Volumes/{pid}"
            case ["unmount", pid]:
                self.s.setdefault("mounted", {}).pop(pid, None)
            case _:
                raise Fail(f"diskutil: did not recognize verb {' '.join(a)}")
        return 0, b""


def main() -> int:
    cmd, args = sys.argv[1], sys.argv[2:]
    state_path = Path(os.environ["FAKEMAC_STATE"])
    with open(os.environ["FAKEMAC_LOG"], "a") as log:
        log.write(json.dumps([cmd, *args]) + "\n")
    fake = FakeMac(json.loads(state_path.read_text()))
    try:
        rc, out = fake.run(cmd, args)
    except Fail as exc:
        sys.stderr.write(f"{exc}\n")
        return 1
    state_path.write_text(json.dumps(fake.s))
    sys.stdout.buffer.write(out)
    return rc


if __name__ == "__main__":
    sys.exit(main())
