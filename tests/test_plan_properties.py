"""Planner invariants over many generated disks (hypothesis, derandomized): plans never
overlap existing partitions, stay 1 MiB aligned, and never touch ISC/Recovery/other OSes."""

from __future__ import annotations

import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from installer.catalog import STUB_SIZE, CatalogPartition, OsEntry, PartitionType
from installer.disk.model import Partition, PartKind
from installer.disk.ops import CreatePartition, CreateStubContainer, ResizeContainer
from installer.disk.plan import Choices, Space, plan_install, plan_uninstall
from installer.errors import PlanError
from installer.sizes import GB, GiB, MiB, align_up
from tests.support.diskmodels import mac_disk, model, stub_container

SETTINGS = settings(max_examples=300, derandomize=True, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

ENTRY = OsEntry("Linux", "Linux", None, None, None, None, (), (), False, False, (
    CatalogPartition("EFI", PartitionType.EFI, 500 * 10**6, format="fat", source="esp"),
    CatalogPartition("Boot", PartitionType.LINUX, GiB, image="boot.img"),
    CatalogPartition("Root", PartitionType.LINUX, 3 * GB, expand=True, image="root.img"),
))


@st.composite
def disks(draw):
    size = draw(st.integers(64 * GiB, 4 * 10**12)) // 4096 * 4096
    base = mac_disk(disk_size=size)
    room = base.partitions[-1].start - base.partitions[1].start
    mac_size = draw(st.integers(20 * GiB, room)) // 4096 * 4096
    used = draw(st.integers(4 * GiB, mac_size - GiB))
    preferred = draw(st.integers(0, mac_size))
    # other OSes (a stub install and a foreign partition) in the space after macOS
    extra = []
    pos = base.partitions[1].start + mac_size
    rec_start = base.partitions[-1].start
    for i in range(draw(st.integers(0, 3))):
        pos = align_up(pos + draw(st.integers(0, 40 * GiB)), 4096)
        psize = draw(st.sampled_from([STUB_SIZE, 500 * MiB, 3 * GiB + 4096]))
        if pos + psize > rec_start:
            break
        kind = draw(st.sampled_from([PartKind.APFS, PartKind.EFI, PartKind.LINUX,
                                     PartKind.OTHER]))
        ctr = stub_container(psize, f"OS{i}", f"disk{10 + i}") if kind is PartKind.APFS \
            else None
        extra.append(Partition(f"disk0s{4 + i}", 4 + i, kind, pos, psize, f"p{i}",
                               container=ctr))
        pos += psize
    return mac_disk(disk_size=size, mac_size=mac_size, used=used, preferred=preferred,
                    extra=tuple(extra))


choices = st.builds(
    Choices,
    space=st.sampled_from(list(Space)),
    resize_to=st.sampled_from(["min", "50%", "75%", "90%", "300GB", "max"]),
    size=st.sampled_from(["min", "max", "25%", "60%", "20GB", "100GB"]),
    expert=st.booleans(),
)


def _check(disk, plan):
    protected = {p.ref for p in disk.partitions if p.kind in (PartKind.ISC, PartKind.RECOVERY)}
    mac = disk.partitions[1]
    resized = {o.ref: o.new_size for o in plan.ops if isinstance(o, ResizeContainer)}
    assert set(resized) <= {mac.ref}
    for op in plan.ops:
        assert op.ref not in protected
        assert op.ref.startswith("new:") or op.ref == mac.ref
    new = [o for o in plan.ops if isinstance(o, CreatePartition | CreateStubContainer)]
    for n in new:
        assert n.start % MiB == 0
        assert n.size % MiB == 0
        assert disk.usable_start <= n.start
        assert n.start + n.size <= disk.usable_end
        for p in disk.partitions:
            end = p.start + resized.get(p.ref, p.size)
            assert n.start + n.size <= p.start or n.start >= end, (n, p)
    for a, b in zip(new, new[1:], strict=False):
        assert a.start + a.size <= b.start
    # owned bytes never reach into another partition (macOS: only superblock and freed tail)
    for s, e in plan.owned:
        for p in disk.partitions:
            if p.ref == mac.ref:
                keep_end = p.start + resized.get(p.ref, p.size)
                assert e <= p.start + 4096 or s >= keep_end or (s, e) == (p.start, p.start + 4096)
            else:
                assert e <= p.start or s >= p.end, ((s, e), p)


@SETTINGS
@given(disk=disks(), ch=choices)
def test_install_plans_keep_invariants(disk, ch):
    try:
        plan = plan_install(model(disk), ENTRY, ch)
    except PlanError as exc:
        message = exc.message
    else:
        _check(disk, plan)
        assert plan.os_size >= ENTRY.min_size
        return
    assert "\n" not in message
    assert re.search(r"[0-9]", message), message  # refusals carry numbers


@SETTINGS
@given(disk=disks())
def test_uninstall_plans_touch_only_the_install(disk):
    from installer.disk.model import find_stub_installs

    for inst in find_stub_installs(disk):
        plan = plan_uninstall(model(disk), inst.stub.ref)
        mine = {p.ref for p in inst.partitions}
        for op in plan.ops:
            assert op.ref in mine or op.ref == disk.partitions[1].ref
        for s, e in plan.owned:
            for p in disk.partitions:
                if p.ref in mine or p.ref == disk.partitions[1].ref:
                    continue
                assert e <= p.start or s >= p.end
