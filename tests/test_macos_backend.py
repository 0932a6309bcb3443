"""The macOS backend against the fake Mac (PATH shims that log argv and answer from the
recorded fixtures): the model it reads, and the exact command sequence of each plan."""

from __future__ import annotations

from pathlib import Path

import pytest

from installer.catalog import STUB_SIZE, load_catalog
from installer.disk.diskutil import (
    build_model,
    group_of,
    parse_apfs_list,
    parse_info,
    parse_limits,
    parse_list,
    parse_volume_groups,
)
from installer.disk.model import PartKind, find_stub_installs
from installer.disk.plan import Choices, Space, plan_install, plan_uninstall
from installer.errors import BackendError, CommandError, PlanError
from installer.platform.base import DirPayloads, SubprocessRunner
from installer.platform.journal import rollback, run_plan
from installer.platform.macos import MacBackend
from installer.sizes import GB, MiB, align_up
from tests.support import fakemac

FIXTURES = Path(__file__).parent / "fixtures" / "diskutil"
ROOT = Path(__file__).resolve().parent.parent
READS = (("diskutil", "list"), ("diskutil", "apfs", "list"), ("diskutil", "info"),
         ("diskutil", "apfs", "listVolumeGroups"), ("test", "-d"))


def fixture_model(machine):
    d = FIXTURES / machine
    listed = parse_list((d / "list.plist").read_bytes())
    infos = {f.stem[5:]: parse_info(f.read_bytes()) for f in d.glob("info-*.plist")}
    limits = {"disk0s2": parse_limits((d / "limits-disk0s2.plist").read_bytes())}
    containers = parse_apfs_list((d / "apfs-list.plist").read_bytes())
    system = next(v for c in containers if c.ref == "disk3" for v in c.volumes
                  if "System" in v.roles)
    groups = parse_volume_groups((d / "volume-groups-disk3.plist").read_bytes())
    return build_model(listed, containers, infos, limits, {"disk3": False},
                       {"disk3": group_of(groups, system.uuid)})


@pytest.fixture(scope="module")
def catalog(real_catalog):
    return load_catalog(real_catalog, "https://repo")


class Fake:
    def __init__(self, tmp_path, machine, *, mac_size=None):
        state = fakemac.state_from_fixture(FIXTURES / machine)
        if mac_size is not None:  # leave free space after macOS
            for c in state["containers"]:
                if c["store"] == "disk0s2":
                    c["free"] -= c["ceiling"] - mac_size
                    c["ceiling"] = mac_size
            for p in state["disks"][0]["parts"]:
                if p["id"] == "disk0s2":
                    p["size"] = mac_size
            state["limits"]["disk0s2"]["CurrentSize"] = mac_size
        self.state_path = tmp_path / "state.json"
        self.log = tmp_path / "argv.log"
        self.env = fakemac.install(tmp_path / "bin", state, self.state_path, self.log, ROOT)
        self.dev = tmp_path / "dev"
        self.dev.mkdir()
        self.backend = MacBackend(SubprocessRunner(self.env), dev_root=self.dev)

    def argv(self, *, writes_only=True):
        out = fakemac.read_log(self.log)
        if writes_only:
            out = [a for a in out if not any(tuple(a[:len(r)]) == r for r in READS)
                   and "limits" not in a]
        return out

    def clear(self):
        self.log.unlink(missing_ok=True)


@pytest.mark.parametrize("machine", ["m1-256gb", "j314s-1tb"])
def test_recorded_fixtures_parse(machine):
    m = fixture_model(machine)
    disk = m.system_disk()
    assert disk.ref == "disk0"
    kinds = [p.kind for p in disk.ordered()]
    assert kinds == [PartKind.ISC, PartKind.APFS, PartKind.RECOVERY]
    isc, mac, rec = disk.ordered()
    assert isc.start == 24576
    assert isc.size == 524_288_000
    assert mac.start == 524_312_576
    assert rec.end == disk.usable_end  # the factory layout fills the disk
    assert disk.gaps() == ()
    assert mac.container.is_macos
    assert mac.container.ref == "disk3"
    assert {v.name for v in isc.container.volumes} >= {"iSCPreboot", "xART"}
    assert mac.limits.min_preferred > mac.container.used
    assert mac.container.volume_group  # the System volume's VGID, for bputil and kmutil
    assert isc.container.volume_group == ""


