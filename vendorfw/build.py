"""Build a complete ``vendorfw/`` directory from a firmware source (the library entry point).

``build_vendorfw(source_dir, out_dir)`` is what the installer calls to populate
``ESP/vendorfw/`` and what ``vendorfw extract`` runs: collect → plan (hash, dedup) → write
firmware.cpio, firmware.tar, manifest.txt and the U-Boot copy of the ASMedia firmware into a
fresh directory that replaces ``out_dir`` only when complete (formats.md §5, §6).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from vendorfw import rawdump
from vendorfw.atomic import atomic_dir, atomic_file
from vendorfw.collect import collect
from vendorfw.errors import ArchiveError
from vendorfw.manifest import Manifest
from vendorfw.model import Problem
from vendorfw.package import CHUNK, Plan, Progress, plan_package, write_package_files

log = logging.getLogger(__name__)

ASMEDIA_NAME = "asmedia/asm2214a-apple.bin"
UBOOT_COPY = "u-boot/" + ASMEDIA_NAME


@dataclass(frozen=True, slots=True)
class Report:
    """What a build produced."""

    out_dir: Path
    files: int
    links: int
    stored_bytes: int
    manifest: Manifest
    problems: tuple[Problem, ...]

    def as_json(self) -> dict[str, object]:
        return {
            "out_dir": str(self.out_dir),
            "files": self.files,
            "links": self.links,
            "stored_bytes": self.stored_bytes,
            "problems": [{"path": p.path, "reason": p.reason} for p in self.problems],
        }


@contextlib.contextmanager
def plan_from_source(
    source_dir: Path,
    progress: Progress | None = None,
    tmp_parent: Path | None = None,
) -> Iterator[tuple[Plan, list[Problem]]]:
    """Collect and plan; the planned files stay readable until the block ends."""
    with rawdump.open_source(source_dir, tmp_parent, progress) as source:
        files, problems = collect(source, lambda name: log.info("collecting %s", name))
        if not files:
            log.warning("no firmware found in %s", source_dir)
        yield plan_package(files, progress), problems


PACKAGE_ENTRIES = frozenset({"firmware.cpio", "firmware.tar", "manifest.txt", "u-boot"})


def check_replaceable(
    out_dir: Path, hint: str = "give a new or empty directory, or a vendorfw/ directory"
) -> None:
    """Refuse to replace a directory that is not a vendorfw/ package (e.g. a typo'd $HOME)."""
    if not os.path.lexists(out_dir):
        return
    if out_dir.is_symlink():  # replacing it would swap the link for a directory
        raise ArchiveError(f"{out_dir} is a symlink", hint=f"give its target, {out_dir.resolve()}")
    if not out_dir.is_dir():
        raise ArchiveError(f"{out_dir} exists and is not a directory")
    try:
        foreign = sorted(n for n in os.listdir(out_dir) if n not in PACKAGE_ENTRIES)
    except OSError as exc:
        raise ArchiveError(f"cannot list {out_dir}: {exc.strerror or exc}") from exc
    if foreign:
        raise ArchiveError(
            f"{out_dir} holds other files ({', '.join(foreign[:3])}"
            f"{', …' if len(foreign) > 3 else ''}); it would be replaced as a whole",
            hint=hint,
        )


def write_vendorfw_dir(plan: Plan, out_dir: Path, progress: Progress | None = None) -> None:
    """Replace ``out_dir`` atomically with the package of ``plan`` (+ U-Boot copy)."""
    try:
        with atomic_dir(out_dir) as new:
            write_package_files(plan, new, progress)
            asm = next((p.file for p in plan.files if p.file.name == ASMEDIA_NAME), None)
            if asm is not None:
                dest = new / UBOOT_COPY
                dest.parent.mkdir(parents=True)
                with atomic_file(dest) as f:
                    data = asm.read()  # 96 KiB by definition (§7), fine to hold
                    for off in range(0, len(data), CHUNK):
                        f.write(data[off : off + CHUNK])
    except OSError as exc:
        raise ArchiveError(f"cannot write {out_dir}: {exc}") from exc


def build_vendorfw(
    source_dir: Path,
    out_dir: Path,
    progress: Progress | None = None,
    *,
    tmp_parent: Path | None = None,
) -> Report:
    """Collect firmware from ``source_dir`` and write the ``vendorfw/`` directory ``out_dir``.

    ``source_dir``: a directory with ``all_firmware.tar.gz`` (+ ``kernelcache*``), an
    unpacked raw dump, or a macOS-style tree. ``progress`` gets byte counts (hashing, then
    writing). Problems in the source (skipped files) are reported, not fatal. ``out_dir`` is
    replaced as a whole, so it must not exist, be empty, or hold only a vendorfw/ package.
    """
    check_replaceable(out_dir)
    with plan_from_source(source_dir, progress, tmp_parent) as (plan, problems):
        write_vendorfw_dir(plan, out_dir, progress)
    log.info("built %s: %d files, %d links", out_dir, len(plan.files), plan.links)
    return Report(
        out_dir, len(plan.files), plan.links, plan.stored_bytes, plan.manifest, tuple(problems)
    )
