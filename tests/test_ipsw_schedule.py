"""The work queue hands out every byte exactly once: guided request sizes from one shared
queue, small spans one request each, and in-flight stealing only for large rests."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from installer.ipsw.ranges import MiB, coalesce
from installer.ipsw.schedule import WorkQueue


def queue(spans, workers, **kw):
    opts = dict(align=MiB, min_request=MiB, max_request=64 * MiB, min_split=16 * MiB)
    return WorkQueue(spans, workers, **{**opts, **kw})


def test_requests_shrink_as_the_queue_drains():
    wq = queue([(0, 256 * MiB)], 8)
    sizes = []
    while (r := wq.next(0)) is not None:
        sizes.append(r[1] - r[0])
        wq.advance(0, r[1])
    assert sizes[0] == 12 * MiB  # 256 MiB / (2 × 8), × 0.70 for worker 0, to 1 MiB
    assert sizes == sorted(sizes, reverse=True)
    assert sizes[-1] <= 2 * MiB  # the last requests are small: connections end together
    assert sum(sizes) == 256 * MiB


def test_first_requests_differ_by_worker_so_connections_do_not_fall_into_step():
    """With one size for all, the connections' requests came due together and the link
    idled for a round trip; sizes now go from 0.70× to 1.30× of left / (2 × workers)."""
    wq = queue([(0, 1024 * MiB)], 8, align=1, min_request=1)
    sizes = [(r := wq.next(i))[1] - r[0] for i in range(8)]
    assert 0.66 < sizes[0] / (1024 * MiB / 16) < 0.72
    # (with one size for all, each would be 15/16 of the one before: the last 0.64×)
    assert sizes[-1] / sizes[0] > 1.2
    assert 6 * 1024 * MiB / 16 < sum(sizes) < 7 * 1024 * MiB / 16


def test_small_spans_are_one_request_each_and_keep_file_order():
    spans = [(0, 100), (10 * MiB, 10 * MiB + 5000), (20 * MiB, 21 * MiB)]
    wq = queue(spans, 4)
    got = [wq.next(i) for i in range(4)]
    assert got == [*spans, None]


def test_large_spans_go_first_so_little_is_left_to_check_after_the_last_byte():
    spans = [(0, 100), (MiB, 6 * MiB), (10 * MiB, 30 * MiB)]
    wq = queue(spans, 1, max_request=64 * MiB)
    got = []
    while (r := wq.next(0)) is not None:
        got.append(r)
        wq.advance(0, r[1])
    assert got[0][0] == 10 * MiB  # the largest span's first chunk
    assert got[-1] == (0, 100)  # small spans last, in file order
    assert coalesce(got, 0) == coalesce(spans, 0)


def test_a_rest_smaller_than_a_request_is_not_split_off():
    wq = queue([(0, 9 * MiB + 10)], 4, min_request=2 * MiB)
    first = wq.next(0)
    assert first == (0, 2 * MiB)  # ceil(9 MiB / 8) rounded up to the block
    while (r := wq.next(0)) is not None:
        assert r[1] - r[0] >= 2 * MiB


def test_a_large_range_in_flight_is_cut_for_an_idle_worker():
    wq = queue([(0, 64 * MiB)], 2, min_request=64 * MiB, min_split=4 * MiB)
    assert wq.next(0) == (0, 64 * MiB)
    assert wq.advance(0, 2 * MiB) == 64 * MiB
    assert wq.next(1) == (33 * MiB, 64 * MiB)  # half of the rest, at a block boundary
    assert wq.advance(0, 3 * MiB) == 33 * MiB  # worker 0 now stops there
    assert wq.steals == 1


def test_ranges_in_flight_are_cut_only_when_large():
    wq = queue([(0, 8 * MiB)], 2, min_request=8 * MiB, min_split=16 * MiB)
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
    the spans, and no byte is fetched by two workers."""
    rng = random.Random(seed)
    merged = coalesce(spans, 0)
    wq = WorkQueue(merged, workers, align=64 << 10, min_request=MiB, max_request=16 * MiB,
                   min_split=2 * MiB)
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
    assert coalesce(done, 0) == merged
    assert sum(e - s for s, e in done) == sum(e - s for s, e in merged)  # no overlap
