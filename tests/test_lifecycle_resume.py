"""`pippin install` killed (SIGKILL) at every step of its disk-changing part, then `pippin
resume` or `pippin rollback`: the bugs found when tried as a new user would, and every
interruption point ending in a correct disk (sgdisk -p, mdir, stub folders)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from installer.demo.site import DEMO_LINUX, DEMO_MARKER, UEFI_ONLY
from installer.lifecycle.interrupted import resume_install, rollback_install
from installer.platform.base import SubprocessRunner
from installer.platform.journal import pending_run
from installer.platform.simstate import facts_path, sidecar
from installer.targets.sim import SimTarget
from tests.support import installfix
from tests.support.installfix import ROOT, deps_for, image_digest, new_sim, sgdisk

demo_cache = installfix.demo_cache
demo_site = installfix.demo_site
session = installfix.session

pytestmark = pytest.mark.timeout(900)
MTOOLS_ENV = dict(os.environ, MTOOLS_SKIP_CHECK="1")


def crash(cache: Path, sim: Path, os_name: str, n: int) -> subprocess.CompletedProcess[str]:
    """Run an install in a child process that SIGKILLs itself at step ``n`` (0: no kill)."""
    return subprocess.run([sys.executable, "-m", "tests.support.crashinstall", str(cache),
                           str(sim), os_name, str(n)], capture_output=True, text=True,
                          cwd=ROOT, timeout=300, check=False)


def clone(base: Path, dest_dir: Path) -> Path:
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / base.name
    subprocess.run(["cp", "--sparse=always", str(base), str(dest)], check=True)
    shutil.copytree(sidecar(base), sidecar(dest))
    shutil.copy(facts_path(base), facts_path(dest))
    return dest


def cli(xdg: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "installer.cli", *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=600, check=False,
                          env=dict(os.environ, XDG_CACHE_HOME=str(xdg)))


def xdg_with_demo(tmp: Path, demo_cache: Path) -> Path:
    """An XDG cache whose pippin/demo is the session's generated demo site."""
    (tmp / "xdg" / "pippin").mkdir(parents=True)
    (tmp / "xdg" / "pippin" / "demo").symlink_to(demo_cache / "demo")
    return tmp / "xdg"


def esp_start(sim: Path) -> int:
    from installer.platform.sim import SimBackend
    disk = SimBackend(sim).read_model().disks[0]
    return next(p.start for p in disk.ordered() if p.kind.value == "EFI")


def esp_files(sim: Path) -> dict[str, str]:
    """Every file on the new ESP with its SHA-256 (installer.log: only that it is there)."""
    at = f"{sim}@@{esp_start(sim)}"
    names = subprocess.run(["mdir", "-/", "-b", "-i", at, "::/"], capture_output=True,
                           text=True, env=MTOOLS_ENV, check=True).stdout.split()
    out = {}
    for name in names:
        if name.endswith("/"):
            continue
        data = subprocess.run(["mtype", "-i", at, name], capture_output=True,
                              env=MTOOLS_ENV, check=False)
        assert data.returncode == 0, name
        out[name] = "" if name.endswith("installer.log") else hashlib.sha256(
            data.stdout).hexdigest()
    return out


def stub_files(sim: Path) -> dict[str, str]:
    """Files in the stub's volume folders (sidecar), with their SHA-256."""
    root = sidecar(sim)
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()
            and p.name not in ("journal.json", "state.json")}


def gpt(sim: Path) -> str:
    """sgdisk -p without its first line (which names the image file)."""
    return sgdisk("-p", str(sim)).split("\n", 1)[1]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return new_sim(tmp_path_factory.mktemp("base") / "mac.img")


@pytest.fixture(scope="module")
def reference(tmp_path_factory, base, demo_cache):
    """An uninterrupted install of each entry (same GUID seed as the crashed ones): its
    disk, and the list of steps a crash can hit."""
    out = {}
    for name in (UEFI_ONLY, DEMO_LINUX):
        sim = clone(base, tmp_path_factory.mktemp("ref"))
        r = crash(demo_cache, sim, name, 0)
        assert r.returncode == 0, r.stderr[-2000:]
        count, *steps = r.stdout.split("\n")
        assert int(count) == len([s for s in steps if s])
        out[name] = (sim, [s for s in steps if s])
    return out


