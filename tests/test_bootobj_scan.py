"""The payload reader on hostile boot.bin files: every malformation is one clear error."""

from __future__ import annotations

import gzip
import lzma
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from installer.bootobj import assemble, scan, sign, version
from installer.bootobj.assemble import Stage2Parts
from installer.bootobj.vars import Variable
from installer.errors import BootObjectError
from tests.support.bootobjgen import dtb, fake_kernel, fake_m1n1, fake_stage

STAGE = fake_stage()
START = len(STAGE)


def _scan(tail: bytes) -> tuple[scan.Payload, ...]:
    data = STAGE + tail
    assert scan.payload_start(data) == START
    return scan.scan(data, START)


@pytest.fixture(scope="module")
def blob():
    return dtb()


@pytest.mark.parametrize(
    ("tail", "message"),
    [
        (b"m1n1_initramfs\x10\x00", "initramfs tag at offset .* is truncated"),
        (b"m1n1_initramfs" + struct.pack("<I", 100) + b"x" * 99, "says 100 bytes, only 99"),
        (b"m1n1_initramfs" + struct.pack("<I", 0xFFFFFFFF), "says 4294967295 bytes"),
        (b"pippin_firmware\x10\x00", "firmware tag at offset .* is truncated"),
        (b"pippin_firmware" + struct.pack("<I", 0), "firmware at offset .* is empty"),
        (b"pippin_firmware" + struct.pack("<I", 100) + b"x" * 99,
         "firmware at offset .* says 100 bytes, only 99 follow"),
        (b"\x1f\x8b\x08\x00", "gzip stream at offset .* is truncated"),
        (b"\x1f\x8b\x08\x00garbage-garbage-garbage", "gzip stream at offset .* is corrupt"),
        (b"\xfd7zXZ\x00\x00\x04", "xz stream at offset .* is truncated"),
        (b"\xd0\x0d\xfe\xed\x00\x00", "FDT at offset .* header truncated"),
        (b"\x7fELF" + bytes(60), "unrecognised payload at offset"),
        (b"chosen.a=1\n\0garbage", "not ended by four NUL"),
        (b"chosen.a=1\n\0\0\0\0trailing", "16 unexpected bytes|8 unexpected bytes"),
        (b"\0\0\0\0junk", "4 unexpected bytes after the end marker"),
        (b"m1n1_sig" + struct.pack("<I", 109) + b"\x01" + bytes(20) + b"more",
         "does not end the file"),
    ],
)
def test_hostile_tails(tail, message):
    with pytest.raises(BootObjectError, match=message):
        _scan(tail)


def test_fdt_totalsize_beyond_end(blob):
    bad = blob[:4] + struct.pack(">I", len(blob) + 1) + blob[8:]
    with pytest.raises(BootObjectError, match="does not fit"):
        _scan(bad)


def test_fdt_totalsize_below_header(blob):
    with pytest.raises(BootObjectError, match="totalsize 8 does not fit"):
        _scan(blob[:4] + struct.pack(">I", 8) + blob[8:])


def test_gzip_without_image_or_cpio():
    with pytest.raises(BootObjectError, match="neither an arm64 Image nor a newc cpio"):
        _scan(gzip.compress(b"hello"))


def test_decompression_is_capped(monkeypatch):
    monkeypatch.setattr(scan, "MAX_DECOMPRESSED", 3 << 20)
    bomb = gzip.compress(fake_kernel() + bytes(8 << 20))
    assert len(bomb) < 20_000
    with pytest.raises(BootObjectError, match="inflates beyond"):
        _scan(bomb)
    with pytest.raises(BootObjectError, match="inflates beyond"):
        _scan(lzma.compress(fake_kernel() + bytes(8 << 20), format=lzma.FORMAT_XZ))


def test_concatenated_gzip_members_are_separate_payloads():
    k = fake_kernel()
    got = _scan(gzip.compress(k) + gzip.compress(k, mtime=5) + b"\0\0\0\0")
    assert [p.kind for p in got] == ["gzip", "gzip"]
    assert got[1].offset == START + got[0].size


