"""The real Mac's install target (macOS, run as root)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from installer.device import DeviceFacts
from installer.disk.model import Partition
from installer.errors import BackendError
from installer.platform.base import Backend
from installer.targets.base import InstallTarget, StubInfo


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
