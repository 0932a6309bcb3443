"""`pippin install --target disk0` through scripts/mac-standin: the macOS code path (diskutil,
newfs_msdos, mounted volumes, raw devices, bless) on a simulated Mac image, checked on the
image (GPT, FAT files via mtools, stub folders), against the sim path for the same answers,
against the golden argv sequence (reviewed against formats.md §12), and booted in QEMU."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from installer.bootobj import vars as bvars
from installer.demo.site import DEMO_LINUX, DEMO_MARKER, UEFI_ONLY
from installer.platform.sim import volume_group
from installer.platform.simstate import SimState, sidecar
from installer.sizes import GB, MiB, align_up
from installer.stub import STAGE1_PATH
from tests.support import macstandin
from tests.support.installfix import new_sim
from tests.support.macstandin import (
    APFS_GUID,
    EFI_GUID,
    ROOT,
    STAGE1,
    argv_log,
    esp_files,
    gpt,
    pippin_mac,
    pippin_sim,
    stub_trees,
    writes,
)

mac_xdg = macstandin.mac_xdg
pytestmark = pytest.mark.timeout(600)
GOLDEN = Path(__file__).parent / "fixtures" / "mac" / "demo-linux-argv.txt"
LINUX_GUID = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"


def install_args(os_name: str, *extra: str) -> list[str]:
    return ["install", "--os", os_name, "--stage1", str(STAGE1), "--admin-user", "alice",
            "--yes", *extra]


def golden_lines(sim: Path) -> list[str]:
    out = []
    for a in writes(argv_log(sim)):
        if a[0] == "ditto":  # the package's unpacked esp/ lives in a temporary directory
            a = ["ditto", "<package>/" + Path(a[1]).name, a[2]]
        out.append(" ".join(a))
    return out


def stage1_vars(data: bytes) -> dict[str, str]:
    start = len(STAGE1.read_bytes())
    variables, _ = bvars.read_block(data, start)
    return bvars.as_dict(variables)


def normalized_esp(files: dict[str, bytes]) -> dict[str, str]:
    """ESP files by digest; the log (timestamps) and the VGID in stub_info.json differ by
    nature between two installs (diskutil picks the partition GUIDs)."""
    out = {}
    for name, data in files.items():
        if name == "asahi/installer.log":
            continue
        if name == "asahi/stub_info.json":
            doc = json.loads(data)
            doc.pop("vgid")
            data = json.dumps(doc, sort_keys=True).encode()
        out[name] = hashlib.sha256(data).hexdigest()
    return out


def normalized_stub(sim: Path, partuuid: str, esp_uuid: str) -> dict[str, dict[str, str]]:
    vgid = volume_group(partuuid)
    trees = stub_trees(sim, partuuid)
    state = SimState(sim)
    system = next(v.name for v in state.containers[partuuid].volumes if "System" in v.roles)
    boot = (state.volume_dir(partuuid, system) / STAGE1_PATH).read_bytes()
    trees[system][STAGE1_PATH] = hashlib.sha256(
        boot.replace(esp_uuid.encode(), b"<esp>")).hexdigest()
    return {vol: {p.replace(vgid, "<vgid>"): h for p, h in files.items()}
            for vol, files in trees.items()}


@pytest.mark.qemu
def test_demo_linux_on_the_mac_path_boots_and_matches_the_sim_path(tmp_path, mac_xdg):
    sim = new_sim(tmp_path / "mac.img")
    r = pippin_mac(sim, mac_xdg, *install_args(DEMO_LINUX))
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"installed {DEMO_LINUX!r} on disk0" in r.stdout

    # the argv sequence, reviewed against formats.md §12
    got = golden_lines(sim)
    want = [x for x in GOLDEN.read_text().splitlines() if not x.startswith("#")]
    assert got == want, "\n".join(got)

    # GPT: stub APFS container, ESP, Linux partition after the shrunk macOS container
    entries = gpt(sim)
    assert [(e[1], e[4]) for e in entries[3:]] == [
        (APFS_GUID, DEMO_LINUX), (EFI_GUID, ""), (LINUX_GUID, "")]  # %noformat%: no name
    stub_uuid, esp_uuid = entries[3][5], entries[4][5].lower()

    # the Linux partition holds the package's root.img, byte for byte (raw device writes)
    pkg = mac_xdg / "pippin" / "demo" / "www" / "os" / "pippin-demo-linux.zip"
    with zipfile.ZipFile(pkg) as zf:
        root_img = zf.read("root.img")
    with sim.open("rb") as f:
        f.seek(entries[5][2])
        assert f.read(len(root_img)) == root_img

    # ESP files (mtools), stub folders, the blessed container
    files = esp_files(sim, tmp_path / "esp-mac")
    for name in ("m1n1/boot.bin", "vendorfw/firmware.cpio", "vendorfw/manifest.txt",
                 "asahi/all_firmware.tar.gz", "asahi/stub_info.json", "asahi/installer.log"):
        assert name in files, sorted(files)
    assert b"diskutil" in files["asahi/installer.log"]
    # copy_installer_data on the entry's ESP: the catalog it was installed from, as served
    www = mac_xdg / "pippin" / "demo" / "www"
    assert files["asahi/installer_data.json"] == (www / "installer_data.json").read_bytes()
    state = SimState(sim)
    assert state.boot == stub_uuid
    system = state.volume_dir(stub_uuid, DEMO_LINUX)
    stage1 = (system / STAGE1_PATH).read_bytes()
    assert stage1_vars(stage1) == {"chosen.asahi,efi-system-partition": esp_uuid,
                                   "chainload": f"{esp_uuid};m1n1/boot.bin"}
    assert (system / ".IAPhysicalMedia").is_file()
    assert not list((sidecar(sim) / "standin" / "root" / "Volumes").iterdir())  # unmounted

    # it boots in QEMU exactly as after a sim install
    q = subprocess.run([str(ROOT / "scripts" / "qemu-boot"), str(sim), "--timeout", "240"],
                       capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
                       env=dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "xdg")))
    console = q.stdout.replace("\r", "")
    assert DEMO_MARKER in console, (q.stderr + console)[-3000:]
    assert f"PIPPIN-DEMO: chosen/asahi,efi-system-partition={esp_uuid}\n" in console

    # the sim path, same answers: the same disk state
    other = new_sim(tmp_path / "sim.img")
    r2 = pippin_sim(mac_xdg, *install_args(DEMO_LINUX, "--target", f"sim:{other}"))
    assert r2.returncode == 0, r2.stderr[-3000:]
    theirs = gpt(other)
    assert [e[1:4] for e in theirs] == [e[1:4] for e in entries]  # type, start, size
    assert [e[4] for e in theirs[:4]] == [e[4] for e in entries[:4]]
    assert normalized_esp(esp_files(other, tmp_path / "esp-sim")) == normalized_esp(files)
    assert normalized_stub(other, theirs[3][5], theirs[4][5].lower()) == \
        normalized_stub(sim, stub_uuid, esp_uuid)
    mine, their_state = SimState(sim), SimState(other)
    assert [(v.name, v.roles, v.used) for v in mine.containers[stub_uuid].volumes] == \
        [(v.name, v.roles, v.used) for v in their_state.containers[theirs[3][5]].volumes]
    assert their_state.boot == theirs[3][5]


def test_uefi_only_by_resize_then_into_free_space(tmp_path, mac_xdg):
    sim = new_sim(tmp_path / "mac.img")
    r = pippin_mac(sim, mac_xdg, *install_args(UEFI_ONLY, "--space", "resize",
                                               "--resize-to", "40GB", "--name", "First"))
    assert r.returncode == 0, r.stderr[-3000:]
    r = pippin_mac(sim, mac_xdg, *install_args(UEFI_ONLY, "--space", "free",
                                               "--name", "Second"))
    assert r.returncode == 0, r.stderr[-3000:]
    entries = gpt(sim)
    assert [(e[1], e[4]) for e in entries[3:]] == [
        (APFS_GUID, "First"), (EFI_GUID, ""), (APFS_GUID, "Second"), (EFI_GUID, "")]
    assert entries[1][3] == align_up(40 * GB, MiB)  # macOS shrunk to what was asked
    assert entries[5][2] == entries[4][2] + entries[4][3]  # the free space right after
    cmds = [" ".join(a[:3]) for a in writes(argv_log(sim))]
    assert cmds.count("diskutil apfs resizeContainer") == 1  # the second install did not
    files = esp_files(sim, tmp_path / "esp")
    assert "m1n1/boot.bin" in files
    assert json.loads(files["asahi/stub_info.json"])["vgid"] == volume_group(entries[5][5])
    assert SimState(sim).boot == entries[5][5]  # the newest install is blessed


def test_killed_during_the_disk_stage_then_resumed(tmp_path, mac_xdg):
    """kill -9 of the whole stand-in run while the ESP is mounted (its files not yet synced
    into the FAT): the same command names resume/rollback in one line, and `pippin resume`
    through the stand-in finishes the install (the stale mount is reused, then synced)."""
    sim = new_sim(tmp_path / "mac.img")
    argv = [str(ROOT / "scripts" / "mac-standin"), "--sim", str(sim), "--admin", "alice:pw",
            "--", sys.executable, "-m", "installer.cli", *install_args(DEMO_LINUX)]
    env = macstandin._env(mac_xdg, "pw", None)
    p = subprocess.Popen(argv, cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while not any(a[:2] == ["diskutil", "mount"] for a in argv_log(sim)):
            assert p.poll() is None, "the install ended before the ESP was mounted"
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
    r = pippin_mac(sim, mac_xdg, *install_args(DEMO_LINUX))
    assert r.returncode == 1
    assert "was interrupted on disk0: finish it with `pippin resume --target disk0` or undo " \
           "it with `pippin rollback --target disk0`" in r.stderr
    r = pippin_mac(sim, mac_xdg, "resume", "--target", "disk0", "--yes")
    assert r.returncode == 0, r.stderr[-3000:]
    entries = gpt(sim)
    assert [(e[1], e[4]) for e in entries[3:]] == [
        (APFS_GUID, DEMO_LINUX), (EFI_GUID, ""), (LINUX_GUID, "")]
    files = esp_files(sim, tmp_path / "esp")
    assert {"m1n1/boot.bin", "vendorfw/firmware.cpio", "asahi/stub_info.json"} <= set(files)
    assert not json.loads((sidecar(sim) / "standin" / "mounts.json").read_text())
    state = SimState(sim)
    assert state.boot == entries[3][5]
    boot = (state.volume_dir(entries[3][5], DEMO_LINUX) / STAGE1_PATH).read_bytes()
    assert stage1_vars(boot)["chainload"] == f"{entries[4][5].lower()};m1n1/boot.bin"
