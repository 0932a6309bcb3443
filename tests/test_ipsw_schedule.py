"""The work queue hands out every byte exactly once and rebalances by stealing."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from installer.ipsw.ranges import MiB, Piece, PlanOptions, coalesce, plan
from installer.ipsw.schedule import WorkQueue


def test_jobs_go_one_per_worker_then_idle_workers_steal_half():
    jobs = [(Piece(0, 8 * MiB),), (Piece(8 * MiB, 9 * MiB),)]
    wq = WorkQueue(jobs, 2, min_steal=MiB, align=MiB, min_split=4 * MiB)
    assert wq.next(0) == (0, 8 * MiB)
    assert wq.next(1) == (8 * MiB, 9 * MiB)
    assert wq.advance(0, 2 * MiB) == 8 * MiB
    # Worker 1 is done; worker 0 is at 2 MiB of 8: the rest is split at a block boundary.
    assert wq.next(1) == (5 * MiB, 8 * MiB)
    assert wq.advance(0, 3 * MiB) == 5 * MiB  # worker 0 now stops at 5 MiB
    assert wq.steals == 1


def test_unstarted_pieces_are_stolen_before_splitting():
    jobs = [(Piece(0, MiB), Piece(2 * MiB, 3 * MiB), Piece(4 * MiB, 5 * MiB))]
    wq = WorkQueue(jobs, 2, min_steal=MiB // 2, align=4096)
    assert wq.next(0) == (0, MiB)
    assert wq.next(1) == (4 * MiB, 5 * MiB)  # the later half of worker 0's backlog
    assert wq.next(0) == (2 * MiB, 3 * MiB)


def test_small_rests_are_not_worth_a_request():
    wq = WorkQueue([(Piece(0, MiB),)], 2, min_steal=2 * MiB, align=4096)
    assert wq.next(0) == (0, MiB)
    assert wq.next(1) is None


def test_ranges_in_flight_are_cut_only_when_large():
    wq = WorkQueue([(Piece(0, 8 * MiB),)], 2, min_steal=MiB, align=MiB, min_split=16 * MiB)
    assert wq.next(0) == (0, 8 * MiB)
    assert wq.next(1) is None  # 8 MiB in flight: the waste of cutting it is not worth it
    assert wq.steals == 0


@settings(max_examples=150, deadline=None, database=None)
@given(
    spans=st.lists(st.tuples(st.integers(0, 1 << 32), st.integers(1, 64 * MiB)).map(
        lambda t: (t[0], t[0] + t[1])), min_size=1, max_size=30),
    workers=st.integers(1, 8),
    seed=st.integers(0, 1 << 30),
)
def test_every_byte_is_handed_out_once(spans, workers, seed):
    """Simulate workers advancing at random speeds: the union of what they fetch is exactly
    the plan, and no byte is fetched by two workers."""
    rng = random.Random(seed)
    jobs = plan(spans, PlanOptions(connections=workers, max_gap=0))
    wq = WorkQueue(jobs, workers, min_steal=MiB, align=64 << 10, min_split=2 * MiB)
    current: dict[int, list[int]] = {}
    done: list[tuple[int, int]] = []
    idle = set()
    while len(idle) < workers:
        w = rng.randrange(workers)
        if w in idle:
            continue
        if w not in current:
            r = wq.next(w)
            if r is None:
                idle.add(w)
                continue
            current[w] = [r[0], r[0], r[1]]  # start, pos, end
        start, pos, end = current[w]
        end = min(end, wq.advance(w, pos))
        step = rng.choice([64 << 10, MiB, 7 * MiB])
        pos = min(end, pos + step)
        end = min(end, wq.advance(w, pos))
        if pos >= end:
            done.append((start, end))
            del current[w]
        else:
            current[w] = [start, pos, end]
    want = coalesce(((p.start, p.end) for job in jobs for p in job), 0)
    assert coalesce(done, 0) == want
    assert sum(e - s for s, e in done) == sum(e - s for s, e in want)  # no overlap
