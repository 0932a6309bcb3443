"""Where an install writes beyond the plan's operations: stub volume contents and ESP files.

The plan's operations go through the :class:`Backend`; after them the installer fills the
stub's APFS volumes and adds files to the new ESP. ``InstallTarget`` is that seam, next to
the backend it wraps: :mod:`installer.targets.sim` (sidecar folders + mtools) and
:mod:`installer.targets.mac` (mounted volumes on macOS).
"""

from __future__ import annotations

import contextlib
import logging
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from installer.device import DeviceFacts
from installer.disk.model import Partition
from installer.errors import BackendError
from installer.platform.base import Backend
from installer.stub import StubVolumes

if TYPE_CHECKING:
    from installer.firmware import ImageOpener

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class StubInfo:
    volumes: StubVolumes
    vgid: str
    system_volume_uuid: str


class _HasRoles(Protocol):
    @property
    def roles(self) -> Any: ...


V = TypeVar("V", bound=_HasRoles)


def stub_volumes_by_role(volumes: Iterable[V], ref: str) -> tuple[V, V, V]:
    """The System, Preboot and Recovery volumes of a stub container (one error otherwise)."""
    roles = {r: v for v in volumes for r in v.roles}
    try:
        return roles["System"], roles["Preboot"], roles["Recovery"]
    except KeyError as exc:
        raise BackendError(f"stub container {ref} lacks a {exc} volume") from None


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

    def close_stub(self, container: Partition) -> None:  # noqa: B027 - optional hook
        """Release what :meth:`stub` opened (a Mac unmounts the volumes)."""

    @contextlib.contextmanager
    def open_stub(self, container: Partition) -> Iterator[StubInfo]:
        """:meth:`stub`, then :meth:`close_stub` however the block ends."""
        info = self.stub(container)
        try:
            yield info
        finally:
            self.close_stub(container)

    def image_opener(self) -> ImageOpener | None:
        """How this host opens a disk image read-only (the restore image's BaseSystem, for
        the firmware): None when Pippin unpacks it itself with libarchive (the simulated
        Mac; its demo images carry a tar there)."""
        return None

    @abstractmethod
    def write_esp(self, esp: Partition, staging: Path) -> None:
        """Copy the tree ``staging`` into the ESP's filesystem (existing files replaced)."""

    @abstractmethod
    def read_esp(self, esp: Partition, path: str) -> bytes | None:
        """A file from the ESP, or None when it is not there."""
