"""``pippin upgrade-stage1 NAME``: a new stage-1 loader for an install, keeping its variables.

The installed object on the stub's System volume (:data:`installer.stub.STAGE1_PATH`) is
read back (its version and its variables, Pippin's or m1n1's format, formats.md §2/§4), the
new loader image (Pippin's prebuilt ``stage1.bin``, or an m1n1-format image) is checked,
compared (an older version is refused unless allowed; a different loader kind cannot be
compared and is said so) and assembled with the same variables, then written in place
atomically. Step 2 must register it again: the commands are returned for printing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from installer.bootobj import assemble
from installer.bootobj import vars as bvars
from installer.bootobj.version import (
    IMAGE_END,
    LoaderKind,
    read_installed_vars,
    read_version,
)
from installer.disk.model import Partition, StubInstall, find_stub_installs
from installer.errors import BootObjectError, PippinError
from installer.stub import STAGE1_PATH
from installer.targets.base import InstallTarget
from vendorfw.atomic import write_bytes

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Stage1Upgrade:
    name: str
    container: Partition
    path: Path
    old_version: str
    new_version: str
    variables: tuple[bvars.Variable, ...]
    data: bytes
    vgid: str
    notes: tuple[str, ...] = ()


def find_install(target: InstallTarget, name: str) -> StubInstall:
    model = target.backend.read_model()
    disk = model.system_disk() or model.disks[0]
    installs = find_stub_installs(disk)
    for i in installs:
        if name in (i.name, i.stub.ref):
            return i
    known = ", ".join(f"{i.name!r} ({i.stub.ref})" for i in installs) or "none"
    raise PippinError(f"no install named {name!r} on {disk.ref} (installs: {known})")


def _label(data: bytes) -> str:
    v = read_version(data)
    return f"{v.kind.value} {v.version}" if v else "unknown"


def plan_upgrade(target: InstallTarget, name: str, image: bytes, *,
                 allow_downgrade: bool = False) -> Stage1Upgrade:
    """Read the installed object, check ``image``, and assemble the new object (pure of
    writes)."""
    inst = find_install(target, name)
    with target.open_stub(inst.stub) as info:  # a Mac mounts, then unmounts
        path = info.volumes.system / STAGE1_PATH
        try:
            old = path.read_bytes()
        except OSError as exc:
            raise PippinError(f"{inst.name!r} has no stage-1 object at {path} "
                              f"({exc.strerror})",
                              hint="the install did not finish: `pippin status`") from exc
    variables = read_installed_vars(old)
    assemble.check_stage_image(image, "new stage 1")
    old_v, new_v = read_version(old), read_version(image)
    assert new_v is not None  # check_stage_image demands a marker
    if new_v.kind is LoaderKind.M1N1 and not image.endswith(IMAGE_END):
        raise BootObjectError("new stage 1: an m1n1-format image ends with STACKBOT; this one "
                              "does not (truncated, or a boot object with variables)",
                              hint="give the bare loader image")
    notes: list[str] = []
    if old_v is None:
        notes.append("the installed object has no version marker: not compared")
    elif old_v.kind is not new_v.kind:
        notes.append(f"loader changes from {old_v.kind.value} to {new_v.kind.value}: "
                     "versions of different loaders are not compared")
    elif new_v.version < old_v.version and not allow_downgrade:
        raise BootObjectError(f"stage 1 {new_v.version} is older than the installed "
                              f"{old_v.version} on {inst.name!r}",
                              hint="pass --allow-downgrade to install it anyway")
    elif new_v.version == old_v.version:
        notes.append(f"same version {new_v.version}: the object is rebuilt")
    data = assemble.assemble_stage1(image, variables)
    return Stage1Upgrade(inst.name, inst.stub, path, _label(old), _label(image), variables,
                         data, info.vgid, tuple(notes))


def apply_upgrade(target: InstallTarget, up: Stage1Upgrade) -> None:
    """Write the new object in place (temporary name, fsync, rename)."""
    with target.open_stub(up.container) as info:
        write_bytes(info.volumes.system / STAGE1_PATH, up.data)
    log.info("stage 1 of %r: %s -> %s (%d bytes)", up.name, up.old_version, up.new_version,
             len(up.data))


def step2_commands(name: str, vgid: str) -> list[str]:
    """What step 2 runs in 1TR to register the object again (formats.md §2)."""
    system = f"/Volumes/{name}"
    return [f"bputil -nc -v {vgid}",
            f"kmutil configure-boot -c '{system}/{STAGE1_PATH}' --raw --entry-point 2048 "
            f"--lowest-virtual-address 0 -v '{system}'"]
