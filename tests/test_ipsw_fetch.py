"""Fetching members through a real nginx and a fault-injecting proxy.

Every fault schedule ends with byte-identical members or a clear error — never wrong bytes.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from installer.errors import NetworkError, PippinError, RestoreImageError
from installer.ipsw import cache as cache_mod
from installer.ipsw import manifest, ota
from installer.ipsw.cache import BLOCK, RangeCache
from installer.ipsw.fetch import FetchProgress, MemberState, fetch_members
from installer.ipsw.member import DirectorySink, MemorySink
from installer.ipsw.ranges import coalesce
from installer.ipsw.remote import open_archive
from installer.net.session import NetConfig, make_session, proxies_from_env
from tests.support import faultproxy, ipswfix
from tests.support.faultproxy import Fault, every, first
from tests.support.ipswfix import assert_identical, fast_options
from tests.support.zipwriter import ZipWriter

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

session = ipswfix.session  # fixture (``served`` comes from conftest.py)


def via(px, path):
    """The directory of the image at ``path`` read from disk (so faults hit only member
    requests), with its source pointed at the proxy."""
    return dataclasses.replace(open_archive(str(path)), source=f"{px.url_base}/{path.name}")


def stub_names(arc, data=None):
    layout = ota.detect_layout(arc.names())
    if data is None:
        sink = MemorySink()
        fetch_members(arc, [f"{layout.boot_prefix}BuildManifest.plist"], sink)
        data = next(iter(sink.data.values()))
    bm = manifest.parse_build_manifest(data)
    ident = manifest.select_identity(bm, board_id=0x04, chip_id=0x6000,
                                     device_class="j314sap", ota=layout.ota)
    return manifest.stub_members(arc.names(), ident, layout)


@pytest.fixture(scope="module")
def names(served):
    return stub_names(open_archive(str(served.ipsw.path)))


def test_stub_set_byte_identical_and_decoys_never_fetched(served, session, names, tmp_path):
    with faultproxy.running(served.server.port) as px:
        url = f"{px.url_base}/{served.ipsw.path.name}"
        arc = open_archive(url, session)
        events: list[FetchProgress] = []
        res = fetch_members(arc, names, DirectorySink(tmp_path / "out"), session=session,
                            cache_root=tmp_path / "cache", progress=events.append)
    assert_identical(tmp_path / "out", served.ipsw, names)
    assert set(res.members) == set(names)
    # Bytes: the member spans, plus the directory reads, and nothing of any decoy.
    needed = sum(arc.get(n).end - arc.get(n).start for n in names)
    member_bytes = sum(r.sent for r in px.records if not r.range.startswith("bytes=-")
                       and int(r.range[6:].split("-")[0]) < arc.cd_offset)
    assert member_bytes <= needed * 1.01
    for r in px.records:
        lo, hi = (int(x) if x else None for x in r.range[6:].split("-"))
        for d in served.ipsw.decoys:
            m = arc.get(d)
            assert lo is None or hi < m.start + 30 or lo >= m.end, (r, d)
    # Progress: monotone to the total, every member reported done, cache removed.
    assert events[-1].done == events[-1].total == res.needed_bytes
    assert {e.member for e in events if e.state is MemberState.DONE} == set(names)
    cache_mod.wait_released()  # the cache is moved aside at once, deleted in the background
    assert not any((tmp_path / "cache").iterdir())


SURVIVABLE = {
    "drop-every-300k": dict(drop_every=300_000),
    "5xx-burst": dict(schedule=first(6, Fault("status", code=503))),
    "stall": dict(schedule=first(2, Fault("stall", at=100_000))),
    "200-full-body": dict(schedule=every(3, Fault("full200"), limit=3)),
    "truncated": dict(schedule=every(2, Fault("truncate", at=50_000), limit=6)),
    "shifted-range": dict(schedule=every(4, Fault("shift", by=7), limit=4)),
    "lying-range": dict(schedule=first(1, Fault("lie", by=4096))),
    "corrupt-body": dict(schedule=first(1, Fault("corrupt"))),
}


@pytest.mark.parametrize("case", sorted(SURVIVABLE))
def test_fault_schedule_ends_identical(served, session, names, tmp_path, case):
    with faultproxy.running(served.server.port, **SURVIVABLE[case]) as px:
        arc = via(px, served.ipsw.path)  # directory from disk: faults hit members
        res = fetch_members(arc, names, DirectorySink(tmp_path / "out"), session=session,
                            cache_root=tmp_path / "cache", options=fast_options(),
                            sleep=lambda _s: None)
    assert_identical(tmp_path / "out", served.ipsw, names)
    assert any(r.fault for r in px.records), "the schedule never fired"
    assert res.retries >= 1 or res.refetched


FATAL = {
    "5xx-always": (dict(schedule=every(1, Fault("status", code=503))), NetworkError,
                   "HTTP 503"),
    "404": (dict(schedule=every(1, Fault("status", code=404))), NetworkError, "HTTP 404"),
    "200-always": (dict(schedule=every(1, Fault("full200"))), NetworkError, "answered 200"),
    "shift-always": (dict(schedule=every(1, Fault("shift", by=3))), NetworkError,
                     "Content-Range"),
    "lie-always": (dict(schedule=every(1, Fault("lie", by=4096))), RestoreImageError,
                   "CRC-32|local header"),
}


@pytest.mark.parametrize("case", sorted(FATAL))
def test_hopeless_server_is_a_clear_error_and_no_wrong_bytes(served, session, names,
                                                             tmp_path, case):
    kwargs, exc_type, msg = FATAL[case]
    out = tmp_path / "out"
    with faultproxy.running(served.server.port, **kwargs) as px:
        arc = via(px, served.ipsw.path)
        with pytest.raises(exc_type, match=msg) as ei:
            fetch_members(arc, names, DirectorySink(out), session=session,
                          cache_root=tmp_path / "cache", options=fast_options(retries=3),
                          sleep=lambda _s: None)
    assert "\n" not in ei.value.message
    written = [p for p in out.rglob("*") if p.is_file()] if out.exists() else []
    for p in written:  # whatever was delivered before the failure is exact
        assert_identical(out, served.ipsw, [str(p.relative_to(out))])


def test_a_stalled_connection_is_relieved_by_the_others(served, session, names, tmp_path):
    """A large request stalls until its read timeout; meanwhile the other connection
    finishes its own job and takes over half of the stalled one's range."""
    fired = []

    def stall_first_large(_n, rng):  # small members are whole requests: stall a big one
        if fired or rng is None or rng.startswith("bytes=-"):
            return None
        a, b = (int(x) for x in rng[6:].split("-"))
        if b - a < 2 << 20:
            return None
        fired.append(rng)
        return Fault("stall", at=0)

    with faultproxy.running(served.server.port, schedule=stall_first_large) as px:
        arc = via(px, served.ipsw.path)
        # A 4 s read timeout: under CI load the other connection still has time to finish
        # its own half and take over the stalled one's before the stall times out.
        opts = dataclasses.replace(fast_options(connections=2, split_in_flight=1 << 20),
                                   timeout=(5.0, 4.0))
        res = fetch_members(arc, names, DirectorySink(tmp_path / "out"), session=session,
                            cache_root=tmp_path / "cache", options=opts,
                            sleep=lambda _s: None)
    assert_identical(tmp_path / "out", served.ipsw, names)
    assert res.steals >= 1
    assert res.downloaded_bytes == res.needed_bytes  # nothing fetched twice


