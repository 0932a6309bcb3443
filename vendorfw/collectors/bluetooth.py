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

from vendorfw.collectors import Result, by_name
from vendorfw.model import FirmwareFile, Problem
from vendorfw.source import FirmwareSource, Tree, basename, join

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
    tree, firmware = source.tree, source.firmware
    if tree is None or firmware is None or not tree.is_dir(join(firmware, "bluetooth")):
        return [], []
    problems: list[Problem] = []
    found: dict[BtKey, dict[str, str]] = {}
    for path in _candidates(tree, join(firmware, "bluetooth")):
        if tree.escapes(path, firmware):
            problems.append(Problem(tree.shown(path),
                                    f"link leads outside {tree.shown(firmware)}"))
            continue
        stem, ext = os.path.splitext(basename(path))
        try:
            key = parse_name(stem)
        except ValueError as exc:
            problems.append(Problem(tree.shown(path), str(exc)))
            continue
        slot = found.setdefault(key, {})
        if ext[1:] in slot:
            log.debug("bluetooth: %s loses to %s (first in name order wins)", path, slot[ext[1:]])
            continue
        slot[ext[1:]] = path
    files: list[FirmwareFile] = []
    for key, slot in found.items():
        if "bin" not in slot:
            log.info("bluetooth: %s has a patch table but no firmware, dropped", slot["ptb"])
            continue
        files.append(FirmwareFile(key.linux_name("bin"), source=tree.content(slot["bin"])))
        if "ptb" in slot:
            files.append(FirmwareFile(key.linux_name("ptb"), source=tree.content(slot["ptb"])))
        elif (key.chip, key.stepping, key.board) not in _NO_PTB_EXPECTED:
            problems.append(Problem(tree.shown(slot["bin"]), "no matching .ptb patch table"))
    log.info("bluetooth: %d files, %d problems", len(files), len(problems))
    return by_name(files), problems


def _candidates(tree: Tree, bt: str) -> list[str]:
    """``.bin``/``.ptb`` files below ``bt`` without ``_DEV``, in byte order of their name."""
    out: list[str] = []
    for dirpath, _dirnames, filenames in tree.walk(bt):
        for name in filenames:
            if not name.endswith((".bin", ".ptb")) or "_DEV" in name:
                continue
            path = join(dirpath, name)
            if tree.is_file(path):
                out.append(path)
    return sorted(out, key=lambda p: (os.fsencode(basename(p)), os.fsencode(p)))
