"""scripts/mac-standin: diskutil & co. as shims whose state is the simulated Mac image.

Checked with the tools a user would use on the image (sgdisk, mdir/mtype, the sidecar), and
the answers parsed by the macOS backend's own plist parsers."""

from __future__ import annotations

import json
import plistlib
import subprocess

import pytest

from installer.disk.diskutil import parse_apfs_list, parse_info, parse_list
from installer.platform.simmac import SimMac
from installer.platform.simstate import SimState, sidecar
from installer.sizes import GB, MiB, align_up
from tests.support.installfix import MTOOLS_ENV, mtype, sgdisk
from tests.support.macstandin import ROOT, argv_log

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def sim(tmp_path):
    return SimMac.create(tmp_path / "mac.img", disk_size=64 * GB, macos_used=20 * GB).path


def standin(sim, script, *, admin="alice:secret", stdin=None, external=False):
    argv = [str(ROOT / "scripts" / "mac-standin"), "--sim", str(sim)]
    if admin:
        argv += ["--admin", admin]
    if external:
        argv.append("--external")
    return subprocess.run([*argv, "--", "sh", "-c", script], capture_output=True, input=stdin,
                          timeout=120)


def test_reads_parse_with_the_backend_parsers(sim):
    r = standin(sim, "diskutil list -plist; echo ===; diskutil apfs list -plist; echo ===; "
                     "diskutil info -plist disk0s2", external=True)
    assert r.returncode == 0, r.stderr
    listed, apfs, info = r.stdout.split(b"===\n")
    disks = {d.ref: d for d in parse_list(listed)}
    assert [p[0] for p in disks["disk0"].partitions] == ["disk0s1", "disk0s2", "disk0s3"]
    assert disks["disk1"].partitions == ()  # the external disk: listed, empty
    containers = {c.ref: c for c in parse_apfs_list(apfs)}
    assert containers["disk3"].stores == ("disk0s2",)  # as on a real Mac
    assert {v.name for v in containers["disk3"].volumes} >= {"Macintosh HD", "Preboot"}
    i = parse_info(info)
    assert i.offset == 524308480
    assert i.internal
    assert argv_log(sim)[:2] == [["diskutil", "list", "-plist"],
                                 ["diskutil", "apfs", "list", "-plist"]]


def test_unimplemented_forms_say_so_and_change_nothing(sim):
    before = sgdisk("-p", str(sim))
    for cmd in ("kmutil configure-boot -c x", "hdiutil create -size 1m x.dmg", "nvram -p",
                "diskutil secureErase 0 disk0", "bputil -nc -v X"):
        r = standin(sim, cmd)
        assert r.returncode == 78, (cmd, r.stderr)
        assert r.stderr.decode().endswith("is not implemented by the macOS stand-in "
                                          "(nothing was done)\n"), r.stderr
        assert r.stderr.count(b"\n") == 1
    assert sgdisk("-p", str(sim)) == before


def test_partitions_fat_and_mounted_esp_change_the_image(sim, tmp_path):
    limits = plistlib.loads(standin(sim, "diskutil apfs resizeContainer disk0s2 limits -plist")
                            .stdout)
    new = limits["CurrentSize"] - 20 * GB // MiB * MiB
    script = (f"diskutil apfs resizeContainer disk0s2 {new} && "
              "diskutil addPartition disk0s2 %EFI% %noformat% 524288000 && "
              "newfs_msdos -F 32 -v 'EFI - TEST' -I 0x1234abcd /dev/rdisk0s4 && "
              "diskutil mount disk0s4 && "
              "mp=$(diskutil info -plist disk0s4 | grep -A1 MountPoint | tail -1 | "
              "sed 's/.*<string>//; s/<.*//') && "
              "mkdir -p \"$PIPPIN_MAC_ROOT$mp/m1n1\" && "
              "printf hello > \"$PIPPIN_MAC_ROOT$mp/m1n1/boot.bin\" && "
              "printf x > \"$PIPPIN_MAC_ROOT$mp/gone.txt\" && diskutil unmount disk0s4 && "
              "diskutil mount disk0s4 && rm \"$PIPPIN_MAC_ROOT$mp/gone.txt\" && "
              "diskutil unmount disk0s4 && echo \"$mp\"")
    r = standin(sim, script)
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().strip().splitlines()[-1] == "/Volumes/EFI - TEST"
    table = sgdisk("-p", str(sim))
    assert "EF00" in table
    info = sgdisk("-i", "4", str(sim))
    first = int(next(x for x in info.splitlines() if x.startswith("First sector"))
                .split(":")[1].split()[0])
    assert first * 512 == align_up(524308480 + new, MiB)  # after the shrunk macOS, aligned
    assert mtype(sim, first * 512, "m1n1/boot.bin") == b"hello"
    listing = subprocess.run(["mdir", "-b", "-i", f"{sim}@@{first * 512}", "::/"],
                             capture_output=True, text=True, env=MTOOLS_ENV).stdout
    assert "gone.txt" not in listing.lower()
    label = subprocess.run(["mlabel", "-s", "-i", f"{sim}@@{first * 512}", "::"],
                           capture_output=True, text=True, env=MTOOLS_ENV).stdout
    assert "EFI - TEST" in label
    assert not list((sidecar(sim) / "standin" / "root" / "Volumes").iterdir())


