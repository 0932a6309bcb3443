"""The macOS view of a simulated Mac image, as the stand-in's commands see and change it.

Where things live (``<image>.d/standin/``): ``config.json`` (the admin account, options),
``mounts.json`` (mounted volumes), ``root/`` (the stand-in's ``/``: ``root/Volumes/<name>``
for mounted volumes, ``root/dev/rdiskNsM`` for raw partition devices, ``root/Library``
because the booted macOS System volume is mounted at ``/``), ``bin/`` (the shims). Every
command's argv goes to ``<image>.d/standin-argv.log`` (JSON lines).

Identifiers: the disk is ``disk0`` and partition N (GPT entry N) is ``disk0sN``; the APFS
container on partition N is ``disk<N+1>`` (so macOS's container on partition 2 is
``disk3``, as on a real Mac) and its volumes are ``disk<N+1>s<i>`` in the sidecar's order.
An optional external disk (``--external``) is ``disk1``: listed, never written.

Raw devices: ``root/dev/rdiskNsM`` is an empty file (so that copying the sidecar stays
cheap); what a program writes into it is moved into the image at the partition's offset
(holes punched first, zero blocks left as holes, as the sim backend writes images) by the
next stand-in command and when the launcher ends, and the file is emptied again. Reading a
raw device is not simulated (it reads as empty). Mounted APFS volumes are links to their
sidecar folders; a mounted FAT volume is a folder filled from the FAT at mount time and
written back with mtools at unmount (new and changed files copied, removed ones deleted).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from installer.device import load_facts
from installer.disk.model import KIND_BY_GUID, TYPE_GUIDS, PartKind
from installer.platform.gpt import GptTable, read_gpt
from installer.platform.sim import volume_group
from installer.platform.simstate import SimState, facts_path, sidecar
from installer.platform.sparse import copy_sparse, data_extents, punch_hole
from installer.sizes import MiB, align_up
from vendorfw.atomic import write_bytes

DISK = "disk0"
EXTERNAL = "disk1"
EXTERNAL_SIZE = 128 * 1000**3
MTOOLS = {"MTOOLS_SKIP_CHECK": "1", "MTOOLS_NO_VFAT": "0"}
CONTENT = {PartKind.ISC: "Apple_APFS_ISC", PartKind.APFS: "Apple_APFS",
           PartKind.RECOVERY: "Apple_APFS_Recovery", PartKind.EFI: "EFI"}
APFS = (PartKind.APFS, PartKind.ISC, PartKind.RECOVERY)


class StandInError(Exception):
    """A command failed the way the real one would (message for stderr)."""


def standin_dir(image: Path) -> Path:
    return sidecar(image) / "standin"


def password_digest(user: str, password: str) -> str:
    return hashlib.sha256(f"{user}\0{password}".encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Config:
    image: Path
    admin_user: str = ""
    admin_digest: str = ""
    external: bool = False

    @classmethod
    def load(cls, d: Path) -> Config:
        doc = json.loads((d / "config.json").read_text())
        return cls(Path(doc["image"]), doc.get("admin_user", ""), doc.get("admin_digest", ""),
                   bool(doc.get("external", False)))

    def save(self, d: Path) -> None:
        write_bytes(d / "config.json", json.dumps({
            "image": str(self.image), "admin_user": self.admin_user,
            "admin_digest": self.admin_digest, "external": self.external}).encode())


class Machine:
    """One stand-in command's view: read the image, change it, write back."""

    def __init__(self, d: Path) -> None:
        self.dir = d
        self.config = Config.load(d)
        self.image = self.config.image
        self.root = d / "root"
        self.mounts_path = d / "mounts.json"
        self.mounts: dict[str, dict[str, Any]] = (
            json.loads(self.mounts_path.read_text()) if self.mounts_path.exists() else {})

    # -- files -----------------------------------------------------------------------------
    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        with (self.dir / "lock").open("a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            yield

    def log_argv(self, argv: list[str]) -> None:
        with (sidecar(self.image) / "standin-argv.log").open("a") as f:
            f.write(json.dumps(argv) + "\n")

    def save_mounts(self) -> None:
        write_bytes(self.mounts_path, json.dumps(self.mounts, indent=1).encode())

    def resolve(self, path: str) -> Path:
        """A path as a program in the stand-in names it: /Volumes and /dev are inside root."""
        if path == "/" or path.startswith(("/Volumes/", "/dev/")):
            return self.root / path.lstrip("/")
        return Path(path)

    # -- reading ---------------------------------------------------------------------------
    def gpt(self) -> GptTable:
        fd = os.open(self.image, os.O_RDONLY)
        try:
            return read_gpt(fd, self.image.stat().st_size, str(self.image))
        finally:
            os.close(fd)

    def facts_doc(self) -> dict[str, Any]:
        f = load_facts(facts_path(self.image))
        return {"board": f.board_id, "chip": f.chip_id, "os_fw": f.os_firmware,
                "sys_fw": f.system_firmware, "compatible": f.device_class[:-2].upper() + "AP"
                if f.device_class.endswith("ap") else f.device_class,
                "target": f.target_type, "model": f.product, "macos": f.macos_version}

    def state(self) -> dict[str, Any]:
        """The plists.State of the image now."""
        sim = SimState(self.image)
        parts, containers = [], []
        booted = False
        for e in self.gpt().entries:
            kind = KIND_BY_GUID.get(e.type_guid)
            pid = f"{DISK}s{e.number}"
            parts.append({"id": pid, "content": CONTENT.get(kind, e.type_guid)
                          if kind else e.type_guid, "offset": e.start, "size": e.size,
                          "uuid": e.uuid})
            sc = sim.containers.get(e.uuid)
            if kind not in APFS or sc is None:
                continue
            ref = f"disk{e.number + 1}"
            vols = []
            for i, v in enumerate(sc.volumes, start=1):
                vid = f"{ref}s{i}"
                mount = self.mounts.get(vid, {}).get("mp")
                if (not booted and "System" in v.roles and kind is PartKind.APFS
                        and (sim.volume_dir(e.uuid, v.name) / "Library").is_dir()):
                    booted, mount = True, "/"  # the macOS this "Mac" runs
                vols.append({"id": vid, "name": v.name, "roles": list(v.roles),
                             "used": v.used, "uuid": v.uuid, "mount": mount,
                             "dir": str(sim.volume_dir(e.uuid, v.name)), "partuuid": e.uuid})
            containers.append({"ref": ref, "uuid": sc.uuid, "store": pid, "ceiling": e.size,
                               "free": max(0, e.size - sc.used), "volumes": vols,
                               "partuuid": e.uuid, "used": sc.used + sc.overhead})
        disks = [{"id": DISK, "size": self.image.stat().st_size, "internal": True,
                  "block": 512, "media": "APPLE SSD (simulated)", "bus": "Apple Fabric",
                  "parts": parts}]
        if self.config.external:
            disks.append({"id": EXTERNAL, "size": EXTERNAL_SIZE, "internal": False,
                          "block": 512, "media": "USB DISK (simulated)", "bus": "USB",
                          "parts": []})
        mounted = {k: m["mp"] for k, m in self.mounts.items() if m.get("kind") == "fat"}
        return {"disks": disks, "containers": containers, "mounted": mounted}

    def container(self, s: dict[str, Any], key: str) -> dict[str, Any]:
        for c in s["containers"]:
            if key in (c["ref"], c["store"]):
                found: dict[str, Any] = c
                return found
        raise StandInError(f"{key} is not an APFS Container")

    def limits(self, s: dict[str, Any], pid: str) -> dict[str, Any]:
        c = self.container(s, pid)
        p = next(p for p in s["disks"][0]["parts"] if p["id"] == pid)
        end = min((q["offset"] for q in s["disks"][0]["parts"] if q["offset"] >= p["offset"]
                   + p["size"]), default=usable_end(s["disks"][0]["size"]))
        floor = align_up(c["used"], MiB)
        return {"ContainerCurrentSize": p["size"], "CurrentSize": p["size"],
                "MaximumSize": end - p["offset"], "MinimumSizeNoGuard": floor,
                "MinimumSizePreferred": floor, "Type": "APFSPhysicalStore"}

    def groups(self, s: dict[str, Any], ref: str) -> dict[str, Any]:
        """One group (System + Data) per container that has both; its id is the one the
        sim backend reports for that container (so both paths see the same VGID)."""
        c = self.container(s, ref)
        data = [v for v in c["volumes"] if "Data" in v["roles"]]
        system = [v for v in c["volumes"] if "System" in v["roles"]]
        if not data or not system:
            return {"Groups": []}
        return {"Groups": [{"APFSVolumeGroupUUID": volume_group(c["partuuid"]), "Volumes": [
            {"APFSVolumeUUID": v["uuid"], "DeviceIdentifier": v["id"], "Name": v["name"],
             "Roles": v["roles"]} for v in (*data, *system)]}]}

    def new_partuuid(self, number: int, start: int) -> str:
        """diskutil picks a random GUID; the stand-in a reproducible one."""
        return str(uuid.uuid5(uuid.NAMESPACE_OID,
                              f"standin:{self.gpt().disk_guid}:{number}:{start}")).upper()

    # -- raw devices -----------------------------------------------------------------------
    def sync_devices(self) -> int:
        """Move what was written into root/dev/rdisk* into the image; returns bytes."""
        moved = 0
        dev = self.root / "dev"
        entries = {f"r{DISK}s{e.number}": e for e in self.gpt().entries}
        for node in sorted(dev.glob(f"r{DISK}s*")) if dev.is_dir() else []:
            e = entries.get(node.name)
            fd = os.open(node, os.O_RDWR)
            try:
                size = os.fstat(fd).st_size
                if e is None or size == 0:
                    continue
                if next(data_extents(fd, 0, size), None) is None:
                    os.ftruncate(fd, 0)  # holes only (e.g. an older stand-in's node): unwritten
                    continue
                if size > e.size:
                    raise StandInError(f"{node.name}: {size} bytes written into a "
                                       f"{e.size}-byte partition")
                img = os.open(self.image, os.O_RDWR)
                try:
                    punch_hole(img, e.start, e.size)
                    moved += copy_sparse(node, img, e.start)
                    os.fsync(img)
                finally:
                    os.close(img)
                os.ftruncate(fd, 0)
            finally:
                os.close(fd)
        return moved

    def refresh_devices(self) -> None:
        """One (empty) raw device per partition, none for a deleted one."""
        dev = self.root / "dev"
        dev.mkdir(parents=True, exist_ok=True)
        want = {f"r{DISK}s{e.number}" for e in self.gpt().entries}
        for node in dev.glob(f"r{DISK}s*"):
            if node.name not in want:
                node.unlink()
        for name in want:
            (dev / name).touch()

    # -- mounts ----------------------------------------------------------------------------
    def mount_point(self, name: str) -> str:
        vols = self.root / "Volumes"
        vols.mkdir(parents=True, exist_ok=True)
        taken = {m["mp"] for m in self.mounts.values()}
        mp, n = f"/Volumes/{name}", 1
        while mp in taken or (self.root / mp.lstrip("/")).exists():
            mp, n = f"/Volumes/{name} {n}", n + 1
        return mp

    def mtools(self, offset: int, *argv: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([argv[0], "-i", f"{self.image}@@{offset}", *argv[1:]],
                              capture_output=True, env={**os.environ, **MTOOLS}, check=False)

    def mount_fat(self, pid: str, offset: int) -> str:
        label = self.mtools(offset, "mlabel", "-s", "::").stdout.decode(errors="replace")
        name = label.split("is", 1)[1].strip() if " is " in label else "EFI"
        mp = self.mount_point(name or "EFI")
        folder = self.root / mp.lstrip("/")
        folder.mkdir(parents=True)
        r = self.mtools(offset, "mcopy", "-s", "-n", "-m", "::/*", str(folder) + "/")
        err = r.stderr.decode(errors="replace")
        if r.returncode != 0 and not ("no match" in err.lower() or "not found" in err):
            shutil.rmtree(folder)
            raise StandInError(f"{pid}: the FAT filesystem could not be read ({err.strip()})")
        self.mounts[pid] = {"mp": mp, "kind": "fat", "offset": offset,
                            "files": _manifest(folder)}
        return mp

    def unmount_fat(self, pid: str) -> None:
        m = self.mounts[pid]
        folder = self.root / m["mp"].lstrip("/")
        before: dict[str, list[int]] = m["files"]
        now = _manifest(folder)
        off = int(m["offset"])
        for rel in sorted((r for r in before if r not in now), reverse=True):
            verb = "mdeltree" if before[rel][0] < 0 else "mdel"
            self._fat(off, verb, "::/" + rel)
        by_dir: dict[str, list[str]] = {}
        for rel, stamp in sorted(now.items()):
            if stamp[0] < 0:
                if rel not in before:
                    self._fat(off, "mmd", "::/" + rel)
            elif before.get(rel) != stamp:
                by_dir.setdefault(os.path.dirname(rel), []).append(str(folder / rel))
        for d, files in sorted(by_dir.items()):
            self._fat(off, "mcopy", "-o", "-Q", "-D", "o", *files, "::/" + d)
        shutil.rmtree(folder)

    def _fat(self, offset: int, *argv: str) -> None:
        r = self.mtools(offset, *argv)
        if r.returncode != 0:
            raise StandInError(f"writing the FAT back failed: {' '.join(argv[:2])}: "
                               f"{r.stderr.decode(errors='replace').strip()}")

    def mount_apfs(self, vid: str, name: str, folder: Path) -> str:
        mp = self.mount_point(name)
        (self.root / mp.lstrip("/")).symlink_to(folder, target_is_directory=True)
        self.mounts[vid] = {"mp": mp, "kind": "apfs"}
        return mp

    def unmount_apfs(self, vid: str, partuuid: str, name: str) -> None:
        """Unlink the mount point and record what the volume now holds (as the sim's
        install target does after writing a stub)."""
        m = self.mounts[vid]
        (self.root / m["mp"].lstrip("/")).unlink(missing_ok=True)
        sim = SimState(self.image)
        sc = sim.containers.get(partuuid)
        if sc is not None:
            for v in sc.volumes:
                if v.name == name:
                    root = sim.volume_dir(partuuid, v.name)
                    v.used = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
            sc.used = max(sc.used, sum(v.used for v in sc.volumes))
            sim.save()


def usable_end(size: int) -> int:
    return (size - 34 * 512) // 4096 * 4096


def _manifest(folder: Path) -> dict[str, list[int]]:
    """relative path → [size, mtime_ns] (directories: [-1, 0])."""
    out: dict[str, list[int]] = {}
    for p in folder.rglob("*"):
        rel = p.relative_to(folder).as_posix()
        if p.is_dir():
            out[rel] = [-1, 0]
        else:
            st = p.stat()
            out[rel] = [st.st_size, st.st_mtime_ns]
    return out


def kind_of_arg(fs: str) -> PartKind | None:
    """addPartition's format argument: ``apfs``, ``%EFI%``, ``%<type GUID>%``."""
    if fs.lower() == "apfs":
        return PartKind.APFS
    if fs == "%EFI%":
        return PartKind.EFI
    guid = fs.strip("%").upper()
    return KIND_BY_GUID.get(guid) if fs.startswith("%") else None


__all__ = ["TYPE_GUIDS", "Config", "Machine", "StandInError", "kind_of_arg", "standin_dir"]
