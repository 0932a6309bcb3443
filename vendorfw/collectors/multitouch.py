"""Multitouch firmware: ``fud_firmware/<jNNN>/Multitouch.im4p`` (IM4P type ``mtfw``, §7).

The payload (IOKit ``OSSerialize`` XML, read by mtplist.py) maps device keys to item lists.
``C1FD…`` keys are trackpads, written as ``apple/tpmtfw-<jNNN>.bin`` (a ``HIDF`` header and
a compact CBOR-like encoding of the items); ``C1FB…`` keys are Touch Bars, written as
``apple/dfrmtfw-<jNNN>.bin`` (``Z2FW`` records). Both encodings are built here because no
library knows them.
"""

from __future__ import annotations

import logging
import os
import re
import struct
from typing import Any

from vendorfw.collectors import Result, by_name, problem
from vendorfw.collectors.mtplist import parse_mt_plist
from vendorfw.errors import CollectError
from vendorfw.im4p import decode_im4p
from vendorfw.model import FirmwareFile, Problem
from vendorfw.source import FirmwareSource, Tree, join

log = logging.getLogger(__name__)

_MACHINE_DIR = re.compile(r"(j\d+[a-z]*?)(ap)?")
MAX_BLOB = 4 << 20  # far above real firmware (tens of KiB); bounds hostile inputs


def collect(source: FirmwareSource) -> Result:
    """Collect trackpad and Touch Bar firmware (nothing without fud_firmware/)."""
    tree, root = source.tree, source.fud_firmware
    if tree is None or root is None:
        return [], []
    files: list[FirmwareFile] = []
    problems: list[Problem] = []
    try:
        names = sorted(tree.listdir(root), key=os.fsencode)
    except OSError as exc:
        return [], [Problem(tree.shown(root), f"cannot list: {exc.strerror or exc}")]
    for name in names:
        path = join(root, name, "Multitouch.im4p")
        m = _MACHINE_DIR.fullmatch(name)
        if m is None or not tree.is_dir(join(root, name)) or not tree.is_file(path):
            continue
        if tree.escapes(path, root):
            problems.append(Problem(tree.shown(path), f"link leads outside {tree.shown(root)}"))
            continue
        try:
            got, trouble = convert(tree, path, m.group(1))
        except CollectError as exc:
            problems.append(problem(tree.shown(path), exc))
            continue
        files += got
        problems += trouble
    log.info("multitouch: %d files, %d problems", len(files), len(problems))
    return by_name(files), problems


def convert(tree: Tree, path: str, machine: str) -> Result:
    """The firmware files of one Multitouch.im4p (one per device kind)."""
    shown = tree.shown(path)
    try:
        data = tree.read(path)
    except OSError as exc:
        raise CollectError(f"{shown}: cannot read: {exc.strerror or exc}") from exc
    im4p = decode_im4p(data, shown)
    if im4p.fourcc != "mtfw":
        raise CollectError(f"{shown}: IM4P type is {im4p.fourcc!r}, expected 'mtfw'")
    plist = parse_mt_plist(im4p.payload, shown)
    files: list[FirmwareFile] = []
    problems: list[Problem] = []
    done: set[str] = set()
    for key, items in plist.items():
        kind = "trackpad" if key.startswith("C1FD") else "Touch Bar" if key.startswith(
            "C1FB") else None
        if kind is None:
            continue
        if kind in done:
            problems.append(Problem(shown, f"second {kind} key {key!r} ignored"))
            continue
        done.add(kind)
        where = f"{shown}: {key}"
        try:
            if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
                raise CollectError(f"{where}: not a list of item dicts")
            if kind == "trackpad":
                files.append(FirmwareFile(f"apple/tpmtfw-{machine}.bin",
                                          data=trackpad_blob(items, where)))
            else:
                files.append(FirmwareFile(f"apple/dfrmtfw-{machine}.bin",
                                          data=touchbar_blob(items, where)))
        except CollectError as exc:
            problems.append(problem(shown, exc))
    return files, problems


def _get(d: dict[str, Any], key: str, kind: type, where: str) -> Any:
    value = d.get(key)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise CollectError(f"{where}: {key!r} missing or not {kind.__name__}")
    return value


def _pad4(b: bytes) -> bytes:
    return b + bytes(-len(b) % 4)


def _record(body: bytes) -> bytes:
    """Type 1 record: u32 1, u32 length, body zero-padded to 4 by its length."""
    return struct.pack("<II", 1, len(body)) + _pad4(body)


