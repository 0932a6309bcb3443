"""The fetch planner is pure: tables of cases plus invariants over generated span sets."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from installer.ipsw.ranges import MiB, Piece, PlanOptions, coalesce, cut, plan, split, subtract


def flat(jobs):
    return [p for job in jobs for p in job]


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


def test_one_connection_keeps_file_order_and_does_not_split():
    spans = [(100 * MiB, 400 * MiB), (0, 10), (20, 30)]
    got = plan(spans, PlanOptions(connections=1, max_gap=0))
    assert got == [(Piece(0, 10),), (Piece(20, 30),), (Piece(100 * MiB, 400 * MiB),)]


def test_large_member_is_split_for_eight_connections():
    got = plan([(0, 600 * MiB)], PlanOptions(connections=8))
    assert len(got) == 8
    assert len(plan([(0, 600 * MiB)], PlanOptions(connections=8, pieces_per_connection=2))) == 16
    sizes = [sum(p.size for p in job) for job in got]
    assert max(sizes) - min(sizes) <= PlanOptions().request_cost
    assert coalesce(((p.start, p.end) for p in flat(got)), 0) == [(0, 600 * MiB)]


def test_jobs_have_equal_bytes_and_small_members_ride_along():
    spans = [(0, 10 * MiB), (20 * MiB, 21 * MiB), (30 * MiB, 30 * MiB + 100), (40 * MiB, 45 * MiB)]
    opts = PlanOptions(connections=4, pieces_per_connection=1, max_gap=0)
    jobs = plan(spans, opts)
    costs = [sum(p.size + opts.request_cost for p in job) for job in jobs]
    assert len(jobs) == 4
    assert max(costs) - min(costs) <= 2 * opts.request_cost
    assert Piece(30 * MiB, 30 * MiB + 100) in flat(jobs)


def test_cut_table():
    assert cut([(0, 5), (10, 15)], 4) == [(Piece(0, 4),), (Piece(4, 5), Piece(10, 13)),
                                         (Piece(13, 15),)]


def test_small_neighbours_coalesce_but_far_ones_do_not():
    spans = [(0, 1000), (1000, 2000), (2100, 3000), (10 * MiB, 10 * MiB + 5)]
    got = plan(spans, PlanOptions(connections=8, max_gap=4096))
    assert flat(got) == [Piece(0, 3000), Piece(10 * MiB, 10 * MiB + 5)]


def test_split_never_yields_empty_pieces():
    assert split([(0, 3)], 2) == [Piece(0, 2), Piece(2, 3)]


spans_st = st.lists(
    st.tuples(st.integers(0, 1 << 34), st.integers(1, 700 * MiB)).map(
        lambda t: (t[0], t[0] + t[1])),
    max_size=60,
)


@settings(max_examples=200, deadline=None, database=None)
@given(spans=spans_st, conns=st.integers(1, 16), gap=st.integers(0, 1 << 20))
def test_plan_invariants(spans, conns, gap):
    opts = PlanOptions(connections=conns, max_gap=gap)
    jobs = plan(spans, opts)
    pieces = flat(jobs)
    merged = coalesce(((p.start, p.end) for p in pieces), 0)
    # Every needed byte is covered, pieces never overlap, nothing beyond the gaps is added.
    for s, e in spans:
        assert subtract(s, e, merged) == []
    ordered = sorted(pieces, key=lambda p: p.start)
    for a, b in zip(ordered, ordered[1:], strict=False):
        assert a.end <= b.start
    assert all(p.size > 0 for p in pieces)
    needed = sum(e - s for s, e in coalesce(spans, 0))
    extra = sum(p.size for p in pieces) - needed
    assert extra <= gap * max(0, len(spans) - 1)
    if conns > 1 and jobs:
        costs = [sum(p.size + opts.request_cost for p in job) for job in jobs]
        assert max(costs) <= opts.max_piece + opts.request_cost
        if max(costs) < opts.max_piece:  # not clamped: one job per slot at most
            assert len(jobs) <= conns * opts.pieces_per_connection


def test_planner_is_pure():
    """The planner imports no I/O (STYLE: pure planning, tested offline)."""
    src = Path(__file__).resolve().parent.parent / "installer" / "ipsw" / "ranges.py"
    tree = ast.parse(src.read_text())
    mods = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    mods |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert not mods & {"requests", "subprocess", "socket", "os", "urllib3"}
