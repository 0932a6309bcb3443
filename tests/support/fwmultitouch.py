"""Multitouch fixtures: Apple-style XML plists (ID/IDREF) and the Z2FW / HIDF bytes that
formats.md §7 says they become, spelled out record by record (not computed by vendorfw)."""

from __future__ import annotations

import base64
import random
import struct
from typing import Any
from xml.sax.saxutils import escape


def plist_xml(value: Any) -> bytes:
    """An XML plist in Apple's firmware style: repeated strings and containers use ID/IDREF."""
    ids: dict[Any, int] = {}
    out: list[str] = []

    def ref(key: Any, tag: str) -> str | None:
        if key in ids:
            out.append(f'<{tag} IDREF="{ids[key]}"/>')
            return None
        ids[key] = len(ids) + 1
        return f' ID="{ids[key]}"'

    def w(v: Any, tag: str = "string") -> None:
        if isinstance(v, bool):
            out.append("<true/>" if v else "<false/>")
        elif isinstance(v, int):
            out.append(f"<integer>{v}</integer>")
        elif isinstance(v, bytes):
            out.append(f"<data>{base64.b64encode(v).decode()}</data>")
        elif isinstance(v, str):
            attr = ref(("s", tag, v), tag)
            if attr is not None:
                out.append(f"<{tag}{attr}>{escape(v)}</{tag}>")
        elif isinstance(v, dict):
            attr = ref(("o", id(v)), "dict")
            if attr is not None:
                out.append(f"<dict{attr}>")
                for k, x in v.items():
                    w(k, "key")
                    w(x)
                out.append("</dict>")
        elif isinstance(v, list):
            attr = ref(("o", id(v)), "array")
            if attr is not None:
                out.append(f"<array{attr}>")
                for x in v:
                    w(x)
                out.append("</array>")
        else:
            raise TypeError(type(v))

    w(value)
    body = "\n".join(out)
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST '
        '1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">\n'
        f'<plist version="1.0">\n{body}\n</plist>\n'
    ).encode()


def touchbar_items(rng: random.Random) -> list[dict[str, Any]]:
    rmw = {"Type": "ReadModifyWrite", "Address": 0x30001004, "Mask": 0xFF00FF00,
           "Value": 0x12003400}
    return [
        {"Type": "Config", "Config": {"SPI Config": {"Init Payload": rng.randbytes(7)}}},
        {"Type": "Binary", "Address": 0x00100000, "Payload": rng.randbytes(4093)},
        {"Type": "Property", "Address": 0x2000},
        {"Type": "RequestCalibration"},
        rmw,
        {"Type": "Binary", "Address": 0x00180000, "Payload": rng.randbytes(64)},
        rmw,  # the same dict twice: written once, then as IDREF
    ]


def touchbar_expected(items: list[dict[str, Any]]) -> bytes:
    """Z2FW bytes for touchbar_items(), record by record as formats.md §7 lists them."""
    init = items[0]["Config"]["SPI Config"]["Init Payload"]
    out = b"Z2FW" + struct.pack("<I", 1)
    out += struct.pack("<II", 0, 7) + init + b"\0"
    for item in items[1:]:
        if item["Type"] == "Binary":
            p = item["Payload"]
            count_addr = struct.pack("<HI", (len(p) + 3) // 4, item["Address"])
            body = (struct.pack("<H", 0x3001) + count_addr
                    + struct.pack("<H", sum(count_addr)) + p + struct.pack("<I", sum(p)))
            out += struct.pack("<II", 1, 14 + len(p)) + body + bytes(-len(body) % 4)
        elif item["Type"] == "Property":
            out += struct.pack("<II", 2, item["Address"])
        elif item["Type"] == "RequestCalibration":
            out += struct.pack("<IIH", 1, 2, 0x1F01) + b"\0\0"
        else:
            tail = struct.pack("<III", item["Address"], item["Mask"], item["Value"])
            out += struct.pack("<IIH", 1, 16, 0x1E33) + tail + struct.pack("<H", sum(tail))
    return out


def trackpad_items(rng: random.Random) -> list[dict[str, Any]]:
    return [
        {"Type": "Config", "Config": {
            "Interface Config": [
                {"bInterfaceNumber": 0, "HIDRecorder Descriptor": rng.randbytes(5),
                 "Name": "recorder"},
                {"bInterfaceNumber": 2, "wMaxPacketSize": 512, "Enabled": True,
                 "Name": "multitouch interface, primary"},
            ],
            "Rate": 125,
        }},
        {"Type": "Binary", "Address": 0x20000, "Payload": rng.randbytes(30), "Flags": False},
    ]


def trackpad_expected(items: list[dict[str, Any]]) -> bytes:
    """HIDF bytes for trackpad_items(), spelled out item by item."""
    rec = items[0]["Config"]["Interface Config"][0]["HIDRecorder Descriptor"]
    payload = items[1]["Payload"]
    b = bytearray()

    def s(text: str) -> None:
        raw = text.encode() + b"\0"
        b.extend(bytes([0x60 + len(raw)]) if len(raw) < 24 else bytes([0x78, len(raw)]))
        b.extend(raw)

    def data(raw: bytes) -> None:
        while (len(b) + 3) % 4:
            b.append(0xD3)
        b.extend(b"\x59" + struct.pack(">H", len(raw)) + raw)

    b.append(0x82)  # list of 2 items
    b.append(0xA2)
    s("Type")
    s("Config")
    s("Config")
    b.append(0xA2)
    s("Interface Config")
    b.append(0x82)
    b.append(0xA3)
    s("bInterfaceNumber")
    b.append(0x00)
    s("HIDRecorder Descriptor")
    data(rec)
    s("Name")
    s("recorder")
    b.append(0xA4)
    s("bInterfaceNumber")
    iface = len(b)
    b.append(0x00)  # the placeholder
    s("wMaxPacketSize")
    b.extend(b"\x19\x02\x00")
    s("Enabled")
    b.append(0xF5)
    s("Name")
    s("multitouch interface, primary")
    s("Rate")
    b.extend(b"\x18\x7d")
    b.append(0xA4)
    s("Type")
    s("Binary")
    s("Address")
    b.extend(b"\x1a\x00\x02\x00\x00")
    s("Payload")
    data(payload)
    s("Flags")
    b.append(0x00)
    return struct.pack("<4sIIII", b"HIDF", 1, 32, len(b), iface) + bytes(12) + bytes(b)


def multitouch_payload(plist: dict[str, Any]) -> bytes:
    xml = plist_xml(plist)
    return xml + bytes(-len(xml) % 64 or 64)  # NUL padding as shipped