def test_volume_groups_fixture():
    groups = parse_volume_groups((FIXTURES / "m1-256gb" / "volume-groups-disk3.plist")
                                 .read_bytes())
    ((gid, vols),) = groups.items()
    assert gid == "0DAB1407-0283-408E-88EE-CD41CE9E7BCA"
    assert len(vols) == 2


@pytest.mark.parametrize("data", [b"", b"<plist><array/></plist>", b"\x00garbage",
                                  b"<plist><dict><key>AllDisksAndPartitions</key><string>x"
                                  b"</string></dict></plist>"])
def test_hostile_plists(data):
    with pytest.raises(BackendError, match="diskutil list -plist"):
        parse_list(data)


def test_missing_key_is_named():
    with pytest.raises(BackendError, match="key CapacityCeiling is missing"):
        parse_apfs_list(b"<plist><dict><key>Containers</key><array><dict><key>"
                        b"ContainerReference</key><string>disk3</string></dict></array>"
                        b"</dict></plist>")


@pytest.mark.parametrize("machine", ["m1-256gb", "j314s-1tb"])
def test_fake_reads_like_the_recordings(tmp_path, machine):
    fake = Fake(tmp_path, machine)
    got = fake.backend.read_model()
    want = fixture_model(machine)
    assert got.system_disk().ordered() == want.system_disk().ordered()
    assert [d.ref for d in got.disks] == [d.ref for d in want.disks]


def test_refused_resize_on_full_256gb_mac(tmp_path, catalog):
    fake = Fake(tmp_path, "m1-256gb")
    with pytest.raises(PlanError, match=r"macOS needs 38\.0 GB free after resize; the "
                       r"container has 27\.9 GB free"):
        plan_install(fake.backend.read_model(), catalog.find("Fedora Asahi Remix 44 Server"),
                     Choices(space=Space.RESIZE))


def _esp(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "esp" / "m1n1").mkdir(parents=True, exist_ok=True)
    (pkg / "esp" / "m1n1" / "boot.bin").write_bytes(b"stage2")
    return DirPayloads(pkg)


def test_free_space_uefi_install_argv(tmp_path, catalog):
    fake = Fake(tmp_path, "j314s-1tb", mac_size=700 * GB)
    uefi = catalog.find("UEFI environment only (m1n1 + U-Boot + ESP)")
    plan = plan_install(fake.backend.read_model(), uefi, Choices(space=Space.FREE))
    fake.clear()
    payloads = _esp(tmp_path)
    run_plan(fake.backend, plan, payloads, tmp_path / "journal.json")
    esp_src = str(payloads.tree("esp"))
    assert fake.argv() == [
        ["diskutil", "addPartition", "disk0s2", "apfs", "UEFI boot", str(STUB_SIZE)],
        ["diskutil", "apfs", "deleteVolume", "disk5s1"],
        ["diskutil", "apfs", "addVolume", "disk5", "apfs", "UEFI boot - Data", "-role", "D"],
        ["diskutil", "apfs", "addVolume", "disk5", "apfs", "UEFI boot", "-role", "S",
         "-groupWith", "disk5s1"],
        ["diskutil", "apfs", "addVolume", "disk5", "apfs", "Preboot", "-role", "B"],
        ["diskutil", "apfs", "addVolume", "disk5", "apfs", "Recovery", "-role", "R"],
        ["diskutil", "addPartition", "disk0s4", "%EFI%", "%noformat%",
         str(align_up(500_000_000, MiB))],
        ["newfs_msdos", "-F", "32", "-v", "EFI - UEFIB", "/dev/rdisk0s5"],
        ["diskutil", "mount", "disk0s5"],
        ["ditto", esp_src, "/Volumes/disk0s5"],
        ["diskutil", "unmount", "disk0s5"],
    ]
    after = fake.backend.read_model().system_disk()
    (inst,) = find_stub_installs(after)
    assert inst.stub.ref == "disk0s4"
    assert inst.esp.ref == "disk0s5"
    assert inst.name == "UEFI boot"


