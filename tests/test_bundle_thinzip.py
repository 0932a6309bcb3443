"""Thin zips (installer/bundle/thinzip.py): only the chosen members, each member's compressed
bytes identical to the source's, CRCs valid for zipfile and for Pippin's own reader, ZIP64
fields where sizes or offsets need them, and `pippin ipsw ls` lists them."""

from __future__ import annotations

import io
import os
import random
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from installer.bundle.thinzip import file_pread, write_thin_zip
from installer.errors import RestoreImageError
from installer.ipsw.fetch import read_members
from installer.ipsw.remote import open_archive

ROOT = Path(__file__).resolve().parents[1]


class _Unseekable(io.RawIOBase):
    """zipfile writes data descriptors (flag bit 3) to a stream it cannot seek."""

    def __init__(self, f):
        self.f = f

    def writable(self):
        return True

    def write(self, b):
        return self.f.write(b)


def _source(path: Path, descriptors: bool = False) -> dict[str, bytes]:
    rng = random.Random(14)
    members = {
        "BuildManifest.plist": b"<plist>" + b"x" * 5000 + b"</plist>",
        "Firmware/all_flash/a.im4p": rng.randbytes(70_000),
        "Firmware/all_flash/b.im4p": b"abc" * 40_000,
        "kernelcache.release.j314": rng.randbytes(3000),
        "décor/ünïcode.bin": b"name in UTF-8",
        "unwanted/big.dmg": rng.randbytes(200_000),
        "dir/": b"",
    }
    with path.open("wb") as raw:
        target = _Unseekable(raw) if descriptors else raw
        with zipfile.ZipFile(target, "w") as zf:
            for i, (name, data) in enumerate(members.items()):
                zi = zipfile.ZipInfo(name, date_time=(2023, 7, 1, 12, 0, 0))
                zi.compress_type = zipfile.ZIP_STORED if i % 2 else zipfile.ZIP_DEFLATED
                zf.writestr(zi, data)
    return members


def _raw_data(path: Path, name: str) -> bytes:
    """A member's compressed bytes, found through its local header."""
    with zipfile.ZipFile(path) as zf:
        zi = zf.getinfo(name)
    with path.open("rb") as f:
        f.seek(zi.header_offset)
        hdr = f.read(30)
        n, e = struct.unpack_from("<HH", hdr, 26)
        f.seek(zi.header_offset + 30 + n + e)
        return f.read(zi.compress_size)


def _thin(src: Path, out: Path, names: list[str], **kw) -> None:
    arc = open_archive(str(src))
    pread, close = file_pread(src)
    try:
        with out.open("wb") as f:
            write_thin_zip(f, [arc.get(n) for n in names], pread, **kw)
    finally:
        close()


WANT = ["BuildManifest.plist", "Firmware/all_flash/a.im4p", "Firmware/all_flash/b.im4p",
        "kernelcache.release.j314", "décor/ünïcode.bin", "dir/"]


@pytest.mark.parametrize("descriptors", [False, True], ids=["plain", "data-descriptors"])
@pytest.mark.parametrize("zip64_at", [0xFFFFFFFF, 1], ids=["zip32", "zip64-everywhere"])
def test_thin_zip_members_byte_identical_and_valid(tmp_path, descriptors, zip64_at):
    src, out = tmp_path / "src.ipsw", tmp_path / "thin.ipsw"
    data = _source(src, descriptors)
    _thin(src, out, WANT, zip64_at=zip64_at)
    with zipfile.ZipFile(out) as zf:
        assert zf.testzip() is None  # every CRC checked by the stock reader
        assert sorted(zf.namelist()) == sorted(WANT)
        with zipfile.ZipFile(src) as zs:
            for name in WANT:
                a, b = zf.getinfo(name), zs.getinfo(name)
                assert (a.CRC, a.compress_size, a.file_size, a.compress_type,
                        a.date_time) == (b.CRC, b.compress_size, b.file_size,
                                         b.compress_type, b.date_time)
                assert zf.read(name) == data[name]
    for name in WANT:
        assert _raw_data(out, name) == _raw_data(src, name)
    got = read_members(open_archive(str(out)), WANT[:4])  # Pippin's own reader, CRC-checked
    assert all(got[n] == data[n] for n in WANT[:4])
    if zip64_at == 1:
        assert b"PK\x06\x06" in out.read_bytes()[-200:]  # the ZIP64 end record


def test_thin_zip_holds_only_the_needed_bytes(tmp_path):
    src, out = tmp_path / "src.ipsw", tmp_path / "thin.ipsw"
    _source(src)
    _thin(src, out, WANT)
    with zipfile.ZipFile(src) as zs:
        needed = sum(zs.getinfo(n).compress_size for n in WANT)
    assert out.stat().st_size <= needed * 1.01 + 1024  # headers and directory only
    assert src.stat().st_size > 2 * out.stat().st_size  # unwanted/big.dmg is not there


def test_ipsw_ls_reads_a_thin_zip(tmp_path):
    src, out = tmp_path / "src.ipsw", tmp_path / "thin.ipsw"
    _source(src)
    _thin(src, out, WANT)
    env = dict(os.environ, PYTHONPATH=str(ROOT), XDG_CACHE_HOME=str(tmp_path / "xdg"))
    r = subprocess.run([sys.executable, "-m", "installer.cli", "ipsw", "ls", str(out)],
                       capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    listed = [line.split(None, 3)[3] for line in r.stdout.splitlines()]
    assert sorted(listed) == sorted(WANT)


def test_thin_zip_refuses_a_source_without_local_header(tmp_path):
    src = tmp_path / "src.ipsw"
    _source(src)
    arc = open_archive(str(src))
    m = arc.get("Firmware/all_flash/a.im4p")
    raw = bytearray(src.read_bytes())
    raw[m.start:m.start + 4] = b"XXXX"
    src.write_bytes(bytes(raw))
    pread, close = file_pread(src)
    try:
        with pytest.raises(RestoreImageError, match="no local header"):
            write_thin_zip(io.BytesIO(), [m], pread)
    finally:
        close()
