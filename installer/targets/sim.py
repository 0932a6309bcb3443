"""The simulated Mac's install target: the stub's volumes are the sidecar folders of the
image, and the ESP is written with mtools (``mcopy`` into the FAT32 inside the image), so
the results are inspectable with ``mdir``/``mtype``."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from installer.device import DeviceFacts, load_facts
from installer.disk.model import Partition
from installer.errors import BackendError
from installer.platform.base import Runner
from installer.platform.sim import SimBackend
from installer.platform.simstate import SimState, facts_path, sidecar
from installer.stub import StubVolumes
from installer.targets.base import InstallTarget, StubInfo, stub_volumes_by_role

log = logging.getLogger(__name__)


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
        system, preboot, recovery = stub_volumes_by_role(sc.volumes, container.ref)

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
