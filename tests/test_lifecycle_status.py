"""`pippin status` and `pippin uninstall` on a simulated Mac: what an install left (stage-1
version and variables read back, vendorfw manifest), the leftovers of a killed or
half-removed install, and their removal giving the space back to macOS (sgdisk -p)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from installer.demo.site import DEMO_LINUX
from installer.platform.simstate import sidecar
from tests.support import installfix
from tests.support.installfix import ROOT, partition_numbers
from tests.test_lifecycle_resume import clone, crash, gpt, xdg_with_demo

demo_cache = installfix.demo_cache
demo_site = installfix.demo_site

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return installfix.new_sim(tmp_path_factory.mktemp("base") / "mac.img")


@pytest.fixture(scope="module")
def installed(tmp_path_factory, base, demo_cache):
    sim = clone(base, tmp_path_factory.mktemp("inst"))
    r = crash(demo_cache, sim, DEMO_LINUX, 0)
    assert r.returncode == 0, r.stderr[-2000:]
    return sim


def pippin(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "installer.cli", *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=300, check=False,
                          env=dict(os.environ, XDG_CACHE_HOME=str(tmp / "xdg")))


def status(tmp: Path, sim: Path) -> dict:
    r = pippin(tmp, "status", "--json", "--target", f"sim:{sim}")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_status_reads_back_stage1_and_firmware(tmp_path, installed):
    doc = status(tmp_path, installed)
    (inst,) = doc["installs"]
    assert inst["name"] == DEMO_LINUX
    assert [p["kind"] for p in (inst["stub"], inst["esp"], *inst["os_partitions"])] == [
        "Apple_APFS", "EFI", "Linux Filesystem"]
    esp = inst["esp"]["uuid"].lower()
    assert inst["stage1"]["loader"] == "pippin"
    assert inst["stage1"]["version"] == "0.1.0"
    assert inst["stage1"]["variables"] == {"chosen.asahi,efi-system-partition": esp,
                                           "chainload": f"{esp};m1n1/boot.bin"}
    assert inst["vendorfw"]["files"] > 0
    assert inst["vendorfw"]["error"] == ""
    assert inst["step2_pending"] is True
    assert doc["leftovers"] == []
    assert doc["interrupted"] is None
    text = pippin(tmp_path, "status", "--target", f"sim:{installed}").stdout
    assert f"  '{DEMO_LINUX}': 3.1 GB (disk0s4 Apple_APFS 2.5 GB, disk0s5 EFI 524.3 MB, " \
           "disk0s6 Linux Filesystem 67.1 MB)\n" in text
    assert "    stage 1: Pippin 0.1.0, " in text
    assert "  leftovers: none\n" in text


def test_uninstall_dry_run_then_yes_gives_macos_its_space_back(tmp_path, base, installed):
    sim = clone(installed, tmp_path / "u")
    before = gpt(sim)
    r = pippin(tmp_path, "uninstall", DEMO_LINUX, "--target", f"sim:{sim}", "--dry-run")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"uninstall '{DEMO_LINUX}' from sim:{sim}:\n  before |")
    assert "  after  |" in r.stdout
    assert "  delete  Apple_APFS 'Pippin demo Linux' (disk0s4): 2.5 GB\n" in r.stdout
    assert "  grow    macOS container disk0s2: " in r.stdout
    assert r.stderr == "dry run: nothing changed\n"
    assert gpt(sim) == before
    r = pippin(tmp_path, "uninstall", DEMO_LINUX, "--target", f"sim:{sim}")  # no terminal
    assert r.returncode == 0
    assert "rerun with --yes" in r.stderr
    assert gpt(sim) == before
    r = pippin(tmp_path, "uninstall", DEMO_LINUX, "--target", f"sim:{sim}", "--yes")
    assert r.returncode == 0, r.stderr
    assert gpt(sim) == gpt(base)  # macOS has all of its space again
    assert not any((sidecar(sim)).glob("*-*-*-*-*/Pippin demo Linux"))
    assert status(tmp_path, sim)["installs"] == []


def test_uninstall_refuses_unknown_names_in_one_line(tmp_path, installed):
    r = pippin(tmp_path, "uninstall", "Nope", "--target", f"sim:{installed}", "--yes")
    assert r.returncode == 1
    assert r.stderr.splitlines()[0] == \
        "pippin: error: 'Nope' is neither an install nor a leftover on disk0"
    assert f"'{DEMO_LINUX}' (disk0s4)" in r.stderr
    assert "Traceback" not in r.stderr


def test_killed_install_without_its_journal_leaves_a_stub_found_and_removed(
        tmp_path, base, demo_cache):
    """A killed install whose journal is gone (on a Mac it lives in a temporary folder):
    the stub container with no ESP is a leftover; uninstall removes it, macOS grows back."""
    sim = clone(base, tmp_path / "k")
    r = crash(demo_cache, sim, DEMO_LINUX, 7)  # after the stub, before the ESP
    assert r.returncode == -9
    assert "killed at step 7: op 4/8" in r.stderr
    (sidecar(sim) / "journal.json").unlink()
    doc = status(tmp_path, sim)
    assert [(lo["kind"], lo["ref"][:5]) for lo in doc["leftovers"]] == [
        ("stub-without-esp", "disk0"), ("stranded-free", "free@")]  # behind the stub
    r = pippin(tmp_path, "uninstall", "disk0s4", "--target", f"sim:{sim}", "--yes")
    assert r.returncode == 0, r.stderr
    assert gpt(sim) == gpt(base)
    assert status(tmp_path, sim)["leftovers"] == []


def test_orphan_esp_linux_and_stranded_free_space(tmp_path, base, installed):
    """The stub deleted by hand (a half-removed install): its ESP and Linux partition are
    orphans; after the ESP goes, the free space behind the Linux orphan is stranded until
    that goes too; then macOS has all of its space again."""
    sim = clone(installed, tmp_path / "o")
    n = partition_numbers(sim)
    subprocess.run(["sgdisk", f"-d{n[DEMO_LINUX]}", str(sim)], check=True,
                   capture_output=True)
    doc = status(tmp_path, sim)
    assert doc["installs"] == []
    assert [(lo["kind"], lo["ref"][:7]) for lo in doc["leftovers"]] == [
        ("orphan-esp", "disk0s5"), ("orphan-linux", "disk0s6"), ("stranded-free", "free@24")]
    r = pippin(tmp_path, "uninstall", "disk0s5", "--target", f"sim:{sim}", "--yes")
    assert r.returncode == 0, r.stderr
    doc = status(tmp_path, sim)
    kinds = [(lo["kind"], lo["ref"].split("@")[0]) for lo in doc["leftovers"]]
    assert kinds == [("orphan-linux", "disk0s6"), ("stranded-free", "free")]
    free = doc["leftovers"][1]["ref"]
    r = pippin(tmp_path, "uninstall", free, "--target", f"sim:{sim}", "--yes")
    assert r.returncode == 0, r.stderr
    assert gpt(sim) == gpt(base)
    assert status(tmp_path, sim)["leftovers"] == []


def test_status_of_a_missing_sim_is_one_line(tmp_path):
    r = pippin(tmp_path, "status", "--target", f"sim:{tmp_path / 'none.img'}")
    assert r.returncode == 1
    assert r.stderr.splitlines()[0] == f"pippin: error: no simulated Mac at {tmp_path}/none.img"


def test_a_rerun_after_status_names_resume(tmp_path, base, demo_cache):
    sim = clone(base, tmp_path / "p")
    assert crash(demo_cache, sim, DEMO_LINUX, 8).returncode == -9
    xdg_with_demo(tmp_path, demo_cache)
    doc = status(tmp_path, sim)
    assert doc["interrupted"]["os"] == DEMO_LINUX
    assert doc["installs"][0]["interrupted"] is True
    r = pippin(tmp_path, "uninstall", DEMO_LINUX, "--target", f"sim:{sim}", "--yes")
    assert r.returncode == 1
    assert "finish it with `pippin resume` or undo it with `pippin rollback` first" in r.stderr


@pytest.mark.parametrize("what", ["disk0s2", "disk0s1", "disk0s3", "free@12", "free@abc", ""])
def test_uninstall_never_touches_macos_or_made_up_refs(tmp_path, installed, what):
    """macOS's container, iBoot's and recovery's, and free space that is not stranded are
    refused in one line, and the disk stays as it is."""
    before = gpt(installed)
    r = pippin(tmp_path, "uninstall", what, "--target", f"sim:{installed}", "--yes")
    assert r.returncode == 1
    assert r.stderr.startswith(f"pippin: error: {what!r} is neither an install nor a "
                               "leftover on disk0\n")
    assert "Traceback" not in r.stderr
    assert gpt(installed) == before


def _kill_uninstall(sim, n):
    """Child process: uninstall the demo Linux and die (no cleanup) at the n-th step."""
    from installer.lifecycle.uninstall import plan_for, run_uninstall
    from installer.platform.base import SubprocessRunner
    from installer.platform.sim import SimBackend
    from installer.targets.sim import SimTarget

    count = [0]

    def tick(*_):
        count[0] += 1
        if count[0] == n:
            os._exit(42)

    target = SimTarget(sim, SubprocessRunner())
    target.backend = SimBackend(sim, SubprocessRunner(), fault=tick)
    plan = plan_for(target.backend.read_model(), DEMO_LINUX)
    run_uninstall(target, plan)
    os._exit(0)


@pytest.mark.parametrize("n", [1, 2, 3])
def test_uninstall_killed_midway_is_finished_by_resume(tmp_path, base, installed, n):
    """An uninstall is journaled too: killed between its GPT writes, `pippin resume`
    finishes it (rollback cannot bring deleted data back and says so)."""
    import multiprocessing

    sim = clone(installed, tmp_path / "u")
    p = multiprocessing.get_context("fork").Process(target=_kill_uninstall, args=(sim, n))
    p.start()
    p.join(120)
    assert p.exitcode == 42
    doc = status(tmp_path, sim)
    assert doc["interrupted"]["action"] == "uninstall"
    r = pippin(tmp_path, "rollback", "--target", f"sim:{sim}", "--yes")
    assert r.returncode == 1
    assert "an uninstall cannot be rolled back" in r.stderr
    r = pippin(tmp_path, "resume", "--target", f"sim:{sim}", "--yes")
    assert r.returncode == 0, r.stderr
    assert r.stdout.endswith("finished the uninstall\n")
    assert gpt(sim) == gpt(base)
    assert status(tmp_path, sim)["interrupted"] is None


@pytest.mark.parametrize(("answer", "rc"), [("n\n", 1), ("y\n", 0)])
def test_uninstall_asks_on_a_terminal(tmp_path, base, installed, monkeypatch, answer, rc):
    """Without --yes on a terminal: the plan, then a question; no is exit 1, nothing written."""
    from click.testing import CliRunner

    from installer.cli import cli
    from installer.commands import common

    sim = clone(installed, tmp_path / "t")
    before = gpt(sim)
    monkeypatch.setattr(common, "is_terminal", lambda: True)
    r = CliRunner().invoke(cli, ["uninstall", DEMO_LINUX, "--target", f"sim:{sim}"],
                           input=answer, obj={"env": {}, "cache_dir": str(tmp_path / "c")})
    assert r.exit_code == rc, r.output
    assert f"Remove '{DEMO_LINUX}'? [y/N]: " in r.output
    assert gpt(sim) == (before if rc else gpt(base))
