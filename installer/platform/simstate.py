"""The simulated Mac's files: the disk image, ``<image>.d/`` (APFS volume contents and
``state.json``) and ``<image>.device.json`` (device facts).

Linux cannot write APFS, so what macOS would keep inside a container (volumes, roles,
usage) lives in ``state.json``, and volume contents in ``<image>.d/<partuuid>/<volume>/``.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from installer.errors import BackendError
from vendorfw.atomic import write_bytes


def sidecar(image: Path) -> Path:
    return image.with_name(image.name + ".d")


def facts_path(image: Path) -> Path:
    return image.with_name(image.name + ".device.json")


@dataclass
class SimVolume:
    name: str
    roles: list[str]
    used: int
    uuid: str


@dataclass
class SimContainer:
    uuid: str
    used: int
    overhead: int = 0  # snapshots/pending updates: raises the resize minimum
    volumes: list[SimVolume] = field(default_factory=list)


class SimState:
    """Mutable view of ``state.json``; ``save`` writes it atomically."""

    def __init__(self, image: Path) -> None:
        self.image = image
        self.dir = sidecar(image)
        self.path = self.dir / "state.json"
        self.containers: dict[str, SimContainer] = {}
        self.boot = ""  # partition UUID of the blessed container ("" = macOS, as shipped)
        if self.path.exists():
            self._load()

    def _load(self) -> None:
        try:
            doc = json.loads(self.path.read_bytes())
            for partuuid, c in doc["containers"].items():
                vols = [SimVolume(v["name"], list(v["roles"]), int(v["used"]), v["uuid"])
                        for v in c["volumes"]]
                self.containers[partuuid] = SimContainer(
                    c["uuid"], int(c["used"]), int(c.get("overhead", 0)), vols
                )
            self.boot = str(doc.get("boot", ""))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise BackendError(f"{self.path}: unreadable sim state ({exc})") from exc

    def save(self) -> None:
        doc: dict[str, Any] = {"containers": {
            k: {"uuid": c.uuid, "used": c.used, "overhead": c.overhead,
                "volumes": [vars(v) for v in c.volumes]}
            for k, c in sorted(self.containers.items())
        }}
        if self.boot:
            doc["boot"] = self.boot
        self.dir.mkdir(exist_ok=True)
        write_bytes(self.path, json.dumps(doc, indent=1).encode() + b"\n")

    def volume_dir(self, partuuid: str, volume: str) -> Path:
        return self.dir / partuuid / volume

    def drop(self, partuuid: str) -> None:
        self.containers.pop(partuuid, None)
        shutil.rmtree(self.dir / partuuid, ignore_errors=True)