def killed(tmp_path: Path, base: Path, demo_cache: Path, name: str, n: int) -> Path:
    sim = clone(base, tmp_path)
    r = crash(demo_cache, sim, name, n)
    assert r.returncode == -9, r.stderr[-2000:]
    return sim


def disk_stage_step(steps: list[str]) -> int:
    """A step in the middle of the disk stage: while root.img is being written."""
    return steps.index("WriteImage:chunk") + 2


def test_bug_rerun_planned_a_new_install_on_the_half_done_disk(tmp_path, base, demo_cache,
                                                               reference):
    """Killed during the disk stage, the same `pippin install … --yes` planned a second
    install on the half-done disk and failed with 'macOS needs at least 238.0 GB …'. It now
    stops first with one line naming both ways out, and writes nothing."""
    _ref, steps = reference[DEMO_LINUX]
    sim = killed(tmp_path, base, demo_cache, DEMO_LINUX, disk_stage_step(steps))
    before = image_digest(sim)
    xdg = xdg_with_demo(tmp_path, demo_cache)
    for extra in ([], ["--dry-run"]):
        r = cli(xdg, "install", "--target", f"sim:{sim}", "--os", DEMO_LINUX, "--yes", *extra)
        assert r.returncode == 1
        assert r.stderr == (
            f"pippin: error: an install of '{DEMO_LINUX}' (7 of 8 disk operations done) was "
            f"interrupted on sim:{sim}: finish it with `pippin resume --target sim:{sim}` or "
            f"undo it with `pippin rollback --target sim:{sim}`\n")
    catalog = demo_cache / "demo" / "www" / "installer_data.json"
    r = cli(xdg, "plan", "--target", f"sim:{sim}", "--catalog", str(catalog), "--os", DEMO_LINUX)
    assert r.returncode == 1
    assert r.stderr.startswith(f"pippin: error: an install of '{DEMO_LINUX}' (7 of 8 disk "
                               "operations done) was interrupted on ")
    assert image_digest(sim) == before


def test_bug_sim_inspect_contradicted_itself(tmp_path, base, demo_cache, reference):
    """`pippin sim inspect` said 'installed' and, on the next line, 'interrupted'."""
    _ref, steps = reference[DEMO_LINUX]
    sim = killed(tmp_path, base, demo_cache, DEMO_LINUX, disk_stage_step(steps))
    r = cli(tmp_path / "xdg", "sim", "inspect", str(sim))
    assert r.returncode == 0, r.stderr
    assert "  installed: " not in r.stdout
    assert f"  interrupted: '{DEMO_LINUX}' (disk0s4, disk0s5, disk0s6)\n" in r.stdout
    assert (f"  interrupted: install of '{DEMO_LINUX}' (7 of 8 disk operations done); finish "
            "it with `pippin sim resume` or undo it with `pippin sim rollback`\n") in r.stdout
    r = cli(tmp_path / "xdg", "sim", "inspect", str(sim), "--json")
    doc = json.loads(r.stdout)
    assert [i["interrupted"] for i in doc["installs"]] == [True]
    assert doc["interrupted"]["done"] == 7


@pytest.mark.qemu
def test_bug_sim_resume_needed_the_os_package_and_the_result_boots(
        tmp_path, base, demo_cache, reference):
    """`pippin sim resume` failed 'writing root.img needs the OS package'; it (and `pippin
    resume`) now fetch the package and the restore-image members again and finish the file
    steps too. The resumed disk equals an uninterrupted install and boots in QEMU."""
    ref, steps = reference[DEMO_LINUX]
    sim = killed(tmp_path, base, demo_cache, DEMO_LINUX, disk_stage_step(steps))
    xdg = xdg_with_demo(tmp_path, demo_cache)
    r = cli(xdg, "sim", "resume", str(sim))
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"resumed and finished: '{DEMO_LINUX}' installed, ESP ")
    assert gpt(sim) == gpt(ref)
    assert esp_files(sim) == esp_files(ref)
    assert stub_files(sim) == stub_files(ref)
    r = cli(xdg, "status", "--target", f"sim:{sim}")
    assert "interrupted" not in r.stdout
    assert "stage 1: Pippin " in r.stdout
    boot = subprocess.run([str(ROOT / "scripts" / "qemu-boot"), str(sim), "--timeout", "240"],
                          capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
                          env=dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "q")))
    assert DEMO_MARKER in boot.stdout.replace("\r", ""), (boot.stderr + boot.stdout)[-3000:]


