"""Run every collector over a :class:`FirmwareSource`, in the order packaging needs (§6)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from vendorfw.collectors import Collector, als, asmedia, bluetooth, by_name, isp, multitouch, wifi
from vendorfw.manifest import check_name
from vendorfw.model import FirmwareFile, Problem
from vendorfw.package import ustar_problem
from vendorfw.source import FirmwareSource

log = logging.getLogger(__name__)

# formats.md §6: Wi-Fi, Bluetooth, Multitouch, ISP, ALS, then kernel (ASMedia).
COLLECTORS: tuple[tuple[str, Collector], ...] = (
    ("wifi", wifi.collect),
    ("bluetooth", bluetooth.collect),
    ("multitouch", multitouch.collect),
    ("isp", isp.collect),
    ("als", als.collect),
    ("kernel", asmedia.collect),
)


def collect(
    source: FirmwareSource, progress: Callable[[str], None] | None = None
) -> tuple[list[FirmwareFile], list[Problem]]:
    """All firmware files of ``source`` in packaging order, plus the problems found.

    Each collector's files are sorted by output name (byte order). ``progress`` is called
    with the collector's name before it runs.
    """
    files: list[FirmwareFile] = []
    problems: list[Problem] = []
    seen: dict[str, str] = {}
    for name, run in COLLECTORS:
        if progress is not None:
            progress(name)
        got, trouble = run(source)
        trouble = list(trouble)
        for f in by_name(got):
            why = check_name(f.name) or ustar_problem(f.name)
            if why is not None:  # a name the package cannot hold costs that file only
                trouble.append(Problem(str(f.source or f.name), f"output name {f.name!r}: {why}"))
                continue
            if f.name in seen:
                # collectors own disjoint name spaces; a clash is our bug, not the input's
                raise AssertionError(f"{name} and {seen[f.name]} both produce {f.name}")
            seen[f.name] = name
            files.append(f)
        for p in trouble:
            log.warning("%s: %s: %s", name, p.path, p.reason)
            problems.append(p)
        log.info("collector %s: %d files, %d problems", name, len(got), len(trouble))
    log.info("collected %d firmware files (%d problems)", len(files), len(problems))
    return files, problems
