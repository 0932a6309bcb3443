"""Seeded mutation fuzzing of the two hostile-input paths: a damaged all_firmware.tar.gz
through unpack → collect → package, and a damaged firmware.cpio/tar through read_package →
verify → diff. Every outcome must be a result or a VendorFwError, never another exception.
(Found: non-UTF-8 member names crashed sorting and printing.)"""

from __future__ import annotations

import gzip
import random
import shutil

import pytest

from tests.support.fwtree import make_raw_dump_dir, raw_dump_members
from vendorfw import rawdump
from vendorfw.build import build_vendorfw
from vendorfw.errors import VendorFwError
from vendorfw.manifest import diff_hashes
from vendorfw.readback import read_package, verify


@pytest.fixture(scope="module")
def asahi(tmp_path_factory):
    base = tmp_path_factory.mktemp("fuzz")
    src = base / "src"
    make_raw_dump_dir(src, seed=11)
    dump = base / "dump"
    dump.mkdir()
    for name in raw_dump_members():
        shutil.move(src / name, dump / name)
    out = base / "asahi"
    out.mkdir()
    rawdump.pack(dump, out / rawdump.RAWDUMP_NAME)
    return out


def mutate(data: bytes, rng: random.Random, hot: int) -> bytes:
    """A few byte changes, mostly in the first ``hot`` bytes (headers), sometimes a cut."""
    b = bytearray(data)
    if rng.random() < 0.2:  # a member name that is not UTF-8
        names = [i for i in range(min(len(b), hot)) if b[i : i + 5] == b"brcm/"]
        if names:
            b[rng.choice(names) + 5] = 0xFF
    for _ in range(rng.randrange(1, 5)):
        at = rng.randrange(min(len(b), hot)) if rng.random() < 0.7 else rng.randrange(len(b))
        b[at] = rng.choice([rng.randrange(256), ord("0"), ord("/"), ord("."), 0xFF])
    if rng.random() < 0.15:
        b = b[: rng.randrange(len(b))]
    return bytes(b)


def test_damaged_raw_dump_is_a_result_or_our_error(asahi, tmp_path):
    tar = gzip.decompress((asahi / rawdump.RAWDUMP_NAME).read_bytes())
    work = tmp_path / "asahi"
    work.mkdir()
    rng = random.Random(21)
    outcomes = {"ok": 0, "error": 0}
    for _ in range(60):
        (work / rawdump.RAWDUMP_NAME).write_bytes(
            gzip.compress(mutate(tar, rng, 64 * 1024), mtime=0))
        out = tmp_path / "out"
        try:
            build_vendorfw(work, out, tmp_parent=tmp_path)
            outcomes["ok"] += 1
        except VendorFwError:
            outcomes["error"] += 1
        shutil.rmtree(out, ignore_errors=True)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["asahi"]  # nothing left over
    assert outcomes["error"] > 5
    assert outcomes["ok"] > 5


@pytest.mark.parametrize("name", ["firmware.cpio", "firmware.tar"])
def test_damaged_package_is_a_result_or_our_error(asahi, tmp_path, name):
    pkg_dir = tmp_path / "pkg"
    build_vendorfw(asahi, pkg_dir, tmp_parent=tmp_path)
    good = (pkg_dir / name).read_bytes()
    work = tmp_path / "w"
    work.mkdir()
    shutil.copy(pkg_dir / "manifest.txt", work / "manifest.txt")
    rng = random.Random(5)
    found = 0
    for _ in range(300):
        (work / name).write_bytes(mutate(good, rng, 8192))
        try:
            pkg = read_package(work / name)
            found += bool(verify(pkg))
            diff_hashes(pkg.files(), {})
        except VendorFwError:
            found += 1
    assert found > 100  # the damage is noticed
