"""Build GPT disk images with FAT partitions using the real tools (sfdisk/sgdisk, mkfs.fat,
mtools), for the boot-chain and initramfs QEMU tests.

`sgdisk` takes the sector size from the device and assumes 512 for plain files, so for
4096-byte sectors the image is attached to a loop device with `losetup --sector-size 4096`
(root only) and sgdisk runs on that.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ESP_TYPE = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
LINUX_TYPE = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
MiB = 1024 * 1024


@dataclass(frozen=True)
class Part:
    """A partition to create. ``files`` maps FAT paths ("m1n1/boot.bin") to bytes or a Path."""

    name: str
    size: int
    type_guid: str = ESP_TYPE
    partuuid: str = field(default_factory=lambda: str(uuid.uuid4()))
    fat: int | None = 32  # FAT bits (12/16/32) or None for no filesystem
    files: Mapping[str, bytes | Path] = field(default_factory=dict)


@dataclass(frozen=True)
class Placed:
    part: Part
    offset: int  # bytes from the start of the disk


def _run(argv: Sequence[str], **kw: object) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(list(argv), check=True, capture_output=True, **kw)  # type: ignore[call-overload]


def make_fat(path: Path, size: int, files: Mapping[str, bytes | Path], *, bits: int = 32,
             sector_size: int = 512, label: str = "EFI") -> None:
    """A FAT filesystem image of ``size`` bytes holding ``files`` (written with mtools)."""
    with open(path, "wb") as f:
        f.truncate(size)
    _run(["mkfs.fat", "-F", str(bits), "-S", str(sector_size), "-n", label, "-i", "1234ABCD",
          str(path)])
    env = dict(os.environ, MTOOLS_SKIP_CHECK="1")
    made: set[str] = set()
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, content) in enumerate(sorted(files.items())):
            parts = name.strip("/").split("/")
            for depth in range(1, len(parts)):
                d = "/".join(parts[:depth])
                if d not in made:
                    _run(["mmd", "-i", str(path), "::/" + d], env=env)
                    made.add(d)
            src = content if isinstance(content, Path) else Path(tmp) / f"f{i}"
            if not isinstance(content, Path):
                src.write_bytes(content)
            _run(["mcopy", "-i", str(path), "-o", str(src), "::/" + "/".join(parts)], env=env)


def make_gpt_disk(path: Path, parts: Sequence[Part], *, sector_size: int = 512,
                  size: int | None = None) -> list[Placed]:
    """A sparse GPT disk image with ``parts`` laid out from 1 MiB, each 1 MiB-aligned."""
    offset = MiB
    placed = []
    for p in parts:
        placed.append(Placed(p, offset))
        offset += -(-p.size // MiB) * MiB
    total = size or offset + MiB
    with open(path, "wb") as f:
        f.truncate(total)
    argv = ["sgdisk", "-o"]
    for i, pl in enumerate(placed, 1):
        first = pl.offset // sector_size
        last = first + pl.part.size // sector_size - 1
        argv += [f"-n{i}:{first}:{last}", f"-t{i}:{pl.part.type_guid}",
                 f"-u{i}:{pl.part.partuuid}", f"-c{i}:{pl.part.name}"]
    if sector_size == 512:
        _run([*argv, str(path)])
    else:
        loop = _run(["losetup", "--sector-size", str(sector_size), "--find", "--show",
                     str(path)]).stdout.decode().strip()
        try:
            _run([*argv, loop])
        finally:
            _run(["losetup", "-d", loop])
    for pl in placed:
        if pl.part.fat is None:
            continue
        with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".fat") as fat:
            make_fat(Path(fat.name), pl.part.size, pl.part.files, bits=pl.part.fat,
                     sector_size=sector_size)
            _run(["dd", f"if={fat.name}", f"of={path}", "bs=1M", f"seek={pl.offset}",
                  "oflag=seek_bytes", "conv=notrunc,sparse", "status=none"])
    return placed