def test_resize_install_argv(tmp_path, catalog):
    fake = Fake(tmp_path, "j314s-1tb")
    server = catalog.find("Fedora Asahi Remix 44 Server")
    plan = plan_install(fake.backend.read_model(), server,
                        Choices(space=Space.RESIZE, resize_to="700GB", size="min"))
    pkg = tmp_path / "pkg"
    (pkg / "esp").mkdir(parents=True)
    (pkg / "boot.img").write_bytes(b"B" * 8192)
    (pkg / "root.img").write_bytes(b"R" * 8192)
    for n in range(4, 9):
        (fake.dev / f"rdisk0s{n}").write_bytes(b"")
    fake.clear()
    run_plan(fake.backend, plan, DirPayloads(pkg), tmp_path / "journal.json")
    argv = fake.argv()
    # a container resize target rounds up to 1 MiB
    assert argv[0] == ["diskutil", "apfs", "resizeContainer", "disk0s2",
                       str(align_up(700 * GB, MiB))]
    assert argv[1] == ["diskutil", "addPartition", "disk0s2", "apfs", "Fedora Linux Server",
                       str(STUB_SIZE)]
    creates = [a for a in argv if a[1] == "addPartition"]
    assert [a[2:4] for a in creates] == [
        ["disk0s2", "apfs"], ["disk0s4", "%EFI%"],
        ["disk0s5", "%0FC63DAF-8483-4772-8E79-3D69D8477DE4%"],
        ["disk0s6", "%0FC63DAF-8483-4772-8E79-3D69D8477DE4%"]]
    assert ["newfs_msdos", "-F", "32", "-v", "EFI - FEDOR", "-I", "0x2d29ccb0",
            "/dev/rdisk0s5"] in argv
    assert (fake.dev / "rdisk0s6").read_bytes() == b"B" * 8192
    assert (fake.dev / "rdisk0s7").read_bytes() == b"R" * 8192


def test_uninstall_argv(tmp_path, catalog):
    fake = Fake(tmp_path, "j314s-1tb", mac_size=700 * GB)
    uefi = catalog.find("UEFI environment only (m1n1 + U-Boot + ESP)")
    plan = plan_install(fake.backend.read_model(), uefi, Choices())
    run_plan(fake.backend, plan, _esp(tmp_path), tmp_path / "j1.json")
    before = fake.backend.read_model().system_disk()
    mac = before.part("disk0s2")
    plan = plan_uninstall(fake.backend.read_model(), "disk0s4")
    fake.clear()
    run_plan(MacBackend(SubprocessRunner(fake.env)), plan, None, tmp_path / "j2.json")
    rec = before.part("disk0s3")
    assert fake.argv() == [
        ["diskutil", "eraseVolume", "free", "free", "disk0s5"],
        ["diskutil", "apfs", "deleteContainer", "disk0s4"],
        ["diskutil", "eraseVolume", "free", "free", "disk0s4"],
        ["diskutil", "apfs", "resizeContainer", "disk0s2", str(rec.start - mac.start)],
    ]
    after = fake.backend.read_model().system_disk()
    assert [p.ref for p in after.ordered()] == ["disk0s1", "disk0s2", "disk0s3"]
    assert after.part("disk0s2").end == rec.start


def test_external_disk_refused(tmp_path, catalog):
    fake = Fake(tmp_path, "j314s-1tb", mac_size=700 * GB)
    uefi = catalog.find("UEFI environment only (m1n1 + U-Boot + ESP)")
    fake.clear()
    with pytest.raises(PlanError, match="disk4 is external"):
        plan_install(fake.backend.read_model(), uefi, Choices(disk="disk4"))
    assert fake.argv() == []  # nothing but reads ran