def _target(sim: Path) -> SimTarget:
    return SimTarget(sim, SubprocessRunner())


@pytest.mark.parametrize("name", [UEFI_ONLY, DEMO_LINUX])
def test_kill_at_every_step_then_resume_or_roll_back(tmp_path, base, demo_cache, session,
                                                     reference, name):
    """Each step of the disk-changing part (checkpoints, operations, fault points inside
    them, the file steps): resume gives the uninterrupted install's disk, rollback the
    untouched one."""
    ref, steps = reference[name]
    original = gpt(base)
    assert len(steps) >= (8 if name == UEFI_ONLY else 20)
    for n, step in enumerate(steps, 1):
        sim = killed(tmp_path / f"k{n}", base, demo_cache, name, n)
        if step == "disk":  # killed before the journal: nothing was written
            assert pending_run(sidecar(sim) / "journal.json") is None
            assert gpt(sim) == original
            continue
        assert pending_run(sidecar(sim) / "journal.json") is not None, step
        back = clone(sim, tmp_path / f"r{n}")
        deps = deps_for(demo_cache, session, guid_seed="other")
        res = resume_install(f"sim:{sim}", deps)
        assert res.os_name == name
        assert (gpt(sim), esp_files(sim), stub_files(sim)) == (
            gpt(ref), esp_files(ref), stub_files(ref)), step
        assert pending_run(sidecar(sim) / "journal.json") is None
        rollback_install(_target(back))
        assert gpt(back) == original, step
        assert stub_files(back) == stub_files(base), step
        assert pending_run(sidecar(back) / "journal.json") is None
        shutil.rmtree(tmp_path / f"k{n}")
        shutil.rmtree(tmp_path / f"r{n}")


def test_resume_and_rollback_verbs(tmp_path, base, demo_cache, reference):
    """`pippin resume` / `pippin rollback` as the one-line error names them: --dry-run lists
    what they would do and writes nothing; --yes does it."""
    ref, steps = reference[UEFI_ONLY]
    sim = killed(tmp_path / "a", base, demo_cache, UEFI_ONLY, steps.index("files") + 1)
    other = clone(sim, tmp_path / "b")
    xdg = xdg_with_demo(tmp_path, demo_cache)
    before = image_digest(sim)
    r = cli(xdg, "resume", "--target", f"sim:{sim}", "--dry-run")
    assert r.returncode == 0, r.stderr
    assert r.stdout == (
        f"interrupted on sim:{sim}: install of '{UEFI_ONLY}' (disk operations done, stub "
        "volumes and ESP files not finished); resume does:\n"
        "  1. fill the stub volumes (System, Preboot, Recovery) and the stage-1 object\n"
        "  2. write the ESP files (vendorfw/, asahi/, m1n1/boot.bin)\n")
    r = cli(xdg, "rollback", "--target", f"sim:{sim}", "--dry-run")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[1] == "  1. copy package directory esp/ into new:1"
    assert lines[-1].startswith(f"  {len(lines) - 1}. resize APFS container disk0s2: ")
    assert image_digest(sim) == before
    r = cli(xdg, "resume", "--target", f"sim:{sim}", "--yes")
    assert r.returncode == 0, r.stderr
    assert f"\ninstalled '{UEFI_ONLY}' on sim:{sim}: ESP " in r.stdout
    assert (gpt(sim), esp_files(sim), stub_files(sim)) == (
        gpt(ref), esp_files(ref), stub_files(ref))
    r = cli(xdg, "rollback", "--target", f"sim:{other}", "--yes")
    assert r.returncode == 0, r.stderr
    assert r.stdout.endswith("rolled back the install; bytes outside its plan verified "
                             "unchanged\n")
    assert gpt(other) == gpt(base)
    r = cli(xdg, "resume", "--target", f"sim:{other}", "--yes")
    assert r.returncode == 1
    assert r.stderr.startswith(f"pippin: error: nothing to resume on sim:{other}: no "
                               "interrupted run\n")
