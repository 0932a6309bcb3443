"""The pure planner: every rule of formats.md §1 and every refusal, with its numbers."""

from __future__ import annotations

import re

import pytest

from installer.catalog import STUB_SIZE, CatalogPartition, OsEntry, PartitionType, load_catalog
from installer.disk.model import Partition, PartKind, find_stub_installs
from installer.disk.ops import (
    CopyTree,
    CreatePartition,
    CreateStubContainer,
    CreateStubVolumes,
    DeleteContainer,
    DeletePartition,
    FormatFat32,
    ResizeContainer,
    WriteImage,
)
from installer.disk.plan import Choices, Space, plan_install, plan_uninstall
from installer.disk.render import plan_to_dict, render_plan
from installer.errors import PlanError
from installer.sizes import GB, GiB, MiB, align_up
from tests.support.diskmodels import mac_disk, model, stub_container


@pytest.fixture(scope="module")
def catalog(real_catalog):
    return load_catalog(real_catalog, "https://repo")


@pytest.fixture(scope="module")
def server(catalog):
    return catalog.find("Fedora Asahi Remix 44 Server")


@pytest.fixture(scope="module")
def uefi(catalog):
    return catalog.find("UEFI environment only (m1n1 + U-Boot + ESP)")


def free_disk(gap=100 * GB, **kw):
    """macOS container shrunk so that ``gap`` bytes are free before the recovery."""
    d = mac_disk(**kw)
    rec = d.partitions[-1]
    mac = d.partitions[1]
    return mac_disk(mac_size=rec.start - mac.start - gap, **kw)


def test_free_space_install_layout(server):
    plan = plan_install(model(free_disk()), server, Choices(space=Space.FREE, size="max"))
    kinds = [type(o) for o in plan.ops]
    assert kinds == [CreateStubContainer, CreateStubVolumes, CreatePartition, FormatFat32,
                     CopyTree, CreatePartition, WriteImage, CreatePartition, WriteImage]
    stub, _, esp, fat, _, boot, _, root, _ = plan.ops
    assert stub.size == STUB_SIZE
    assert stub.label == "Fedora Linux Server"
    assert stub.after == "disk0s2"
    assert esp.kind is PartKind.EFI
    assert esp.size == 500 * MiB
    assert esp.start == stub.start + STUB_SIZE
    assert fat.volume_id == 0x2D29CCB0
    assert fat.label == "EFI - FEDOR"
    assert boot.size == GiB
    assert root.start == boot.start + boot.size
    for op in (stub, esp, boot, root):
        assert op.start % MiB == 0
        assert op.size % MiB == 0
    gap = model(free_disk()).disks[0].gaps()[0]
    assert stub.start == gap.start
    assert root.start + root.size <= gap.end
    assert gap.end - (root.start + root.size) < MiB  # "max" takes the whole gap
    assert plan.warnings == ()


def test_uefi_only_is_stub_plus_esp(uefi):
    plan = plan_install(model(free_disk()), uefi, Choices(size="max"))
    assert [type(o) for o in plan.ops] == [
        CreateStubContainer, CreateStubVolumes, CreatePartition, FormatFat32, CopyTree]
    assert plan.ops[2].size == align_up(500_000_000, MiB)
    assert plan.os_size == STUB_SIZE + align_up(500_000_000, MiB)  # no expand: size ignored


def test_os_size_choices(server):
    m = model(free_disk(gap=100 * GB))
    mn = plan_install(m, server, Choices(size="min"))
    assert mn.os_size == server.min_size
    assert "below the recommended" in mn.warnings[0]
    half = plan_install(m, server, Choices(size="50%"))
    assert abs(half.os_size - 50 * GB) < 2 * MiB
    exact = plan_install(m, server, Choices(size="30GB"))
    assert exact.os_size == 30 * GB // MiB * MiB  # a user-chosen OS size rounds down
    assert exact.warnings == ()


@pytest.mark.parametrize(
    ("size", "message"),
    [
        ("5GB", r"needs at least 8\.6 GB; '5GB' is 5\.0 GB"),
        ("200GB", r"OS size 200\.0 GB does not fit: the free region has 100\.0 GB"),
        ("lots", "OS size: not a size"),
    ],
)
def test_os_size_refusals(server, size, message):
    with pytest.raises(PlanError, match=message):
        plan_install(model(free_disk(gap=100 * GB)), server, Choices(size=size))


