"""Multitouch collector: IM4P mtfw plists with ID/IDREF → Z2FW / HIDF (formats.md §7)."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from tests.support.fwmultitouch import (
    multitouch_payload,
    touchbar_expected,
    touchbar_items,
    trackpad_expected,
    trackpad_items,
)
from tests.support.fwtree import make_im4p, make_macos_tree, make_raw_dump_dir
from vendorfw.collectors import multitouch
from vendorfw.source import FirmwareSource

HEAD = ('<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST '
        '1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">\n<plist version="1.0">\n')


def _run(tmp_path: Path, im4p: bytes, machine: str = "j293ap"):
    p = tmp_path / "fud_firmware" / machine / "Multitouch.im4p"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(im4p)
    files, problems = multitouch.collect(FirmwareSource(fud_firmware=tmp_path / "fud_firmware"))
    return {f.name: f.read() for f in files}, problems


def _xml(body: str) -> bytes:
    return (HEAD + body + "\n</plist>\n").encode() + bytes(32)


@pytest.mark.parametrize("maker", [make_raw_dump_dir, make_macos_tree])
def test_golden_files(tmp_path, maker):
    maker(tmp_path, seed=11)
    files, problems = multitouch.collect(FirmwareSource.from_dir(tmp_path))
    names = [f.name for f in files]
    assert names == ["apple/dfrmtfw-j293.bin", "apple/tpmtfw-j293.bin", "apple/tpmtfw-j314c.bin"]
    assert [Path(p.path).relative_to(tmp_path).as_posix() for p in problems] == [
        "fud_firmware/j413ap/Multitouch.im4p"]
    assert "malformed IM4P" in problems[0].reason


@pytest.mark.parametrize("compress", [None, "lzfse", "lzss"])
def test_exact_bytes_for_each_payload_compression(tmp_path, compress):
    rng = random.Random(4)
    tb, tp = touchbar_items(rng), trackpad_items(rng)
    payload = multitouch_payload({"C1FBDEADBEEF": tb, "C1FDDEADBEEF": tp, "C1FE00": []})
    got, problems = _run(tmp_path, make_im4p("mtfw", payload, compress=compress))
    assert problems == []
    assert got == {"apple/dfrmtfw-j293.bin": touchbar_expected(tb),
                   "apple/tpmtfw-j293.bin": trackpad_expected(tp)}


def test_header_fields_by_hand(tmp_path):
    """A minimal trackpad: every byte written out literally."""
    body = ('<dict><key>C1FD01</key><array><dict><key>Type</key><string ID="1">Config</string>'
            '<key IDREF="1"/><dict><key>Interface Config</key><array><dict>'
            '<key>bInterfaceNumber</key><integer>3</integer></dict></array></dict></dict>'
            '</array></dict>')
    got, problems = _run(tmp_path, make_im4p("mtfw", _xml(body)), machine="j314sap")
    assert problems == []
    blob = (b"\x81\xa2" + b"\x65Type\0" + b"\x67Config\0" + b"\x67Config\0" + b"\xa1"
            + b"\x71Interface Config\0" + b"\x81\xa1" + b"\x71bInterfaceNumber\0" + b"\x00")
    header = b"HIDF" + (1).to_bytes(4, "little") + (32).to_bytes(4, "little") \
        + len(blob).to_bytes(4, "little") + (len(blob) - 1).to_bytes(4, "little") + bytes(12)
    assert got == {"apple/tpmtfw-j314s.bin": header + blob}


def _one_problem(tmp_path, im4p: bytes, *fragments: str) -> None:
    got, problems = _run(tmp_path, im4p)
    assert got == {}
    assert len(problems) == 1
    assert problems[0].path == str(tmp_path / "fud_firmware/j293ap/Multitouch.im4p")
    for fragment in fragments:
        assert fragment in problems[0].reason


def test_corrupted_im4p(tmp_path):
    good = make_im4p("mtfw", _xml("<dict/>"))
    _one_problem(tmp_path, good[: len(good) - 40], "malformed IM4P")
    _one_problem(tmp_path, b"\x30\x82\xff\xff" + good[4:], "malformed IM4P")
    _one_problem(tmp_path, b"PK\x03\x04 not image4", "not an Image4")


def test_corrupted_lzfse_payload(tmp_path):
    filler = "".join(f"<!-- {i} -->" for i in range(2000))  # > 4 KiB, so LZFSE proper
    im4p = bytearray(make_im4p("mtfw", _xml("<dict/>" + filler), compress="lzfse"))
    at = im4p.find(b"bvx2")
    im4p[at + 40 : at + 60] = bytes(20)
    got, problems = _run(tmp_path, bytes(im4p))
    assert got == {}
    assert len(problems) == 1


def test_wrong_image_type(tmp_path):
    _one_problem(tmp_path, make_im4p("krnl", _xml("<dict/>")), "'krnl'", "'mtfw'")


@pytest.mark.parametrize(("body", "fragment"), [
    ("<dict><key>C1FD</key><array>", "not a well-formed XML plist"),  # truncated plist
    ("<dict><key>C1FD</key><string IDREF='9'/></dict>", "IDREF '9' names no earlier"),
    ("<dict ID='1'><key>C1FD</key><dict IDREF='1'/></dict>", "IDREF '1' names no earlier"),
    ("<dict><key>a</key></dict>", "key but no value"),
    ("<dict><string>a</string><string>b</string></dict>", "without a <key>"),
    ("<dict><key>a</key><integer>x1</integer></dict>", "bad <integer>"),
    ("<dict><key>a</key><data>!!!</data></dict>", "bad base64"),
    ("<dict><key>a</key><blob/></dict>", "unknown element <blob>"),
    ("<array/>", "top level is not a dict"),
    ("<array>" * 80 + "</array>" * 80, "nested deeper"),
])
def test_hostile_plists(tmp_path, body, fragment):
    _one_problem(tmp_path, make_im4p("mtfw", _xml(body)), fragment)


def test_entity_declarations_are_refused(tmp_path):
    xml = (b'<?xml version="1.0"?><!DOCTYPE plist [<!ENTITY a "aaaaaaaaaa">'
           b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]><plist><dict><key>&b;</key>'
           b"<string>x</string></dict></plist>")
    _one_problem(tmp_path, make_im4p("mtfw", xml), "entities")


def _items_xml(key: str, items: str) -> bytes:
    return _xml(f"<dict><key>{key}</key><array>{items}</array></dict>")


_IFACE = ("<dict><key>Type</key><string>Config</string><key>Config</key><dict>"
          "<key>Interface Config</key><array>{}</array></dict></dict>")


@pytest.mark.parametrize(("key", "items", "fragment"), [
    ("C1FB", "<dict><key>Type</key><string>Teleport</string></dict>", "unknown item Type"),
    ("C1FB", "<dict><key>Type</key><string>Property</string></dict>", "'Address' missing"),
    ("C1FB", "<dict><key>Type</key><string>Property</string><key>Address</key>"
             "<integer>-1</integer></dict>", "out of range"),
    ("C1FB", "<dict><key>Type</key><string>Config</string></dict>", "'Config' missing"),
    ("C1FB", "<string>x</string>", "not a list of item dicts"),
    ("C1FD", _IFACE.format(""), "0 interface-number placeholders"),
    ("C1FD", _IFACE.format("<dict><key>bInterfaceNumber</key><integer>1</integer></dict>" * 2),
     "2 interface-number placeholders"),
    ("C1FD", _IFACE.format("<dict><key>bInterfaceNumber</key><real>1.5</real></dict>"
                           "<dict><key>bInterfaceNumber</key><integer>1</integer>"
                           "<key>HIDRecorder Descriptor</key><real>1.5</real></dict>"),
     "type float"),
    ("C1FD", _IFACE.format("<dict><key>bInterfaceNumber</key><integer>1</integer></dict>"
                           + "<dict>" + "".join(f"<key>k{i}</key><true/>" for i in range(16))
                           + "</dict>"), "a dict of 16 entries"),
    ("C1FD", _IFACE.format("<dict><key>bInterfaceNumber</key><integer>1</integer></dict>"
                           "<string>" + "x" * 255 + "</string>"), "a string of 256 bytes"),
    ("C1FD", _IFACE.format("<dict><key>bInterfaceNumber</key><integer>1</integer></dict>"
                           "<integer>4294967296</integer>"), "the integer 4294967296"),
])
def test_hostile_items(tmp_path, key, items, fragment):
    _one_problem(tmp_path, make_im4p("mtfw", _items_xml(key, items)), fragment)


def test_bad_touchbar_does_not_cost_the_trackpad(tmp_path):
    rng = random.Random(2)
    tp = trackpad_items(rng)
    payload = multitouch_payload({"C1FB01": [{"Type": "Nope"}], "C1FD01": tp, "C1FD02": tp})
    got, problems = _run(tmp_path, make_im4p("mtfw", payload))
    assert got == {"apple/tpmtfw-j293.bin": trackpad_expected(tp)}
    reasons = sorted(p.reason for p in problems)
    assert len(reasons) == 2
    assert "unknown item Type 'Nope'" in reasons[0]
    assert reasons[1] == "second trackpad key 'C1FD02' ignored"


def test_symlink_leading_outside_is_refused(tmp_path):
    outside = tmp_path / "elsewhere.im4p"
    outside.write_bytes(make_im4p("mtfw", multitouch_payload(
        {"C1FD01": trackpad_items(random.Random(1))})))
    link = tmp_path / "fud_firmware/j293ap/Multitouch.im4p"
    link.parent.mkdir(parents=True)
    os.symlink("../../elsewhere.im4p", link)
    files, problems = multitouch.collect(FirmwareSource(fud_firmware=tmp_path / "fud_firmware"))
    assert files == []
    assert [p.reason for p in problems] == [f"link leads outside {tmp_path / 'fud_firmware'}"]


def test_non_machine_dirs_are_ignored(tmp_path):
    im4p = make_im4p("mtfw", multitouch_payload({"C1FD01": trackpad_items(random.Random(1))}))
    for d in ("Firmware", "j293ap", "x86"):
        p = tmp_path / "fud_firmware" / d / "Multitouch.im4p"
        p.parent.mkdir(parents=True)
        p.write_bytes(im4p)
    files, problems = multitouch.collect(FirmwareSource(fud_firmware=tmp_path / "fud_firmware"))
    assert [f.name for f in files] == ["apple/tpmtfw-j293.bin"]
    assert problems == []


@pytest.mark.parametrize(("encoding", "fragment"), [
    ("UTFB8", "unknown encoding"),  # found by fuzzing: was a LookupError crash
    ("EUC-JP", "multi-byte encodings"),  # found by fuzzing: was a ValueError crash
])
def test_bug_declared_xml_encoding_crashed_the_parser(tmp_path, encoding, fragment):
    xml = f'<?xml version="1.0" encoding="{encoding}"?><plist><dict/></plist>'.encode()
    _one_problem(tmp_path, make_im4p("mtfw", xml), "not a well-formed XML plist", fragment)
