"""Multitouch collector: IM4P mtfw OSSerialize payloads (ID/IDREF) → Z2FW / HIDF (§7)."""

from __future__ import annotations

import base64
import os
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.fwmultitouch import (
    J293_DFRMTFW,
    J293_TPMTFW,
    J314C_TPMTFW,
    j293_value,
    j314c_value,
    multitouch_payload,
    osserialize,
    plist_xml,
    touchbar_expected,
    touchbar_items,
    trackpad_expected,
    trackpad_items,
)
from tests.support.fwtree import make_im4p, make_macos_tree, make_raw_dump_dir
from tests.test_package_cpio import parse_newc
from tests.test_vendorfw_update import make_esp
from vendorfw.collect import collect as collect_all
from vendorfw.collectors import multitouch
from vendorfw.source import FirmwareSource

HEAD = ('<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST '
        '1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">\n<plist version="1.0">\n')
GOLDEN = {"apple/dfrmtfw-j293.bin": J293_DFRMTFW, "apple/tpmtfw-j293.bin": J293_TPMTFW,
          "apple/tpmtfw-j314c.bin": J314C_TPMTFW}


def _run(tmp_path: Path, im4p: bytes, machine: str = "j293ap"):
    p = tmp_path / "fud_firmware" / machine / "Multitouch.im4p"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(im4p)
    files, problems = multitouch.collect(FirmwareSource.from_dir(tmp_path))
    return {f.name: f.read() for f in files}, problems


def _xml(body: str) -> bytes:
    """The wrapped shape (declaration, DOCTYPE, <plist>)."""
    return (HEAD + body + "\n</plist>\n").encode() + bytes(32)


def _bare(body: str) -> bytes:
    """The OSSerialize shape: the body as is, NUL-padded."""
    return body.encode() + bytes(64)


@pytest.mark.parametrize("maker", [make_raw_dump_dir, make_macos_tree])
def test_golden_files(tmp_path, maker):
    maker(tmp_path, seed=11)
    files, problems = multitouch.collect(FirmwareSource.from_dir(tmp_path))
    assert {f.name: f.read() for f in files} == GOLDEN
    assert [f.name for f in files] == sorted(GOLDEN)
    assert [Path(p.path).relative_to(tmp_path).as_posix() for p in problems] == [
        "fud_firmware/j413ap/Multitouch.im4p"]
    assert "malformed IM4P" in problems[0].reason


def test_bug_real_osserialize_payloads_gave_no_trackpad_firmware(tmp_path):
    """Issue 12, as a user meets it: `vendorfw extract` of an ESP's asahi/ (all_firmware.tar.gz
    + kernelcache) with real-shaped payloads writes apple/tpmtfw-* and apple/dfrmtfw-*."""
    esp = tmp_path / "esp"
    make_esp(esp, seed=7)
    exe = Path(sys.executable).parent / "vendorfw"
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"))
    r = subprocess.run([exe, "extract", esp / "asahi", tmp_path / "out"], capture_output=True,
                       text=True, env=env, check=False)
    assert r.returncode == 0, r.stderr
    assert "Multitouch" not in r.stderr.replace("j413ap/Multitouch.im4p", "")
    members = {e["name"]: e["data"] for e in parse_newc((tmp_path / "out/firmware.cpio")
                                                        .read_bytes())}
    for name, data in GOLDEN.items():
        assert members[f"vendorfw/{name}"] == data, name