def test_needs_ten_gb_free(uefi):
    with pytest.raises(PlanError, match=r"needs at least 10\.0 GB of free space; the largest "
                       r"free region is 9\.0 GB"):
        plan_install(model(free_disk(gap=9 * GB)), uefi, Choices())
    with pytest.raises(PlanError, match="largest free region is 0 B"):
        plan_install(model(mac_disk()), uefi, Choices())


def test_gap_of_16_mib_is_not_free():
    d = free_disk(gap=16 * MiB)
    assert d.gaps() == ()
    assert free_disk(gap=17 * MiB).gaps()[0].size >= 16 * MiB


def test_resize_install(server):
    d = mac_disk(used=100 * GB)
    mac = d.partitions[1]
    plan = plan_install(model(d), server, Choices(space=Space.RESIZE, resize_to="60%"))
    resize = plan.ops[0]
    assert isinstance(resize, ResizeContainer)
    assert resize.ref == "disk0s2"
    assert resize.new_size == align_up(-(-mac.size * 60 // 100), MiB)  # target rounds up
    stub = plan.ops[1]
    assert stub.start == align_up(mac.start + resize.new_size, MiB)
    assert stub.after == "disk0s2"  # bug: was the ISC, which ends before the shrunk macOS
    assert (mac.start, mac.start + 4096) in plan.owned or any(
        s <= mac.start and mac.start + 4096 <= e for s, e in plan.owned)
    assert not any(s < mac.start + resize.new_size - 4096 and e > mac.start + 4096
                   for s, e in plan.owned)  # macOS data is never owned


def test_resize_min_uses_policy_and_limits(server):
    d = mac_disk(used=100 * GB, preferred=50 * GB)
    plan = plan_install(model(d), server, Choices(space=Space.RESIZE, resize_to="min"))
    assert plan.ops[0].new_size == align_up(100 * GB + 38 * GB, MiB)
    d = mac_disk(used=100 * GB, preferred=160 * GB)  # snapshots: diskutil wants more
    plan = plan_install(model(d), server, Choices(space=Space.RESIZE, resize_to="min"))
    assert plan.ops[0].new_size == align_up(160 * GB, MiB)
    assert "is 60.0 GB" in plan.warnings[0]  # 160 GB - 100 GB of data


def test_overhead_warning(server):
    d = mac_disk(used=100 * GB, preferred=100 * GB + 38 * GB + 17 * GB)
    plan = plan_install(model(d), server, Choices(space=Space.RESIZE, resize_to="min"))
    assert re.search(r"APFS overhead .* is 55\.0 GB", plan.warnings[0])
    d = mac_disk(used=100 * GB, preferred=100 * GB + 16 * GB)
    plan = plan_install(model(d), server, Choices(space=Space.RESIZE, resize_to="min"))
    assert not any("overhead" in w for w in plan.warnings)


def test_bug_overhead_below_the_free_policy_still_warns(server):
    """17 GB of snapshots is overhead above 16 GB even though used + 17 GB is below the
    38 GB free-space minimum (it used to count only what exceeded used + 38 GB)."""
    d = mac_disk(used=100 * GB, preferred=100 * GB + 17 * GB)
    plan = plan_install(model(d), server, Choices(space=Space.RESIZE, resize_to="min"))
    assert plan.ops[0].new_size == align_up(138 * GB, MiB)  # the policy still decides
    assert re.search(r"APFS overhead \(snapshots, pending updates\) is 17\.0 GB",
                     plan.warnings[0])


def test_resize_refused_when_macos_is_full(server):
    d = mac_disk(disk_size=500 * GB, used=500 * GB - 31_200_000_000 - 5 * GiB - 525 * MiB
                 - 24576)
    c = d.partitions[1].container
    assert round(c.free / 1e8) == 312
    with pytest.raises(PlanError, match=r"^macOS needs 38\.0 GB free after resize; the "
                       r"container has 31\.2 GB free"):
        plan_install(model(d), server, Choices(space=Space.RESIZE))


@pytest.mark.parametrize(
    ("disk_size", "expert", "min_free"),
    [(500 * GB, False, 38 * GB), (500 * GB, True, 1 * GB), (140 * GiB, False, 1 * GB),
     (150 * GiB, False, 38 * GB)],
)
def test_min_free_policy(uefi, disk_size, expert, min_free):
    d = mac_disk(disk_size=disk_size, used=60 * GB, preferred=0)
    plan = plan_install(model(d), uefi.__class__(**{**_fields(uefi), "expert": False}),
                        Choices(space=Space.RESIZE, resize_to="min", expert=expert))
    assert plan.ops[0].new_size == align_up(60 * GB + min_free, MiB)


def _fields(e):
    return {f: getattr(e, f) for f in e.__slots__}


def test_resize_needs_margin(uefi):
    # free exactly min_free + 500 MB: resize is not offered
    d = mac_disk(disk_size=500 * GB)
    mac = d.partitions[1]
    d = mac_disk(disk_size=500 * GB, used=mac.size - 38 * GB - 500 * 10**6)
    with pytest.raises(PlanError, match="macOS needs 38.0 GB free after resize"):
        plan_install(model(d), uefi, Choices(space=Space.RESIZE))


@pytest.mark.parametrize(
    ("resize_to", "message"),
    [
        ("100GB", r"macOS needs at least 138\.0 GB \(its 100\.0 GB of data plus 38\.0 GB "
                  r"free\); '100GB' is 100\.0 GB"),
        ("100%", "frees nothing"),
        ("99%", r"frees only .*; installing needs at least 10\.0 GB"),
        ("x", "macOS size: not a size"),
    ],
)
def test_resize_refusals(server, resize_to, message):
    with pytest.raises(PlanError, match=message):
        plan_install(model(mac_disk(used=100 * GB)), server,
                     Choices(space=Space.RESIZE, resize_to=resize_to))


def test_external_disk_refused(uefi):
    ext = mac_disk(ref="disk4", internal=False)
    with pytest.raises(PlanError, match="disk4 is external: Pippin installs only on the "
                       r"internal system disk \(disk0\)"):
        plan_install(model(free_disk(), ext), uefi, Choices(disk="disk4"))
    with pytest.raises(PlanError, match="disk9 not found"):
        plan_install(model(free_disk()), uefi, Choices(disk="disk9"))
    with pytest.raises(PlanError, match="no internal system disk"):
        plan_install(model(ext), uefi, Choices())


def test_entries_that_cannot_be_installed(catalog):
    tethered = catalog.find("Tethered boot (m1n1, for development)")
    with pytest.raises(PlanError, match="is offered only in expert mode"):
        plan_install(model(free_disk()), tethered, Choices())
    old = catalog.find("UEFI environment only (previous version, 6.18 DTS)")
    with pytest.raises(PlanError, match="offered only in expert mode"):
        plan_install(model(free_disk()), old, Choices())
    assert plan_install(model(free_disk()), old, Choices(expert=True)).ops


@pytest.mark.parametrize("name", ["", 'a"b', "a/b", "x" * 201, "..", ".", "a\x01b", "a\tb",
                                  "a\u2028b"])
def test_bad_os_names(uefi, name):
    with pytest.raises(PlanError, match="OS name"):
        plan_install(model(free_disk()), uefi, Choices(name=name or " "))


def test_never_touches_isc_or_recovery(server):
    for choices in (Choices(), Choices(space=Space.RESIZE, resize_to="min")):
        plan = plan_install(model(free_disk()), server, choices)
        assert not {o.ref for o in plan.ops} & {"disk0s1", "disk0s3"}


def test_plan_is_deterministic(server):
    a = plan_install(model(free_disk()), server, Choices(seed="s"))
    b = plan_install(model(free_disk()), server, Choices(seed="s"))
    c = plan_install(model(free_disk()), server, Choices(seed="t"))
    assert a == b
    assert a.ops[0].uuid != c.ops[0].uuid


def test_render_and_json(server):
    plan = plan_install(model(free_disk()), server, Choices(size="min"))
    text = render_plan(plan)
    assert "before:" in text
    assert "[new]" in text
    assert "1. create stub APFS container new:0 'Fedora Linux Server'" in text
    d = plan_to_dict(plan)
    assert d["operations"][0]["op"] == "CreateStubContainer"
    assert d["os_size"] == server.min_size


def installed_disk():
    """macOS, then a stub install (stub, ESP, Linux root), then recovery."""
    base = mac_disk(mac_size=300 * GB)
    mac = base.partitions[1]
    s = align_up(mac.end, MiB)
    stub = Partition("disk0s4", 4, PartKind.APFS, s, STUB_SIZE, "Linux",
                     container=stub_container(STUB_SIZE, "Linux", "disk5"))
    esp = Partition("disk0s5", 5, PartKind.EFI, stub.end, 500 * MiB, "EFI")
    root = Partition("disk0s6", 6, PartKind.LINUX, esp.end, 20 * GB // MiB * MiB, "Root")
    return mac_disk(mac_size=300 * GB, extra=(stub, esp, root))


def test_find_stub_installs():
    (inst,) = find_stub_installs(installed_disk())
    assert inst.stub.ref == "disk0s4"
    assert inst.esp.ref == "disk0s5"
    assert [p.ref for p in inst.os_partitions] == ["disk0s6"]
    assert inst.name == "Linux"


def test_uninstall_gives_space_back_to_macos():
    d = installed_disk()
    plan = plan_uninstall(model(d), "disk0s4")
    assert [type(o) for o in plan.ops] == [DeletePartition, DeletePartition, DeleteContainer,
                                           ResizeContainer]
    assert [o.ref for o in plan.ops] == ["disk0s6", "disk0s5", "disk0s4", "disk0s2"]
    grow = plan.ops[-1]
    rec = d.partitions[-1]
    assert grow.old_size == 300 * GB
    assert grow.new_size == rec.start - d.partitions[1].start  # up to the recovery container
    assert grow.new_size % 4096 == 0
    assert not {o.ref for o in plan.ops} & {"disk0s1", "disk0s3"}


def test_uninstall_refusals():
    with pytest.raises(PlanError, match=r"disk0s2 is not a stub install on disk0 \(installs: "
                       r"disk0s4 \(Linux\)\)"):
        plan_uninstall(model(installed_disk()), "disk0s2")


def test_uninstall_leaves_space_free_when_another_os_is_between():
    d = installed_disk()
    parts = list(d.partitions)
    # a second install after the first: removing it cannot grow macOS
    s = align_up(parts[4].end, MiB)
    stub2 = Partition("disk0s7", 7, PartKind.APFS, s, STUB_SIZE, "Two",
                      container=stub_container(STUB_SIZE, "Two", "disk6"))
    esp2 = Partition("disk0s8", 8, PartKind.EFI, stub2.end, 500 * MiB, "EFI")
    d2 = mac_disk(mac_size=300 * GB, extra=(*parts[2:5], stub2, esp2))
    plan = plan_uninstall(model(d2), "disk0s7")
    assert not any(isinstance(o, ResizeContainer) for o in plan.ops)
    assert "stays unpartitioned" in plan.notes[0]


def test_catalog_partition_sizes_round_up():
    entry = OsEntry("T", "T", None, None, None, None, (), (), False, False, (
        CatalogPartition("EFI", PartitionType.EFI, 1, format="fat"),
        CatalogPartition("R", PartitionType.LINUX, MiB + 1, expand=True),
    ))
    plan = plan_install(model(free_disk()), entry, Choices(size="min"))
    assert plan.ops[2].size == MiB
    assert plan.ops[4].size == 2 * MiB


def test_planner_is_pure():
    """The planner and the plist parsers import no process, network or backend code."""
    import subprocess
    import sys

    code = ("import sys, installer.disk.plan, installer.disk.render, installer.disk.diskutil, "
            "installer.answers, installer.catalog; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('subprocess', 'requests', 'click') or m.startswith('installer.platform')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"


def test_space_options(server):
    from installer.disk.plan import space_options

    d = mac_disk(used=100 * GB)
    o = space_options(model(d), server)
    assert o.largest_free == 0
    assert o.resize_offered
    assert o.resize_min == align_up(138 * GB, MiB)
    assert o.freeable == d.partitions[-1].start - align_up(d.partitions[1].start
                                                           + o.resize_min, MiB)
    assert o.os_recommended == 2 * o.os_min
    full = mac_disk(disk_size=200 * GB, used=170 * GB)
    o = space_options(model(full), server)
    assert not o.resize_offered
    assert o.why_not_resize.startswith("macOS needs 38.0 GB free after resize")
    assert space_options(model(full), server, expert=True).resize_offered


def test_bug_uninstall_before_macos_does_not_resize_macos():
    """A stub install placed before the macOS container: macOS cannot grow backwards, so the
    plan must not resize it (it used to plan a negative size)."""
    base = mac_disk(disk_size=500 * GB)
    isc, mac, rec = base.partitions
    stub = Partition("disk0s4", 4, PartKind.APFS, isc.end, STUB_SIZE, "Linux",
                     container=stub_container(STUB_SIZE, "Linux", "disk5"))
    esp = Partition("disk0s5", 5, PartKind.EFI, stub.end, 500 * MiB, "EFI")
    start = align_up(esp.end, MiB)
    moved = Partition(mac.ref, 2, PartKind.APFS, start, rec.start - start, "Container",
                      container=mac.container, limits=mac.limits)
    d = base.__class__(base.ref, base.size, 4096, True, True, (isc, stub, esp, moved, rec))
    plan = plan_uninstall(model(d), "disk0s4")
    assert [type(o) for o in plan.ops] == [DeletePartition, DeleteContainer]
    assert "stays unpartitioned" in plan.notes[0]


def test_bug_os_name_dot_dot_and_control_characters_refused(uefi):
    """'..' named a sidecar directory outside the container's (sim), and control characters
    reached diskutil volume names and the answers file; both are refused now."""
    for name in ("..", "a\x1bb"):
        with pytest.raises(PlanError, match="printable"):
            plan_install(model(free_disk()), uefi, Choices(name=name))
    assert plan_install(model(free_disk()), uefi, Choices(name="Arch Linux ARM")).ops
    assert plan_install(model(free_disk()), uefi, Choices(name="Fedora Asahi 42 …")).ops


def test_choose_a_free_region(uefi):
    """Two free regions (one left by an uninstall, one at the end): the user picks one."""
    base = mac_disk(mac_size=300 * GB)
    mac = base.partitions[1]
    s = align_up(mac.end + 20 * GB, MiB)
    other = Partition("disk0s4", 4, PartKind.LINUX, s, 50 * GB, "Other")
    d = mac_disk(mac_size=300 * GB, extra=(other,))
    first, second = d.gaps()
    assert first.size < second.size
    assert plan_install(model(d), uefi, Choices()).ops[0].start == second.start
    plan = plan_install(model(d), uefi, Choices(region=first.start))
    assert plan.ops[0].start == first.start
    assert plan.ops[0].after == "disk0s2"
    with pytest.raises(PlanError, match=rf"no free region starts at byte 5 on disk0 \(free "
                       rf"regions: {first.start} \(20\.0 GB\), {second.start}"):
        plan_install(model(d), uefi, Choices(region=5))
    small = mac_disk(mac_size=300 * GB, extra=(Partition(
        "disk0s4", 4, PartKind.LINUX, align_up(mac.end + 5 * GB, MiB), 50 * GB, "Other"),))
    with pytest.raises(PlanError, match=r"the free region at byte \d+ has 5\.0 GB"):
        plan_install(model(small), uefi, Choices(region=small.gaps()[0].start))


def test_bug_uninstall_keeps_a_partition_after_free_space():
    """A user's own partition after free space was counted as the install's OS partition,
    so uninstalling deleted it."""
    d = installed_disk()
    isc, mac, stub, esp, root, rec = d.ordered()
    mine = Partition("disk0s7", 7, PartKind.LINUX, align_up(root.end + 20 * GB, MiB), 10 * GB,
                     "Mine")
    d2 = mac_disk(mac_size=300 * GB, extra=(stub, esp, root, mine))
    (inst,) = find_stub_installs(d2)
    assert [p.ref for p in inst.os_partitions] == ["disk0s6"]
    plan = plan_uninstall(model(d2), "disk0s4")
    assert "disk0s7" not in {o.ref for o in plan.ops}
    assert not any(s < mine.end and mine.start < e for s, e in plan.owned)


def test_tethered_entry_plans_a_stub_only(catalog):
    """The live catalog's tethered entry (no partitions): the stub container and its
    volumes, nothing else, at the stub size whatever size was asked for."""
    tethered = catalog.find("Tethered boot (m1n1, for development)")
    plan = plan_install(model(free_disk()), tethered, Choices(expert=True, size="max"))
    assert [type(op).__name__ for op in plan.ops] == ["CreateStubContainer",
                                                      "CreateStubVolumes"]
    assert plan.os_size == STUB_SIZE
    assert [s.change for s in plan.after].count("new") == 1