def test_warm_up_opens_the_connections_a_fetch_will_use(served, session, names, tmp_path):
    with faultproxy.running(served.server.port, rtt=0.05) as px:  # requests overlap
        arc = open_archive(f"{px.url_base}/{served.ipsw.path.name}", session, warm=4)
        heads = len([r for r in px.records if r.range is None])
        assert heads == 3
        assert px.connections == 4
        before = px.connections
        fetch_members(arc, names, MemorySink(), session=session, cache_root=tmp_path,
                      options=fast_options(connections=4))
        assert px.connections == before  # the fetch reused the warm connections


def test_directory_read_survives_faults_and_refuses_200(served, session):
    with faultproxy.running(served.server.port, schedule=first(3, Fault("status"))) as px:
        arc = open_archive(f"{px.url_base}/{served.ipsw.path.name}", session,
                           sleep=lambda _s: None)
        assert len(arc.members) == len(served.ipsw.sizes)
    with faultproxy.running(served.server.port, schedule=every(1, Fault("full200"))) as px:
        with pytest.raises(PippinError, match="answered 200"):
            open_archive(f"{px.url_base}/{served.ipsw.path.name}", session, retries=1,
                         sleep=lambda _s: None)


def test_proxy_settings_are_honoured(served, names, tmp_path):
    url = served.server.url(served.ipsw.path.name)
    with faultproxy.running(served.server.port) as px:
        s = make_session(NetConfig(proxies={"http": px.url_base}))
        arc = open_archive(url, s)
        fetch_members(arc, names[:3], MemorySink(), session=s, cache_root=tmp_path)
        assert px.absolute_form >= 2  # the directory and the members went through it
        before = len(px.records)
        s2 = make_session(NetConfig(proxies={"http": px.url_base}, no_proxy=("127.0.0.1",)))
        open_archive(url, s2)
        assert len(px.records) == before  # NO_PROXY host: straight to nginx