def test_fixture_payloads_have_the_real_shape(tmp_path):
    """The generator must keep writing what Apple ships (formats.md §7), not a plist file."""
    make_raw_dump_dir(tmp_path)
    fud = tmp_path / "fud_firmware"
    j293 = (fud / "j293ap/Multitouch.im4p").read_bytes()
    j314 = (fud / "j314cap/Multitouch.im4p").read_bytes()
    assert b"bvx2" in j293  # LZFSE proper
    assert b"bvx" not in j314
    assert b"<dict ID=" in j314
    for link in ("j293ap/Multitouch.im4p", "j314cap/Multitouch.im4p"):
        assert os.readlink(fud / link).startswith("../Firmware/")
    for value in (j293_value(), j314c_value()):
        payload = osserialize(value)
        text = payload.rstrip(b"\0").decode("ascii")
        assert payload.endswith(b"\0")
        assert b"\0" not in payload.rstrip(b"\0")
        assert text.startswith('<dict ID="0">')
        assert text.endswith("</dict>")
        for absent in ("<?xml", "<!DOCTYPE", "<plist", "\n"):
            assert absent not in text
        ints = re.findall(r"<integer size=\"(\d+)\" ID=\"\d+\">(0x[0-9a-f]+)</integer>", text)
        assert ints
        assert text.count("<integer") == len(ints) + text.count("<integer IDREF=")
        assert re.search(r'<dict IDREF="\d+"/>', text)
    j293_text = osserialize(j293_value()).decode()
    for tag in ("string", "integer", "data"):
        assert re.search(rf'<{tag} IDREF="\d+"/>', j293_text), tag
    assert '<integer size="8" ID=' in j293_text
    assert '<integer size="16" ID=' in j293_text


@pytest.mark.parametrize("compress", [None, "lzfse", "lzss"])
def test_golden_bytes_for_each_payload_compression(tmp_path, compress):
    got, problems = _run(tmp_path, make_im4p("mtfw", osserialize(j293_value()),
                                             compress=compress))
    assert problems == []
    assert got == {"apple/dfrmtfw-j293.bin": J293_DFRMTFW, "apple/tpmtfw-j293.bin": J293_TPMTFW}


def test_wrapped_plist_shape_is_still_read(tmp_path):
    got, problems = _run(tmp_path, make_im4p("mtfw", plist_xml(j293_value())))
    assert problems == []
    assert got == {"apple/dfrmtfw-j293.bin": J293_DFRMTFW, "apple/tpmtfw-j293.bin": J293_TPMTFW}


def test_random_content_real_shape(tmp_path):
    rng = random.Random(4)
    tb, tp = touchbar_items(rng), trackpad_items(rng)
    payload = multitouch_payload({"C1FBDEADBEEF": tb, "C1FDDEADBEEF": tp, "C1FE00": []})
    got, problems = _run(tmp_path, make_im4p("mtfw", payload, compress="lzfse"))
    assert problems == []
    assert got == {"apple/dfrmtfw-j293.bin": touchbar_expected(tb),
                   "apple/tpmtfw-j293.bin": trackpad_expected(tp)}


def test_header_fields_by_hand(tmp_path):
    """A minimal trackpad in the real shape: every byte written out literally."""
    body = ('<dict ID="0"><key>C1FD01</key><array ID="1"><dict ID="2"><key>Type</key>'
            '<string ID="3">Config</string><key>Config</key><dict ID="4">'
            '<key>Interface Config</key><array ID="5"><dict ID="6"><key>bInterfaceNumber</key>'
            '<integer size="8" ID="7">0x3</integer></dict></array></dict></dict></array></dict>')
    got, problems = _run(tmp_path, make_im4p("mtfw", _bare(body)), machine="j314sap")
    assert problems == []
    blob = (b"\x81\xa2" + b"\x65Type\0" + b"\x67Config\0" + b"\x67Config\0" + b"\xa1"
            + b"\x71Interface Config\0" + b"\x81\xa1" + b"\x71bInterfaceNumber\0" + b"\x00")
    header = b"HIDF" + (1).to_bytes(4, "little") + (32).to_bytes(4, "little") \
        + len(blob).to_bytes(4, "little") + (len(blob) - 1).to_bytes(4, "little") + bytes(12)
    assert got == {"apple/tpmtfw-j314s.bin": header + blob}