def touchbar_blob(items: list[dict[str, Any]], where: str) -> bytes:
    """``Z2FW`` image: init payloads of the Config items, then one record per item."""
    out = bytearray(b"Z2FW" + struct.pack("<I", 1))
    try:
        for n, item in enumerate(items):
            if item.get("Type") == "Config":
                at = f"{where} item {n}"
                spi = _get(_get(item, "Config", dict, at), "SPI Config", dict, at)
                init = _get(spi, "Init Payload", bytes, at)
                out += struct.pack("<II", 0, len(init)) + _pad4(init)
        for n, item in enumerate(items):
            at = f"{where} item {n}"
            match item.get("Type"):
                case "Config":
                    continue
                case "Binary":
                    payload = _get(item, "Payload", bytes, at)
                    head = struct.pack("<HI", (len(payload) + 3) // 4,
                                       _get(item, "Address", int, at))
                    out += _record(struct.pack("<H", 0x3001) + head
                                   + struct.pack("<H", sum(head) & 0xFFFF) + payload
                                   + struct.pack("<I", sum(payload) & 0xFFFFFFFF))
                case "Property":
                    out += struct.pack("<II", 2, _get(item, "Address", int, at))
                case "RequestCalibration":
                    out += _record(struct.pack("<H", 0x1F01))
                case "ReadModifyWrite":
                    tail = struct.pack("<III", _get(item, "Address", int, at),
                                       _get(item, "Mask", int, at), _get(item, "Value", int, at))
                    out += _record(struct.pack("<H", 0x1E33) + tail
                                   + struct.pack("<H", sum(tail) & 0xFFFF))
                case other:
                    raise CollectError(f"{at}: unknown item Type {other!r}")
            if len(out) > MAX_BLOB:
                raise CollectError(f"{where}: Touch Bar firmware larger than {MAX_BLOB} bytes")
    except struct.error as exc:
        raise CollectError(f"{where}: value out of range: {exc}") from exc
    return bytes(out)


class _Placeholder:
    """Stands for the interface number the driver fills in."""


_PLACEHOLDER = _Placeholder()


def trackpad_blob(items: list[dict[str, Any]], where: str) -> bytes:
    """``HIDF`` header + the items in the compact encoding, interface number as placeholder."""
    marked: list[Any] = []
    count = 0
    for n, item in enumerate(items):
        if item.get("Type") != "Config":
            marked.append(item)
            continue
        # copy instead of mutate: IDREF sharing means other items may hold the same dicts
        cfg = _get(item, "Config", dict, f"{where} item {n}")
        entries = cfg.get("Interface Config", [])
        if not isinstance(entries, list):
            raise CollectError(f"{where} item {n}: 'Interface Config' is not a list")
        new_entries: list[Any] = []
        for e in entries:
            if isinstance(e, dict) and "HIDRecorder Descriptor" not in e \
                    and "bInterfaceNumber" in e:
                e = {**e, "bInterfaceNumber": _PLACEHOLDER}
                count += 1
            new_entries.append(e)
        marked.append({**item, "Config": {**cfg, "Interface Config": new_entries}})
    if count != 1:
        raise CollectError(f"{where}: {count} interface-number placeholders, expected exactly 1")
    enc = _Encoder(where)
    enc.value(marked)
    assert enc.iface_offset is not None  # exactly one placeholder was encoded
    blob = bytes(enc.out)
    return struct.pack("<4sIIII12x", b"HIDF", 1, 32, len(blob), enc.iface_offset) + blob


class _Encoder:
    """The compact CBOR-like encoding of §7; anything larger than it allows is an error."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.out = bytearray()
        self.iface_offset: int | None = None

    def fail(self, what: str) -> CollectError:
        return CollectError(f"{self.where}: cannot encode {what}")

    def value(self, v: Any) -> None:
        if len(self.out) > MAX_BLOB:
            raise self.fail(f"more than {MAX_BLOB} bytes")
        out = self.out
        if v is _PLACEHOLDER:
            self.iface_offset = len(out)
            out.append(0)
        elif v is True:
            out.append(0xF5)
        elif v is False:
            out.append(0)
        elif isinstance(v, int):
            self.integer(v)
        elif isinstance(v, dict):
            if len(v) >= 16:
                raise self.fail(f"a dict of {len(v)} entries")
            out.append(0xA0 + len(v))
            for k, x in v.items():
                self.value(k)
                self.value(x)
        elif isinstance(v, list):
            if len(v) >= 24:
                raise self.fail(f"a list of {len(v)} items")
            out.append(0x80 + len(v))
            for x in v:
                self.value(x)
        elif isinstance(v, str):
            b = v.encode() + b"\0"
            if len(b) < 24:
                out.append(0x60 + len(b))
            elif len(b) <= 0xFF:
                out += bytes((0x78, len(b)))
            else:
                raise self.fail(f"a string of {len(b)} bytes")
            out += b
        elif isinstance(v, bytes):
            if len(v) > 0xFFFF:
                raise self.fail(f"data of {len(v)} bytes")
            while (len(out) + 3) % 4:
                out.append(0xD3)
            out += b"\x59" + struct.pack(">H", len(v)) + v
        else:
            raise self.fail(f"a value of type {type(v).__name__}")

    def integer(self, n: int) -> None:
        if n < 0 or n > 0xFFFFFFFF:
            raise self.fail(f"the integer {n}")
        if n < 0x18:
            self.out.append(n)
        elif n <= 0xFF:
            self.out += bytes((0x18, n))
        elif n <= 0xFFFF:
            self.out += b"\x19" + struct.pack(">H", n)
        else:
            self.out += b"\x1a" + struct.pack(">I", n)
