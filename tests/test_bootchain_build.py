"""The boot chain's build: host unit tests of the Zig core, byte-for-byte reproducible
rebuild of the shipped binaries, and the image layout the installer and QEMU rely on."""

from __future__ import annotations

import hashlib
import struct
import subprocess

import pytest

from tests.support import bootchain as bc


def test_zig_host_unit_tests_pass():
    r = bc.zig("build", "test", "--summary", "all")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "tests passed" in r.stdout + r.stderr


def test_zig_sources_are_zig_fmt_clean():
    r = bc.zig("fmt", "--check", "src", "build.zig", "tests.zig")
    assert r.returncode == 0, "not zig fmt clean: " + r.stdout + r.stderr


def test_rebuild_matches_prebuilt_bytes(tmp_path):
    r = subprocess.run([str(bc.ROOT / "scripts" / "build-bootchain"), str(tmp_path)],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr
    for name in ("stage1.bin", "stage2.bin"):
        assert (tmp_path / name).read_bytes() == (bc.PREBUILT / name).read_bytes(), name
    assert (tmp_path / "SHA256SUMS").read_text() == (bc.PREBUILT / "SHA256SUMS").read_text()


def test_sha256sums_describe_the_prebuilt_files():
    for line in (bc.PREBUILT / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split()
        assert hashlib.sha256((bc.PREBUILT / name).read_bytes()).hexdigest() == digest


@pytest.mark.parametrize("name", ["stage1", "stage2"])
def test_image_layout(name):
    data = bc.stage_bytes(name)
    code0, _, text_offset, image_size, flags = struct.unpack_from("<IIQQQ", data, 0)
    assert code0 == 0x14000000 | (0x800 // 4)  # b 0x800
    assert data[0x38:0x3C] == b"ARM\x64"
    assert image_size == len(data)  # appended data starts right after the file
    assert text_offset == 0
    assert flags == 0xA
    assert b"##pippin_ver##0.1.0\0" in data[0x40:0x800]
    assert f"##pippin_stage##{name}\0".encode() in data[0x40:0x800]
    assert data[0x800:0x804] != b"\0\0\0\0"
    assert not data.endswith(b"\0")  # an end tag, so appended variables are unambiguous
    assert str(bc.ROOT).encode() not in data  # no absolute paths


def test_stage1_size_budget():
    assert len(bc.stage_bytes("stage1")) <= 128 * 1024


def test_apple_platform_stub_compiles(tmp_path):
    r = bc.zig("build", "-Dplatform=apple", "--prefix", str(tmp_path))
    assert r.returncode == 0, r.stdout + r.stderr
