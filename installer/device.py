"""Device facts: board id, chip id, device class, firmware versions.

On macOS they come from ``ioreg -alp IODeviceTree`` (and ``nvram -p``); on the simulated Mac
from a JSON file beside the disk image. Both parse into the same frozen ``DeviceFacts``.
"""

from __future__ import annotations

import json
import plistlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from installer.errors import BackendError
from installer.platform.base import Runner


@dataclass(frozen=True, slots=True)
class DeviceFacts:
    device_class: str  # e.g. "j314sap"
    board_id: int
    chip_id: int
    target_type: str  # e.g. "J314s"
    product: str
    system_firmware: str  # iBoot version of the system firmware, e.g. "iBoot-10151.140.19"
    os_firmware: str  # iBoot version paired with the booted macOS
    macos_version: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


#: Devices the simulator can play (public identifiers of shipping Macs).
KNOWN_DEVICES: dict[str, tuple[int, int, str, str]] = {
    "j274ap": (0x22, 0x8103, "J274", "Mac mini (M1, 2020)"),
    "j293ap": (0x24, 0x8103, "J293", "MacBook Pro (13-inch, M1, 2020)"),
    "j313ap": (0x26, 0x8103, "J313", "MacBook Air (M1, 2020)"),
    "j314sap": (0x04, 0x6000, "J314s", "MacBook Pro (14-inch, M1 Pro, 2021)"),
    "j316sap": (0x06, 0x6000, "J316s", "MacBook Pro (16-inch, M1 Pro, 2021)"),
    "j413ap": (0x28, 0x8112, "J413", "MacBook Air (M2, 2022)"),
}


def sim_facts(device: str, macos_version: str = "14.6.1") -> DeviceFacts:
    try:
        board, chip, target, product = KNOWN_DEVICES[device.lower()]
    except KeyError:
        known = ", ".join(sorted(KNOWN_DEVICES))
        raise BackendError(f"unknown device {device!r} (known: {known})") from None
    fw = "iBoot-10151.140.19"
    return DeviceFacts(device.lower(), board, chip, target, product, fw, fw, macos_version)


def parse_facts_json(data: bytes, source: str) -> DeviceFacts:
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BackendError(f"{source}: not valid JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise BackendError(f"{source}: must be a JSON object")
    kwargs: dict[str, Any] = {}
    for name, typ in (
        ("device_class", str), ("board_id", int), ("chip_id", int), ("target_type", str),
        ("product", str), ("system_firmware", str), ("os_firmware", str),
        ("macos_version", str),
    ):
        if name not in doc:
            raise BackendError(f"{source}: key {name} is missing")
        v = doc[name]
        if not isinstance(v, typ) or isinstance(v, bool):
            raise BackendError(f"{source}: key {name} must be {typ.__name__}")
        kwargs[name] = v
    return DeviceFacts(**kwargs)


def load_facts(path: Path) -> DeviceFacts:
    try:
        return parse_facts_json(Path(path).read_bytes(), str(path))
    except OSError as exc:
        raise BackendError(f"cannot read device facts {path}: {exc.strerror}") from exc


def _cstr(v: object) -> str:
    if isinstance(v, bytes):
        return v.split(b"\0", 1)[0].decode("ascii", errors="replace")
    return str(v)


def _le_int(v: object, key: str) -> int:
    if isinstance(v, bytes) and 1 <= len(v) <= 8:
        return int.from_bytes(v, "little")
    if isinstance(v, int):
        return v
    raise BackendError(f"ioreg: {key} is not a little-endian integer")


def parse_ioreg(data: bytes, macos_version: str = "") -> DeviceFacts:
    """``ioreg -alp IODeviceTree``: root ``compatible``/``target-type``/``model``, and the
    ``chosen`` node's ``board-id``, ``chip-id``, ``firmware-version``,
    ``system-firmware-version``."""
    try:
        root = plistlib.loads(data)
    except (plistlib.InvalidFileException, ValueError) as exc:
        raise BackendError(f"ioreg output is not a plist: {exc}") from exc
    if not isinstance(root, dict):
        raise BackendError("ioreg: top level is not a dict")
    chosen: dict[str, Any] | None = None
    stack = [root]
    while stack:
        node = stack.pop()
        if node.get("IORegistryEntryName") == "chosen":
            chosen = node
            break
        stack.extend(c for c in node.get("IORegistryEntryChildren", []) if isinstance(c, dict))
    if chosen is None:
        raise BackendError("ioreg: no chosen node in IODeviceTree")
    compatible = root.get("compatible")
    if not isinstance(compatible, bytes):
        raise BackendError("ioreg: root compatible is missing")
    device_class = _cstr(compatible).lower()
    for key in ("board-id", "chip-id"):
        if key not in chosen:
            raise BackendError(f"ioreg: chosen/{key} is missing")
    return DeviceFacts(
        device_class=device_class,
        board_id=_le_int(chosen["board-id"], "board-id"),
        chip_id=_le_int(chosen["chip-id"], "chip-id"),
        target_type=_cstr(root.get("target-type", b"")),
        product=_cstr(root.get("model", b"")),
        system_firmware=_cstr(chosen.get("system-firmware-version", b"")),
        os_firmware=_cstr(chosen.get("firmware-version", b"")),
        macos_version=macos_version,
    )


def read_mac_facts(runner: Runner) -> DeviceFacts:
    """Device facts of the Mac we run on: ``ioreg -alp IODeviceTree`` plus ``sw_vers``."""
    version = runner.check(["sw_vers", "-productVersion"]).decode().strip()
    return parse_ioreg(runner.check(["ioreg", "-alp", "IODeviceTree"]), version)
