"""The XML inside a Multitouch IM4P (formats.md §7), with its ``ID``/``IDREF`` sharing resolved.

Real payloads are IOKit ``OSSerialize`` output, not plist files: ASCII padded with NULs, a
bare ``<dict>`` root (no XML declaration, no DOCTYPE, no ``<plist>`` wrapper), integers in
hex with a ``size`` attribute (``<integer size="32" ID="4">0x1f</integer>``), and ``ID`` on
any element. An element carrying ``IDREF="n"`` (whatever its tag) stands for the earlier
element carrying ``ID="n"``: a string, integer, data, or a whole dict or array. The wrapped
shape (``<plist>`` around one value, decimal integers) is read too.

plistlib reads neither the references nor a bare root, so the XML is parsed once with
ElementTree and converted to Python values here; a reference reuses the value already built
for its target (shared subtrees are not copied). A target counts as "earlier" only once it
is complete, so a reference forward or to an enclosing element is an error (naming where in
the document it sits), never a cycle. Entity declarations are refused outright (no entity
expansion attacks), and nesting depth is bounded.
"""

from __future__ import annotations

import base64
import binascii
import xml.etree.ElementTree as ET
from typing import Any

from vendorfw.errors import CollectError

MAX_DEPTH = 64
_INT_SIZES = frozenset({8, 16, 32, 64})


def parse_mt_plist(payload: bytes, where: str) -> dict[str, Any]:
    """The top-level dict of a NUL-padded OSSerialize payload (or wrapped XML plist)."""
    xml = payload.split(b"\0", 1)[0]
    if b"<!ENTITY" in xml:
        raise CollectError(f"{where}: plist declares XML entities (refused)")
    try:
        root = ET.fromstring(xml)
    except (ET.ParseError, LookupError, ValueError) as exc:  # bad or unsupported encoding
        raise CollectError(f"{where}: payload is not well-formed XML: {exc}") from exc
    if root.tag == "plist":
        if len(root) != 1:
            raise CollectError(f"{where}: <plist> wrapper does not hold exactly one value")
        root = root[0]
    elif root.tag != "dict":
        raise CollectError(
            f"{where}: payload root is <{root.tag}>, expected a bare <dict> or a <plist>"
        )
    ids = {i for el in root.iter() if (i := el.get("ID")) is not None}
    value = _Converter(where, ids).convert(root, 0, "")
    if not isinstance(value, dict):
        raise CollectError(f"{where}: plist top level is not a dict")
    return value


class _Converter:
    def __init__(self, where: str, all_ids: set[str]) -> None:
        self.where = where
        self.all_ids = all_ids  # every ID in the document, to tell forward refs from missing
        self.ids: dict[str, Any] = {}

    def fail(self, what: str, at: str = "") -> CollectError:
        return CollectError(f"{self.where}: plist: {what}" + (f" at {at}" if at else ""))

    def convert(self, el: ET.Element, depth: int, at: str) -> Any:
        if depth > MAX_DEPTH:
            raise self.fail(f"nested deeper than {MAX_DEPTH} levels")
        ref = el.get("IDREF")
        if ref is not None:
            if ref in self.ids:
                return self.ids[ref]
            if ref in self.all_ids:
                raise self.fail(f"IDREF {ref!r} names no earlier element (it points forward "
                                "or into its own container)", at or "/")
            raise self.fail(f"IDREF {ref!r} names no element (no such ID)", at or "/")
        value = self._value(el, depth, at)
        ident = el.get("ID")
        if ident is not None:
            if ident in self.ids:
                raise self.fail(f"ID {ident!r} given twice", at or "/")
            self.ids[ident] = value
        return value

    def _value(self, el: ET.Element, depth: int, at: str) -> Any:
        text = el.text or ""
        match el.tag:
            case "dict":
                return self._dict(el, depth, at)
            case "array" | "set":  # OSSet serializes as <set>; order is kept as written
                return [self.convert(c, depth + 1, f"{at}/{n}") for n, c in enumerate(el)]
            case "string" | "key" | "date":
                return text
            case "integer":
                return self._int(el, text, at)
            case "real":
                try:
                    return float(text)
                except ValueError:
                    raise self.fail(f"bad <real> {text!r}", at) from None
            case "true":
                return True
            case "false":
                return False
            case "data":
                try:
                    return base64.b64decode("".join(text.split()), validate=True)
                except binascii.Error:
                    raise self.fail("bad base64 in <data>", at) from None
        raise self.fail(f"unknown element <{el.tag}>", at)

    def _dict(self, el: ET.Element, depth: int, at: str) -> dict[str, Any]:
        children = list(el)
        if len(children) % 2:
            raise self.fail("<dict> with a key but no value", at or "/")
        out: dict[str, Any] = {}
        for k, v in zip(children[::2], children[1::2], strict=True):
            key = self.convert(k, depth + 1, at)
            if k.get("IDREF") is None and k.tag != "key" or not isinstance(key, str):
                raise self.fail(f"<dict> entry without a <key> (found <{k.tag}>)", at or "/")
            out[key] = self.convert(v, depth + 1, f"{at}/{key}")
        return out

    def _int(self, el: ET.Element, text: str, at: str) -> int:
        t = text.strip()
        try:
            neg = t.startswith("-")
            body = t[1:] if neg else t
            n = int(body, 16) if body.lower().startswith("0x") else int(body, 10)
        except ValueError:
            raise self.fail(f"bad <integer> {text!r}", at) from None
        size = el.get("size")
        if size is not None:  # OSNumber: the value is stored in `size` bits
            if not size.isdigit() or int(size) not in _INT_SIZES:
                raise self.fail(f"bad <integer> size {size!r}", at)
            if neg or n >> int(size):
                raise self.fail(f"<integer> {t} does not fit in {size} bits", at)
        return -n if neg else n