def test_diskutil_error_is_verbatim_with_hint(tmp_path, catalog):
    fake = Fake(tmp_path, "j314s-1tb")
    state = fakemac.json.loads(fake.state_path.read_text())
    state["fail"]["diskutil apfs resizeContainer disk0s2 7"] = (
        "Error: -69519: The target disk is too small for this operation")
    fake.state_path.write_text(fakemac.json.dumps(state))
    server = catalog.find("Fedora Asahi Remix 44 Server")
    plan = plan_install(fake.backend.read_model(), server,
                        Choices(space=Space.RESIZE, resize_to="700GB"))
    with pytest.raises(CommandError) as info:
        run_plan(fake.backend, plan, None, tmp_path / "journal.json")
    assert info.value.message == ("diskutil failed (exit 1): Error: -69519: The target disk is "
                                  "too small for this operation")
    assert "snapshots" in info.value.hint
    assert [a[1:3] for a in fake.argv()] == [["apfs", "resizeContainer"]]
    # nothing changed, so the rollback has nothing to undo but verifies the disk
    rollback(fake.backend, tmp_path / "journal.json")


def test_rollback_after_failed_step(tmp_path, catalog):
    fake = Fake(tmp_path, "j314s-1tb", mac_size=700 * GB)
    before = fake.backend.read_model().system_disk()
    state = fakemac.json.loads(fake.state_path.read_text())
    state["fail"]["newfs_msdos"] = "newfs_msdos: /dev/rdisk0s5: Resource busy"
    fake.state_path.write_text(fakemac.json.dumps(state))
    uefi = catalog.find("UEFI environment only (m1n1 + U-Boot + ESP)")
    plan = plan_install(fake.backend.read_model(), uefi, Choices())
    with pytest.raises(CommandError, match="Resource busy"):
        run_plan(fake.backend, plan, _esp(tmp_path), tmp_path / "journal.json")
    fresh = MacBackend(SubprocessRunner(fake.env))  # as after a restart
    fake.clear()
    rollback(fresh, tmp_path / "journal.json")
    assert fake.argv() == [
        ["diskutil", "eraseVolume", "free", "free", "disk0s5"],
        ["diskutil", "apfs", "deleteContainer", "disk0s4"],
        ["diskutil", "eraseVolume", "free", "free", "disk0s4"],
    ]
    assert fake.backend.read_model().system_disk().ordered() == before.ordered()


def test_resume_after_a_failed_step_adopts_what_was_created(tmp_path, catalog):
    fake = Fake(tmp_path, "j314s-1tb", mac_size=700 * GB)
    state = fakemac.json.loads(fake.state_path.read_text())
    state["fail"]["diskutil apfs deleteVolume"] = "Error: -69888: A volume is busy"
    fake.state_path.write_text(fakemac.json.dumps(state))
    uefi = catalog.find("UEFI environment only (m1n1 + U-Boot + ESP)")
    plan = plan_install(fake.backend.read_model(), uefi, Choices())
    journal = tmp_path / "journal.json"
    with pytest.raises(CommandError, match="A volume is busy"):
        run_plan(fake.backend, plan, _esp(tmp_path), journal)
    state = fakemac.json.loads(fake.state_path.read_text())
    state["fail"] = {}
    fake.state_path.write_text(fakemac.json.dumps(state))
    from installer.platform.journal import resume

    resume(MacBackend(SubprocessRunner(fake.env)), journal, _esp(tmp_path))
    adds = [a for a in fake.argv() if a[1] == "addPartition"]
    assert [a[3] for a in adds] == ["apfs", "%EFI%"]  # the stub was not created twice
    (inst,) = find_stub_installs(fake.backend.read_model().system_disk())
    assert [v.name for v in inst.stub.container.volumes] == [
        "UEFI boot - Data", "UEFI boot", "Preboot", "Recovery"]