@pytest.mark.parametrize(
    ("env", "proxies", "no_proxy"),
    [
        ({}, {}, ()),
        ({"http_proxy": "http://p:3128"}, {"http": "http://p:3128"}, ()),
        ({"HTTPS_PROXY": "http://s:1", "https_proxy": "http://l:2"}, {"https": "http://l:2"},
         ()),
        ({"ALL_PROXY": "socks5://a:1", "NO_PROXY": "example.org, .lan,"},
         {"http": "socks5://a:1", "https": "socks5://a:1"}, ("example.org", "lan")),
    ],
)
def test_proxies_from_env(env, proxies, no_proxy):
    assert proxies_from_env(env) == (proxies, no_proxy)


def _block_spans(cache_root):
    """The archive ranges the cache's block files hold (named <start>-<end>-<crc>; a
    temporary file still being written starts with a dot and is not counted)."""
    spans = []
    for f in cache_root.glob("*/blocks/*"):
        if not f.name.startswith("."):
            s, e, _crc = f.name.split("-")
            spans.append((int(s, 16), int(e, 16)))
    return spans


def _journal_bytes(cache_root):
    """Bytes the range cache holds (a union: blocks may overlap)."""
    return sum(e - s for s, e in coalesce(_block_spans(cache_root), 0))


def _member_bytes_sent(px, arc):
    return sum(r.sent for r in px.records if r.range and not r.range.startswith("bytes=-")
               and int(r.range[6:].split("-")[0]) < arc.cd_offset)


