"""ASMedia (kernelcache), ISP set-files (camerad) and ALS calibration collectors (§7)."""

from __future__ import annotations

import random
import struct
from pathlib import Path

import pytest

from tests.support.fwmultitouch import multitouch_payload, touchbar_items, trackpad_items
from tests.support.fwtree import (
    SETFILE_MAGICS,
    kernel_image,
    make_camerad,
    make_im4p,
    make_kernelcache,
    setfile_header,
)
from vendorfw.collectors import als, asmedia, isp, multitouch
from vendorfw.errors import CollectError
from vendorfw.im4p import decode_im4p
from vendorfw.source import DirTree, FirmwareSource

ASM = random.Random(9).randbytes(0x18000)


# --------------------------------------------------------------------------- ASMedia


@pytest.mark.parametrize("lzfse", [False, True])
def test_asmedia_from_im4p_kernelcache(tmp_path, lzfse):
    kc = tmp_path / "kernelcache.release.mac13g"
    make_kernelcache(kc, ASM, lzfse=lzfse)
    files, problems = asmedia.collect(FirmwareSource(kernelcache=kc))
    assert problems == []
    assert [(f.name, f.read()) for f in files] == [("asmedia/asm2214a-apple.bin", ASM)]


def test_asmedia_from_lzss_kernelcache(tmp_path):
    kc = tmp_path / "kernelcache"
    kc.write_bytes(make_im4p("krnl", kernel_image(ASM, random.Random(1), 1 << 16),
                             compress="lzss"))
    files, problems = asmedia.collect(FirmwareSource(kernelcache=kc))
    assert problems == []
    assert files[0].read() == ASM


def test_asmedia_from_bare_macho(tmp_path):
    kc = tmp_path / "kernelcache"
    kc.write_bytes(kernel_image(ASM, random.Random(1), 1 << 16))
    files, _ = asmedia.collect(FirmwareSource(kernelcache=kc))
    assert files[0].read() == ASM


def test_first_marker_wins(tmp_path):
    other = bytes(0x18000)
    image = kernel_image(ASM, random.Random(1), 1 << 16) + kernel_image(other, random.Random(2))
    kc = tmp_path / "kernelcache"
    kc.write_bytes(make_im4p("krnl", image))
    files, _ = asmedia.collect(FirmwareSource(kernelcache=kc))
    assert files[0].read() == ASM


def _asm_problem(tmp_path, data: bytes) -> str:
    kc = tmp_path / "kernelcache"
    kc.write_bytes(data)
    files, problems = asmedia.collect(FirmwareSource(kernelcache=kc))
    assert files == []
    assert [p.path for p in problems] == [str(kc)]
    return problems[0].reason


def test_asmedia_hostile_kernelcaches(tmp_path):
    image = kernel_image(ASM, random.Random(1), 1 << 16)
    at = image.find(b"2214A_RCFG")
    assert "no ASMedia" in _asm_problem(tmp_path, make_im4p("krnl", image[:at]))
    wrong = image[: at + 0x2F] + struct.pack("<I", 0x10000) + image[at + 0x33 :]
    assert "size is 0x10000" in _asm_problem(tmp_path, make_im4p("krnl", wrong))
    assert "truncated" in _asm_problem(tmp_path, make_im4p("krnl", image[: at + 0x1000]))
    assert "header truncated" in _asm_problem(tmp_path, make_im4p("krnl", image[: at + 20]))
    good = make_im4p("krnl", image, compress="lzfse")
    assert "malformed IM4P" in _asm_problem(tmp_path, good[:1000])
    assert "not an Image4" in _asm_problem(tmp_path, b"\0" * 64)


def test_lzss_checksum_and_truncation_are_errors():
    im4p = bytearray(make_im4p("krnl", bytes(range(256)) * 64, compress="lzss"))
    at = im4p.find(b"complzss")
    im4p[at + 8] ^= 0xFF  # adler32
    with pytest.raises(CollectError, match="checksum"):
        decode_im4p(bytes(im4p), "kc")
    im4p[at + 8] ^= 0xFF
    im4p[at + 16 : at + 20] = (1 << 30).to_bytes(4, "big")  # compressed size past the end
    with pytest.raises(CollectError, match="truncated"):
        decode_im4p(bytes(im4p), "kc")


def test_truncated_lzfse_stream_is_an_error():
    raw = make_im4p("krnl", b"\x01\x02" + bytes(64))
    fake = raw.replace(b"\x01\x02", b"bv", 1)  # a payload that starts like LZFSE but has no end
    fake = fake.replace(b"bv\0\0", b"bvx2", 1)
    with pytest.raises(CollectError, match="truncated LZFSE"):
        decode_im4p(fake, "kc")


# --------------------------------------------------------------------------- ISP


def test_isp_all_six(tmp_path):
    blob, expected = make_camerad(random.Random(3), list(SETFILE_MAGICS))
    cam = tmp_path / "appleh13camerad"
    cam.write_bytes(blob)
    files, problems = isp.collect(FirmwareSource.of_paths(camerad=cam))
    assert problems == []
    assert [f.name for f in files] == [
        "apple/isp_1820_01XX.dat", "apple/isp_1822_02XX.dat", "apple/isp_1921_01XX.dat",
        "apple/isp_1922_02XX.dat", "apple/isp_8720_01XX.dat", "apple/isp_8723_01XX.dat"]
    assert {f.name: f.read() for f in files} == expected
    sizes = {f.name: len(f.read()) for f in files}
    assert sizes["apple/isp_1820_01XX.dat"] == 0x4440  # 0x442c rounded up to 64
    assert sizes["apple/isp_8723_01XX.dat"] == 0x3640
    assert sizes["apple/isp_1921_01XX.dat"] == 0xAD40