def test_raw_device_writes_land_at_the_partition_offset(sim):
    r = standin(sim, "diskutil addPartition disk0s3 %0FC63DAF-8483-4772-8E79-3D69D8477DE4% "
                     "%noformat% 1048576")
    # after the recovery container there is no room: diskutil's own refusal, one line
    assert r.returncode == 1
    assert b"-69743" in r.stderr
    limits = plistlib.loads(standin(sim, "diskutil apfs resizeContainer disk0s2 limits "
                                         "-plist").stdout)
    new = limits["CurrentSize"] - 1 * GB // MiB * MiB
    r = standin(sim, f"diskutil apfs resizeContainer disk0s2 {new} && diskutil addPartition "
                     "disk0s2 %0FC63DAF-8483-4772-8E79-3D69D8477DE4% %noformat% 8388608 && "
                     "printf 'PIPPIN-RAW' | dd of=\"$PIPPIN_MAC_ROOT/dev/rdisk0s4\" bs=1 "
                     "seek=4096 conv=notrunc 2>/dev/null")
    assert r.returncode == 0, r.stderr
    start = align_up(524308480 + new, MiB)
    with sim.open("rb") as f:
        f.seek(start + 4096)
        assert f.read(10) == b"PIPPIN-RAW"


def test_bless_accepts_only_the_admin_account(sim):
    r = standin(sim, "diskutil apfs list -plist >/dev/null; "
                     "bless --setBoot --device /dev/disk3s1 --user alice --stdinpass",
                stdin=b"wrong\n")
    assert r.returncode == 1
    assert r.stderr == b"Could not authenticate user alice: the password is wrong or the " \
                       b"user is not an administrator\n"
    assert SimState(sim).boot == ""
    r = standin(sim, "bless --setBoot --device /dev/disk3s1 --user bob --stdinpass",
                stdin=b"secret\n")
    assert r.returncode == 1
    r = standin(sim, "bless --setBoot --device /dev/disk3s1 --user alice --stdinpass",
                stdin=b"secret\n")
    assert r.returncode == 0, r.stderr
    assert SimState(sim).boot  # the container of disk3 (macOS) is blessed
    # the password never reaches the argv log
    assert b"secret" not in (sidecar(sim) / "standin-argv.log").read_bytes()
    r = standin(sim, "bless --setBoot --device /dev/disk3s1 --user alice --stdinpass",
                admin=None, stdin=b"secret\n")
    assert r.returncode == 1
    assert b"no administrator" in r.stderr


def test_device_facts_come_from_the_sim(sim):
    r = standin(sim, "sw_vers -productVersion; ioreg -alp IODeviceTree")
    assert r.returncode == 0, r.stderr
    version, plist = r.stdout.split(b"\n", 1)
    from installer.device import parse_ioreg
    facts = parse_ioreg(plist, version.decode())
    want = json.loads((sim.parent / "mac.img.device.json").read_text())
    assert facts.to_json() == want


def test_missing_image_is_one_line(tmp_path):
    r = subprocess.run([str(ROOT / "scripts" / "mac-standin"), "--sim",
                        str(tmp_path / "nope.img"), "--", "true"], capture_output=True,
                       text=True)
    assert r.returncode == 1
    assert r.stderr == (f"mac-standin: no simulated Mac at {tmp_path / 'nope.img'} "
                        f"(create one: scripts/pippin sim create {tmp_path / 'nope.img'})\n")