def test_killed_fetch_resumes_without_downloading_twice(served, names, tmp_path):
    """kill -9 mid-way, run again: at most one block per active range comes twice."""
    conns = 4
    arc = open_archive(str(served.ipsw.path))
    needed = sum(arc.get(n).end - arc.get(n).start for n in names)
    (tmp_path / "list").write_text("\n".join(names))
    cache = tmp_path / "cache"
    env = {**os.environ, "PYTHONPATH": ROOT}

    def cli(url, *extra):
        return [sys.executable, "-m", "installer.cli", "ipsw", "--cache", str(cache),
                "fetch", url, "--members-from", str(tmp_path / "list"),
                "--out", str(tmp_path / "out"), "--connections", str(conns), *extra]

    with faultproxy.running(served.server.port, stall_total=int(needed * 0.4)) as px:
        url = f"{px.url_base}/{served.ipsw.path.name}"
        proc = subprocess.Popen(cli(url), env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        # Wait (no fixed quiet time: CI load varies) until the proxy stalls and the fetch
        # has journaled all it received but one partial block per connection; a fetch
        # that loses received bytes never gets there and the test fails.
        deadline = time.monotonic() + 90
        while True:
            got = _journal_bytes(cache) if cache.exists() else 0
            if px.stalled and got and got >= _member_bytes_sent(px, arc) - conns * BLOCK:
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the first fetch never stalled with its bytes journaled "
                            f"(journal {got}, sent {_member_bytes_sent(px, arc)}, "
                            f"exit {proc.poll()})")
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        first_run = _member_bytes_sent(px, arc)
    last = _journal_bytes(cache)  # what the killed process left behind
    assert 0 < last < needed
    r = subprocess.run(cli(served.server.url(served.ipsw.path.name), "--json"), env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert_identical(tmp_path / "out", served.ipsw, names)
    assert summary["cached_bytes"] == last
    assert summary["downloaded_bytes"] + summary["cached_bytes"] == summary["needed_bytes"]
    assert first_run + summary["downloaded_bytes"] <= summary["needed_bytes"] + conns * BLOCK


def test_damaged_cache_costs_only_the_damaged_block(served, session, names, tmp_path):
    """A torn journal line or a block whose bytes changed is dropped and fetched again."""
    url = served.server.url(served.ipsw.path.name)
    arc = open_archive(url, session)
    big = max(names, key=lambda n: arc.get(n).compress_size)
    cache = tmp_path / "cache"
    fetch_members(arc, [big], MemorySink(), session=session, cache_root=cache,
                  options=fast_options(keep_cache=True))
    block = sorted(cache.glob("*/blocks/*"))[0]
    start, end = (int(x, 16) for x in block.name.split("-")[:2])
    with open(block, "r+b") as f:  # flip a byte inside that block
        f.seek(7)
        b = f.read(1)
        f.seek(7)
        f.write(bytes([b[0] ^ 0xFF]))
    (block.parent / f".{block.name}.1.tmp").write_bytes(b"torn")  # a killed writer's
    (block.parent / "junk").write_bytes(b"x")
    with faultproxy.running(served.server.port) as px:
        arc2 = via(px, served.ipsw.path)
        out = tmp_path / "out"
        res = fetch_members(arc2, [big], DirectorySink(out), session=session,
                            cache_root=cache, options=fast_options())
    assert_identical(out, served.ipsw, [big])
    assert res.downloaded_bytes == end - start
    assert px.sent_bytes() == end - start


def test_bug_full_disk_under_the_cache_is_a_clear_error(served, session, names, tmp_path,
                                                        monkeypatch):
    """ENOSPC while writing fetched bytes into the range cache escaped a worker as a bare
    OSError (exit 70, "internal error") instead of a one-line error."""
    def on_full_disk(path, mode="r", *args, **kwargs):  # every block write: ENOSPC
        return open("/dev/full" if "w" in mode else path, mode, *args, **kwargs)

    monkeypatch.setattr(cache_mod, "open", on_full_disk, raising=False)
    arc = open_archive(served.server.url(served.ipsw.path.name), session)
    out = tmp_path / "out"
    with pytest.raises(RestoreImageError, match="cannot write the download cache .*space"):
        fetch_members(arc, names, DirectorySink(out), session=session,
                      cache_root=tmp_path / "cache", options=fast_options())
    assert not out.exists() or not any(out.rglob("*"))


def test_bug_refetch_progress_never_passes_the_total(served, session, tmp_path):
    """A corrupt member drops whole cache blocks, a neighbour's bytes too; only the member's
    own bytes were taken off the progress count, so the neighbour's second download
    pushed "done" past "total"."""
    path = served.root / f"neighbours-{tmp_path.name}.zip"
    a, b = bytes(range(256)) * 400, bytes(range(255, -1, -1)) * 1200
    with open(path, "wb") as f:
        zw = ZipWriter(f)
        zw.add("a.bin", a)
        zw.add("b.bin", b)
        zw.close()
    arc = open_archive(served.server.url(path.name), session)
    # A cache (from an earlier run) holding a.bin with one wrong byte and half of b.bin.
    seed = RangeCache(tmp_path / "cache", arc.identity_key(), arc.size)
    end = arc.get("b.bin").start + len(b) // 2
    data = bytearray(path.read_bytes()[:end])
    data[arc.get("a.bin").end - 5] ^= 0xFF
    seed.put(0, data)
    seed.close()
    events: list[FetchProgress] = []
    sink = MemorySink()
    res = fetch_members(arc, ["a.bin", "b.bin"], sink, session=session,
                        cache_root=tmp_path / "cache", options=fast_options(1),
                        progress=events.append)
    assert res.refetched == ("a.bin",)
    assert sink.data == {"a.bin": a, "b.bin": b}
    assert max(e.done for e in events) <= res.needed_bytes
    assert events[-1].done == events[-1].total == res.needed_bytes


def test_bug_server_that_always_stalls_says_read_timed_out(served, session, names, tmp_path):
    """Giving up on a stalled server quoted urllib3's nested repr ("HTTPConnectionPool(…):
    Read timed out. (read timeout=…)"); the error now says what happened, in one line."""
    with faultproxy.running(served.server.port,
                            schedule=every(1, Fault("stall", at=0))) as px:
        opts = dataclasses.replace(fast_options(connections=1, retries=1),
                                   timeout=(5.0, 0.3))
        with pytest.raises(NetworkError) as ei:
            fetch_members(via(px, served.ipsw.path), names[:1], MemorySink(),
                          session=session, cache_root=tmp_path, options=opts,
                          sleep=lambda _s: None)
    assert ei.value.message == (f"GET {px.url_base}/{served.ipsw.path.name}: read timed out "
                                "(gave up after 2 attempts without progress)")


def test_bug_small_fetch_keeps_an_interrupted_fetchs_cache(served, session, names, tmp_path):
    """Any successful fetch removed the archive's whole range cache. `pippin install` reads
    BuildManifest.plist (needed_members) before the stub set, so after a crash the rerun's
    manifest read deleted the partial download it was meant to resume."""
    url = served.server.url(served.ipsw.path.name)
    arc = open_archive(url, session)
    big = max(names, key=lambda n: arc.get(n).compress_size)
    cache = tmp_path / "cache"
    # An interrupted fetch of `big` left its ranges (keep_cache stands in for the crash).
    fetch_members(arc, [big], MemorySink(), session=session, cache_root=cache,
                  options=fast_options(keep_cache=True))
    fetch_members(arc, ["BuildManifest.plist"], MemorySink(), session=session,
                  cache_root=cache)
    assert _block_spans(cache)
    res = fetch_members(arc, [big], DirectorySink(tmp_path / "out"), session=session,
                        cache_root=cache)
    assert_identical(tmp_path / "out", served.ipsw, [big])
    assert res.downloaded_bytes == 0
    assert res.cached_bytes == res.needed_bytes
    cache_mod.wait_released()  # the removal runs in the background
    assert not any(cache.iterdir())  # this fetch covered everything: cache removed
