"""IOKit ``OSSerialize`` text, the shape of a real Multitouch IM4P payload (formats.md §7).

ASCII, a bare ``<dict>`` root (no XML declaration, DOCTYPE or ``<plist>``), ``ID`` on every
string, integer, data, dict and array, hex integers with a ``size`` attribute, ``IDREF`` for a
repeated string / integer / data value and for a dict or array object met again, plain
``<key>`` elements, and NUL padding. The demo restore image writes its Multitouch payload with
it, so the demo exercises the same parser path as a real restore image; the tests' fixture
generator uses it too (their expected outputs are written by hand, not derived from it).
"""

from __future__ import annotations

import base64
from typing import Any, NamedTuple
from xml.sax.saxutils import escape


class OSNumber(NamedTuple):
    """An integer with the bit size OSSerialize writes (``<integer size="16">``)."""

    value: int
    bits: int


def osserialize(value: dict[str, Any], pad_to: int = 256) -> bytes:
    """``value`` as an OSSerialize payload: bare ``<dict>`` root, IDs from 0 in document
    order, IDREFs for repeated leaves (by value) and repeated dicts/arrays (by identity),
    NUL-padded to a multiple of ``pad_to`` with at least one NUL."""
    ids: dict[Any, int] = {}
    out: list[str] = []

    def start(key: Any, tag: str, attrs: str = "") -> str | None:
        """The attributes of a first occurrence, or None after writing an IDREF."""
        if key in ids:
            out.append(f'<{tag} IDREF="{ids[key]}"/>')
            return None
        ids[key] = len(ids)
        return f'{attrs} ID="{ids[key]}"'

    def w(v: Any) -> None:
        if isinstance(v, bool):
            out.append("<true/>" if v else "<false/>")
        elif isinstance(v, int | OSNumber):
            n = v if isinstance(v, OSNumber) else OSNumber(v, 64 if v >> 32 else 32)
            attrs = start(("i", n.value, n.bits), "integer", f' size="{n.bits}"')
            if attrs is not None:
                out.append(f"<integer{attrs}>{n.value:#x}</integer>")
        elif isinstance(v, bytes):
            attrs = start(("d", v), "data")
            if attrs is not None:
                out.append(f"<data{attrs}>{base64.b64encode(v).decode()}</data>")
        elif isinstance(v, str):
            attrs = start(("s", v), "string")
            if attrs is not None:
                out.append(f"<string{attrs}>{escape(v)}</string>")
        elif isinstance(v, dict):
            attrs = start(("o", id(v)), "dict")
            if attrs is not None:
                out.append(f"<dict{attrs}>")
                for k, x in v.items():
                    out.append(f"<key>{escape(k)}</key>")
                    w(x)
                out.append("</dict>")
        elif isinstance(v, list):
            attrs = start(("o", id(v)), "array")
            if attrs is not None:
                out.append(f"<array{attrs}>")
                for x in v:
                    w(x)
                out.append("</array>")
        else:
            raise TypeError(type(v))

    w(value)
    text = "".join(out).encode("ascii")
    return text + bytes(pad_to - len(text) % pad_to)
