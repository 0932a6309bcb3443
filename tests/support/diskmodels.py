"""Disk models for planner tests, shaped like a factory Apple Silicon SSD."""

from __future__ import annotations

from installer.disk.model import (
    Container,
    Disk,
    DiskModel,
    Partition,
    PartKind,
    ResizeLimits,
    Volume,
)
from installer.sizes import GB, MiB, align_down

ISC = 500 * MiB
RECOVERY = 5 * 1024 * MiB


def macos_container(size: int, used: int, ref: str = "disk3") -> Container:
    vols = (Volume(f"{ref}s1", "Macintosh HD", ("System",), 10 * GB),
            Volume(f"{ref}s5", "Macintosh HD - Data", ("Data",), max(0, used - 10 * GB)))
    return Container(ref, "C0", size, size - used, vols, False)


def stub_container(size: int, name: str, ref: str) -> Container:
    vols = (Volume(f"{ref}s1", f"{name} - Data", ("Data",), MiB),
            Volume(f"{ref}s2", name, ("System",), MiB))
    return Container(ref, "C1", size, size - 2 * MiB, vols, True)


def mac_disk(disk_size: int = 500 * GB, mac_size: int | None = None, used: int = 100 * GB,
             preferred: int | None = None, extra: tuple[Partition, ...] = (),
             internal: bool = True, ref: str = "disk0") -> Disk:
    """ISC at 24576, macOS right after it, recovery at the end; ``extra`` goes between."""
    usable_end = align_down(disk_size - 34 * 512, 4096)
    rec_start = align_down(usable_end - RECOVERY, 4096)
    mac_start = 24576 + ISC
    if mac_size is None:
        mac_size = rec_start - mac_start
    limits = ResizeLimits(mac_size, preferred if preferred is not None else used + 5 * GB,
                          mac_size)
    parts = (
        Partition(f"{ref}s1", 1, PartKind.ISC, 24576, ISC, "ISC"),
        Partition(f"{ref}s2", 2, PartKind.APFS, mac_start, mac_size, "Container",
                  container=macos_container(mac_size, used), limits=limits),
        *extra,
        Partition(f"{ref}s3", 3, PartKind.RECOVERY, rec_start, usable_end - rec_start,
                  "Recovery"),
    )
    return Disk(ref, disk_size, 4096, internal, True, parts)


def model(*disks: Disk) -> DiskModel:
    return DiskModel(disks)
