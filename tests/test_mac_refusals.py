"""What `pippin install` refuses on a Mac (through scripts/mac-standin), each as one line on
stderr (plus a hint) and a non-zero exit, with the disk unchanged: Pippin's own stage 1
without --stage1, bad stage-1 files, an external disk, no admin password, and a wrong admin
password (bless fails after the disk was written: the install is rolled back)."""

from __future__ import annotations

import json

import pytest

from installer.demo.site import DEMO_LINUX, UEFI_ONLY
from installer.platform.simstate import SimState, sidecar
from tests.support import macstandin
from tests.support.bootobjgen import fake_m1n1, fake_stage
from tests.support.installfix import image_digest, new_sim
from tests.support.macstandin import STAGE1, argv_log, gpt, pippin_mac, writes

mac_xdg = macstandin.mac_xdg
pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    return new_sim(tmp_path_factory.mktemp("refusals") / "mac.img")


def error_lines(stderr: str) -> list[str]:
    # progress lines ("pippin: disk…") and the unsigned-catalog notice
    # are not the error
    lines = [x for x in stderr.splitlines() if not x.startswith(("pippin: ",
             "WARNING: catalog ")) or x.startswith(("pippin: error:", "pippin: hint:"))]
    assert len(lines) <= 2, stderr
    return lines


def refused(sim, mac_xdg, *args, **kw):
    before = image_digest(sim)
    n = len(argv_log(sim))
    r = pippin_mac(sim, mac_xdg, "install", "--os", UEFI_ONLY, "--admin-user", "alice",
                   "--yes", *args, **kw)
    assert r.returncode == 1, r.stderr
    assert image_digest(sim) == before
    assert writes(argv_log(sim)[n:]) == []  # nothing but reads reached the "Mac"
    return error_lines(r.stderr)


def test_pippin_stage1_on_a_mac_without_stage1(sim, mac_xdg):
    lines = refused(sim, mac_xdg)
    assert lines == [
        f"pippin: error: {UEFI_ONLY!r} needs an m1n1-format stage 1 (m1n1.bin) on a real Mac; "
        "Pippin's own stage 1 has no Apple platform yet",
        "pippin: hint: pass --stage1 PATH (an m1n1 stage-1 image, e.g. m1n1.bin) or stage1 = "
        "\"PATH\" in the answers file"]


@pytest.mark.parametrize(("name", "data", "why"), [
    ("text.bin", b"#!/bin/sh\necho not a loader\n" * 200, "not an arm64 Image"),
    ("tiny.bin", b"\0" * 100, "100 bytes is not a loader image"),
    ("stage2.bin", fake_stage("0.1.0", "stage2"), "Pippin's stage 2, not a stage 1"),
    ("installed.bin", fake_m1n1() + b"chainload=x;m1n1/boot.bin\n\0\0\0\0",
     "does not end with STACKBOT"),
    ("nomarker.bin", fake_m1n1().replace(b"##m1n1_ver##", b"##xxxx_ver##"),
     "no ##pippin_ver## or ##m1n1_ver## version marker"),
])
def test_bad_stage1_files(sim, mac_xdg, tmp_path, name, data, why):
    path = tmp_path / name
    path.write_bytes(data)
    lines = refused(sim, mac_xdg, "--stage1", str(path))
    assert lines[0].startswith(f"pippin: error: stage 1 {path}: "), lines
    assert why in lines[0]


def test_missing_stage1_file(sim, mac_xdg, tmp_path):
    lines = refused(sim, mac_xdg, "--stage1", str(tmp_path / "nope.bin"))
    assert lines[0] == f"pippin: error: cannot read stage 1 {tmp_path / 'nope.bin'}: " \
                       "No such file or directory"


def test_external_disk(sim, mac_xdg):
    lines = refused(sim, mac_xdg, "--stage1", str(STAGE1), "--target", "disk1", external=True)
    assert lines[0] == "pippin: error: disk1 is external: Pippin installs only on the " \
                       "internal system disk (disk0)"


def test_no_admin_password(sim, mac_xdg):
    lines = refused(sim, mac_xdg, "--stage1", str(STAGE1), password=None)
    assert lines[0] == "pippin: error: setting the boot volume (bless) needs an " \
                       "administrator's name and password"


def test_wrong_admin_password_fails_in_bless_and_rolls_back(sim, mac_xdg):
    table = gpt(sim)
    state = (sidecar(sim) / "state.json").read_bytes()
    n = len(argv_log(sim))
    r = pippin_mac(sim, mac_xdg, "install", "--os", UEFI_ONLY, "--admin-user", "alice",
                   "--stage1", str(STAGE1), "--yes", password="not-the-password")
    assert r.returncode == 1
    lines = error_lines(r.stderr)
    assert lines[0].startswith("pippin: error: bless failed (exit 1): Could not authenticate "
                               "user alice"), lines
    assert lines[1].endswith("the disk was rolled back to its state before the install"), lines
    done = [a[0] for a in writes(argv_log(sim)[n:])]
    assert "bless" in done
    assert done[-1] == "diskutil"  # the rollback ran after bless refused
    # rolled back: the GPT, the containers and volumes as before (the freed space keeps
    # the stale bytes of the removed partitions, as on a real disk)
    assert gpt(sim) == table
    assert (sidecar(sim) / "state.json").read_bytes() == state
    assert SimState(sim).boot == ""


def test_image_whose_sha256_differs_from_the_catalog_is_caught_while_streaming(
        tmp_path, mac_xdg):
    """The Mac path streams root.img from the zip to /dev/rdiskNsM (no temporary copy) and
    checks its SHA-256 as it goes: a catalog that disagrees fails the install at the end of
    the member, and the install is rolled back."""
    www = mac_xdg / "pippin" / "demo" / "www"
    doc = json.loads((www / "installer_data.json").read_bytes())
    entry = next(e for e in doc["os_list"] if e["name"] == DEMO_LINUX)
    entry["package"] = str(www / "os" / entry["package"])
    root = next(p for p in entry["partitions"] if p.get("image") == "root.img")
    root["sha256"] = "0" * 64
    catalog = tmp_path / "installer_data.json"
    catalog.write_text(json.dumps({"os_list": [entry]}))
    sim = new_sim(tmp_path / "mac.img")
    table = gpt(sim)
    r = pippin_mac(sim, mac_xdg, "install", "--catalog", str(catalog), "--os", DEMO_LINUX,
                   "--admin-user", "alice", "--stage1", str(STAGE1), "--yes",
                   env={"IPSW_BASE": str(www)})
    assert r.returncode == 1
    lines = error_lines(r.stderr)
    assert lines[0].startswith("pippin: error: package image root.img: SHA-256 "), lines
    assert "does not match the catalog's 00000000" in lines[0]
    assert any(a[:2] == ["diskutil", "addPartition"] and "%noformat%" in a
               and a[2] == "disk0s5" for a in argv_log(sim))  # it got as far as the image
    assert gpt(sim) == table  # rolled back
