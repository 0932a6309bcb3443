"""The lifecycle verbs on the macOS code path, through scripts/mac-standin (diskutil & co.
acting on a simulated Mac image): an install killed (SIGKILL) at every step then `pippin
resume` or `pippin rollback`; `status`, `upgrade-stage1` and `uninstall` on a finished one.
Checked on the image: GPT entries, ESP files (mtools), stub folders."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from installer.bootobj import vars as bvars
from installer.demo.site import UEFI_ONLY
from installer.platform.simstate import SimState, facts_path, sidecar
from tests.support import macstandin
from tests.support.bootobjgen import fake_m1n1
from tests.support.installfix import new_sim
from tests.support.macstandin import (
    ROOT,
    STAGE1,
    argv_log,
    esp_files,
    gpt,
    pippin_mac,
    writes,
)
from tests.test_lifecycle_resume import clone

mac_xdg = macstandin.mac_xdg
pytestmark = pytest.mark.timeout(1800)


def crash_mac(sim, xdg, n):
    """The Mac-path install in a child of the stand-in that SIGKILLs itself at step n."""
    argv = [str(ROOT / "scripts" / "mac-standin"), "--sim", str(sim), "--admin", "alice:pw",
            "--", sys.executable, "-m", "tests.support.crashinstall", str(xdg / "pippin"),
            "disk0", UEFI_ONLY, str(n), str(STAGE1)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=600, cwd=ROOT,
                          env=macstandin._env(xdg, "pw", None), stdin=subprocess.DEVNULL)


def clone_mac(sim, dest):
    """A copy of a simulated Mac the stand-in has used, without its raw-device files,
    shims and mounts (the next run makes them for the copy; copied, they still described
    the original, and each is a partition-sized file: copying them filled the disk). Its
    root comes along (the journal is in var/db/pippin)."""
    dest.mkdir(parents=True, exist_ok=True)
    new = dest / sim.name
    subprocess.run(["cp", "--sparse=always", str(sim), str(new)], check=True)
    shutil.copy(facts_path(sim), facts_path(new))
    skip = {"dev", "bin", "mounts.json", "config.json", "lock"}

    def ignore(folder, names):
        inside = Path(folder)
        if inside.name in ("standin", "root") and "standin" in inside.parts:
            return [n for n in names if n in skip]
        return []

    shutil.copytree(sidecar(sim), sidecar(new), ignore=ignore)
    return new


def layout(sim):
    """GPT entries without the partition GUIDs (diskutil picks those)."""
    return [e[:5] for e in gpt(sim)]


def digests(files):
    return {k: hashlib.sha256(v).hexdigest() for k, v in files.items()
            if k != "asahi/installer.log"}


@pytest.fixture(scope="module")
def factory(tmp_path_factory):
    return new_sim(tmp_path_factory.mktemp("factory") / "mac.img")


@pytest.fixture(scope="module")
def reference(tmp_path_factory, factory, mac_xdg):
    """An uninterrupted Mac-path install (same GUID seed as the crashed ones), its steps."""
    d = tmp_path_factory.mktemp("ref")
    sim = clone(factory, d)
    r = crash_mac(sim, mac_xdg, 0)
    assert r.returncode == 0, r.stderr[-3000:]
    count, *steps = [s for s in r.stdout.splitlines() if s]
    assert int(count) == len(steps)
    return sim, steps, digests(esp_files(sim, d / "esp"))


def test_mac_kill_at_every_step_then_resume_or_roll_back(tmp_path, factory, mac_xdg,
                                                         reference):
    ref, steps, ref_esp = reference
    assert steps[0] == "disk"
    assert len(steps) >= 9
    for n, step in enumerate(steps[1:], 2):
        sim = clone(factory, tmp_path / f"k{n}")
        r = crash_mac(sim, mac_xdg, n)
        assert r.returncode == 247, r.stderr[-2000:]  # the stand-in passes on 128+SIGKILL
        back = clone_mac(sim, tmp_path / f"r{n}")
        r = pippin_mac(sim, mac_xdg, "resume", "--target", "disk0", "--yes")
        assert r.returncode == 0, (step, r.stderr[-2000:])
        assert layout(sim) == layout(ref), step
        assert digests(esp_files(sim, tmp_path / f"e{n}")) == ref_esp, step
        r = pippin_mac(back, mac_xdg, "rollback", "--target", "disk0", "--yes")
        assert r.returncode == 0, (step, r.stderr[-2000:])
        assert layout(back) == layout(factory), step
        assert not SimState(back).containers.keys() - SimState(factory).containers.keys()
        for d in (f"k{n}", f"r{n}", f"e{n}"):  # each holds a 64 GB sparse image and more
            shutil.rmtree(tmp_path / d, ignore_errors=True)


def test_mac_status_upgrade_stage1_and_uninstall(tmp_path, factory, mac_xdg, reference):
    ref, _steps, _esp = reference
    sim = clone_mac(ref, tmp_path / "s")
    r = pippin_mac(sim, mac_xdg, "status", "--json", "--target", "disk0")
    assert r.returncode == 0, r.stderr
    assert "still mounted" not in r.stderr  # status mounts the stub, then unmounts it
    (inst,) = json.loads(r.stdout)["installs"]
    assert inst["name"] == UEFI_ONLY
    assert (inst["stage1"]["loader"], inst["stage1"]["version"]) == ("pippin", "0.1.0")
    esp = inst["esp"]["uuid"].lower()
    assert inst["stage1"]["variables"]["chainload"] == f"{esp};m1n1/boot.bin"

    m1n1 = tmp_path / "m1n1.bin"
    m1n1.write_bytes(fake_m1n1("v1.4.11"))
    r = pippin_mac(sim, mac_xdg, "upgrade-stage1", UEFI_ONLY, "--stage1", str(m1n1),
                   "--target", "disk0", "--yes")
    assert r.returncode == 0, r.stderr
    assert "still mounted" not in r.stderr
    assert "  bputil -nc -v " in r.stdout
    r = pippin_mac(sim, mac_xdg, "status", "--json", "--target", "disk0")
    (inst,) = json.loads(r.stdout)["installs"]
    assert (inst["stage1"]["loader"], inst["stage1"]["version"]) == ("m1n1", "v1.4.11")
    state = SimState(sim)
    puuid = next(p for p, c in state.containers.items() if c.volumes and any(
        v.name == UEFI_ONLY for v in c.volumes))
    boot = state.volume_dir(puuid, UEFI_ONLY) / inst["stage1"]["path"].split(
        f"/{UEFI_ONLY}/", 1)[1]
    variables = [bvars.Variable(k, v) for k, v in inst["stage1"]["variables"].items()]
    assert boot.read_bytes() == fake_m1n1("v1.4.11") + bvars.encode(variables)

    before = len(argv_log(sim))
    r = pippin_mac(sim, mac_xdg, "uninstall", UEFI_ONLY, "--target", "disk0", "--yes")
    assert r.returncode == 0, r.stderr
    assert layout(sim) == layout(factory)  # macOS has all of its space again
    done = [" ".join(a) for a in writes(argv_log(sim)[before:])]
    # the macOS backend's uninstall (formats.md §12: resize with an explicit byte size)
    assert done == [
        "diskutil eraseVolume free free disk0s5",
        "diskutil apfs deleteContainer disk0s4",
        "diskutil eraseVolume free free disk0s4",
        "diskutil apfs resizeContainer disk0s2 58106961920",
    ], done


def test_mac_refresh_firmware(tmp_path, mac_xdg, reference):
    """refresh-firmware on the mounted ESP (diskutil mount, renames, unmount)."""
    ref, _steps, _esp = reference
    sim = clone_mac(ref, tmp_path / "f")
    esp = [e for e in gpt(sim) if e[1] == macstandin.EFI_GUID][-1]
    at = f"{sim}@@{esp[2]}"
    env = macstandin.MTOOLS_ENV
    manifest = subprocess.run(["mtype", "-i", at, "::/vendorfw/manifest.txt"], env=env,
                              capture_output=True, check=True).stdout
    short = tmp_path / "manifest.txt"
    short.write_bytes(b"".join(manifest.splitlines(keepends=True)[:2]))
    subprocess.run(["mcopy", "-o", "-i", at, str(short), "::/vendorfw/manifest.txt"],
                   env=env, check=True, capture_output=True)
    r = pippin_mac(sim, mac_xdg, "refresh-firmware", UEFI_ONLY, "--target", "disk0", "--yes")
    assert r.returncode == 0, r.stderr[-2000:]
    n = len(manifest.splitlines())
    assert f"{n - 2} added, 0 removed, 0 changed, 2 unchanged\n" in r.stdout
    assert "still mounted" not in r.stderr
    got = subprocess.run(["mtype", "-i", at, "::/vendorfw/manifest.txt"], env=env,
                         capture_output=True, check=True).stdout
    assert got == manifest
    names = subprocess.run(["mdir", "-b", "-i", at, "::/"], env=env, capture_output=True,
                           check=True, text=True).stdout.split()
    assert "::/vendorfw/" in names
    assert not {"::/vendorfw.new/", "::/vendorfw.old/"} & set(names)
