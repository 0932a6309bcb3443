"""``pippin uninstall NAME|PART``: remove an install, or a leftover, and give the space back
to macOS when it can grow into it.

An install (by its boot-picker name or stub container) goes through the planner's
:func:`installer.disk.plan.plan_uninstall`. A leftover (:mod:`.status`) is removed by
:func:`plan_remove`: delete the partitions, then grow the macOS container over the free
space that now follows it directly (APFS grows only at its end). ``free@START`` names
stranded free space: the leftovers between macOS and it go, and macOS grows over all of it.
Both are plain plans run under the operation journal, like an install.
"""

from __future__ import annotations

from dataclasses import replace

from installer.disk.model import Disk, DiskModel, Partition, PartKind, find_stub_installs
from installer.disk.ops import DeleteContainer, DeletePartition, Op, ResizeContainer
from installer.disk.plan import (
    APFS_SUPERBLOCK,
    GPT_HEAD,
    GPT_TAIL,
    Plan,
    Slot,
    layout,
    plan_uninstall,
)
from installer.errors import PlanError
from installer.lifecycle.status import Leftover, leftovers
from installer.platform.journal import pending_run, run_plan
from installer.sizes import align_down
from installer.targets.base import InstallTarget


def _merge(ranges: list[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    out: list[list[int]] = []
    for s, e in sorted(ranges):
        if out and s <= out[-1][1]:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
    return tuple((s, e) for s, e in out)


def plan_remove(disk: Disk, parts: list[Partition], what: str) -> Plan:
    """Delete ``parts``; grow macOS over the free space after it (pure)."""
    installs = {i.stub.ref for i in find_stub_installs(disk)}
    ops: list[Op] = []
    for p in sorted(parts, key=lambda p: p.start, reverse=True):
        stub = p.kind is PartKind.APFS and p.container is not None and p.container.is_stub
        if p.kind is PartKind.APFS and not stub:
            raise PlanError(f"{p.ref} is an APFS container that is not a stub; Pippin does "
                            "not remove it")
        ops.append(DeleteContainer(p.ref, p.start, p.size) if stub or p.ref in installs
                   else DeletePartition(p.ref, p.start, p.size))
    gone = {p.ref for p in parts}
    remaining = tuple(p for p in disk.partitions if p.ref not in gone)
    owned: list[tuple[int, int]] = [(0, GPT_HEAD), (disk.size - GPT_TAIL, disk.size)]
    owned += [(p.start, p.end) for p in parts]
    changes = dict.fromkeys(gone, "deleted")
    notes: list[str] = []
    mac = disk.macos_partition()
    after = replace(disk, partitions=remaining)
    if mac is not None:
        nxt = min((p.start for p in remaining if p.start >= mac.end), default=disk.usable_end)
        new_size = align_down(nxt - mac.start, 4096)
        if new_size > mac.size and any(mac.end <= p.start < nxt for p in parts):
            ops.append(ResizeContainer(mac.ref, mac.size, new_size))
            owned += [(mac.start, mac.start + APFS_SUPERBLOCK), (mac.end, mac.start + new_size)]
            changes[mac.ref] = "resized"
            after = replace(after, partitions=tuple(
                replace(p, size=new_size) if p.ref == mac.ref else p for p in remaining))
        else:
            notes.append("the freed space stays unpartitioned (macOS is not directly before it)")
    rows = layout(after, changes) + tuple(
        Slot(p.start, p.size, p.kind.value, p.name, p.ref, "deleted") for p in parts)
    return Plan(action="uninstall", disk=disk.ref, ops=tuple(ops), before=layout(disk),
                after=tuple(sorted(rows, key=lambda s: (s.start, s.change != "deleted"))),
                owned=_merge(owned), os_name=what, notes=tuple(notes))


def _find_leftover(found: tuple[Leftover, ...], what: str) -> Leftover | None:
    return next((lo for lo in found if lo.ref == what), None)


def plan_for(model: DiskModel, what: str) -> Plan:
    """The plan removing ``what``: an install's name or stub container, a leftover partition,
    or ``free@START`` (stranded free space)."""
    disk = model.system_disk() or model.disks[0]
    installs = find_stub_installs(disk)
    found = leftovers(disk, installs)
    for i in installs:
        if what in (i.name, i.stub.ref) and i.esp is not None:
            return plan_uninstall(model, i.stub.ref, disk_ref=disk.ref)
    lo = _find_leftover(found, what)
    if lo is None:
        by_name = [i for i in installs if i.name == what]
        if by_name:
            lo = _find_leftover(found, by_name[0].stub.ref)
    if lo is None:
        known = [f"{i.name!r} ({i.stub.ref})" for i in installs if i.esp is not None]
        known += [f"{x.ref} ({x.kind})" for x in found if x.removable]
        raise PlanError(f"{what!r} is neither an install nor a leftover on {disk.ref}",
                        hint="known: " + (", ".join(known) or "none") + " (pippin status)")
    if lo.kind == "stranded-free":
        if not lo.removable:
            raise PlanError(f"{what}: {lo.why}")
        mac = disk.macos_partition()
        assert mac is not None
        between = [p for p in disk.ordered() if mac.end <= p.start and p.end <= lo.start]
        return plan_remove(disk, between, f"leftovers before {what}")
    return plan_remove(disk, [disk.part(lo.ref)], f"leftover {lo.ref}")


def run_uninstall(target: InstallTarget, plan: Plan) -> None:
    """Carry the plan out under the journal (an interrupted run stops it first)."""
    pending = pending_run(target.journal)
    if pending is not None:
        raise PlanError(f"an {pending.describe()} was interrupted on this disk: finish it "
                        "with `pippin resume` or undo it with `pippin rollback` first")
    run_plan(target.backend, plan, None, target.journal)