def test_isp_fewer_than_six_warns(tmp_path):
    blob, expected = make_camerad(random.Random(3), [0x18200103, 0x87230101])
    cam = tmp_path / "appleh13camerad"
    cam.write_bytes(blob)
    files, problems = isp.collect(FirmwareSource.of_paths(camerad=cam))
    assert sorted(f.name for f in files) == sorted(expected)
    assert [p.reason for p in problems] == ["only 2 of 6 camera set-files found"]


@pytest.mark.parametrize(("word", "value"), [(2, 1), (3, 1), (6, 1), (4, 0), (4, 0x05000001),
                                             (5, 0), (5, 0x00A80001), (7, 0x03C00001)])
def test_isp_header_conditions(word, value):
    words = list(struct.unpack(">8I", setfile_header(0x18200103)))
    assert isp.is_header(tuple(words))
    words[word] = value
    assert not isp.is_header(tuple(words))


def test_isp_setfile_running_past_the_end(tmp_path):
    cam = tmp_path / "appleh13camerad"
    cam.write_bytes(bytes(4096) + setfile_header(0x19210106) + bytes(100))
    files, problems = isp.collect(FirmwareSource.of_paths(camerad=cam))
    assert files == []
    assert "runs past the end" in problems[0].reason


def test_isp_tiny_file(tmp_path):
    cam = tmp_path / "appleh13camerad"
    cam.write_bytes(b"")
    reason = isp.collect(FirmwareSource.of_paths(camerad=cam))[1][0].reason
    assert reason == "too small to hold a set-file"


# --------------------------------------------------------------------------- ALS


def test_als_files(tmp_path):
    cal = tmp_path / "apple/aop-als-cal.bin"
    cal.parent.mkdir()
    cal.write_bytes(b"cal")
    fd = tmp_path / "com.apple.factorydata"
    fd.mkdir()
    for name in ("HmCA-F5K2", "HmCA-A1.bin", "HmCB-F5K2", "FSCl-1", "HmCA bad name"):
        (fd / name).write_bytes(name.encode())
    (fd / "HmCA-dir").mkdir()
    files, problems = als.collect(FirmwareSource.of_paths(als_cal=cal, factorydata=fd))
    assert [(f.name, f.read()) for f in files] == [
        ("apple/HmCA-A1.bin", b"HmCA-A1.bin"), ("apple/HmCA-F5K2", b"HmCA-F5K2"),
        ("apple/aop-als-cal.bin", b"cal")]
    assert [Path(p.path).name for p in problems] == ["HmCA bad name"]


def test_nothing_without_inputs():
    for mod in (asmedia, isp, als):
        assert mod.collect(FirmwareSource()) == ([], [])


# --------------------------------------------------------------------------- fuzz


def _mutations(good: bytes, rng: random.Random, n: int):
    for _ in range(n):
        b = bytearray(good)
        kind = rng.randrange(4)
        if kind == 0:
            b = b[: rng.randrange(len(b))]
        elif kind == 1:  # header bytes (DER lengths, tags, fourcc)
            for _ in range(rng.randrange(1, 4)):
                b[rng.randrange(min(len(b), 64))] = rng.randrange(256)
        elif kind == 2:
            for _ in range(rng.randrange(1, 4)):
                b[rng.randrange(len(b))] = rng.randrange(256)
        else:
            at = rng.randrange(len(b))
            b[at : at + 32] = rng.randbytes(32)
        yield bytes(b)


@pytest.mark.parametrize("compress", [None, "lzfse", "lzss"])
def test_mutated_im4p_is_an_error_or_a_payload_never_a_crash(compress):
    good = make_im4p("krnl", kernel_image(ASM, random.Random(1), 1 << 15), compress=compress)
    outcomes = {"ok": 0, "error": 0}
    for data in _mutations(good, random.Random(7), 300):
        try:
            decode_im4p(data, "kc")
            outcomes["ok"] += 1
        except CollectError:
            outcomes["error"] += 1
    assert outcomes["error"] > 50  # the mutations do hit the parser


def test_mutated_multitouch_is_a_problem_never_a_crash(tmp_path):
    rng = random.Random(3)
    xml = multitouch_payload({"C1FB01": touchbar_items(rng), "C1FD01": trackpad_items(rng)})
    path = tmp_path / "Multitouch.im4p"
    problems = 0
    for mutated in _mutations(xml, random.Random(8), 300):
        path.write_bytes(make_im4p("mtfw", mutated))
        try:
            _files, trouble = multitouch.convert(DirTree(tmp_path), "Multitouch.im4p", "j1")
            problems += len(trouble)
        except CollectError:
            problems += 1
    assert problems > 50


def test_als_calibration_from_ioreg_output():
    import plistlib

    cal = random.Random(5).randbytes(400)
    out = plistlib.dumps([{"IOObjectClass": "AppleSPUALS", "IORegistryEntryName": "als",
                           "CalibrationData": cal, "IOObjectRetainCount": 7}])
    assert als.cal_from_ioreg(out) == cal
    with pytest.raises(CollectError, match="no CalibrationData"):
        als.cal_from_ioreg(plistlib.dumps([{"IORegistryEntryName": "als"}]))
    with pytest.raises(CollectError, match="not a plist"):
        als.cal_from_ioreg(out[: len(out) // 2])
    with pytest.raises(CollectError, match="no CalibrationData"):
        als.cal_from_ioreg(plistlib.dumps([]))
