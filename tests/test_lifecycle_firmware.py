"""`pippin refresh-firmware NAME`: the firmware members fetched again, vendorfw/ rebuilt
and swapped in on the ESP (mdir/mtype), the change shown as `vendorfw diff` lines; a swap
killed halfway is repaired by the next run."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.support import installfix
from tests.test_lifecycle_resume import clone, esp_start, xdg_with_demo
from tests.test_lifecycle_status import base, installed, pippin  # noqa: F401 (fixtures)

demo_cache = installfix.demo_cache
demo_site = installfix.demo_site

pytestmark = pytest.mark.timeout(600)
NAME = "Pippin demo Linux"
ENV = dict(os.environ, MTOOLS_SKIP_CHECK="1")


def mt(sim, *argv, check=True):
    at = f"{sim}@@{esp_start(sim)}"
    return subprocess.run([argv[0], "-i", at, *argv[1:]], capture_output=True, env=ENV,
                          check=check)


def listing(sim):
    return sorted(mt(sim, "mdir", "-/", "-b", "::/").stdout.decode().split())


def test_refresh_rebuilds_vendorfw_and_shows_the_diff(tmp_path, installed, demo_cache):  # noqa: F811
    sim = clone(installed, tmp_path / "f")
    xdg_with_demo(tmp_path, demo_cache)
    manifest = mt(sim, "mtype", "::/vendorfw/manifest.txt").stdout
    files = listing(sim)
    lines = manifest.decode().splitlines(keepends=True)
    short = tmp_path / "manifest.txt"
    short.write_text("".join(lines[:3]))
    mt(sim, "mcopy", "-o", str(short), "::/vendorfw/manifest.txt")

    r = pippin(tmp_path, "refresh-firmware", NAME, "--target", f"sim:{sim}", "--dry-run")
    assert r.returncode == 0, r.stderr
    assert f"{len(lines) - 3} added, 0 removed, 0 changed, 3 unchanged\n" in r.stdout
    assert mt(sim, "mtype", "::/vendorfw/manifest.txt").stdout == short.read_bytes()

    r = pippin(tmp_path, "refresh-firmware", NAME, "--target", f"sim:{sim}", "--yes")
    assert r.returncode == 0, r.stderr
    added = [f"+ {line.split(' ')[1]}" for line in lines[3:]]
    assert r.stdout.splitlines()[:len(added)] == sorted(added)
    assert "  note: no pinned restore image for macOS 14.6.1; using 13.5" in r.stdout
    assert r.stdout.endswith(f"replaced vendorfw/ of '{NAME}' ({len(lines)} entries, "
                             "restore image 13.5)\n")
    assert mt(sim, "mtype", "::/vendorfw/manifest.txt").stdout == manifest
    assert listing(sim) == files


def test_a_swap_killed_halfway_is_repaired(tmp_path, installed, demo_cache):  # noqa: F811
    """Killed between the two renames: vendorfw/ is missing, vendorfw.old holds the old
    tree, vendorfw.new a partial new one. The next run puts it right."""
    sim = clone(installed, tmp_path / "k")
    xdg_with_demo(tmp_path, demo_cache)
    manifest = mt(sim, "mtype", "::/vendorfw/manifest.txt").stdout
    files = listing(sim)
    mt(sim, "mmove", "::/vendorfw", "::/vendorfw.old")
    mt(sim, "mmd", "::/vendorfw.new")
    r = pippin(tmp_path, "refresh-firmware", NAME, "--target", f"sim:{sim}", "--yes")
    assert r.returncode == 0, r.stderr
    assert f"0 added, 0 removed, 0 changed, {len(manifest.splitlines())} unchanged" in r.stdout
    assert mt(sim, "mtype", "::/vendorfw/manifest.txt").stdout == manifest
    assert listing(sim) == files


def test_unknown_install_is_one_line(tmp_path, installed):  # noqa: F811
    r = pippin(tmp_path, "refresh-firmware", "Nope", "--target", f"sim:{installed}", "--yes")
    assert r.returncode == 1
    assert r.stderr.startswith("pippin: error: no install named 'Nope' on disk0")
    assert len(r.stderr.splitlines()) == 1
