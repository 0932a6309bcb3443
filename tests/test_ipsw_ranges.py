"""Span arithmetic is pure: tables of cases (the scheduler has tests/test_ipsw_schedule.py)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from installer.ipsw.ranges import coalesce, subtract


@pytest.mark.parametrize(
    ("spans", "gap", "want"),
    [
        ([], 0, []),
        ([(0, 10)], 0, [(0, 10)]),
        ([(0, 10), (10, 20)], 0, [(0, 20)]),  # adjacent members: one range
        ([(0, 10), (15, 20)], 4, [(0, 10), (15, 20)]),  # gap 5 > 4
        ([(0, 10), (15, 20)], 5, [(0, 20)]),
        ([(20, 30), (0, 10), (5, 25)], 0, [(0, 30)]),  # unsorted, overlapping
        ([(5, 5), (0, 1)], 0, [(0, 1)]),  # empty spans dropped
    ],
)
def test_coalesce_table(spans, gap, want):
    assert coalesce(spans, gap) == want


@pytest.mark.parametrize(
    ("start", "end", "have", "want"),
    [
        (0, 10, [], [(0, 10)]),
        (0, 10, [(0, 10)], []),
        (0, 10, [(2, 4), (6, 8)], [(0, 2), (4, 6), (8, 10)]),
        (5, 10, [(0, 6), (9, 20)], [(6, 9)]),
        (0, 10, [(20, 30)], [(0, 10)]),
    ],
)
def test_subtract_table(start, end, have, want):
    assert subtract(start, end, have) == want


def test_planner_is_pure():
    """The planner imports no I/O (STYLE: pure planning, tested offline)."""
    src = Path(__file__).resolve().parent.parent / "installer" / "ipsw" / "ranges.py"
    tree = ast.parse(src.read_text())
    mods = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    mods |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert not mods & {"requests", "subprocess", "socket", "os", "urllib3"}
