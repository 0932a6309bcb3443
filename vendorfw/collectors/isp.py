"""ISP camera set-files, carved out of ``appleh13camerad`` (formats.md §7).

Set-files start on 4 KiB boundaries with a recognisable header of eight big-endian u32
words; word 0 is a magic naming the sensor tuning. The binary is memory-mapped, so only
the candidate headers and the found set-files are read.
"""

from __future__ import annotations

import logging
import struct

from vendorfw.collectors import Result, by_name
from vendorfw.model import FirmwareFile, Problem
from vendorfw.source import FirmwareSource

log = logging.getLogger(__name__)

# magic (word 0) -> (name, size); the sensor ids are in formats.md §7
SETFILES: dict[int, tuple[str, int]] = {
    0x18200103: ("1820_01XX", 0x442C),
    0x18220201: ("1822_02XX", 0x442C),
    0x87200103: ("8720_01XX", 0x36AC),
    0x87230101: ("8723_01XX", 0x361C),
    0x19210106: ("1921_01XX", 0xAD40),
    0x19220201: ("1922_02XX", 0xAD40),
}
_HEADER = struct.Struct(">8I")
_STEP = 4096


def is_header(w: tuple[int, ...]) -> bool:
    """The set-file header test of §7 over the eight words at an aligned offset."""
    return (
        w[0] in SETFILES
        and w[2] == w[3] == w[6] == 0
        and w[4] != 0 and w[4] & 0x00FFFFFF == 0
        and w[5] != 0 and w[5] & 0x0000FFFF == 0
        and w[7] == 0x03C00000
    )


def collect(source: FirmwareSource) -> Result:
    """The set-files in ``source.camerad`` as ``apple/isp_<name>.dat``."""
    tree, path = source.tree, source.camerad
    if tree is None or path is None:
        return [], []
    shown = tree.shown(path)
    problems: list[Problem] = []
    files: dict[int, FirmwareFile] = {}
    try:
        with tree.mapped(path) as mm:
            size = len(mm)
            if size < _HEADER.size:
                return [], [Problem(shown, "too small to hold a set-file")]
            for off in range(0, size - _HEADER.size + 1, _STEP):
                words = _HEADER.unpack_from(mm, off)
                if not is_header(words) or words[0] in files:
                    continue
                name, length = SETFILES[words[0]]
                length = -(-length // 64) * 64
                if off + length > size:
                    problems.append(Problem(shown, f"set-file {name} at {off:#x} "
                                            "runs past the end of the file"))
                    continue
                files[words[0]] = FirmwareFile(f"apple/isp_{name}.dat",
                                               data=bytes(mm[off : off + length]))
    except OSError as exc:
        return [], [Problem(shown, f"cannot read: {exc.strerror or exc}")]
    if len(files) < len(SETFILES):
        problems.append(Problem(shown, f"only {len(files)} of {len(SETFILES)} "
                                "camera set-files found"))
    log.info("isp: %d set-files from %s", len(files), shown)
    return by_name(list(files.values())), problems
