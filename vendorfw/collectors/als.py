"""Ambient-light-sensor calibration (formats.md §7).

``apple/aop-als-cal.bin`` from the dump, then every factory-data file whose name starts
``HmCA`` as ``apple/<name>``. Both are passed through unchanged. On macOS the calibration
comes from ``ioreg -r -a -n als -l``; :func:`cal_from_ioreg` turns that output into the
bytes of ``aop-als-cal.bin``.
"""

from __future__ import annotations

import logging
import os
import plistlib
import re
from typing import Any
from xml.parsers.expat import ExpatError

from vendorfw.collectors import Result, by_name, link_escapes
from vendorfw.errors import CollectError
from vendorfw.model import FirmwareFile, Problem
from vendorfw.source import FirmwareSource

log = logging.getLogger(__name__)

_SAFE_NAME = re.compile(r"HmCA[\x21-\x5b\x5d-\x7e]*")  # printable ASCII without backslash


def collect(source: FirmwareSource) -> Result:
    """ALS calibration files of ``source``."""
    files: list[FirmwareFile] = []
    problems: list[Problem] = []
    if source.als_cal is not None:
        files.append(FirmwareFile("apple/aop-als-cal.bin", source=source.als_cal))
    if source.factorydata is not None:
        try:
            entries = sorted(source.factorydata.iterdir(), key=lambda p: os.fsencode(p.name))
        except OSError as exc:
            problems.append(Problem(str(source.factorydata),
                                    f"cannot list: {exc.strerror or exc}"))
            entries = []
        for p in entries:
            if not p.name.startswith("HmCA") or not p.is_file():
                continue
            if link_escapes(p, source.factorydata):
                problems.append(Problem(str(p), f"link leads outside {source.factorydata}"))
                continue
            # the name goes into the archive and the manifest line: printable ASCII only
            if _SAFE_NAME.fullmatch(p.name) is None:
                problems.append(Problem(str(p), "name is not printable ASCII or has a backslash"))
                continue
            files.append(FirmwareFile(f"apple/{p.name}", source=p))
    log.info("als: %d files", len(files))
    return by_name(files), problems


def cal_from_ioreg(output: bytes) -> bytes:
    """``CalibrationData`` of the first ``als`` node in ``ioreg -r -a -n als -l`` output."""
    try:
        nodes: Any = plistlib.loads(output)
    except (plistlib.InvalidFileException, ExpatError, ValueError, OverflowError) as exc:
        raise CollectError(f"ioreg output for the als node is not a plist: {exc}") from exc
    for node in nodes if isinstance(nodes, list) else [nodes]:
        cal = node.get("CalibrationData") if isinstance(node, dict) else None
        if isinstance(cal, bytes) and cal:
            return cal
    raise CollectError("the als node has no CalibrationData",
                       hint="this Mac may lack a calibrated ambient light sensor")
