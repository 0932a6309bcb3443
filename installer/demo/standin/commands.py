"""What each stand-in command does to the simulated Mac (formats.md §12 forms).

Partition changes go through the sim backend (sgdisk, mkapfs, mkfs.fat on the image), APFS
volumes are sidecar entries and folders, and answers are the recorded plist shapes
(:mod:`.plists`). A form the stand-in does not carry out raises :class:`NotImplemented_`,
which the shim prints as such instead of pretending.
"""

from __future__ import annotations

import hmac
import os
import plistlib
import re
import shutil
import subprocess
import tarfile
import uuid
from pathlib import Path
from typing import Any

from installer.demo.standin import plists
from installer.demo.standin.machine import (
    DISK,
    Machine,
    StandInError,
    kind_of_arg,
    password_digest,
    usable_end,
)
from installer.disk.model import PartKind
from installer.disk.ops import FormatFat32
from installer.errors import PippinError
from installer.platform.sim import SimBackend, container_uuid
from installer.platform.simstate import SimContainer, SimState, SimVolume
from installer.sizes import MiB, align_up

ROLE = {"D": "Data", "S": "System", "B": "Preboot", "R": "Recovery"}
Out = tuple[int, bytes]


class NotImplemented_(Exception):  # noqa: N801 - reads as what it reports
    """A command form the stand-in does not simulate."""


def _pl(obj: Any) -> Out:
    return 0, plistlib.dumps(obj)


def run(m: Machine, cmd: str, a: list[str], stdin: bytes) -> Out:
    handler = HANDLERS.get(cmd)
    if handler is None:
        raise NotImplemented_(cmd)
    try:
        out: Out = handler(m, a, stdin)
        return out
    except plists.Unknown as exc:
        raise StandInError(str(exc)) from None
    except PippinError as exc:
        raise StandInError(exc.message) from None


def _backend(m: Machine) -> SimBackend:
    return SimBackend(m.image)


def diskutil(m: Machine, a: list[str], stdin: bytes) -> Out:
    s = m.state()
    match a:
        case ["list", "-plist"]:
            return _pl(plists.render_list(s, None))
        case ["list", "-plist", dev]:
            return _pl(plists.render_list(s, plists.disk_of(s, dev)["id"]))
        case ["apfs", "list", "-plist"]:
            return _pl(plists.render_apfs_list(s))
        case ["info", "-plist", dev]:
            return _pl(plists.render_info(s, dev))
        case ["apfs", "listVolumeGroups", ref, "-plist"]:
            return _pl(m.groups(s, ref))
        case ["apfs", "resizeContainer", pid, "limits", "-plist"]:
            return _pl(m.limits(s, pid))
        case ["apfs", "resizeContainer", pid, size] if size.isdigit():
            _own_disk(pid)
            _backend(m)._resize(pid, int(size))
            return 0, b"Finished APFS operation\n"
        case ["addPartition", after, fs, label, size] if size.isdigit():
            pid = _add_partition(m, s, after, fs, label, int(size))
            return 0, f"Finished partitioning on {pid}\n".encode()
        case ["apfs", "deleteVolume", vid]:
            c, v = plists.volume(s, vid)
            sim = SimState(m.image)
            sc = sim.containers[c["partuuid"]]
            sc.volumes = [x for x in sc.volumes if x.uuid != v["uuid"]]
            shutil.rmtree(v["dir"], ignore_errors=True)
            sim.save()
            return 0, f"Finished APFS operation on {vid}\n".encode()
        case ["apfs", "addVolume", ref, "apfs", name, "-role", role, *rest]:
            c = m.container(s, ref)
            if role not in ROLE or not (rest == [] or (len(rest) == 2
                                                       and rest[0] == "-groupWith")):
                raise NotImplemented_("diskutil apfs addVolume " + " ".join(a[2:]))
            sim = SimState(m.image)
            sc = sim.containers[c["partuuid"]]
            if any(v.name == name for v in sc.volumes):
                raise StandInError(f"a volume named {name!r} already exists in {ref}")
            # The sim backend's volume UUIDs, so both paths give the same stub trees.
            vu = str(uuid.uuid5(uuid.NAMESPACE_OID, f"{c['partuuid']}:{name}")).upper()
            sc.volumes.append(SimVolume(name, [ROLE[role]], 0, vu))
            sim.volume_dir(c["partuuid"], name).mkdir(parents=True, exist_ok=True)
            sim.save()
            return 0, f"Finished APFS operation on {ref}\n".encode()
        case ["apfs", "deleteContainer", pid]:
            c = m.container(s, pid)
            sim = SimState(m.image)
            sim.drop(c["partuuid"])
            if sim.boot == c["partuuid"]:
                sim.boot = ""
            sim.save()
            return 0, b"Finished deleting APFS Container\n"
        case ["eraseVolume", "free", "free", pid]:
            _own_disk(pid)
            p = plists.part(s, pid)
            _backend(m)._delete(pid, p["offset"])
            return 0, f"Finished erase on {pid}\n".encode()
        case ["mount", dev]:
            return 0, f"Volume on {dev} mounted\n".encode() if _mount(m, s, dev) else b""
        case ["unmount", dev]:
            _unmount(m, s, dev)
            return 0, f"Volume on {dev} unmounted\n".encode()
    raise NotImplemented_("diskutil " + " ".join(a))


