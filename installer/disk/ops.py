"""The operations a plan is made of: a closed union that every backend matches exhaustively.

Partitions are named by ``ref``: an existing partition keeps its backend ref (``disk0s2``,
``sim:2``); a partition the plan creates gets ``new:<n>``, and the backend records which
real partition that became. ``start``/``size`` are bytes; ``uuid`` is the GPT unique GUID
the plan chose (the sim writes it; diskutil picks its own and the backend records it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, assert_never

from installer.disk.model import PartKind
from installer.sizes import format_size


@dataclass(frozen=True, slots=True)
class ResizeContainer:
    ref: str
    old_size: int
    new_size: int


@dataclass(frozen=True, slots=True)
class CreateStubContainer:
    ref: str
    after: str
    start: int
    size: int
    label: str
    uuid: str


@dataclass(frozen=True, slots=True)
class CreateStubVolumes:
    """Data (D), System (S, grouped with Data), Preboot (B), Recovery (R) in a stub."""

    ref: str
    label: str


@dataclass(frozen=True, slots=True)
class CreatePartition:
    ref: str
    after: str
    start: int
    size: int
    kind: PartKind
    name: str
    uuid: str


@dataclass(frozen=True, slots=True)
class FormatFat32:
    ref: str
    label: str
    volume_id: int | None


@dataclass(frozen=True, slots=True)
class CopyTree:
    """Copy the package directory ``source`` into the FAT filesystem of ``ref``."""

    ref: str
    source: str


@dataclass(frozen=True, slots=True)
class WriteImage:
    """Write the package member ``image`` raw to the start of ``ref``."""

    ref: str
    image: str
    size: int


@dataclass(frozen=True, slots=True)
class DeletePartition:
    ref: str
    start: int
    size: int


@dataclass(frozen=True, slots=True)
class DeleteContainer:
    """Delete a stub APFS container and its partition (uninstall)."""

    ref: str
    start: int
    size: int


Op = (
    ResizeContainer
    | CreateStubContainer
    | CreateStubVolumes
    | CreatePartition
    | FormatFat32
    | CopyTree
    | WriteImage
    | DeletePartition
    | DeleteContainer
)

OP_TYPES: dict[str, type[Op]] = {
    t.__name__: t
    for t in (
        ResizeContainer, CreateStubContainer, CreateStubVolumes, CreatePartition,
        FormatFat32, CopyTree, WriteImage, DeletePartition, DeleteContainer,
    )
}


def op_to_dict(op: Op) -> dict[str, Any]:
    d: dict[str, Any] = {"op": type(op).__name__}
    for name in op.__slots__:
        d[name] = getattr(op, name)
    return d


def op_from_dict(d: dict[str, Any]) -> Op:
    """Inverse of :func:`op_to_dict` (journal files); raises KeyError/TypeError/ValueError."""
    fields = dict(d)
    cls = OP_TYPES[fields.pop("op")]
    if "kind" in fields:
        fields["kind"] = PartKind(fields["kind"])
    return cls(**fields)


def describe(op: Op, *, offsets: bool = True) -> str:
    """One line for the plan display (``offsets=False``: without byte offsets, for narrow
    screens; ``--json`` keeps them)."""
    def at(start: int) -> str:
        return f" at {start}" if offsets else ""

    match op:
        case ResizeContainer(ref=ref, old_size=old, new_size=new):
            return f"resize APFS container {ref}: {format_size(old)} -> {format_size(new)}"
        case CreateStubContainer(ref=ref, start=start, size=size, label=label):
            return f"create stub APFS container {ref} {label!r} ({format_size(size)}{at(start)})"
        case CreateStubVolumes(ref=ref, label=label):
            return f"create stub volumes in {ref}: {label} - Data, {label}, Preboot, Recovery"
        case CreatePartition(ref=ref, start=start, size=size, kind=kind, name=name):
            return (f"create {kind.value} partition {ref} {name!r} "
                    f"({format_size(size)}{at(start)})")
        case FormatFat32(ref=ref, label=label):
            return f"format {ref} FAT32 {label!r}"
        case CopyTree(ref=ref, source=source):
            return f"copy package directory {source}/ into {ref}"
        case WriteImage(ref=ref, image=image, size=size):
            return f"write image {image} ({format_size(size)}) to {ref}"
        case DeletePartition(ref=ref, size=size):
            return f"delete partition {ref} ({format_size(size)})"
        case DeleteContainer(ref=ref, size=size):
            return f"delete stub APFS container {ref} ({format_size(size)})"
        case _:
            assert_never(op)
