"""The pure planner: disk model + catalog entry + choices in, typed operations out.

No I/O and no clock: the same inputs always give the same plan (partition GUIDs derive from
``Choices.seed``). Every refusal is a ``PlanError`` whose one sentence carries the numbers.
Rules are formats.md §1.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace
from enum import StrEnum

from installer.catalog import STUB_SIZE, OsEntry, PartitionType
from installer.disk.model import (
    ALIGN,
    PROTECTED,
    Disk,
    DiskModel,
    Partition,
    PartKind,
    StubInstall,
    find_stub_installs,
)
from installer.disk.ops import (
    CopyTree,
    CreatePartition,
    CreateStubContainer,
    CreateStubVolumes,
    DeleteContainer,
    DeletePartition,
    FormatFat32,
    Op,
    ResizeContainer,
    WriteImage,
)
from installer.errors import PlanError
from installer.sizes import GB, MB, GiB, Rounding, align_down, align_up, format_size, parse_choice

MIN_FREE = 38 * GB
MIN_FREE_SMALL = 1 * GB  # expert mode, or disks < 150 GiB
SMALL_DISK = 150 * GiB
NEED_FREE = 10 * GB
OVERHEAD_WARN = 16 * GB
RESIZE_MARGIN = 500 * MB
GPT_HEAD = 34 * 512
GPT_TAIL = 33 * 512
APFS_SUPERBLOCK = 4096


class Space(StrEnum):
    FREE = "free"
    RESIZE = "resize"


@dataclass(frozen=True, slots=True)
class Choices:
    space: Space = Space.FREE
    resize_to: str = "min"
    size: str = "max"
    name: str | None = None
    expert: bool = False
    disk: str | None = None
    seed: str = "pippin"
    #: With space = free: the start byte of the free region to use (a "free" row of the
    #: layout); None takes the largest one.
    region: int | None = None


@dataclass(frozen=True, slots=True)
class Slot:
    """One row of a before/after layout: a partition or a free region."""

    start: int
    size: int
    kind: str
    name: str
    ref: str
    change: str = ""  # "", "new", "resized", "deleted"


@dataclass(frozen=True, slots=True)
class Plan:
    action: str  # "install" | "uninstall"
    disk: str
    ops: tuple[Op, ...]
    before: tuple[Slot, ...]
    after: tuple[Slot, ...]
    #: Byte ranges [start, end) the plan may write; everything else must stay unchanged.
    owned: tuple[tuple[int, int], ...]
    warnings: tuple[str, ...] = ()
    os_name: str = ""
    os_size: int = 0
    notes: tuple[str, ...] = field(default=())


def _target_disk(model: DiskModel, ref: str | None) -> Disk:
    system = model.system_disk()
    if ref is None:
        if system is None:
            raise PlanError(
                "no internal system disk found (an internal disk whose first partition is "
                "Apple_APFS_ISC)"
            )
        return system
    try:
        disk = model.disk(ref)
    except KeyError:
        known = ", ".join(d.ref for d in model.disks) or "none"
        raise PlanError(f"disk {ref} not found (disks: {known})") from None
    if not disk.is_system:
        why = "external" if not disk.internal else "not the system disk"
        raise PlanError(
            f"{ref} is {why}: Pippin installs only on the internal system disk "
            f"({system.ref if system else 'none found'})"
        )
    return disk


def _uuid(seed: str, disk: Disk, what: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"pippin:{seed}:{disk.ref}:{what}")).upper()


def _predecessor(disk: Disk, start: int) -> str:
    before = [p for p in disk.ordered() if p.end <= start]
    return before[-1].ref if before else disk.ref


def layout(disk: Disk, changes: dict[str, str] | None = None) -> tuple[Slot, ...]:
    changes = changes or {}
    rows = [
        Slot(p.start, p.size, p.kind.value, p.name, p.ref, changes.get(p.ref, ""))
        for p in disk.partitions
    ]
    rows += [Slot(g.start, g.size, "free", "", "", "") for g in disk.gaps()]
    return tuple(sorted(rows, key=lambda s: s.start))


def min_free_for(disk: Disk, expert: bool) -> int:
    return MIN_FREE_SMALL if expert or disk.size < SMALL_DISK else MIN_FREE


def plan_install(model: DiskModel, entry: OsEntry, choices: Choices) -> Plan:
    """Plan installing ``entry`` into free space or space freed by shrinking macOS."""
    disk = _target_disk(model, choices.disk)
    # An entry without partitions is tethered: a stub container only, whose stage 1 has no
    # chainload= and waits for a development host (as m1n1 does); expert mode only.
    if not entry.partitions and not choices.expert:
        raise PlanError(f"{entry.name.strip()!r} (a stub only, booted from a development "
                        "host) is offered only in expert mode")
    if entry.expert and not choices.expert:
        raise PlanError(f"{entry.name.strip()!r} is offered only in expert mode")
    name = (choices.name or entry.default_os_name).strip()
    # The name becomes volume names (and, on the sim, directory names): no path tricks.
    if (not name or len(name.encode()) > 200 or name in (".", "..")
            or any(c in '"/:' or not c.isprintable() for c in name)):
        raise PlanError(
            f"OS name {name!r} must be 1-200 printable bytes without quotes, '/', ':' "
            "(and not '.' or '..')"
        )

    ops: list[Op] = []
    owned: list[tuple[int, int]] = [(0, GPT_HEAD), (disk.size - GPT_TAIL, disk.size)]
    warnings: list[str] = []
    changes: dict[str, str] = {}
    after_parts = list(disk.partitions)

    if choices.space is Space.FREE:
        gaps = disk.gaps()
        if choices.region is not None:
            chosen = next((g for g in gaps if g.start == choices.region), None)
            if chosen is None:
                starts = ", ".join(f"{g.start} ({format_size(g.size)})" for g in gaps) or "none"
                raise PlanError(f"no free region starts at byte {choices.region} on "
                                f"{disk.ref} (free regions: {starts})")
            if chosen.size < NEED_FREE:
                raise PlanError(
                    f"installing needs at least {format_size(NEED_FREE)} of free space; the "
                    f"free region at byte {chosen.start} has {format_size(chosen.size)}"
                )
        else:
            chosen = max(gaps, key=lambda g: g.size, default=None)
            if chosen is None or chosen.size < NEED_FREE:
                have = format_size(chosen.size if chosen else 0)
                raise PlanError(
                    f"installing needs at least {format_size(NEED_FREE)} of free space; the "
                    f"largest free region is {have} (choose space = \"resize\" to shrink "
                    "macOS)"
                )
        region_start, region_end = chosen.start, chosen.end
    else:
        region_start, region_end, resize_op, warn = _plan_resize(disk, choices)
        ops.append(resize_op)
        warnings += warn
        mac = disk.part(resize_op.ref)
        owned += [
            (mac.start, mac.start + APFS_SUPERBLOCK),
            (mac.start + resize_op.new_size, mac.end),
        ]
        changes[mac.ref] = "resized"
        after_parts = [replace(p, size=resize_op.new_size) if p is mac else p
                       for p in after_parts]

    available = align_down(region_end, ALIGN) - region_start
    if available < entry.min_size:
        raise PlanError(
            f"{entry.name.strip()!r} needs {format_size(entry.min_size)}; the free region "
            f"has {format_size(available)}"
        )
    try:
        total = parse_choice(
            choices.size, minimum=entry.min_size, maximum=available, percent_of=available,
            rounding=Rounding.DOWN,
        )
    except ValueError as exc:
        raise PlanError(f"OS size: {exc}") from None
    if not entry.expandable:
        total = entry.min_size
    if total < entry.min_size:
        raise PlanError(
            f"{entry.name.strip()!r} needs at least {format_size(entry.min_size)}; "
            f"{choices.size!r} is {format_size(total)}"
        )
    if total > available:
        raise PlanError(
            f"OS size {format_size(total)} does not fit: the free region has "
            f"{format_size(available)}"
        )
    if entry.expandable and total < entry.recommended_size:
        warnings.append(
            f"{format_size(total)} is below the recommended {format_size(entry.recommended_size)}"
            f" (twice the minimum) for {entry.name.strip()!r}"
        )

    pos = region_start
    prev = _predecessor(replace(disk, partitions=tuple(after_parts)), pos)  # after a resize
    stub_ref = "new:0"
    ops.append(CreateStubContainer(stub_ref, prev, pos, STUB_SIZE, name,
                                   _uuid(choices.seed, disk, f"{pos}:stub")))
    ops.append(CreateStubVolumes(stub_ref, name))
    new_parts = [Partition(stub_ref, 0, PartKind.APFS, pos, STUB_SIZE, name)]
    pos += STUB_SIZE
    prev = stub_ref
    fixed = sum(p.aligned_size for p in entry.partitions if not p.expand)
    for i, cp in enumerate(entry.partitions, start=1):
        size = (align_down(total - STUB_SIZE - fixed, ALIGN) if cp.expand else cp.aligned_size)
        ref = f"new:{i}"
        kind = PartKind.EFI if cp.type is PartitionType.EFI else PartKind.LINUX
        ops.append(CreatePartition(ref, prev, pos, size, kind, cp.name,
                                   _uuid(choices.seed, disk, f"{pos}:{i}")))
        if cp.format == "fat":
            ops.append(FormatFat32(ref, fat_label(name), cp.volume_id))
        if cp.source:
            ops.append(CopyTree(ref, cp.source))
        if cp.image:
            ops.append(WriteImage(ref, cp.image, cp.size))
        new_parts.append(Partition(ref, i, kind, pos, size, cp.name))
        pos += size
        prev = ref
    owned.append((region_start, pos))
    for p in new_parts:
        changes[p.ref] = "new"
    after = replace(disk, partitions=tuple(after_parts + new_parts))
    _check_invariants(disk, ops, new_parts)
    return Plan(
        action="install", disk=disk.ref, ops=tuple(ops), before=layout(disk),
        after=layout(after, changes), owned=_merge(owned), warnings=tuple(warnings),
        os_name=name, os_size=pos - region_start,
    )


def _plan_resize(disk: Disk, choices: Choices) -> tuple[int, int, ResizeContainer, list[str]]:
    mac = disk.macos_partition()
    if mac is None or mac.container is None:
        raise PlanError(f"no macOS APFS container (System + Data volumes) on {disk.ref}")
    c = mac.container
    min_free = min_free_for(disk, choices.expert)
    if c.free <= min_free + RESIZE_MARGIN:
        raise PlanError(
            f"macOS needs {format_size(min_free)} free after resize; the container has "
            f"{format_size(c.free)} free, so it cannot be shrunk"
        )
    raw_min = align_up(c.used + min_free, ALIGN)
    preferred = align_up(mac.limits.min_preferred, ALIGN) if mac.limits else 0
    min_size = max(raw_min, preferred)
    warnings = []
    # Overhead: what diskutil keeps beyond the data (snapshots, pending updates), whether
    # or not it exceeds our own free-space policy (formats.md §1 warns above 16 GB).
    overhead = mac.limits.min_preferred - c.used if mac.limits else 0
    if overhead > OVERHEAD_WARN:
        warnings.append(
            f"APFS overhead (snapshots, pending updates) is {format_size(overhead)}: "
            "deleting local snapshots (tmutil deletelocalsnapshots /) or finishing macOS "
            "updates gives that space back"
        )
    try:
        new_size = parse_choice(
            choices.resize_to, minimum=min_size, maximum=mac.size, percent_of=mac.size,
            rounding=Rounding.UP,
        )
    except ValueError as exc:
        raise PlanError(f"macOS size: {exc}") from None
    if new_size < min_size:
        raise PlanError(
            f"macOS needs at least {format_size(min_size)} (its {format_size(c.used)} of data "
            f"plus {format_size(min_free)} free); {choices.resize_to!r} is "
            f"{format_size(new_size)}"
        )
    if new_size >= mac.size:
        raise PlanError(
            f"macOS container is {format_size(mac.size)}; resizing to {format_size(new_size)} "
            "frees nothing"
        )
    region_start = align_up(mac.start + new_size, ALIGN)
    region_end = mac.end + disk.gap_after(mac)
    if align_down(region_end, ALIGN) - region_start < NEED_FREE:
        raise PlanError(
            f"shrinking macOS to {format_size(new_size)} frees only "
            f"{format_size(max(0, region_end - region_start))}; installing needs at least "
            f"{format_size(NEED_FREE)}"
        )
    return region_start, region_end, ResizeContainer(mac.ref, mac.size, new_size), warnings


def fat_label(name: str) -> str:
    """FAT volume label ≤ 11 characters, upper case (newfs_msdos -v, mkfs.fat -n)."""
    word = "".join(c for c in name.upper() if c.isascii() and c.isalnum())[:5] or "OS"
    return f"EFI - {word}"[:11]


def _merge(ranges: list[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    out: list[tuple[int, int]] = []
    for s, e in sorted(r for r in ranges if r[1] > r[0]):
        if out and s <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return tuple(out)


def _check_invariants(disk: Disk, ops: list[Op], new_parts: list[Partition]) -> None:
    """Our own guarantees; a failure here is a planner bug, not user input."""
    protected = {p.ref for p in disk.partitions if p.kind in PROTECTED}
    resized = {op.ref: op.new_size for op in ops if isinstance(op, ResizeContainer)}
    for op in ops:
        assert op.ref not in protected, f"plan touches protected partition {op.ref}"
    for n in new_parts:
        assert n.start % ALIGN == 0, f"{n.ref} start not aligned"
        assert n.size % ALIGN == 0, f"{n.ref} size not aligned"
        assert disk.usable_start <= n.start, f"{n.ref} before the usable range"
        assert n.end <= disk.usable_end, f"{n.ref} after the usable range"
        for p in disk.partitions:
            end = p.start + resized.get(p.ref, p.size)
            assert n.end <= p.start or n.start >= end, f"{n.ref} overlaps {p.ref}"


def plan_uninstall(model: DiskModel, stub_ref: str, *, disk_ref: str | None = None) -> Plan:
    """Delete one stub install (stub container, its ESP and OS partitions); give the space
    back to the macOS container when it sits directly before it."""
    disk = _target_disk(model, disk_ref)
    installs = find_stub_installs(disk)
    inst: StubInstall | None = next((i for i in installs if i.stub.ref == stub_ref), None)
    if inst is None:
        known = ", ".join(f"{i.stub.ref} ({i.name})" for i in installs) or "none"
        raise PlanError(f"{stub_ref} is not a stub install on {disk.ref} (installs: {known})")
    parts = inst.partitions
    ops: list[Op] = []
    for p in reversed(parts):
        if p is inst.stub:
            ops.append(DeleteContainer(p.ref, p.start, p.size))
        else:
            ops.append(DeletePartition(p.ref, p.start, p.size))
    owned: list[tuple[int, int]] = [(0, GPT_HEAD), (disk.size - GPT_TAIL, disk.size)]
    owned += [(p.start, p.end) for p in parts]
    changes = {p.ref: "deleted" for p in parts}
    freed_end = parts[-1].end + disk.gap_after(parts[-1])
    remaining = [p for p in disk.partitions if p not in parts]
    mac = disk.macos_partition()
    notes: list[str] = []
    # Only a macOS container that ends before the install, with nothing in between, can
    # grow into the freed space (APFS containers grow only at their end).
    if (mac is not None and mac.end <= inst.stub.start
            and not any(mac.end <= p.start < inst.stub.start for p in remaining)):
        new_size = align_down(freed_end - mac.start, 4096)
        ops.append(ResizeContainer(mac.ref, mac.size, new_size))
        owned += [(mac.start, mac.start + APFS_SUPERBLOCK), (mac.end, mac.start + new_size)]
        changes[mac.ref] = "resized"
        remaining = [replace(p, size=new_size) if p is mac else p for p in remaining]
    else:
        notes.append("the freed space stays unpartitioned (macOS is not directly before it)")
    after = replace(disk, partitions=tuple(remaining))
    after_rows = layout(after, changes) + tuple(
        Slot(p.start, p.size, p.kind.value, p.name, p.ref, "deleted") for p in parts
    )
    return Plan(
        action="uninstall", disk=disk.ref, ops=tuple(ops), before=layout(disk),
        after=tuple(sorted(after_rows, key=lambda s: (s.start, s.change != "deleted"))),
        owned=_merge(owned), os_name=inst.name, notes=tuple(notes),
    )


@dataclass(frozen=True, slots=True)
class SpaceOptions:
    """What a prompt can offer before planning (the TUI and `pippin install` ask this)."""

    largest_free: int
    resize_offered: bool
    resize_min: int  # smallest macOS container size (aligned up), 0 when not offered
    resize_current: int
    freeable: int  # bytes a resize to resize_min frees (plus the gap after macOS)
    os_min: int
    os_recommended: int
    why_not_resize: str = ""


def space_options(model: DiskModel, entry: OsEntry, *, expert: bool = False,
                  disk_ref: str | None = None) -> SpaceOptions:
    disk = _target_disk(model, disk_ref)
    largest = max((g.size for g in disk.gaps()), default=0)
    try:
        _, region_end, op, _ = _plan_resize(disk, Choices(space=Space.RESIZE, expert=expert))
    except PlanError as exc:
        mac = disk.macos_partition()
        return SpaceOptions(largest, False, 0, mac.size if mac else 0, 0, entry.min_size,
                            entry.recommended_size, exc.message)
    mac = disk.part(op.ref)
    return SpaceOptions(largest, True, op.new_size, mac.size,
                        region_end - align_up(mac.start + op.new_size, ALIGN), entry.min_size,
                        entry.recommended_size)