def _own_disk(pid: str) -> None:
    if not pid.startswith(f"{DISK}s"):
        raise StandInError(f"{pid}: the stand-in changes only {DISK}")


def _add_partition(m: Machine, s: dict[str, Any], after: str, fs: str, label: str,
                   size: int) -> str:
    _own_disk(after if after != DISK else f"{DISK}s0")
    kind = kind_of_arg(fs)
    if kind is None:
        raise NotImplemented_(f"diskutil addPartition with format {fs}")
    disk = s["disks"][0]
    parts = disk["parts"]
    start = 40 * 512 if after == DISK else plists.part(s, after)["offset"] + \
        plists.part(s, after)["size"]
    start = align_up(start, MiB)
    nxt = min((p["offset"] for p in parts if p["offset"] >= start),
              default=usable_end(disk["size"]))
    if start + size > nxt:
        raise StandInError("Error: -69743: The new size must be different than the existing "
                           "size (not enough free space after " + after + ")")
    used = {e.number for e in m.gpt().entries}
    n = next(i for i in range(1, 129) if i not in used)
    be = _backend(m)
    name = label if kind is PartKind.APFS else ""  # %noformat%: no volume name
    e = be._add_entry("standin", start, size, kind, name, m.new_partuuid(n, start))
    if kind is PartKind.APFS:
        cu = container_uuid(e.uuid)
        be._mkapfs_into(e.start, e.size, label, cu)
        sim = SimState(m.image)
        vu = str(uuid.uuid5(uuid.NAMESPACE_OID, f"{e.uuid}:{label}")).upper()
        sim.containers[e.uuid] = SimContainer(cu, MiB, 0, [SimVolume(label, [], MiB, vu)])
        sim.volume_dir(e.uuid, label).mkdir(parents=True, exist_ok=True)
        sim.save()
    else:
        with open(m.image, "r+b") as f:  # a new partition starts out empty (as the sim's)
            from installer.platform.sparse import punch_hole
            punch_hole(f.fileno(), e.start, e.size)
    return f"{DISK}s{e.number}"


def _mount(m: Machine, s: dict[str, Any], dev: str) -> bool:
    dev = dev.removeprefix("/dev/")
    if dev in m.mounts:
        return True
    try:
        c, v = plists.volume(s, dev)
    except plists.Unknown:
        p = plists.part(s, dev)
        if p["content"] != "EFI":
            raise NotImplemented_(f"diskutil mount of a {p['content']} partition") from None
        m.mount_fat(dev, p["offset"])
    else:
        if v["mount"]:
            return True
        m.mount_apfs(dev, v["name"], Path(v["dir"]))
    m.save_mounts()
    return True


def _unmount(m: Machine, s: dict[str, Any], dev: str) -> None:
    dev = dev.removeprefix("/dev/")
    mount = m.mounts.get(dev)
    if mount is None:
        raise StandInError(f"Volume on {dev} is not mounted")
    if mount["kind"] == "fat":
        m.unmount_fat(dev)
    else:
        _, v = plists.volume(s, dev)
        m.unmount_apfs(dev, v["partuuid"], v["name"])
    del m.mounts[dev]
    m.save_mounts()


def newfs_msdos(m: Machine, a: list[str], stdin: bytes) -> Out:
    label, vid, dev = "NO NAME", None, ""
    i = 0
    while i < len(a):
        if a[i] == "-F" and a[i + 1:i + 2] == ["32"]:
            i += 2
        elif a[i] == "-v" and i + 1 < len(a):
            label, i = a[i + 1], i + 2
        elif a[i] == "-I" and i + 1 < len(a):
            vid, i = int(a[i + 1], 16), i + 2
        elif i == len(a) - 1 and a[i].startswith(f"/dev/r{DISK}s"):
            dev, i = a[i], i + 1
        else:
            raise NotImplemented_("newfs_msdos " + " ".join(a))
    if not dev:
        raise StandInError("newfs_msdos: no raw device (/dev/rdiskNsM) given")
    _backend(m)._format_fat(FormatFat32(dev.removeprefix("/dev/r"), label, vid))
    return 0, f"{dev}: FAT32 formatted\n".encode()


