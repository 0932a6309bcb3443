"""Multitouch fixtures (formats.md §7): payloads shaped like IOKit ``OSSerialize`` output, and
the Z2FW / HIDF bytes they must become.

``osserialize`` (installer/demo/osserialize.py, shared with the demo restore image)
writes what a real Multitouch IM4P payload holds. :func:`plist_xml` writes the older
wrapped shape.

Golden outputs: ``J293_*`` and ``J314C_*`` are payload values whose ``dfrmtfw``/``tpmtfw``
bytes are written out by hand below, byte by byte from the §7 layout (with the offsets the
padding rules depend on), not computed. ``touchbar_expected``/``trackpad_expected`` spell
the layout out record by record for the random-content items.
"""

from __future__ import annotations

import base64
import random
import struct
from typing import Any
from xml.sax.saxutils import escape

from installer.demo.osserialize import OSNumber, osserialize


def plist_xml(value: Any) -> bytes:
    """The wrapped shape: XML declaration, DOCTYPE, ``<plist>``, decimal integers, IDs only
    where a string or container is repeated."""
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
        elif isinstance(v, int | OSNumber):
            out.append(f"<integer>{int(v[0] if isinstance(v, OSNumber) else v)}</integer>")
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


def multitouch_payload(plist: dict[str, Any]) -> bytes:
    """A real-shaped (OSSerialize) payload of ``plist``."""
    return osserialize(plist)


# --------------------------------------------------------------------------- golden: j293

_INIT = bytes.fromhex("0102030405")
_PATTERN = bytes(range(256)) * 16  # 4096 bytes: count 0x400, byte sum 16 * 0x7f80 = 0x7f800


def j293_value() -> dict[str, Any]:
    """Touch Bar + trackpad. IDREFs: the second ReadModifyWrite is the first dict again; the
    last Binary's Payload is the Init Payload's data; the trackpad's "Rate" is the Property's
    integer 0x7d; "Config"/"Binary" strings repeat. An unknown C1FE key is skipped."""
    rmw = {"Type": "ReadModifyWrite", "Address": 0x30001004, "Mask": 0xFF00FF00,
           "Value": 0x12003400}
    touchbar = [
        {"Type": "Config", "Config": {"SPI Config": {"Init Payload": _INIT}}},
        {"Type": "Binary", "Address": 0x00100000, "Payload": _PATTERN},
        {"Type": "Property", "Address": 0x7D},
        {"Type": "RequestCalibration"},
        rmw,
        rmw,
        {"Type": "Binary", "Address": 0x00180000, "Payload": _INIT},
    ]
    trackpad = [
        {"Type": "Config", "Config": {
            "Interface Config": [
                {"bInterfaceNumber": OSNumber(0, 8), "HIDRecorder Descriptor": b"\xaa\xbb\xcc"},
                {"bInterfaceNumber": OSNumber(2, 8), "wMaxPacketSize": OSNumber(0x200, 16),
                 "Enabled": True},
            ],
            "Rate": 0x7D,
        }},
        {"Type": "Binary", "Address": 0x20000, "Payload": bytes.fromhex("deadbeef01"),
         "Flags": False},
    ]
    return {"C1FB0A1B2C3D": touchbar, "C1FD0A1B2C3D": trackpad, "C1FE0000": [{"Type": "X"}]}


# apple/dfrmtfw-j293.bin, record by record (little-endian; §7 Touch Bar layout)
J293_DFRMTFW = b"".join([
    bytes.fromhex("5a324657 01000000"),                        # "Z2FW", u32 1
    bytes.fromhex("00000000 05000000 0102030405 000000"),      # init payload 5 B, pad 3
    # Binary 0x100000: u32 1, u32 14+4096, 0x3001, count 0x400, address, 0x00+0x04+0x10=0x14
    bytes.fromhex("01000000 0e100000 0130 0004 00001000 1400"),
    _PATTERN,
    bytes.fromhex("00f80700 0000"),                            # sum 0x7f800, pad 4110 -> 4112
    bytes.fromhex("02000000 7d000000"),                        # Property 0x7d
    bytes.fromhex("01000000 02000000 011f 0000"),              # RequestCalibration, pad 2
    # ReadModifyWrite: 0x1e33, address, mask, value, sum of those 12 bytes =
    # (0x04+0x10+0x30) + (0xff+0xff) + (0x34+0x12) = 0x288
    bytes.fromhex("01000000 10000000 331e 04100030 00ff00ff 00340012 8802"),
    bytes.fromhex("01000000 10000000 331e 04100030 00ff00ff 00340012 8802"),  # IDREF'd dict
    # Binary 0x180000, 5 bytes: count 2, sum 0x02+0x18=0x1a; payload sum 15; pad 19 -> 20
    bytes.fromhex("01000000 13000000 0130 0200 00001800 1a00 0102030405 0f000000 00"),
])