_TP_OK = ('<key>C1FD01</key><array ID="1"><dict ID="2"><key>Type</key><string ID="3">Config'
          '</string><key>Config</key><dict ID="4"><key>Interface Config</key><array ID="5">'
          '<dict ID="6"><key>bInterfaceNumber</key><integer size="8" ID="7">0x1</integer>'
          '</dict></array></dict></dict>{}</array>')


@pytest.mark.parametrize(("extra", "fragment"), [
    # forward: ID 20 exists, but only after the reference
    ('<dict IDREF="20"/><dict ID="20"><key>Type</key><string IDREF="3"/></dict>',
     "IDREF '20' names no earlier element (it points forward or into its own container)"
     " at /C1FD01/1"),
    ('<dict ID="8"><key>Type</key><string IDREF="99"/></dict>',
     "IDREF '99' names no element (no such ID) at /C1FD01/1/Type"),
    ('<dict ID="8"><key>Type</key><dict IDREF="8"/></dict>',  # its own container
     "IDREF '8' names no earlier element"),
])
def test_bad_idref_is_reported_with_its_path_and_skipped(tmp_path, extra, fragment):
    bad = make_im4p("mtfw", _bare(f'<dict ID="0">{_TP_OK.format(extra)}</dict>'))
    got, problems = _run(tmp_path, bad)
    assert got == {}
    assert [p.path for p in problems] == [str(tmp_path / "fud_firmware/j293ap/Multitouch.im4p")]
    assert fragment in problems[0].reason


def test_bad_idref_costs_only_its_own_payload(tmp_path):
    """The rest of the extraction (other machines, other collectors) still completes."""
    make_raw_dump_dir(tmp_path, seed=3)
    bad = tmp_path / "fud_firmware/j999ap/Multitouch.im4p"
    bad.parent.mkdir()
    body = '<dict ID="0">' + _TP_OK.format('<dict IDREF="42"/>') + "</dict>"
    bad.write_bytes(make_im4p("mtfw", _bare(body)))
    files, problems = collect_all(FirmwareSource.from_dir(tmp_path))
    names = {f.name: f for f in files}
    for name, data in GOLDEN.items():
        assert names[name].read() == data
    assert "asmedia/asm2214a-apple.bin" in names
    assert "apple/aop-als-cal.bin" in names
    [idref] = [p for p in problems if p.path == str(bad)]
    assert idref.reason == "plist: IDREF '42' names no element (no such ID) at /C1FD01/1"


def test_ids_on_any_element_and_idref_with_any_tag(tmp_path):
    """IDREF stands for the earlier element whatever the referring tag says."""
    body = ('<dict ID="0"><key>C1FD01</key><array ID="1">'
            '<dict ID="2"><key>Type</key><string ID="3">Config</string><key>Config</key>'
            '<dict ID="4"><key>Interface Config</key><array ID="5"><dict ID="6">'
            '<key>bInterfaceNumber</key><integer size="32" ID="7">0x0</integer></dict></array>'
            '</dict></dict><dict ID="8"><key>Type</key><string ID="9">Binary</string>'
            '<key>Payload</key><data ID="10">' + base64.b64encode(b"\1\2").decode()
            + '</data><key>Copy</key><reference IDREF="10"/><key>Zero</key>'
            '<integer IDREF="7"/><key>Type2</key><string IDREF="9"/></dict></array></dict>')
    got, problems = _run(tmp_path, make_im4p("mtfw", _bare(body)))
    assert problems == []
    blob = got["apple/tpmtfw-j293.bin"][32:]
    tail = (b"\xa5\x65Type\0\x67Binary\0\x68Payload\0" + b"\xd3" * 1 + b"\x59\x00\x02\1\2"
            + b"\x65Copy\0" + b"\xd3" * 1 + b"\x59\x00\x02\1\2" + b"\x65Zero\0\x00"
            + b"\x66Type2\0\x67Binary\0")
    assert blob.endswith(tail)


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
    ("<dict><key>C1FD</key><array>", "not well-formed XML"),  # truncated
    ("<dict><key>C1FD</key><string IDREF='9'/></dict>", "IDREF '9' names no element"),
    ("<dict ID='1'><key>C1FD</key><dict IDREF='1'/></dict>", "IDREF '1' names no earlier"),
    ("<dict><key>a</key><string ID='1'>x</string><key>b</key><string ID='1'>y</string>"
     "</dict>", "ID '1' given twice at /b"),
    ("<dict><key>a</key></dict>", "key but no value"),
    ("<dict><string>a</string><string>b</string></dict>", "without a <key>"),
    ("<dict><key>a</key><integer size='32'>x1</integer></dict>", "bad <integer> 'x1' at /a"),
    ("<dict><key>a</key><integer size='8'>0x100</integer></dict>",
     "<integer> 0x100 does not fit in 8 bits at /a"),
    ("<dict><key>a</key><integer size='12'>0x1</integer></dict>", "bad <integer> size '12'"),
    ("<dict><key>a</key><integer size='32'>-0x1</integer></dict>", "does not fit in 32 bits"),
    ("<dict><key>a</key><data>!!!</data></dict>", "bad base64"),
    ("<dict><key>a</key><array><blob/></array></dict>", "unknown element <blob> at /a/0"),
    ("<array/>", "payload root is <array>, expected a bare <dict> or a <plist>"),
    ("<dict>" + "<key>k</key><dict>" * 80 + "</dict>" * 81, "nested deeper"),
])
def test_hostile_payloads(tmp_path, body, fragment):
    _one_problem(tmp_path, make_im4p("mtfw", _bare(body)), fragment)