def test_device_facts_from_ioreg(tmp_path):
    from installer.device import read_mac_facts

    fake = Fake(tmp_path, "j314s-1tb")
    state = fakemac.json.loads(fake.state_path.read_text())
    state["device"] = {"compatible": "J314sAP", "target": "J314s", "model": "MacBookPro18,3",
                       "board": 0x04, "chip": 0x6000, "os_fw": "iBoot-10151.140.19",
                       "sys_fw": "iBoot-11881.1.1", "macos": "15.0"}
    fake.state_path.write_text(fakemac.json.dumps(state))
    f = read_mac_facts(SubprocessRunner(fake.env))
    assert (f.device_class, f.board_id, f.chip_id, f.target_type) == (
        "j314sap", 0x04, 0x6000, "J314s")
    assert (f.os_firmware, f.system_firmware, f.macos_version) == (
        "iBoot-10151.140.19", "iBoot-11881.1.1", "15.0")
    assert fake.argv(writes_only=False) == [["sw_vers", "-productVersion"],
                                            ["ioreg", "-alp", "IODeviceTree"]]


def _set_fail(fake, fail):
    state = fakemac.json.loads(fake.state_path.read_text())
    state["fail"] = fail
    fake.state_path.write_text(fakemac.json.dumps(state))


def test_bug_uninstall_resumes_after_deletecontainer(tmp_path, catalog):
    """Interrupted between `apfs deleteContainer` and `eraseVolume`: the resumed run used to
    repeat deleteContainer on a partition that no longer held a container, and fail."""
    from installer.platform.journal import resume

    fake = Fake(tmp_path, "j314s-1tb", mac_size=700 * GB)
    uefi = catalog.find("UEFI environment only (m1n1 + U-Boot + ESP)")
    before = fake.backend.read_model().system_disk()
    run_plan(fake.backend, plan_install(fake.backend.read_model(), uefi, Choices()),
             _esp(tmp_path), tmp_path / "j1.json")
    plan = plan_uninstall(fake.backend.read_model(), "disk0s4")
    _set_fail(fake, {"diskutil eraseVolume free free disk0s4": "Error: -69877: busy"})
    journal = tmp_path / "j2.json"
    with pytest.raises(CommandError, match="busy"):
        run_plan(MacBackend(SubprocessRunner(fake.env)), plan, None, journal)
    _set_fail(fake, {})
    fake.clear()
    resume(MacBackend(SubprocessRunner(fake.env)), journal, None)
    assert fake.argv() == [
        ["diskutil", "eraseVolume", "free", "free", "disk0s4"],
        ["diskutil", "apfs", "resizeContainer", "disk0s2",
         str(before.part("disk0s3").start - before.part("disk0s2").start)],
    ]
    assert [p.ref for p in fake.backend.read_model().system_disk().ordered()] == [
        "disk0s1", "disk0s2", "disk0s3"]


def test_bug_rollback_removes_a_partition_the_journal_never_recorded(tmp_path, catalog):
    """addPartition succeeded, then the run stopped before the journal recorded the new ref:
    the rollback used to leave that partition behind."""
    fake = Fake(tmp_path, "j314s-1tb", mac_size=700 * GB)
    before = fake.backend.read_model().system_disk()
    uefi = catalog.find("UEFI environment only (m1n1 + U-Boot + ESP)")
    plan = plan_install(fake.backend.read_model(), uefi, Choices())
    _set_fail(fake, {"diskutil info -plist disk0s5": "Error: interrupted"})
    journal = tmp_path / "journal.json"
    with pytest.raises(CommandError, match="interrupted"):
        run_plan(fake.backend, plan, _esp(tmp_path), journal)
    _set_fail(fake, {})
    fake.clear()
    rollback(MacBackend(SubprocessRunner(fake.env)), journal)
    assert ["diskutil", "eraseVolume", "free", "free", "disk0s5"] in fake.argv()
    assert fake.backend.read_model().system_disk().ordered() == before.ordered()


def test_volume_group_of_the_recorded_mac():
    mac = fixture_model("m1-256gb").system_disk().part("disk0s2")
    assert mac.container.volume_group == "0DAB1407-0283-408E-88EE-CD41CE9E7BCA"


