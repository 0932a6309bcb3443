"""Bluetooth (hci_bcm4377) firmware from ``<firmware>/bluetooth`` (formats.md §7).

A name such as ``BCM4378B1_22.1.538.4006_PCIE_macOS_Shikoku_MUR.bin`` gives the chip and
stepping (part 0), the board (the part after ``PCIE``, past ``macOS`` and ``Willamette``,
without trailing ``E``/``S``/``2``) and the module vendor (exactly one whole part of
``MUR``/``USI``/``GEN``). Firmware (``.bin``) and patch table (``.ptb``) of one key travel
together; the first file in name order wins.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

from vendorfw.collectors import Result, by_name, link_escapes
from vendorfw.model import FirmwareFile, Problem
from vendorfw.source import FirmwareSource

log = logging.getLogger(__name__)

_CHIP = re.compile(r"bcm(43\d\d)([a-z]\d)")
_BOARD = re.compile(r"[a-z0-9][a-z0-9.+-]*")  # goes into the file name
_VENDORS = {"MUR": "m", "USI": "u", "GEN": ""}
# 4388 b0 boards that never shipped a patch table: its absence is expected there.
_NO_PTB_EXPECTED = frozenset({("4388", "b0", "tokara"), ("4388", "b0", "amami")})


@dataclass(frozen=True, slots=True)
class BtKey:
    """What a Bluetooth firmware file is for."""

    chip: str
    stepping: str
    board: str
    vendor: str

    def linux_name(self, ext: str) -> str:
        vendor = f"-{self.vendor}" if self.vendor else ""
        return f"brcm/brcmbt{self.chip}{self.stepping}-apple,{self.board}{vendor}.{ext}"


def parse_name(stem: str) -> BtKey:
    """The key of a file name without extension; ``ValueError`` says why it does not parse."""
    parts = stem.split("_")
    m = _CHIP.fullmatch(parts[0].lower())
    if m is None:
        raise ValueError(f"{parts[0]!r} is not a BCM43xx chip and stepping")
    try:
        i = parts.index("PCIE") + 1
    except ValueError:
        raise ValueError("no PCIE part before the board name") from None
    for optional in ("macOS", "Willamette"):
        if i < len(parts) and parts[i] == optional:
            i += 1
    board = parts[i].rstrip("ES2").lower() if i < len(parts) else ""
    if _BOARD.fullmatch(board) is None:
        raise ValueError(f"no usable board name after PCIE ({board!r})")
    vendors = [_VENDORS[p] for p in parts if p in _VENDORS]
    if len(vendors) != 1:
        raise ValueError(f"expected one vendor part (MUR, USI or GEN), found {len(vendors)}")
    return BtKey(m.group(1), m.group(2), board, vendors[0])


def collect(source: FirmwareSource) -> Result:
    """Collect the Bluetooth firmware of ``source`` (nothing without firmware/bluetooth)."""
    if source.firmware is None or not (source.firmware / "bluetooth").is_dir():
        return [], []
    bt = source.firmware / "bluetooth"
    problems: list[Problem] = []
    found: dict[BtKey, dict[str, Path]] = {}
    for path in _candidates(bt):
        if link_escapes(path, source.firmware):
            problems.append(Problem(str(path), f"link leads outside {source.firmware}"))
            continue
        try:
            key = parse_name(path.stem)
        except ValueError as exc:
            problems.append(Problem(str(path), str(exc)))
            continue
        ext = path.suffix[1:]
        slot = found.setdefault(key, {})
        if ext in slot:
            log.debug("bluetooth: %s loses to %s (first in name order wins)", path, slot[ext])
            continue
        slot[ext] = path
    files: list[FirmwareFile] = []
    for key, slot in found.items():
        if "bin" not in slot:
            log.info("bluetooth: %s has a patch table but no firmware, dropped", slot["ptb"])
            continue
        files.append(FirmwareFile(key.linux_name("bin"), source=slot["bin"]))
        if "ptb" in slot:
            files.append(FirmwareFile(key.linux_name("ptb"), source=slot["ptb"]))
        elif (key.chip, key.stepping, key.board) not in _NO_PTB_EXPECTED:
            problems.append(Problem(str(slot["bin"]), "no matching .ptb patch table"))
    log.info("bluetooth: %d files, %d problems", len(files), len(problems))
    return by_name(files), problems


def _candidates(bt: Path) -> list[Path]:
    """``.bin``/``.ptb`` files below ``bt`` without ``_DEV``, in byte order of their name."""
    out: list[Path] = []
    for dirpath, _dirnames, filenames in os.walk(bt):
        for name in filenames:
            if not name.endswith((".bin", ".ptb")) or "_DEV" in name:
                continue
            path = Path(dirpath) / name
            if path.is_file():
                out.append(path)
    return sorted(out, key=lambda p: (os.fsencode(p.name), os.fsencode(p)))
