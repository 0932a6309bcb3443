"""What a failed member check fetches again (pure: units, votes, refusals)."""

from __future__ import annotations

import pytest

from installer.errors import RestoreImageError
from installer.ipsw.remote import Member
from installer.ipsw.suspects import UNIT, Suspects, units

M = Member("a.dmg", UNIT - 100, 3 * UNIT + 50, 3 * UNIT, 3 * UNIT, 0, 0)
ERR = RestoreImageError("member 'a.dmg': CRC-32 00000000 / size 1, expected 11111111 / 1")


def reader(data: bytes, base: int = 0):
    return lambda off, n: data[off - base: off - base + n]


def test_units_are_aligned_and_cover_the_span():
    us = units(M)
    assert us[0] == (M.start, UNIT)
    assert us[-1] == (3 * UNIT, M.end)
    assert all(b == c for (_, b), (c, _) in zip(us, us[1:], strict=False))
    assert all(b % UNIT == 0 for _, b in us[:-1])


def test_first_failure_refetches_all_then_only_what_disagrees():
    good = bytes(range(256)) * (4 * UNIT // 256)
    s = Suspects()
    bad1 = bytearray(good)
    bad1[UNIT + 5] ^= 1  # unit 1 wrong in the first download
    assert s.failed(M, reader(bytes(bad1)), ERR) == [(M.start, M.end)]
    bad2 = bytearray(good)
    bad2[2 * UNIT + 9] ^= 1  # unit 2 wrong in the second; unit 1 now differs from before
    assert s.failed(M, reader(bytes(bad2)), ERR) == [(UNIT, 3 * UNIT)]


def test_the_same_wrong_bytes_three_times_is_final():
    data = bytes(4 * UNIT)
    s = Suspects()
    s.failed(M, reader(data), ERR)
    assert s.failed(M, reader(data), ERR) == [(M.start, M.end)]  # all agree, yet wrong
    with pytest.raises(RestoreImageError) as ei:
        s.failed(M, reader(data), ERR)
    assert ei.value.message == f"{ERR.message}; the server sent these same bytes 3 times"


def test_rounds_are_bounded():
    s = Suspects(max_rounds=3)
    for i in range(2):
        s.failed(M, reader(bytes([i]) * 4 * UNIT), ERR)
    with pytest.raises(RestoreImageError, match=r"still wrong after 3 fetches"):
        s.failed(M, reader(bytes([9]) * 4 * UNIT), ERR)
