"""Create a simulated Mac: a sparse disk image laid out like a factory Apple Silicon SSD.

GPT: iBoot system container (``Apple_APFS_ISC``, 500 MiB) first, the macOS APFS container,
the recovery container (5 GiB) at the end; each container formatted by ``mkapfs``. The
macOS volumes (System with ``/Library``, Data, Preboot, Recovery, VM, Update) and the space
they use are recorded in ``<image>.d/``; device facts go to ``<image>.device.json``.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

from installer.device import DeviceFacts, load_facts, sim_facts
from installer.disk.model import TYPE_GUIDS, PartKind
from installer.errors import BackendError
from installer.platform.base import Runner, SubprocessRunner
from installer.platform.gpt import SECTOR
from installer.platform.sim import SimBackend, container_uuid, remove_sim
from installer.platform.simstate import SimContainer, SimState, SimVolume, facts_path
from installer.sizes import GB, GiB, MiB, align_down, format_size
from vendorfw.atomic import write_bytes

ISC_SIZE = 500 * MiB
RECOVERY_SIZE = 5 * GiB
MIN_DISK = 32 * GiB
MAX_DISK = 16 * 1000**4


def _uid(*parts: object) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_OID, ":".join(map(str, parts)))).upper()


@dataclass(frozen=True, slots=True)
class SimMac:
    path: Path
    facts: DeviceFacts

    @classmethod
    def open(cls, path: Path) -> SimMac:
        path = Path(path)
        if not path.is_file():
            raise BackendError(f"{path}: no simulated Mac here",
                               hint="create one with `pippin sim create PATH`")
        return cls(path, load_facts(facts_path(path)))

    def backend(self, runner: Runner | None = None) -> SimBackend:
        return SimBackend(self.path, runner)

    @classmethod
    def create(cls, path: Path, *, device: str = "j314sap", disk_size: int = 512 * GB,
               macos_used: int = 200 * GB, overhead: int = 0,
               runner: Runner | None = None) -> SimMac:
        path = Path(path)
        facts = sim_facts(device)
        if not MIN_DISK <= disk_size <= MAX_DISK:
            raise BackendError(
                f"disk size {format_size(disk_size)} is outside {format_size(MIN_DISK)}"
                f"..{format_size(MAX_DISK)}"
            )
        taken = [p for p in (path, facts_path(path), Path(f"{path}.d")) if p.exists()]
        if taken:
            # Name what is in the way: a leftover sidecar of a deleted image blocks too.
            raise BackendError(f"{taken[0]} already exists",
                               hint="choose another path or delete the image, "
                               f"{facts_path(path).name} and {path.name}.d/")
        if not path.parent.is_dir():
            raise BackendError(f"directory {path.parent} does not exist")
        runner = runner or SubprocessRunner()
        usable_end = align_down(disk_size - 34 * SECTOR, 4096)
        isc_start = 40 * SECTOR
        mac_start = isc_start + ISC_SIZE
        rec_start = align_down(usable_end - RECOVERY_SIZE, 4096)
        mac_size = rec_start - mac_start
        if macos_used < 4 * GiB or macos_used + overhead > mac_size - 2 * GiB:
            raise BackendError(
                f"macOS using {format_size(macos_used)} must be at least 4 GiB and fit in a "
                f"{format_size(mac_size)} container"
            )
        seed = (device, disk_size, macos_used)
        layout = [
            (1, isc_start, ISC_SIZE, PartKind.ISC, "iBootSystemContainer", "iSCPreboot"),
            (2, mac_start, mac_size, PartKind.APFS, "Container", "Macintosh HD"),
            (3, rec_start, usable_end - rec_start, PartKind.RECOVERY, "RecoveryOSContainer",
             "Recovery"),
        ]
        try:
            with path.open("xb") as f:
                f.truncate(disk_size)
            argv = ["sgdisk", "-o", "-a", "8", f"-U{_uid(*seed, 'disk')}"]
            for n, start, size, kind, name, _ in layout:
                argv += [f"-n{n}:{start // SECTOR}:{(start + size) // SECTOR - 1}",
                         f"-t{n}:{TYPE_GUIDS[kind]}", f"-c{n}:{name}",
                         f"-u{n}:{_uid(*seed, n)}"]
            runner.check([*argv, str(path)])
            backend = SimBackend(path, runner)
            state = SimState(path)
            for n, start, size, _kind, _name, label in layout:
                part_uuid = _uid(*seed, n)
                cu = container_uuid(part_uuid)
                backend._mkapfs_into(start, size, label, cu)
                state.containers[part_uuid] = _container(n, cu, part_uuid, macos_used, overhead)
                for v in state.containers[part_uuid].volumes:
                    state.volume_dir(part_uuid, v.name).mkdir(parents=True, exist_ok=True)
                if n == 2:  # a real macOS System volume: /Library exists (not a stub)
                    for d in ("Library", "System/Library/CoreServices"):
                        state.volume_dir(part_uuid, "Macintosh HD").joinpath(d).mkdir(
                            parents=True, exist_ok=True)
            state.save()
            write_bytes(facts_path(path), json.dumps(facts.to_json(), indent=1).encode())
        except BaseException:
            with contextlib.suppress(OSError):
                remove_sim(path)
            raise
        return cls(path, facts)


def _container(n: int, cu: str, part_uuid: str, used: int, overhead: int) -> SimContainer:
    def vol(name: str, role: str, size: int) -> SimVolume:
        return SimVolume(name, [role], size, _uid(part_uuid, name))

    if n == 1:
        vols = [vol("iSCPreboot", "Preboot", 7 * MiB), vol("xART", "xART", 6 * MiB),
                vol("Hardware", "Hardware", 4 * MiB), vol("Recovery", "Recovery", 0)]
    elif n == 2:
        system = min(12 * GB, used // 4)
        vols = [vol("Macintosh HD", "System", system),
                vol("Macintosh HD - Data", "Data", used - system - 3 * GB // 2),
                vol("Preboot", "Preboot", GB), vol("Recovery", "Recovery", GB // 2),
                vol("VM", "VM", 0), vol("Update", "Update", 0)]
        return SimContainer(cu, used, overhead, vols)
    else:
        vols = [vol("Recovery", "Recovery", 2 * GB), vol("Update", "Update", 0)]
    return SimContainer(cu, sum(v.used for v in vols), 0, vols)


def image_allocated(path: Path) -> int:
    return os.stat(path).st_blocks * 512
