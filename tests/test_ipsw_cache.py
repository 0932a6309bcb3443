"""The range cache: only fetched bytes on disk, one place for `pippin install` and `pippin
ipsw fetch`, and a lock so two processes fetching the same image cannot corrupt it."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from installer.ipsw import cache as cache_mod
from installer.ipsw import select
from installer.ipsw.cache import RangeCache, cache_root, wait_released
from installer.ipsw.cli import _Ctx
from installer.ipsw.fetch import fetch_members
from installer.ipsw.member import DirectorySink, MemorySink
from installer.ipsw.ranges import coalesce
from installer.ipsw.remote import open_archive
from tests.support import faultproxy, ipswfix
from tests.support.ipswfix import assert_identical, fast_options
from tests.test_ipsw_fetch import stub_names

ROOT = Path(__file__).resolve().parents[1]
session = ipswfix.session


def _disk_bytes(root: Path) -> tuple[int, int]:
    """(apparent, allocated) bytes of every file under ``root``."""
    files = [p for p in root.rglob("*") if p.is_file()]
    return (sum(p.stat().st_size for p in files),
            sum(p.stat().st_blocks * 512 for p in files))


def test_bug_cache_was_a_sparse_file_the_size_of_the_archive(served, session, tmp_path):
    """The cache was one sparse `data` file as large as the image (4.6 GB here, more on a
    file system without holes); it now holds the fetched blocks and nothing else."""
    arc = open_archive(served.server.url(served.ipsw.path.name), session)
    m = arc.get("BuildManifest.plist")
    fetch_members(arc, [m.name], MemorySink(), session=session, cache_root=tmp_path,
                  options=fast_options(keep_cache=True))
    apparent, allocated = _disk_bytes(tmp_path)
    assert arc.size > 4 << 30
    assert m.end - m.start <= apparent <= m.end - m.start + 64
    assert allocated <= apparent + 64 << 10


def test_install_and_ipsw_fetch_share_one_cache(tmp_path, monkeypatch):
    xdg = tmp_path / "xdg"
    ctx = _Ctx({"XDG_CACHE_HOME": str(xdg)}, None)  # `pippin ipsw` without --cache
    assert ctx.cache_root == cache_root(xdg / "pippin")
    # what `pippin install` fetches through (install._fetch_restore → select.fetch_needed,
    # with the install's cache_dir, ~/.cache/pippin): the range cache it hands on
    seen = {}

    class Seen(Exception):
        pass

    def needed(archive, **kw):
        seen["root"] = kw["cache_root"]
        raise Seen

    monkeypatch.setattr(select.remote, "open_archive", lambda *a, **kw: object())
    monkeypatch.setattr(select, "needed_members", needed)
    with pytest.raises(Seen):
        select.fetch_needed("http://127.0.0.1:9/x.ipsw", tmp_path / "o", board_id=0,
                            chip_id=0, device_class="j314sap", session=None,
                            cache_dir=xdg / "pippin", options=fast_options())
    assert seen["root"] == ctx.cache_root


def test_two_processes_fetching_one_image_share_the_cache_safely(served, tmp_path):
    arc0 = open_archive(str(served.ipsw.path))
    names = stub_names(arc0)
    (tmp_path / "list").write_text("\n".join(names))
    cache = tmp_path / "cache"
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env.update(PYTHONPATH=str(ROOT), XDG_CACHE_HOME=str(tmp_path / "xdg"))
    # A slow link, so that the two fetches overlap in time.
    with faultproxy.running(served.server.port, rate=8e6) as px:
        url = f"{px.url_base}/{served.ipsw.path.name}"

        def start(out):
            return subprocess.Popen(
                [sys.executable, "-m", "installer.cli", "ipsw", "--cache", str(cache),
                 "fetch", url, "--members-from", str(tmp_path / "list"), "--out",
                 str(tmp_path / out), "--keep-cache", "--json"],
                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

        procs = [start("a"), start("b")]
        results = [p.communicate(timeout=120) for p in procs]
    for p, (_out, err) in zip(procs, results, strict=True):
        assert p.returncode == 0, err
    for out in ("a", "b"):
        assert_identical(tmp_path / out, served.ipsw, [n for n in names if not n.endswith("/")])
    waited = [err for _out, err in results if "is fetching the same image" in err]
    assert len(waited) == 1, results  # one waited for the other …
    summaries = [json.loads(out) for out, _err in results]
    assert sorted(s["downloaded_bytes"] for s in summaries)[0] == 0  # … and found its bytes
    # The cache the two left behind is whole: every block checks, none is dropped.
    needed = sum(e - s for s, e in coalesce(((arc0.get(n).start, arc0.get(n).end)
                                             for n in names), fast_options().plan.max_gap))
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logging.getLogger("installer.ipsw.cache").addHandler(handler)
    try:
        rc = RangeCache(cache, arc0.identity_key(), arc0.size)
    finally:
        logging.getLogger("installer.ipsw.cache").removeHandler(handler)
    assert not records
    assert rc.fetched_bytes() == needed
    rc.close()


@pytest.fixture(scope="module")
def want(served):
    """A few members of the stub set (quick to fetch)."""
    return stub_names(open_archive(str(served.ipsw.path)))[:6]


def _entries(root: Path) -> tuple[list[str], list[str]]:
    """(cache directories, caches moved aside for deletion) under ``root``."""
    got = sorted(p.name for p in root.iterdir()) if root.exists() else []
    return ([n for n in got if not n.startswith(".")],
            [n for n in got if n.startswith(".") and n.endswith(".stale")])


def test_cache_release_is_off_the_fetchs_critical_path(served, session, want, tmp_path,
                                                      monkeypatch):
    """Deleting the delivered members' block files took 0.03-0.34 s at the end of every
    fetch (the disk's writeback state decides): the fetch now returns once the cache is
    renamed aside, while its deletion is still held up here."""
    gate = tmp_path / "go"  # the deletion waits for this file
    held = 'while [ ! -e "$0" ]; do sleep 0.02; done; exec rm -rf -- "$1"'
    monkeypatch.setattr(cache_mod, "RM", ("/bin/sh", "-c", held, str(gate)))
    url = served.server.url(served.ipsw.path.name)
    arc = open_archive(url, session)
    root = tmp_path / "cache"
    for out in ("a", "b"):  # the second run starts while the first one's deletion waits
        fetch_members(arc, want, DirectorySink(tmp_path / out), session=session,
                      cache_root=root, options=fast_options())
        assert_identical(tmp_path / out, served.ipsw, want)
        live, aside = _entries(root)
        assert live == []
        assert len(aside) == (1 if out == "a" else 2)
    gate.touch()
    wait_released()
    assert _entries(root) == ([], [])


def test_cache_release_without_rm_deletes_in_a_thread(served, session, want, tmp_path,
                                                      monkeypatch):
    monkeypatch.setattr(cache_mod, "RM", (str(tmp_path / "no-such-rm"),))
    url = served.server.url(served.ipsw.path.name)
    fetch_members(open_archive(url, session), want, DirectorySink(tmp_path / "a"),
                  session=session, cache_root=tmp_path / "cache", options=fast_options())
    wait_released()
    assert _entries(tmp_path / "cache") == ([], [])
    assert_identical(tmp_path / "a", served.ipsw, want)


DRIVER = """
import os, signal, sys
from pathlib import Path
from installer.ipsw import cache
from installer.ipsw.fetch import fetch_members
from installer.ipsw.member import DirectorySink
from installer.ipsw.remote import open_archive
from installer.net.session import NetConfig, make_session
url, out, root, when, *names = sys.argv[1:]
def die(*_a, **_k):
    os.kill(os.getpid(), signal.SIGKILL)
if when == "before-rename":
    cache.RangeCache.remove = die
else:
    cache._reap = die
s = make_session(NetConfig())
fetch_members(open_archive(url, s), names, DirectorySink(Path(out)), session=s,
              cache_root=Path(root))
"""


@pytest.mark.parametrize("when", ["before-rename", "after-rename"])
def test_killed_between_delivery_and_cache_release(served, session, want, tmp_path, when):
    """kill -9 after every member was delivered, before or after the cache was moved aside:
    the members are on disk; a rerun either finds all bytes in the cache (nothing
    downloaded) or deletes the stale aside directory, never reads it as a cache."""
    url = served.server.url(served.ipsw.path.name)
    root = tmp_path / "cache"
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env["PYTHONPATH"] = str(ROOT)
    r = subprocess.run([sys.executable, "-c", DRIVER, url, str(tmp_path / "a"), str(root),
                        when, *want], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == -9, r.stderr
    assert_identical(tmp_path / "a", served.ipsw, want)  # delivered before the kill
    live, aside = _entries(root)
    assert (len(live), len(aside)) == ((1, 0) if when == "before-rename" else (0, 1))
    arc = open_archive(url, session)
    res = fetch_members(arc, want, DirectorySink(tmp_path / "b"), session=session,
                        cache_root=root, options=fast_options())
    assert_identical(tmp_path / "b", served.ipsw, want)
    if when == "before-rename":
        assert res.downloaded_bytes == 0
        assert res.cached_bytes == res.needed_bytes
    else:
        assert res.cached_bytes == 0  # the aside directory is not a cache
    wait_released()
    assert _entries(root) == ([], [])