def test_end_of_data_without_terminator_is_fine(blob):
    assert [p.kind for p in _scan(blob)] == ["fdt"]
    assert [p.kind for p in _scan(blob + b"chosen.a=1\n")] == ["fdt", "variables"]
    assert [p.kind for p in _scan(blob + b"\0\0")] == ["fdt"]


def test_signature_directly_after_terminator_and_nul_padding():
    k = sign.generate_key()
    data = sign.sign(STAGE + b"\0\0\0\0", k)
    assert [p.kind for p in scan.scan(data, START)] == ["signature"]
    assert [p.kind for p in _scan(b"\0" * 12)] == []


def test_stage_markers_in_code_do_not_confuse_the_reader():
    # fake_stage's code holds m1n1_sig, m1n1_initramfs, STACKBOT and FDT magic strings.
    data = assemble.assemble_stage2(Stage2Parts(STAGE, variables=(Variable("chosen.a", "1"),)))
    assert [p.kind for p in scan.scan(data, scan.payload_start(data))] == ["variables"]
    assert sign.find_signature(data) is None


def test_m1n1_payload_start_skips_stackbot_in_code(blob):
    m = fake_m1n1()
    assert m.count(b"STACKBOT") == 2
    assert scan.payload_start(m + blob + b"\0\0\0\0") == len(m)


def test_no_end_marker():
    with pytest.raises(BootObjectError, match="no STACKBOT"):
        scan.payload_start(bytes(4096))


def test_pippin_image_size_out_of_range():
    bad = bytearray(STAGE)
    bad[0x10:0x18] = struct.pack("<Q", 1 << 40)
    with pytest.raises(BootObjectError, match="does not fit"):
        scan.payload_start(bytes(bad))


def test_fdt_compatible_reader_tolerates_garbage(blob):
    assert scan.fdt_root_compatible(blob) == ("linux,dummy-virt",)
    mangled = bytearray(blob)
    off_struct = struct.unpack_from(">I", blob, 8)[0]
    mangled[off_struct : off_struct + 4] = b"\x00\x00\x00\x63"  # unknown token
    assert scan.fdt_root_compatible(bytes(mangled)) == ()


def test_signed_without_variables():
    k = sign.generate_key()
    for compression in assemble.Compression:
        data = assemble.assemble_stage2(
            Stage2Parts(STAGE, kernel=fake_kernel(), compression=compression), k)
        got = scan.scan(data, START)
        assert [p.kind for p in got][-1:] == ["signature"]
        assert got[0].offset + got[0].size == got[1].offset


def _valid_boot_bin() -> bytes:
    return assemble.assemble_stage2(
        Stage2Parts(STAGE, (dtb(),), fake_kernel(), initramfs=b"070701" + bytes(100),
                    variables=(Variable("chosen.a", "1"),)),
        sign.generate_key(),
    )


VALID = _valid_boot_bin()


@settings(max_examples=300, deadline=None, database=None, derandomize=True)
@given(st.data())
def test_fuzz_mutations_only_raise_our_error(data):
    """Truncations, bit flips and splices of a valid boot.bin: a clean result or one error."""
    blob = bytearray(VALID)
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["flip", "cut", "splice"]))
        pos = data.draw(st.integers(START, len(blob) - 1))
        if op == "flip":
            blob[pos] ^= 1 << data.draw(st.integers(0, 7))
        elif op == "cut":
            del blob[pos:]
        else:
            blob[pos:pos] = data.draw(st.binary(max_size=32))
        if len(blob) <= START:
            break
    try:
        scan.scan(bytes(blob), START)
    except BootObjectError:
        pass
    try:
        version.read_installed_vars(bytes(blob))
    except BootObjectError:
        pass


@settings(max_examples=300, deadline=None, database=None, derandomize=True)
@given(st.binary(max_size=300))
def test_fuzz_random_tails(tail):
    try:
        scan.scan(STAGE + tail, START)
    except BootObjectError:
        pass
