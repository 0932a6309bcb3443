"""als firmware (formats.md §7). Placeholder until implemented."""

from __future__ import annotations

from vendorfw.collectors import Result
from vendorfw.source import FirmwareSource


def collect(source: FirmwareSource) -> Result:
    """Collect nothing yet."""
    return [], []
