"""The range cache: only fetched bytes on disk, one place for `pippin install` and `pippin
ipsw fetch`, and a lock so two processes fetching the same image cannot corrupt it."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

from installer.ipsw.cache import RangeCache, cache_root
from installer.ipsw.cli import _Ctx
from installer.ipsw.fetch import fetch_members
from installer.ipsw.member import MemorySink
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


def test_install_and_ipsw_fetch_share_one_cache(tmp_path):
    xdg = tmp_path / "xdg"
    ctx = _Ctx({"XDG_CACHE_HOME": str(xdg)}, None)  # `pippin ipsw` without --cache
    assert ctx.cache_root == cache_root(xdg / "pippin")  # what `pippin install` uses
    src = (ROOT / "installer" / "install.py").read_text()
    assert "range_cache_root(deps.cache_dir)" in src


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
