"""Sparse-file primitives and the unowned-range hash the safety check rests on."""

from __future__ import annotations

import os

import pytest

from installer.platform.safety import changed, hash_ranges, unowned
from installer.platform.sparse import (
    allocated_bytes,
    copy_sparse,
    data_extents,
    punch_hole,
    write_nonzero,
)

B = 4096


@pytest.mark.parametrize("size", [0, 1, B, 3 * B, 5 * B + 100])
def test_write_nonzero_writes_exactly_the_nonzero_blocks(tmp_path, size):
    buf = bytearray(size)
    if size > 4 * B:
        buf[B:B + 4] = b"abcd"
        buf[3 * B] = 1
    if size:
        buf[-1] = 7
    p = tmp_path / "f"
    fd = os.open(p, os.O_RDWR | os.O_CREAT)
    try:
        n = write_nonzero(fd, bytes(buf), 0)
        os.ftruncate(fd, size)
    finally:
        os.close(fd)
    assert p.read_bytes() == bytes(buf)
    nonzero_blocks = sum(1 for i in range(0, size, B) if any(buf[i:i + B]))
    assert n <= nonzero_blocks * B


def test_extents_punch_and_copy(tmp_path):
    p = tmp_path / "img"
    with open(p, "wb") as f:
        f.truncate(64 << 20)
        f.seek(1 << 20)
        f.write(b"x" * B)
        f.seek(40 << 20)
        f.write(b"y" * 2 * B)
    fd = os.open(p, os.O_RDWR)
    try:
        ext = list(data_extents(fd, 0, 64 << 20))
        assert sum(e - s for s, e in ext) >= 3 * B
        assert all(s >= 1 << 20 for s, _ in ext)
        punch_hole(fd, 40 << 20, 1 << 20)
        assert all(e <= (40 << 20) for _, e in data_extents(fd, 0, 64 << 20))
        src = tmp_path / "src"
        with open(src, "wb") as f:
            f.truncate(8 << 20)
            f.seek(5 * B)
            f.write(b"z" * 100)
        assert copy_sparse(src, fd, 10 << 20) == B
    finally:
        os.close(fd)
    data = p.read_bytes()
    assert data[(10 << 20) + 5 * B:(10 << 20) + 5 * B + 100] == b"z" * 100
    assert data[40 << 20:(40 << 20) + 8] == bytes(8)
    assert allocated_bytes(p) < 1 << 20


def test_unowned_complement():
    assert unowned(100, [(10, 20), (15, 30), (90, 200)]) == [(0, 10), (30, 90)]
    assert unowned(10, []) == [(0, 10)]


def test_hash_ignores_extent_layout_but_not_content(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    with open(a, "wb") as f:
        f.truncate(1 << 20)
        f.seek(B)
        f.write(b"data")
    with open(b, "wb") as f:  # same bytes, but zeros written out instead of a hole
        f.write(bytes(B) + b"data" + bytes((1 << 20) - B - 4))
    r = [(0, 1 << 20)]
    assert hash_ranges(a, r) == hash_ranges(b, r)
    before = hash_ranges(a, r)
    with open(a, "r+b") as f:
        f.seek(9000)
        f.write(b"!")
    assert [(d.start, d.end) for d in changed(before, hash_ranges(a, r))] == [(0, 1 << 20)]
