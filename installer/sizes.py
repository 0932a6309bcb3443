"""Size strings and alignment (formats.md §1).

``KB/MB/GB/TB`` are powers of 1000, ``KiB/MiB/GiB/TiB`` powers of 1024, a bare number (or a
trailing ``B``) is bytes. Prompts also accept ``NN%`` and ``min``/``max``. Everything past
this module is ``int`` bytes. Errors are ``ValueError`` with a one-line reason; the parse
edge that called us (catalog, answers, CLI) turns them into its own error naming the key.
"""

from __future__ import annotations

import re
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal, InvalidOperation
from enum import StrEnum

KB = 1000
MB = 1000**2
GB = 1000**3
TB = 1000**4
KiB = 1024
MiB = 1024**2
GiB = 1024**3
TiB = 1024**4

UNITS: dict[str, int] = {
    "": 1, "b": 1,
    "k": KB, "kb": KB, "m": MB, "mb": MB, "g": GB, "gb": GB, "t": TB, "tb": TB,
    "kib": KiB, "mib": MiB, "gib": GiB, "tib": TiB,
}

_SIZE_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*$")
_PCT_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*%\s*$")


class Rounding(StrEnum):
    """Which way a byte count is aligned (formats.md §1 fixes it per use)."""

    UP = "up"
    DOWN = "down"


def align_up(value: int, to: int) -> int:
    return -(-value // to) * to


def align_down(value: int, to: int) -> int:
    return value // to * to


def align(value: int, to: int, rounding: Rounding) -> int:
    return align_up(value, to) if rounding is Rounding.UP else align_down(value, to)


def parse_size(text: str) -> int:
    """``"524288000B"``, ``"500MB"``, ``"1.5GiB"``, ``"4096"`` → bytes (rounded down)."""
    m = _SIZE_RE.match(text)
    if m is None:
        raise ValueError(f"not a size: {text!r} (examples: 500MB, 1GiB, 524288000B)")
    unit = m.group(2).lower()
    if unit not in UNITS:
        raise ValueError(f"unknown size unit {m.group(2)!r} in {text!r} (use KB, MB, GB, TB, KiB…)")
    try:
        value = Decimal(m.group(1)) * UNITS[unit]
    except InvalidOperation as exc:  # pragma: no cover - the regex admits only decimals
        raise ValueError(f"not a size: {text!r}") from exc
    return int(value.to_integral_value(rounding=ROUND_FLOOR))


def parse_choice(
    text: str, *, minimum: int, maximum: int, percent_of: int, rounding: Rounding
) -> int:
    """A size answer from a prompt or an answers file, aligned to 1 MiB.

    ``min``/``max`` pick the bounds, ``NN%`` is a share of ``percent_of``; a plain size is
    parsed with :func:`parse_size`. Bounds are *not* checked here: the planner refuses
    out-of-range values with a sentence that has the numbers.
    """
    word = text.strip().lower()
    if word in ("min", "max"):
        return align(minimum if word == "min" else maximum, MiB, rounding)
    m = _PCT_RE.match(word)
    if m is not None:
        pct = Decimal(m.group(1))
        if pct > 100:
            raise ValueError(f"{text!r} is more than 100%")
        raw = int((Decimal(percent_of) * pct / 100).to_integral_value(rounding=ROUND_CEILING))
    else:
        raw = parse_size(text)
    return align(raw, MiB, rounding)


def format_size(n: int) -> str:
    """Bytes as the user reads them: ``38.0 GB``, ``500.0 MB``, ``12 B`` (decimal units)."""
    sign = "-" if n < 0 else ""
    n = abs(n)
    for unit, scale in (("TB", TB), ("GB", GB), ("MB", MB), ("KB", KB)):
        if n >= scale:
            return f"{sign}{n / scale:.1f} {unit}"
    return f"{sign}{n} B"
