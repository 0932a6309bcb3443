"""The real Mac's install target (macOS, run as root): plain file writes into mounted volumes.

- stub: ``diskutil mount`` the System, Preboot and Recovery volumes that
  ``CreateStubVolumes`` made; the stub contents (formats.md §11) are written into their mount
  points; unmounted again when done;
- ESP: ``diskutil mount`` the new ESP, copy the staged tree (formats.md §5) over it, unmount;
- device facts: ``ioreg -alp IODeviceTree`` and ``sw_vers``;
- disk images (the restore image's BaseSystem): ``hdiutil attach`` read-only at a fresh
  folder, detached after (:mod:`installer.platform.hdiutil`).

Mount points are what diskutil reports (``/Volumes/…``), opened under ``root`` ("/" on a
Mac; the macOS stand-in's root off one, see installer/demo/standin/).
"""

from __future__ import annotations

import logging
import shutil
from contextlib import AbstractContextManager
from pathlib import Path

from installer.device import DeviceFacts, read_mac_facts
from installer.disk.model import Partition
from installer.errors import BackendError
from installer.firmware import ImageOpener
from installer.platform import hdiutil
from installer.platform.base import Runner
from installer.platform.macos import MacBackend
from installer.stub import StubVolumes
from installer.targets.base import InstallTarget, StubInfo, stub_volumes_by_role

log = logging.getLogger(__name__)

#: Where the journal of an install lives (under root): survives a reboot, root-owned.
JOURNAL = "var/db/pippin/journal.json"


class MacTarget(InstallTarget):
    def __init__(self, backend: MacBackend, runner: Runner, root: Path = Path("/")) -> None:
        self.backend = backend
        self.mac = backend
        self.runner = runner
        self.root = root
        self.journal = root / JOURNAL
        self.journal.parent.mkdir(parents=True, exist_ok=True)
        self._mounted: list[str] = []

    def facts(self) -> DeviceFacts:
        return read_mac_facts(self.runner)

    def stub(self, container: Partition) -> StubInfo:
        """Mount the stub's System, Preboot and Recovery volumes (until :meth:`close_stub`)."""
        c = container.container
        if c is None:
            raise BackendError(f"stub container {container.ref} has no APFS container")
        system, preboot, recovery = stub_volumes_by_role(c.volumes, container.ref)
        paths = []
        for v in (system, preboot, recovery):
            paths.append(self.mac.mount(v.device))
            self._mounted.append(v.device)
        vgid = c.volume_group or system.uuid
        log.info("stub %s mounted: %s", container.ref, ", ".join(map(str, paths)))
        return StubInfo(StubVolumes(*paths), vgid, system.uuid)

    def account_stub(self, container: Partition, written: int) -> None:
        """macOS keeps the volumes' usage itself."""

    def close_stub(self, container: Partition) -> None:
        while self._mounted:
            self.mac.unmount(self._mounted.pop())

    def image_opener(self) -> ImageOpener:
        return self.open_image

    def open_image(self, image: Path, mountpoint: Path) -> AbstractContextManager[Path]:
        """``image`` attached read-only at the new folder ``mountpoint`` for a block."""
        return hdiutil.attached(self.runner, image, mountpoint, self.mac.local)

    def write_esp(self, esp: Partition, staging: Path) -> None:
        mp = self.mac.mount(esp.ref)
        try:
            shutil.copytree(staging, mp, dirs_exist_ok=True)
        except OSError as exc:
            raise BackendError(f"copying the ESP files to {esp.ref}: {exc}",
                               hint="the ESP may be full") from exc
        finally:
            self.mac.unmount(esp.ref)
        log.info("ESP %s: copied %s", esp.ref, ", ".join(sorted(p.name for p in
                                                                staging.iterdir())))

    def read_esp(self, esp: Partition, path: str) -> bytes | None:
        mp = self.mac.mount(esp.ref)
        try:
            return (mp / path).read_bytes()
        except OSError:
            return None
        finally:
            self.mac.unmount(esp.ref)