def _s(text: str) -> bytes:
    """A string in the compact trackpad encoding: 0x60+len (with its NUL), bytes, NUL."""
    raw = text.encode() + b"\0"
    assert len(raw) < 24
    return bytes([0x60 + len(raw)]) + raw


# apple/tpmtfw-j293.bin blob; the comments give the offset of each line's first byte
_J293_TP_BLOB = b"".join([
    bytes.fromhex("82 a2"),                                    # 0: list of 2, dict of 2
    _s("Type"), _s("Config"), _s("Config"),                    # 2, 8, 16
    bytes.fromhex("a2"), _s("Interface Config"),               # 24, 25
    bytes.fromhex("82 a2"), _s("bInterfaceNumber"), b"\x00",   # 43, 45, 63: recorder iface 0
    _s("HIDRecorder Descriptor"),                              # 64..87
    bytes.fromhex("d3 59 0003 aabbcc"),                        # 88: pad to 89 (89+3 = 92)
    bytes.fromhex("a3"), _s("bInterfaceNumber"),               # 95, 96
    b"\x00",                                                   # 114: the placeholder
    _s("wMaxPacketSize"), bytes.fromhex("19 0200"),            # 115, 131
    _s("Enabled"), bytes.fromhex("f5"),                        # 134, 143
    _s("Rate"), bytes.fromhex("18 7d"),                        # 144, 150
    bytes.fromhex("a4"), _s("Type"), _s("Binary"),             # 152, 153, 159
    _s("Address"), bytes.fromhex("1a 00020000"),               # 167, 176
    _s("Payload"), bytes.fromhex("d3d3d3 59 0005 deadbeef01"),  # 181, 190: pad to 193
    _s("Flags"), b"\x00",                                      # 201, 208
])
J293_TPMTFW = (bytes.fromhex("48494446 01000000 20000000 d1000000 72000000")  # 209 B, iface 114
               + bytes(12) + _J293_TP_BLOB)


# --------------------------------------------------------------------------- golden: j314c


def j314c_value() -> dict[str, Any]:
    """Trackpad only; the third item is an IDREF to the second (a whole dict); an unknown
    C1FA key holds an item list the Touch Bar code would refuse (it must be skipped)."""
    binary = {"Type": "Binary", "Address": OSNumber(0x1F, 32), "Payload": bytes.fromhex("00112233")}
    trackpad = [
        {"Type": "Config", "Config": {"Interface Config": [{"bInterfaceNumber": OSNumber(1, 8)}]}},
        binary,
        binary,
    ]
    return {"C1FA00000001": [{"Type": "Other"}], "C1FD0E0F": trackpad}


_J314C_TP_BLOB = b"".join([
    bytes.fromhex("83 a2"), _s("Type"), _s("Config"), _s("Config"),  # 0, 2, 8, 16
    bytes.fromhex("a1"), _s("Interface Config"),               # 24, 25
    bytes.fromhex("81 a1"), _s("bInterfaceNumber"), b"\x00",   # 43, 45, 63: the placeholder
    bytes.fromhex("a3"), _s("Type"), _s("Binary"),             # 64, 65, 71
    _s("Address"), bytes.fromhex("18 1f"),                     # 79, 88
    _s("Payload"), bytes.fromhex("d3d3 59 0004 00112233"),     # 90, 99: pad to 101
    bytes.fromhex("a3"), _s("Type"), _s("Binary"),             # 108, 109, 115
    _s("Address"), bytes.fromhex("18 1f"),                     # 123, 132
    _s("Payload"), bytes.fromhex("d3d3 59 0004 00112233"),     # 134, 143: pad to 145
])
J314C_TPMTFW = (bytes.fromhex("48494446 01000000 20000000 98000000 3f000000")  # 152 B, iface 63
                + bytes(12) + _J314C_TP_BLOB)


# --------------------------------------------------------------------------- random content


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
