"""``pippin status``: every install on the target, and what failed installs left behind.

An install is a stub container, the ESP after it and its OS partitions
(:func:`installer.disk.model.find_stub_installs`). For each: the stage-1 object on the stub's
System volume (its version, Pippin's or m1n1's format, and its variables read back,
formats.md §2/§4), the ``vendorfw/manifest.txt`` on its ESP, and whether step 2 is pending.

Leftovers are what an interrupted or half-removed install leaves: a stub container with no
ESP, an ESP or Linux partition that belongs to no stub, and free space that macOS cannot
grow into (an APFS container grows only at its end, into free space directly after it).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from installer.bootobj import vars as bvars
from installer.bootobj.version import read_installed_vars, read_version
from installer.disk.model import Disk, Partition, PartKind, StubInstall, find_stub_installs
from installer.errors import PippinError
from installer.platform.journal import PendingRun, pending_run
from installer.sizes import format_size
from installer.stub import STAGE1_PATH
from installer.targets.base import InstallTarget
from vendorfw.errors import VendorFwError
from vendorfw.manifest import Manifest

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Stage1Info:
    path: str
    size: int
    loader: str  # "pippin" | "m1n1" | "" (no marker)
    version: str
    variables: dict[str, str]
    error: str = ""


@dataclass(frozen=True, slots=True)
class FirmwareInfo:
    files: int
    links: int
    error: str = ""


@dataclass(frozen=True, slots=True)
class InstallInfo:
    name: str
    stub: Partition
    esp: Partition | None
    os_partitions: tuple[Partition, ...]
    stage1: Stage1Info | None
    firmware: FirmwareInfo | None
    step2_pending: bool
    interrupted: bool = False

    @property
    def size(self) -> int:
        return sum(p.size for p in (self.stub, *([self.esp] if self.esp else []),
                                    *self.os_partitions))


@dataclass(frozen=True, slots=True)
class Leftover:
    kind: str  # "stub-without-esp" | "orphan-esp" | "orphan-linux" | "stranded-free"
    ref: str  # the partition (or "free@START" for free space)
    start: int
    size: int
    why: str
    removable: bool = True


@dataclass(frozen=True, slots=True)
class Status:
    target: str
    disk: str
    installs: tuple[InstallInfo, ...]
    leftovers: tuple[Leftover, ...]
    pending: PendingRun | None = None
    free: tuple[Leftover, ...] = field(default=())  # stranded behind a live install


def stage1_info(data: bytes, path: str) -> Stage1Info:
    """What an installed stage-1 object says about itself (never raises for bad bytes)."""
    try:
        v = read_version(data)
        variables = bvars.as_dict(read_installed_vars(data))
    except PippinError as exc:
        return Stage1Info(path, len(data), "", "", {}, exc.message)
    return Stage1Info(path, len(data), v.kind.value if v else "", str(v.version) if v else "",
                      variables)


def firmware_info(text: bytes | None) -> FirmwareInfo | None:
    if text is None:
        return None
    try:
        m = Manifest.parse(text.decode("utf-8", errors="replace"), "vendorfw/manifest.txt")
    except VendorFwError as exc:
        return FirmwareInfo(0, 0, exc.message)
    links = sum(1 for e in m.entries if e.link_to is not None)
    return FirmwareInfo(len(m.entries) - links, links)


def _install_info(target: InstallTarget, inst: StubInstall, interrupted: set[str],
                  booted: str) -> InstallInfo:
    stage1: Stage1Info | None = None
    try:
        with target.open_stub(inst.stub) as info:  # a Mac mounts, then unmounts
            path = info.volumes.system / STAGE1_PATH
            if path.is_file():
                stage1 = stage1_info(path.read_bytes(), str(path))
    except (PippinError, OSError) as exc:
        log.info("stub %s: %s", inst.stub.ref, exc)
    fw = firmware_info(target.read_esp(inst.esp, "vendorfw/manifest.txt")) if inst.esp else None
    return InstallInfo(inst.name, inst.stub, inst.esp, inst.os_partitions, stage1, fw,
                       step2_pending=inst.stub.uuid.upper() != booted.upper(),
                       interrupted=inst.stub.uuid.upper() in interrupted)


def leftovers(disk: Disk, installs: tuple[StubInstall, ...]) -> tuple[Leftover, ...]:
    out: list[Leftover] = []
    owned = {p.ref for i in installs for p in i.partitions}
    for i in installs:
        if i.esp is None:
            out.append(Leftover("stub-without-esp", i.stub.ref, i.stub.start, i.stub.size,
                                f"stub container {i.name!r} has no ESP after it"))
    for p in disk.ordered():
        if p.ref in owned:
            continue
        if p.kind is PartKind.EFI:
            out.append(Leftover("orphan-esp", p.ref, p.start, p.size,
                                "an ESP that belongs to no stub container"))
        elif p.kind is PartKind.LINUX:
            out.append(Leftover("orphan-linux", p.ref, p.start, p.size,
                                "a Linux partition that belongs to no stub container"))
    mac = disk.macos_partition()
    for g in disk.gaps() if mac is not None else ():
        assert mac is not None
        between = [p for p in disk.ordered() if mac.end <= p.start and p.end <= g.start]
        if g.start < mac.end or not between:
            continue  # before macOS (never grown into) or directly after it: macOS grows
        left = {lo.ref for lo in out}
        if all(b.ref in left for b in between):
            why = ("free space macOS cannot grow into until the leftovers before it are "
                   f"removed ({', '.join(b.ref for b in between)})")
        else:
            why = ("macOS cannot grow into it past "
                   f"{', '.join(b.ref for b in between if b.ref not in left)} "
                   "(room for another install)")
        out.append(Leftover("stranded-free", f"free@{g.start}", g.start, g.size, why,
                            removable=all(b.ref in left for b in between)))
    return tuple(out)


def read_status(target: InstallTarget, target_ref: str, booted: str = "") -> Status:
    model = target.backend.read_model()
    disk = model.system_disk() or model.disks[0]
    pending = pending_run(target.journal)
    installs = find_stub_installs(disk)
    busy = set(pending.created) if pending else set()
    infos = tuple(_install_info(target, i, busy, booted) for i in installs)
    found = leftovers(disk, installs)
    return Status(target_ref, disk.ref, infos, tuple(lo for lo in found if lo.removable),
                  pending, tuple(lo for lo in found if not lo.removable))


def status_to_json(s: Status) -> dict[str, Any]:
    def part(p: Partition | None) -> dict[str, Any] | None:
        if p is None:
            return None
        return {"ref": p.ref, "start": p.start, "size": p.size, "kind": p.kind.value,
                "name": p.name, "uuid": p.uuid}

    return {
        "target": s.target, "disk": s.disk,
        "installs": [{
            "name": i.name, "stub": part(i.stub), "esp": part(i.esp),
            "os_partitions": [part(p) for p in i.os_partitions],
            "stage1": None if i.stage1 is None else {
                "path": i.stage1.path, "size": i.stage1.size, "loader": i.stage1.loader,
                "version": i.stage1.version, "variables": i.stage1.variables,
                "error": i.stage1.error},
            "vendorfw": None if i.firmware is None else {
                "files": i.firmware.files, "links": i.firmware.links,
                "error": i.firmware.error},
            "step2_pending": i.step2_pending, "interrupted": i.interrupted,
        } for i in s.installs],
        "leftovers": [{"kind": lo.kind, "ref": lo.ref, "start": lo.start, "size": lo.size,
                       "why": lo.why} for lo in s.leftovers],
        "stranded_free": [{"ref": lo.ref, "start": lo.start, "size": lo.size, "why": lo.why}
                          for lo in s.free],
        "interrupted": None if s.pending is None else {
            "action": s.pending.action, "done": s.pending.done, "total": s.pending.total,
            "phase": s.pending.phase, "os": s.pending.context.get("os")},
    }


def _install_lines(i: InstallInfo) -> list[str]:
    parts = ", ".join(f"{p.ref} {p.kind.value} {format_size(p.size)}"
                      for p in (i.stub, *([i.esp] if i.esp else []), *i.os_partitions))
    state = "  [interrupted]" if i.interrupted else ""
    out = [f"{i.name!r}: {format_size(i.size)} ({parts}){state}"]
    s1 = i.stage1
    if s1 is None:
        out.append("  stage 1: none on the stub's System volume")
    elif s1.error:
        out.append(f"  stage 1: unreadable ({s1.error})")
    else:
        fmt = {"pippin": "Pippin", "m1n1": "m1n1"}.get(s1.loader, "unknown format")
        out.append(f"  stage 1: {fmt} {s1.version or '(no version)'}, {format_size(s1.size)}")
        out += [f"    {k}={v}" for k, v in s1.variables.items()]
    fw = i.firmware
    if fw is None:
        out.append("  vendorfw: none on the ESP")
    elif fw.error:
        out.append(f"  vendorfw: manifest unreadable ({fw.error})")
    else:
        out.append(f"  vendorfw: {fw.files} files, {fw.links} links (vendorfw/manifest.txt)")
    out.append("  step 2: " + ("pending (finish it in 1TR: pick it in the startup options)"
                               if i.step2_pending else "done"))
    return out


def render(s: Status) -> str:
    lines = [f"{s.target} ({s.disk}): {len(s.installs)} install(s)"]
    for i in s.installs:
        lines += ["  " + line for line in _install_lines(i)]
    if s.pending is not None:
        lines.append(f"  interrupted: {s.pending.describe()}; finish it with `pippin resume` "
                     "or undo it with `pippin rollback`")
    for lo in s.free:
        lines.append(f"  free: {format_size(lo.size)} at {lo.ref}, {lo.why}")
    if s.leftovers:
        lines.append("  leftovers (pippin uninstall REF removes one):")
        for lo in s.leftovers:
            lines.append(f"    {lo.ref}: {format_size(lo.size)}, {lo.why}")
    else:
        lines.append("  leftovers: none")
    return "\n".join(lines)