@pytest.mark.parametrize(("body", "fragment"), [
    ("<dict><key>C1FD</key><array>", "not well-formed XML"),
    ("<array/>", "top level is not a dict"),
    ("<dict/><dict/>", "does not hold exactly one value"),
    ("<array>" * 80 + "</array>" * 80, "nested deeper"),
])
def test_hostile_wrapped_plists(tmp_path, body, fragment):
    _one_problem(tmp_path, make_im4p("mtfw", _xml(body)), fragment)


def test_entity_declarations_are_refused(tmp_path):
    xml = (b'<?xml version="1.0"?><!DOCTYPE plist [<!ENTITY a "aaaaaaaaaa">'
           b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]><plist><dict><key>&b;</key>'
           b"<string>x</string></dict></plist>")
    _one_problem(tmp_path, make_im4p("mtfw", xml), "entities")


def _items_xml(key: str, items: str) -> bytes:
    return _bare(f"<dict><key>{key}</key><array>{items}</array></dict>")


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
    files, problems = multitouch.collect(FirmwareSource.from_dir(tmp_path))
    assert files == []
    assert [p.reason for p in problems] == [f"link leads outside {tmp_path / 'fud_firmware'}"]


def test_non_machine_dirs_are_ignored(tmp_path):
    im4p = make_im4p("mtfw", multitouch_payload({"C1FD01": trackpad_items(random.Random(1))}))
    for d in ("Firmware", "j293ap", "x86"):
        p = tmp_path / "fud_firmware" / d / "Multitouch.im4p"
        p.parent.mkdir(parents=True)
        p.write_bytes(im4p)
    files, problems = multitouch.collect(FirmwareSource.from_dir(tmp_path))
    assert [f.name for f in files] == ["apple/tpmtfw-j293.bin"]
    assert problems == []


@pytest.mark.parametrize(("encoding", "fragment"), [
    ("UTFB8", "unknown encoding"),  # found by fuzzing: was a LookupError crash
    ("EUC-JP", "multi-byte encodings"),  # found by fuzzing: was a ValueError crash
])
def test_bug_declared_xml_encoding_crashed_the_parser(tmp_path, encoding, fragment):
    xml = f'<?xml version="1.0" encoding="{encoding}"?><plist><dict/></plist>'.encode()
    _one_problem(tmp_path, make_im4p("mtfw", xml), "not well-formed XML", fragment)
