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

from vendorfw.collectors import Result, by_name
from vendorfw.errors import CollectError
from vendorfw.model import FirmwareFile, Problem
from vendorfw.source import FirmwareSource, join

log = logging.getLogger(__name__)

_SAFE_NAME = re.compile(r"HmCA[\x21-\x5b\x5d-\x7e]*")  # printable ASCII without backslash


def collect(source: FirmwareSource) -> Result:
    """ALS calibration files of ``source``."""
    tree = source.tree
    if tree is None:
        return [], []
    files: list[FirmwareFile] = []
    problems: list[Problem] = []
    if source.als_cal is not None:
        files.append(FirmwareFile("apple/aop-als-cal.bin", source=tree.content(source.als_cal)))
    factory = source.factorydata
    if factory is not None:
        try:
            names = sorted(tree.listdir(factory), key=os.fsencode)
        except OSError as exc:
            problems.append(Problem(tree.shown(factory), f"cannot list: {exc.strerror or exc}"))
            names = []
        for name in names:
            p = join(factory, name)
            if not name.startswith("HmCA") or not tree.is_file(p):
                continue
            if tree.escapes(p, factory):
                problems.append(Problem(tree.shown(p),
                                        f"link leads outside {tree.shown(factory)}"))
                continue
            # the name goes into the archive and the manifest line: printable ASCII only
            if _SAFE_NAME.fullmatch(name) is None:
                problems.append(Problem(tree.shown(p),
                                        "name is not printable ASCII or has a backslash"))
                continue
            files.append(FirmwareFile(f"apple/{name}", source=tree.content(p)))
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
