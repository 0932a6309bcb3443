"""Disk images on macOS: ``hdiutil attach`` read-only at a mount point Pippin chooses, and
``hdiutil detach``, through the :class:`Runner` (no Finder window, no verification pass).

Command forms::

    hdiutil attach -nobrowse -readonly -noverify -mountpoint <dir> <image>
    hdiutil detach <mount point>            (once more with -force when that fails)

``attach`` prints one line per device of the image: the device node, its content hint and
its mount point (empty for devices without a mounted filesystem), separated by tabs, each
field but the last padded with spaces. When ``-mountpoint`` is not honoured the line with a
mount point says where the volume went; Pippin reads it from there.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

from installer.errors import BackendError
from installer.platform.base import Result, Runner

log = logging.getLogger(__name__)

#: The shape of ``hdiutil attach`` output for an APFS image such as a BaseSystem (a GUID
#: partition map, its APFS partition, the synthesized container, the volume and where it
#: mounted). Recorded from documentation (hdiutil(1) and published transcripts), not
#: captured on a Mac; the stand-in (installer/demo/standin/) prints the same shape.
ATTACH_EXAMPLE = (
    "/dev/disk4          \tGUID_partition_scheme          \t\n"
    "/dev/disk4s1        \tApple_APFS                     \t\n"
    "/dev/disk5          \tEF57347C-0000-11AA-AA11-0030654\t\n"
    "/dev/disk5s1        \t41504653-0000-11AA-AA11-0030654\t/Volumes/macOS Base System\n")

HINT = "see hdiutil's message; nothing on the disk was changed"


def attach_argv(image: Path, mountpoint: Path) -> list[str]:
    return ["hdiutil", "attach", "-nobrowse", "-readonly", "-noverify", "-mountpoint",
            str(mountpoint), str(image)]


def parse_attach(out: bytes) -> tuple[str | None, str | None]:
    """(the image's whole-disk device, the mount point of the last device line that has
    one); None for what the output lacks."""
    device = mount = None
    for line in out.decode(errors="replace").splitlines():
        fields = line.split("\t")
        dev = fields[0].strip()
        if not dev.startswith("/dev/"):
            continue
        device = device or dev
        if len(fields) >= 3 and fields[2].strip():
            mount = fields[2].rstrip("\r\n ")
    return device, mount


def _tail(r: Result) -> str:
    text = r.stderr.decode(errors="replace").strip() or r.stdout.decode(errors="replace").strip()
    lines = text.splitlines()
    return lines[-1].strip() if lines else f"exit {r.rc}, no output"


def detach(runner: Runner, mountpoint: str) -> bool:
    """``hdiutil detach``; when that fails, once more with ``-force``. Never raises for a
    failed detach (the caller's work is done): it is logged, and False returned."""
    r = runner.run(["hdiutil", "detach", mountpoint])
    if r.rc == 0:
        return True
    log.warning("hdiutil detach %s failed (%s); retrying with -force", mountpoint, _tail(r))
    r = runner.run(["hdiutil", "detach", mountpoint, "-force"])
    if r.rc == 0:
        log.info("detached %s with -force", mountpoint)
        return True
    log.warning("hdiutil detach -force %s failed (%s); it stays attached until "
                "`hdiutil detach -force %s` or a restart", mountpoint, _tail(r), mountpoint)
    return False


@contextlib.contextmanager
def attached(runner: Runner, image: Path, mountpoint: Path,
             local: Callable[[str], Path]) -> Iterator[Path]:
    """``image`` attached read-only at the fresh folder ``mountpoint`` (created here) for the
    block; detached however the block ends. ``local`` turns a mount point hdiutil reports
    (``/Volumes/…`` when ``-mountpoint`` was not honoured) into a path this process opens.
    An attach failure is one :class:`BackendError` naming the image and hdiutil's message."""
    mountpoint.mkdir()
    r = runner.run(attach_argv(image, mountpoint))
    if r.rc != 0:
        raise BackendError(f"cannot attach the disk image {image}: {_tail(r)}", hint=HINT)
    device, reported = parse_attach(r.stdout)
    if reported is None or reported == str(mountpoint):
        # nothing mounted (no filesystem hdiutil knows): the device is what to detach
        at = device if reported is None and device else str(mountpoint)
        tree = mountpoint
    else:
        log.info("hdiutil mounted %s at %s, not at %s", image, reported, mountpoint)
        at, tree = reported, local(reported)
    log.info("attached %s at %s", image, at)
    try:
        yield tree
    finally:
        detach(runner, at)
