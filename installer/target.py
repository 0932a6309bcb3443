"""Where an install writes beyond the plan's operations: stub volume contents and ESP files.

The plan's operations go through the :class:`Backend`; after them the installer fills the
stub's APFS volumes and adds files to the new ESP. ``InstallTarget`` is that seam, next to
the backend it wraps. :class:`SimTarget` writes the stub's volumes into the simulated Mac's
sidecar folders and the ESP with mtools (``mcopy`` into the FAT32 inside the image), so the
results are inspectable with ``mdir``/``mtype``. On a real Mac the same steps need mounted
volumes (diskutil mount, then plain file copies); that target is not built yet and says so.
"""

from __future__ import annotations

import logging
import os
import tempfile
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

from installer.device import DeviceFacts, load_facts
from installer.disk.model import Partition
from installer.errors import BackendError
from installer.platform.base import Backend, Runner
from installer.platform.sim import SimBackend
from installer.platform.simstate import SimState, facts_path, sidecar
from installer.stub import StubVolumes

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class StubInfo:
    volumes: StubVolumes
    vgid: str
    system_volume_uuid: str


class InstallTarget(ABC):
    backend: Backend
    journal: Path

    @abstractmethod
    def facts(self) -> DeviceFacts: ...

    @abstractmethod
    def stub(self, container: Partition) -> StubInfo:
        """The stub's volume folders (created by CreateStubVolumes) and its group id."""

    @abstractmethod
    def account_stub(self, container: Partition, written: int) -> None:
        """Record what the stub now holds (the sim keeps per-volume usage)."""

    @abstractmethod
    def write_esp(self, esp: Partition, staging: Path) -> None:
        """Copy the tree ``staging`` into the ESP's filesystem (existing files replaced)."""

    @abstractmethod
    def read_esp(self, esp: Partition, path: str) -> bytes | None:
        """A file from the ESP, or None when it is not there."""


class SimTarget(InstallTarget):
    """A simulated Mac (disk image + sidecar + device facts)."""

    def __init__(self, image: Path, runner: Runner) -> None:
        self.image = Path(image)
        self.runner = runner
        self.backend = SimBackend(self.image, runner)
        self.journal = sidecar(self.image) / "journal.json"

    def facts(self) -> DeviceFacts:
        return load_facts(facts_path(self.image))

    def stub(self, container: Partition) -> StubInfo:
        state = SimState(self.image)
        sc = state.containers.get(container.uuid)
        if sc is None:
            raise BackendError(f"stub container {container.ref} has no volumes")
        roles = {r: v for v in sc.volumes for r in v.roles}
        try:
            system, preboot, recovery = roles["System"], roles["Preboot"], roles["Recovery"]
        except KeyError as exc:
            raise BackendError(f"stub container {container.ref} lacks a {exc} volume") from None

        def vdir(name: str) -> Path:
            return state.volume_dir(container.uuid, name)

        # The group id (VGID) as the backend reports it (diskutil listVolumeGroups on a Mac).
        vgid = (container.container.volume_group if container.container else "") or system.uuid
        return StubInfo(StubVolumes(vdir(system.name), vdir(preboot.name), vdir(recovery.name)),
                        vgid, system.uuid)

    def account_stub(self, container: Partition, written: int) -> None:
        state = SimState(self.image)
        sc = state.containers[container.uuid]
        for v in sc.volumes:
            root = state.volume_dir(container.uuid, v.name)
            v.used = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
        sc.used = max(sc.used, sum(v.used for v in sc.volumes))
        state.save()

    def _mtools(self, esp: Partition, *argv: str) -> bytes:
        return self.runner.check(
            ["env", "MTOOLS_SKIP_CHECK=1", argv[0], "-i", f"{self.image}@@{esp.start}",
             *argv[1:]], hint="mtools (mcopy, mtype) must be installed")

    def write_esp(self, esp: Partition, staging: Path) -> None:
        names = sorted(str(p) for p in staging.iterdir())
        if names:
            self._mtools(esp, "mcopy", "-s", "-o", "-Q", "-D", "o", *names, "::/")
        log.info("ESP %s: copied %s", esp.ref, ", ".join(os.path.basename(n) for n in names))

    def read_esp(self, esp: Partition, path: str) -> bytes | None:
        r = self.runner.run(["env", "MTOOLS_SKIP_CHECK=1", "mtype", "-i",
                             f"{self.image}@@{esp.start}", "::/" + path])
        if r.rc != 0:
            return None
        return r.stdout


class MacTarget(InstallTarget):
    """Not built yet: stub contents and ESP files need mounted volumes on macOS."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.journal = Path(tempfile.gettempdir()) / "pippin-journal.json"

    def _no(self) -> BackendError:
        return BackendError("installing on a real Mac is not built yet (stub contents and "
                            "ESP files need mounted volumes)",
                            hint="use `pippin plan` to see the plan, or a sim:PATH target")

    def facts(self) -> DeviceFacts:
        raise self._no()

    def stub(self, container: Partition) -> StubInfo:
        raise self._no()

    def account_stub(self, container: Partition, written: int) -> None:
        raise self._no()

    def write_esp(self, esp: Partition, staging: Path) -> None:
        raise self._no()

    def read_esp(self, esp: Partition, path: str) -> bytes | None:
        raise self._no()