def test_bless_and_boot_policy_argv(tmp_path, catalog):
    """formats.md §12: the new install's System volume is blessed with the admin user, the
    password on stdin (never in argv); bputil reads the install's policy by its VGID."""
    fake = Fake(tmp_path, "j314s-1tb", mac_size=700 * GB)
    uefi = catalog.find("UEFI environment only (m1n1 + U-Boot + ESP)")
    plan = plan_install(fake.backend.read_model(), uefi, Choices())
    run_plan(fake.backend, plan, _esp(tmp_path), tmp_path / "journal.json")
    fake.clear()
    fake.backend.set_boot("new:0", "alice", "s3cret pass")
    (inst,) = find_stub_installs(fake.backend.read_model().system_disk())
    system = inst.stub.container.system_volume()
    assert system.name == "UEFI boot"
    assert fake.argv() == [["bless", "--setBoot", "--device", f"/dev/{system.device}",
                            "--user", "alice", "--stdinpass"]]
    state = fakemac.json.loads(fake.state_path.read_text())
    assert state["blessed"]["stdin"] == "s3cret pass\n"
    vgid = inst.stub.container.volume_group
    data = next(v for v in inst.stub.container.volumes if "Data" in v.roles)
    assert vgid == data.uuid
    fake.clear()
    assert "Security Mode" in fake.backend.boot_policy(vgid)
    assert fake.argv() == [["bputil", "-d", "-v", vgid]]


def test_bless_failure_is_one_line_with_hint(tmp_path, catalog):
    fake = Fake(tmp_path, "j314s-1tb", mac_size=700 * GB)
    uefi = catalog.find("UEFI environment only (m1n1 + U-Boot + ESP)")
    plan = plan_install(fake.backend.read_model(), uefi, Choices())
    run_plan(fake.backend, plan, _esp(tmp_path), tmp_path / "journal.json")
    _set_fail(fake, {"bless": "Could not authenticate user alice"})
    with pytest.raises(CommandError) as info:
        fake.backend.set_boot("new:0", "alice", "wrong")
    assert info.value.message == "bless failed (exit 1): Could not authenticate user alice"
    assert "alice is an administrator" in info.value.hint
    with pytest.raises(BackendError, match="no System volume to bless"):
        fake.backend.set_boot("disk0s1", "alice", "x")


@pytest.mark.parametrize(("parse", "data", "message"), [
    (parse_apfs_list,
     b"<plist><dict><key>Containers</key><array><dict><key>ContainerReference</key><string>"
     b"disk3</string><key>CapacityCeiling</key><integer>9</integer><key>CapacityFree</key>"
     b"<integer>1</integer><key>Volumes</key><array><dict><key>DeviceIdentifier</key><string>"
     b"disk3s1</string><key>CapacityInUse</key><string>lots</string></dict></array></dict>"
     b"</array></dict></plist>", "key CapacityInUse is not int"),
    (parse_info,
     b"<plist><dict><key>DeviceIdentifier</key><string>disk0</string><key>TotalSize</key>"
     b"<integer>9</integer><key>DeviceBlockSize</key><date>2020-01-01T00:00:00Z</date>"
     b"</dict></plist>", "key DeviceBlockSize is not int"),
])
def test_bug_non_integer_plist_values_are_one_line_errors(parse, data, message):
    """int() on a string/date value used to raise ValueError/TypeError (a traceback)."""
    with pytest.raises(BackendError, match=message):
        parse(data)


def test_bug_macos_volumes_are_verified_even_when_macos_is_resized(tmp_path, catalog):
    """The resized macOS partition overlaps owned bytes (superblock, freed tail), and the
    check used to skip it entirely: a deleted macOS volume went unnoticed."""
    fake = Fake(tmp_path, "j314s-1tb")
    server = catalog.find("Fedora Asahi Remix 44 Server")
    plan = plan_install(fake.backend.read_model(), server,
                        Choices(space=Space.RESIZE, resize_to="700GB"))
    snap = fake.backend.snapshot(plan.owned)
    state = fakemac.json.loads(fake.state_path.read_text())
    mac = next(c for c in state["containers"] if c["store"] == "disk0s2")
    mac["volumes"] = [v for v in mac["volumes"] if "Data" not in v["roles"]]
    fake.state_path.write_text(fakemac.json.dumps(state))
    with pytest.raises(BackendError, match="partitions outside the plan changed on disk0: "
                       "disk0s2"):
        fake.backend.verify(plan.owned, snap)
