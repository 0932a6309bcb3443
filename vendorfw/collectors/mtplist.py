"""The XML plist inside a Multitouch IM4P, with its ``ID``/``IDREF`` sharing resolved.

plistlib cannot read these: an element carrying ``IDREF="n"`` stands for the earlier
element carrying ``ID="n"``. Here the XML is parsed once with ElementTree and converted to
Python values; a reference reuses the value already built for its target (so shared
subtrees are not copied). A target counts as "earlier" only once it is complete, so a
reference to an enclosing element is an error rather than a cycle. Entity declarations are
refused outright (no entity expansion attacks), and nesting depth is bounded.
"""

from __future__ import annotations

import base64
import binascii
import xml.etree.ElementTree as ET
from typing import Any

from vendorfw.errors import CollectError

MAX_DEPTH = 64


def parse_mt_plist(payload: bytes, where: str) -> dict[str, Any]:
    """The top-level dict of a NUL-padded XML plist that may use ``ID``/``IDREF``."""
    xml = payload.split(b"\0", 1)[0]
    if b"<!ENTITY" in xml:
        raise CollectError(f"{where}: plist declares XML entities (refused)")
    try:
        root = ET.fromstring(xml)
    except (ET.ParseError, LookupError, ValueError) as exc:  # bad or unsupported encoding
        raise CollectError(f"{where}: payload is not a well-formed XML plist: {exc}") from exc
    if root.tag != "plist" or len(root) != 1:
        raise CollectError(f"{where}: payload is not a plist with one top-level value")
    value = _Converter(where).convert(root[0], 0)
    if not isinstance(value, dict):
        raise CollectError(f"{where}: plist top level is not a dict")
    return value


class _Converter:
    def __init__(self, where: str) -> None:
        self.where = where
        self.ids: dict[str, Any] = {}

    def fail(self, what: str) -> CollectError:
        return CollectError(f"{self.where}: plist: {what}")

    def convert(self, el: ET.Element, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise self.fail(f"nested deeper than {MAX_DEPTH} levels")
        ref = el.get("IDREF")
        if ref is not None:
            if ref not in self.ids:
                raise self.fail(f"IDREF {ref!r} names no earlier element")
            return self.ids[ref]
        value = self._value(el, depth)
        ident = el.get("ID")
        if ident is not None:
            self.ids[ident] = value
        return value

    def _value(self, el: ET.Element, depth: int) -> Any:
        text = el.text or ""
        match el.tag:
            case "dict":
                return self._dict(el, depth)
            case "array":
                return [self.convert(c, depth + 1) for c in el]
            case "string" | "key" | "date":
                return text
            case "integer":
                return self._int(text)
            case "real":
                try:
                    return float(text)
                except ValueError:
                    raise self.fail(f"bad <real> {text!r}") from None
            case "true":
                return True
            case "false":
                return False
            case "data":
                try:
                    return base64.b64decode("".join(text.split()), validate=True)
                except binascii.Error:
                    raise self.fail("bad base64 in <data>") from None
        raise self.fail(f"unknown element <{el.tag}>")

    def _dict(self, el: ET.Element, depth: int) -> dict[str, Any]:
        children = list(el)
        if len(children) % 2:
            raise self.fail("<dict> with a key but no value")
        out: dict[str, Any] = {}
        for k, v in zip(children[::2], children[1::2], strict=True):
            key = self.convert(k, depth + 1)
            if k.get("IDREF") is None and k.tag != "key" or not isinstance(key, str):
                raise self.fail(f"<dict> entry without a <key> (found <{k.tag}>)")
            out[key] = self.convert(v, depth + 1)
        return out

    def _int(self, text: str) -> int:
        t = text.strip()
        try:
            neg = t.startswith("-")
            body = t[1:] if neg else t
            n = int(body, 16) if body.lower().startswith("0x") else int(body, 10)
        except ValueError:
            raise self.fail(f"bad <integer> {text!r}") from None
        return -n if neg else n