def ditto(m: Machine, a: list[str], stdin: bytes) -> Out:
    if len(a) != 2 or a[0].startswith("-"):
        raise NotImplemented_("ditto " + " ".join(a))
    src, dst = m.resolve(a[0]), m.resolve(a[1])
    try:
        if src.is_dir():
            shutil.copytree(src, dst, dirs_exist_ok=True)
        else:
            shutil.copyfile(src, dst)
    except OSError as exc:
        raise StandInError(f"ditto: {exc}") from exc
    return 0, b""


def bless(m: Machine, a: list[str], stdin: bytes) -> Out:
    if (len(a) != 6 or a[0] != "--setBoot" or a[1] != "--device" or a[3] != "--user"
            or a[5] != "--stdinpass"):
        raise NotImplemented_("bless " + " ".join(a))
    s = m.state()
    c, v = plists.volume(s, a[2].removeprefix("/dev/"))
    if "System" not in v["roles"]:
        raise StandInError(f"bless: {a[2]} is not a System volume")
    user, password = a[4], stdin.decode(errors="replace").split("\n", 1)[0]
    cfg = m.config
    if not cfg.admin_user:
        raise StandInError("bless: no administrator in this stand-in "
                           "(mac-standin --admin USER:PASSWORD)")
    if user != cfg.admin_user or not hmac.compare_digest(
            password_digest(user, password), cfg.admin_digest):
        raise StandInError(f"Could not authenticate user {user}: the password is wrong or "
                           "the user is not an administrator")
    sim = SimState(m.image)
    sim.boot = c["partuuid"]
    sim.save()
    return 0, b""


def bputil(m: Machine, a: list[str], stdin: bytes) -> Out:
    if a[:2] == ["-d", "-v"] and len(a) == 3:
        s = m.state()
        for c in s["containers"]:
            if any(g["APFSVolumeGroupUUID"] == a[2] for g in m.groups(s, c["ref"])["Groups"]):
                return 0, (f"Current local policy for {a[2]}:\nSecurity Mode: Full\n"
                           "(simulated: no policy is kept)\n").encode()
        raise StandInError(f"bputil: no volume group {a[2]}")
    raise NotImplemented_("bputil " + " ".join(a) + " (changing a boot policy needs 1TR)")


def sw_vers(m: Machine, a: list[str], stdin: bytes) -> Out:
    version = m.facts_doc()["macos"]
    if a == ["-productVersion"]:
        return 0, f"{version}\n".encode()
    if not a:
        return 0, f"ProductName:\t\tmacOS\nProductVersion:\t\t{version}\n".encode()
    raise NotImplemented_("sw_vers " + " ".join(a))


def ioreg(m: Machine, a: list[str], stdin: bytes) -> Out:
    if a == ["-alp", "IODeviceTree"]:
        return _pl(plists.render_ioreg(m.facts_doc()))
    raise NotImplemented_("ioreg " + " ".join(a))


def caffeinate(m: Machine, a: list[str], stdin: bytes) -> Out:
    flags = [x for x in a if x.startswith("-")]
    cmd = a[len(flags):]
    if cmd and all(f in ("-d", "-i", "-m", "-s", "-u") for f in flags):
        return subprocess.run(cmd, check=False).returncode, b""
    if flags and flags[0] == "-w":
        return 0, b""  # nothing sleeps here
    raise NotImplemented_("caffeinate " + " ".join(a))


# -- hdiutil -------------------------------------------------------------------------------
# attach: a tar-shaped image (the demo restore image's BaseSystem) is unpacked read-only
# (files 0444, folders 0555) into the mount point; anything else is refused as real hdiutil
# refuses an image it does not recognise. The output has the shape of
# installer.platform.hdiutil.ATTACH_EXAMPLE (recorded from documentation, not captured).
# detach: refused as busy while a process has its working directory or an open file inside
# (what makes a real unmount fail), unless -force. Attached images are kept in mounts.json
# (kind "image"); they are not listed by the stand-in's diskutil.
HDI_NOT_RECOGNIZED = "hdiutil: attach failed - image not recognized"
HDI_NO_FILE = "hdiutil: attach failed - No such file or directory"


def hdiutil(m: Machine, a: list[str], stdin: bytes) -> Out:
    match a:
        case ["attach", *rest]:
            return _attach(m, rest)
        case ["detach", *rest] if [x for x in rest if x != "-force"] and len(
                [x for x in rest if x != "-force"]) == 1:
            target = next(x for x in rest if x != "-force")
            return _detach(m, target, "-force" in rest)
    raise NotImplemented_("hdiutil " + " ".join(a))


