"""Replace ``m1n1/boot.bin`` on an ESP atomically, refusing downgrades (formats.md §4).

Order of steps, chosen so that a valid ``boot.bin`` exists after a crash at any point:

1. check the new object (arm64 Image, stage-2 version marker, payloads, signature);
2. compare versions with the installed one and refuse an older one unless allowed;
3. write ``boot.bin.new``, fsync it;
4. copy the installed ``boot.bin`` to a temporary name, fsync, rename it to ``boot.bin.old``
   (FAT has no hard links, and renaming ``boot.bin`` away would leave a gap);
5. rename ``boot.bin.new`` over ``boot.bin``, fsync the directory.

A crash leaves either the old or the new ``boot.bin``; a stale ``boot.bin.new`` is never
booted and is overwritten by the next update.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from installer.bootobj import scan, sign
from installer.bootobj.assemble import check_image
from installer.bootobj.version import ImageVersion, LoaderKind, Stage, read_version
from installer.errors import BootObjectError
from vendorfw.atomic import fsync_dir

log = logging.getLogger(__name__)

BOOT_DIR = "m1n1"
BOOT_NAME = "boot.bin"


class Step(StrEnum):
    """Points between the steps, where tests inject failures."""

    CHECKED = "checked"
    NEW_WRITTEN = "new-written"
    OLD_KEPT = "old-kept"
    REPLACED = "replaced"


@dataclass(frozen=True, slots=True)
class UpdateResult:
    path: Path
    installed: ImageVersion
    previous: ImageVersion | None
    kept_old: bool
    downgrade: bool


def inspect(data: bytes, what: str, public_key: bytes | None = None) -> ImageVersion:
    """Check that ``data`` is a bootable stage-2 object; return its version."""
    check_image(data, what)
    version = read_version(data)
    if version is None:
        raise BootObjectError(f"{what}: no ##pippin_ver## or ##m1n1_ver## version marker")
    if version.stage is Stage.STAGE1:
        raise BootObjectError(f"{what}: is a stage-1 object, {BOOT_DIR}/{BOOT_NAME} is stage 2")
    if version.kind is LoaderKind.PIPPIN:
        scan.scan(data, scan.payload_start(data))
    if public_key is not None:
        sign.verify(data, public_key)
    return version


def _existing(path: Path) -> ImageVersion | None:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise BootObjectError(f"cannot read {path}: {exc.strerror}") from exc
    try:
        return read_version(data)
    except BootObjectError as exc:
        log.warning("installed %s has an unreadable version (%s)", path, exc.message)
        return None


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _copy_synced(src: Path, dst: Path) -> None:
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        shutil.copyfileobj(fin, fout)
        fout.flush()
        os.fsync(fout.fileno())


def update_esp(
    esp: Path,
    data: bytes,
    *,
    allow_older: bool = False,
    public_key: bytes | None = None,
    step: Callable[[Step], None] = lambda _s: None,
) -> UpdateResult:
    """Install ``data`` as ``<esp>/m1n1/boot.bin``; see the module docstring for the steps."""
    esp = Path(esp)
    if not esp.is_dir():
        raise BootObjectError(f"ESP directory {esp} does not exist")
    new_version = inspect(data, "new boot.bin", public_key)
    target_dir = esp / BOOT_DIR
    target = target_dir / BOOT_NAME
    previous = _existing(target)
    downgrade = False
    if previous is not None and previous.kind is new_version.kind:
        if new_version.version < previous.version:
            downgrade = True
            if not allow_older:
                raise BootObjectError(
                    f"{target} has {previous.kind} {previous.version}; refusing to install the "
                    f"older {new_version.version}",
                    hint="pass --allow-older to downgrade on purpose",
                )
            log.warning("downgrading %s from %s to %s", target, previous.version,
                        new_version.version)
    elif previous is not None:
        log.warning("replacing %s %s with %s %s", previous.kind, previous.version,
                    new_version.kind, new_version.version)
    step(Step.CHECKED)
    new = target_dir / (BOOT_NAME + ".new")
    old = target_dir / (BOOT_NAME + ".old")
    old_tmp = target_dir / (BOOT_NAME + ".old.tmp")
    kept_old = replaced = False
    try:
        if not target_dir.is_dir():
            target_dir.mkdir()
            fsync_dir(esp)
        _write_synced(new, data)
        step(Step.NEW_WRITTEN)
        if target.exists():
            _copy_synced(target, old_tmp)
            os.replace(old_tmp, old)
            kept_old = True
            fsync_dir(target_dir)
        step(Step.OLD_KEPT)
        os.replace(new, target)
        replaced = True
        fsync_dir(target_dir)
        step(Step.REPLACED)
    except OSError as exc:
        for leftover in (new, old_tmp):
            try:
                leftover.unlink(missing_ok=True)
            except OSError:
                log.debug("could not remove %s", leftover, exc_info=True)
        state = "now holds the new version" if replaced else "is unchanged"
        raise BootObjectError(
            f"updating {target} failed: {exc.strerror or exc}",
            hint=f"{target} {state}" if replaced or previous is not None else None,
        ) from exc
    log.info("installed %s %s as %s", new_version.kind, new_version.version, target)
    return UpdateResult(target, new_version, previous, kept_old, downgrade)
