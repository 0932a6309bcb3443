"""Size strings (formats.md §1): decimal and binary units, bare bytes, %, min/max."""

from __future__ import annotations

import pytest

from installer.sizes import (
    GB,
    MiB,
    Rounding,
    align_down,
    align_up,
    format_size,
    parse_choice,
    parse_size,
)


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("524288000B", 524_288_000),
        ("500MB", 500_000_000),
        ("500mb", 500_000_000),
        ("1GiB", 1 << 30),
        ("1.5GiB", 3 << 29),
        ("2TB", 2 * 10**12),
        ("4KiB", 4096),
        ("4096", 4096),
        (" 38 GB ", 38 * GB),
        ("1.0000000001KB", 1000),  # rounds down to whole bytes
    ],
)
def test_parse_size(text, want):
    assert parse_size(text) == want


@pytest.mark.parametrize("text", ["", "GB", "-1GB", "1XB", "1e9", "1,5GB", "0x10", "nan"])
def test_parse_size_rejects(text):
    with pytest.raises(ValueError, match="size"):
        parse_size(text)


def test_alignment_directions():
    assert align_up(1, MiB) == MiB
    assert align_up(MiB, MiB) == MiB
    assert align_down(MiB - 1, MiB) == 0
    assert align_down(2 * MiB + 5, MiB) == 2 * MiB


@pytest.mark.parametrize(
    ("text", "rounding", "want"),
    [
        ("min", Rounding.UP, 10 * MiB),
        ("max", Rounding.DOWN, 1000 * MiB),
        ("50%", Rounding.DOWN, 500 * MiB),
        ("33%", Rounding.DOWN, 330 * MiB),  # 330.0 MiB exactly
        ("33.3%", Rounding.UP, 333 * MiB),
        ("100MB", Rounding.DOWN, 95 * MiB),  # 95.37 MiB rounds down
        ("100MB", Rounding.UP, 96 * MiB),
    ],
)
def test_parse_choice(text, rounding, want):
    got = parse_choice(text, minimum=10 * MiB, maximum=1000 * MiB, percent_of=1000 * MiB,
                       rounding=rounding)
    assert got == want
    assert got % MiB == 0


def test_parse_choice_rejects_over_100_percent():
    with pytest.raises(ValueError, match="100%"):
        parse_choice("101%", minimum=0, maximum=1, percent_of=1, rounding=Rounding.DOWN)


@pytest.mark.parametrize(
    ("n", "text"),
    [(38 * GB, "38.0 GB"), (31_200_000_000, "31.2 GB"), (524_288_000, "524.3 MB"), (12, "12 B"),
     (-2 * GB, "-2.0 GB"), (1_000_555_581_440, "1.0 TB")],
)
def test_format_size(n, text):
    assert format_size(n) == text


def test_bug_min_and_max_are_aligned_too():
    """`min`/`max` returned the bound unaligned, unlike every other answer."""
    assert parse_choice("min", minimum=10 * MiB + 1, maximum=0, percent_of=0,
                        rounding=Rounding.UP) == 11 * MiB
    assert parse_choice("max", minimum=0, maximum=20 * MiB - 1, percent_of=0,
                        rounding=Rounding.DOWN) == 19 * MiB
