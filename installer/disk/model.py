"""The disk model both backends produce: whole disks, GPT partitions, APFS containers.

Pure values. Byte offsets everywhere (never sectors), so the macOS model (4096-byte
blocks) and the sim model (512-byte sectors) are the same type.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from installer.sizes import MiB, align_down, align_up

#: A gap counts as free space only when larger than this (formats.md §1).
FREE_THRESHOLD = 16 * MiB
ALIGN = MiB


class PartKind(StrEnum):
    ISC = "Apple_APFS_ISC"
    APFS = "Apple_APFS"
    RECOVERY = "Apple_APFS_Recovery"
    EFI = "EFI"
    LINUX = "Linux Filesystem"
    OTHER = "other"


#: GPT partition type GUIDs (formats.md §1), upper case.
TYPE_GUIDS: dict[PartKind, str] = {
    PartKind.APFS: "7C3457EF-0000-11AA-AA11-00306543ECAC",
    PartKind.ISC: "69646961-6700-11AA-AA11-00306543ECAC",
    PartKind.RECOVERY: "52637672-7900-11AA-AA11-00306543ECAC",
    PartKind.EFI: "C12A7328-F81F-11D2-BA4B-00A0C93EC93B",
    PartKind.LINUX: "0FC63DAF-8483-4772-8E79-3D69D8477DE4",
}
KIND_BY_GUID = {g: k for k, g in TYPE_GUIDS.items()}

#: Partitions no plan may touch (formats.md §1).
PROTECTED = frozenset({PartKind.ISC, PartKind.RECOVERY})


def kind_of(content: str) -> PartKind:
    """diskutil's ``Content`` (a name or a type GUID) → kind."""
    up = content.upper()
    if up in KIND_BY_GUID:
        return KIND_BY_GUID[up]
    for k in PartKind:
        if content == k.value:
            return k
    if content in ("Microsoft Basic Data", "DOS_FAT_32"):
        return PartKind.OTHER
    return PartKind.OTHER


@dataclass(frozen=True, slots=True)
class Volume:
    device: str
    name: str
    roles: tuple[str, ...]
    used: int
    uuid: str = ""


@dataclass(frozen=True, slots=True)
class ResizeLimits:
    """``diskutil apfs resizeContainer <part> limits -plist``."""

    current: int
    min_preferred: int
    maximum: int


@dataclass(frozen=True, slots=True)
class Container:
    ref: str
    uuid: str
    ceiling: int
    free: int
    volumes: tuple[Volume, ...] = ()
    #: A System volume without /Library (formats.md §1); None when nobody looked.
    is_stub: bool | None = None
    #: APFS volume group UUID (VGID) of the System/Data pair; "" when there is none. bputil,
    #: kmutil and stub_info.json name an install by it (formats.md §2, §5).
    volume_group: str = ""

    def system_volume(self) -> Volume | None:
        return next((v for v in self.volumes if "System" in v.roles), None)

    @property
    def used(self) -> int:
        return self.ceiling - self.free

    def roles(self) -> set[str]:
        return {r for v in self.volumes for r in v.roles}

    @property
    def is_macos(self) -> bool:
        return {"System", "Data"} <= self.roles() and not self.is_stub


@dataclass(frozen=True, slots=True)
class Partition:
    ref: str
    index: int
    kind: PartKind
    start: int
    size: int
    name: str = ""
    uuid: str = ""
    type_guid: str = ""
    container: Container | None = None
    limits: ResizeLimits | None = None

    @property
    def end(self) -> int:
        return self.start + self.size


@dataclass(frozen=True, slots=True)
class Gap:
    start: int
    end: int

    @property
    def size(self) -> int:
        return self.end - self.start


@dataclass(frozen=True, slots=True)
class Disk:
    ref: str
    size: int
    block_size: int = 4096
    internal: bool = True
    physical: bool = True
    partitions: tuple[Partition, ...] = ()

    @property
    def usable_start(self) -> int:
        return 40 * 512

    @property
    def usable_end(self) -> int:
        return align_down(self.size - 34 * 512, 4096)

    @property
    def is_system(self) -> bool:
        parts = self.ordered()
        return (
            self.internal and self.physical and bool(parts) and parts[0].kind is PartKind.ISC
        )

    def ordered(self) -> tuple[Partition, ...]:
        return tuple(sorted(self.partitions, key=lambda p: p.start))

    def part(self, ref: str) -> Partition:
        for p in self.partitions:
            if p.ref == ref:
                return p
        raise KeyError(ref)

    def gaps(self) -> tuple[Gap, ...]:
        """Free regions larger than 16 MiB, trimmed to 1 MiB boundaries."""
        out: list[Gap] = []
        cursor = self.usable_start
        for p in (*self.ordered(), None):
            nxt = self.usable_end if p is None else p.start
            if nxt - cursor > FREE_THRESHOLD:
                g = Gap(align_up(cursor, ALIGN), align_down(nxt, ALIGN))
                if g.size > 0:
                    out.append(g)
            if p is not None:
                cursor = max(cursor, p.end)
        return tuple(out)

    def gap_after(self, part: Partition) -> int:
        """Unpartitioned bytes directly after ``part`` (up to the next one or the end)."""
        later = [p.start for p in self.partitions if p.start >= part.end]
        return min(later, default=self.usable_end) - part.end

    def macos_partition(self) -> Partition | None:
        for p in self.ordered():
            if p.kind is PartKind.APFS and p.container is not None and p.container.is_macos:
                return p
        return None


@dataclass(frozen=True, slots=True)
class StubInstall:
    """An installed OS: stub container, the ESP after it, then its OS partitions."""

    stub: Partition
    esp: Partition | None
    os_partitions: tuple[Partition, ...] = field(default=())

    @property
    def name(self) -> str:
        c = self.stub.container
        for v in c.volumes if c else ():
            if "System" in v.roles:
                return v.name
        return self.stub.name

    @property
    def partitions(self) -> tuple[Partition, ...]:
        return (self.stub, *((self.esp,) if self.esp else ()), *self.os_partitions)


def find_stub_installs(disk: Disk) -> tuple[StubInstall, ...]:
    parts = disk.ordered()
    out: list[StubInstall] = []
    for i, p in enumerate(parts):
        if p.kind is not PartKind.APFS or p.container is None or not p.container.is_stub:
            continue
        # An install is contiguous: a partition after free space (> 16 MiB) belongs to
        # nobody we know, and an uninstall must not delete it.
        rest: list[Partition] = []
        end = p.end
        for q in parts[i + 1:]:
            if q.start - end > FREE_THRESHOLD:
                break
            rest.append(q)
            end = q.end
        esp = rest[0] if rest and rest[0].kind is PartKind.EFI else None
        os_parts: list[Partition] = []
        for q in rest[1 if esp else 0:]:
            if q.kind in (PartKind.APFS, PartKind.ISC, PartKind.RECOVERY, PartKind.EFI):
                break
            os_parts.append(q)
        out.append(StubInstall(p, esp, tuple(os_parts)))
    return tuple(out)


@dataclass(frozen=True, slots=True)
class DiskModel:
    disks: tuple[Disk, ...]

    def disk(self, ref: str) -> Disk:
        for d in self.disks:
            if d.ref == ref:
                return d
        raise KeyError(ref)

    def system_disk(self) -> Disk | None:
        for d in self.disks:
            if d.is_system:
                return d
        return None