def _attach(m: Machine, a: list[str]) -> Out:
    flags, mountpoint, images = set(), None, []
    i = 0
    while i < len(a):
        if a[i] in ("-nobrowse", "-readonly", "-noverify"):
            flags.add(a[i])
        elif a[i] == "-mountpoint" and i + 1 < len(a):
            mountpoint, i = a[i + 1], i + 1
        elif a[i].startswith("-"):
            raise NotImplemented_("hdiutil attach " + " ".join(a))
        else:
            images.append(a[i])
        i += 1
    if len(images) != 1 or "-readonly" not in flags:
        raise NotImplemented_("hdiutil attach " + " ".join(a) + " (only one image, -readonly)")
    image = m.resolve(images[0])
    if not image.is_file():
        raise StandInError(HDI_NO_FILE)
    with image.open("rb") as f:
        head = f.read(512)
    if head[257:262] != b"ustar":  # a tar's first header (a leading zero block is no image)
        raise StandInError(HDI_NOT_RECOGNIZED)
    if mountpoint is None:
        mountpoint = m.mount_point(image.stem)
    folder = m.resolve(mountpoint)
    created = not folder.exists()
    if not created and (not folder.is_dir() or any(folder.iterdir())):
        raise NotImplemented_(f"hdiutil attach over the non-empty {mountpoint}")
    folder.mkdir(parents=True, exist_ok=True)
    try:  # tarfile, not libarchive: an in-process shim runs without site-packages (-S)
        with tarfile.open(image) as tf:
            tf.extractall(folder, filter="data")
    except (tarfile.TarError, OSError):
        if created:
            shutil.rmtree(folder)
        else:
            _empty(folder)
        raise StandInError(HDI_NOT_RECOGNIZED) from None
    _read_only(folder)
    st = m.state()
    used = " ".join([*(d["id"] for d in st["disks"]), *(c["ref"] for c in st["containers"]),
                     *m.mounts, *(f"disk{e['synth']}" for e in m.mounts.values()
                                  if e.get("kind") == "image")])
    n = 1 + max((int(x) for x in re.findall(r"disk(\d+)", used)), default=0)
    dev = f"disk{n}"
    m.mounts[dev] = {"mp": mountpoint, "kind": "image", "dir": str(folder),
                     "created": created, "image": str(image), "synth": n + 1}
    m.save_mounts()
    out = (f"/dev/{dev}          \tGUID_partition_scheme          \t\n"
           f"/dev/{dev}s1        \tApple_APFS                     \t\n"
           f"/dev/disk{n + 1}          \tEF57347C-0000-11AA-AA11-0030654\t\n"
           f"/dev/disk{n + 1}s1        \t41504653-0000-11AA-AA11-0030654\t{mountpoint}\n")
    return 0, out.encode()


def _empty(folder: Path) -> None:
    for child in folder.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def _read_only(folder: Path) -> None:
    for d, _dirs, files in os.walk(folder, topdown=False):
        for f in files:
            p = os.path.join(d, f)
            if not os.path.islink(p):
                os.chmod(p, 0o444)
        os.chmod(d, 0o555)


def _busy(folder: Path) -> bool:
    """Whether a process has its working directory or an open file inside ``folder``."""
    root = os.path.realpath(folder)
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        links = [f"/proc/{pid}/cwd"]
        try:
            links += [f"/proc/{pid}/fd/{fd}" for fd in os.listdir(f"/proc/{pid}/fd")]
        except OSError:
            pass
        for link in links:
            try:
                t = os.readlink(link)
            except OSError:
                continue
            if t == root or t.startswith(root + "/"):
                return True
    return False


def _detach(m: Machine, target: str, force: bool) -> Out:
    dev = target.removeprefix("/dev/")
    whole = re.sub(r"s\d+$", "", dev)  # a slice names its whole disk
    found = next((k for k, e in m.mounts.items() if e.get("kind") == "image"
                  and (target == e["mp"] or whole in (k, f"disk{e['synth']}"))), None)
    if found is None:
        raise StandInError("hdiutil: detach failed - No such file or directory")
    e = m.mounts[found]
    folder = Path(e["dir"])
    if not force and _busy(folder):
        raise StandInError(f'hdiutil: couldn\'t unmount "{found}" - Resource busy')
    for d, _dirs, _files in os.walk(folder):
        os.chmod(d, 0o755)
    if e["created"]:
        shutil.rmtree(folder)
    else:
        _empty(folder)
    del m.mounts[found]
    m.save_mounts()
    return 0, f'"{found}" ejected.\n'.encode()


def _not_simulated(name: str) -> Any:
    def handler(m: Machine, a: list[str], stdin: bytes) -> Out:
        raise NotImplemented_(" ".join([name, *a]))
    return handler


HANDLERS = {"diskutil": diskutil, "newfs_msdos": newfs_msdos, "ditto": ditto, "bless": bless,
            "bputil": bputil, "sw_vers": sw_vers, "ioreg": ioreg, "caffeinate": caffeinate,
            "kmutil": _not_simulated("kmutil"), "nvram": _not_simulated("nvram"),
            "hdiutil": hdiutil}
SHIMS = tuple(HANDLERS)
