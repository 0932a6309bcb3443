"""The ``sim`` backend: executes plan operations on a simulated Mac (a sparse disk image).

GPT edits go through ``sgdisk``, APFS container headers through ``mkapfs``, FAT32 through
``mkfs.fat`` and ``mtools``; the results are inspectable with ``sgdisk -p``, ``mdir`` and
``fsck.fat``. Every operation is idempotent, so an interrupted run can be repeated.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, assert_never

from installer.disk.model import (
    TYPE_GUIDS,
    Container,
    Disk,
    DiskModel,
    Partition,
    PartKind,
    ResizeLimits,
    Volume,
    kind_of,
)
from installer.disk.ops import (
    CopyTree,
    CreatePartition,
    CreateStubContainer,
    CreateStubVolumes,
    DeleteContainer,
    DeletePartition,
    FormatFat32,
    Op,
    ResizeContainer,
    WriteImage,
)
from installer.errors import BackendError
from installer.platform.base import Backend, Payloads, Runner, SubprocessRunner
from installer.platform.gpt import SECTOR, GptEntry, read_gpt, set_apfs_block_count
from installer.platform.safety import (
    RangeDigest,
    changed,
    check_entries,
    hash_ranges,
    partition_entries,
    unowned,
)
from installer.platform.simstate import (
    SimContainer,
    SimState,
    SimVolume,
    facts_path,
    sidecar,
)
from installer.platform.sparse import CHUNK, copy_sparse, punch_hole, write_nonzero
from installer.sizes import MiB, align_up, format_size

DISK_REF = "disk0"
APFS_KINDS = (PartKind.APFS, PartKind.ISC, PartKind.RECOVERY)


def container_uuid(part_uuid: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_OID, "apfs:" + part_uuid)).upper()


def volume_group(part_uuid: str) -> str:
    """The simulated VGID of a container's System/Data group (stable across reads)."""
    return str(uuid.uuid5(uuid.NAMESPACE_OID, "vgid:" + part_uuid)).upper()


class SimBackend(Backend):
    name = "sim"

    def __init__(self, image: Path, runner: Runner | None = None, *,
                 fault: Callable[[str], None] | None = None,
                 progress: Callable[[int], None] | None = None) -> None:
        self.image = Path(image)
        if not self.image.is_file():
            raise BackendError(f"{self.image}: no simulated Mac here",
                               hint="create one with `pippin sim create PATH`")
        self.runner = runner or SubprocessRunner()
        self._fault = fault or (lambda point: None)
        #: Bytes of images and trees placed, as they go (STYLE.md: progress callbacks).
        self._progress = progress or (lambda n: None)
        self._refs: dict[str, str] = {}
        self.bytes_written = 0

    # -- reading -------------------------------------------------------------------------
    def _size(self) -> int:
        return self.image.stat().st_size

    def _gpt(self) -> tuple[GptEntry, ...]:
        fd = os.open(self.image, os.O_RDONLY)
        try:
            return read_gpt(fd, self._size(), str(self.image)).entries
        finally:
            os.close(fd)

    def read_model(self) -> DiskModel:
        state = SimState(self.image)
        entries = self._gpt()
        size = self._size()
        parts = []
        for e in entries:
            kind = kind_of(e.type_guid)
            ctr = self._container(state, e, kind)
            limits = None
            if ctr is not None and kind is PartKind.APFS:
                sc = state.containers.get(e.uuid)
                floor = (sc.used + sc.overhead) if sc else 0
                after = min((o.start for o in entries if o.start >= e.start + e.size),
                            default=Disk(DISK_REF, size).usable_end)
                limits = ResizeLimits(e.size, align_up(floor, MiB), after - e.start)
            parts.append(Partition(
                ref=f"{DISK_REF}s{e.number}", index=e.number, kind=kind, start=e.start,
                size=e.size, name=e.name, uuid=e.uuid, type_guid=e.type_guid,
                container=ctr, limits=limits,
            ))
        disk = Disk(DISK_REF, size, SECTOR, internal=True, physical=True,
                    partitions=tuple(parts))
        return DiskModel((disk,))

    def _container(self, state: SimState, e: GptEntry, kind: PartKind) -> Container | None:
        if kind not in APFS_KINDS:
            return None
        sc = state.containers.get(e.uuid)
        if sc is None:
            return Container(f"{DISK_REF}s{e.number}.apfs", "", e.size, e.size, ())
        vols = tuple(
            _vol(f"{DISK_REF}s{e.number}v{i}", v) for i, v in enumerate(sc.volumes, start=1)
        )
        system = [v for v in sc.volumes if "System" in v.roles]
        stub = None
        group = ""
        if system:
            stub = not (state.volume_dir(e.uuid, system[0].name) / "Library").is_dir()
            group = volume_group(e.uuid)
        return Container(f"{DISK_REF}s{e.number}.apfs", sc.uuid, e.size,
                         max(0, e.size - sc.used), vols, stub, group)

    # -- refs ------------------------------------------------------------------------------
    def refs(self) -> dict[str, str]:
        return dict(self._refs)

    def restore_refs(self, refs: Mapping[str, str]) -> None:
        self._refs = dict(refs)

    def _entry(self, ref: str) -> GptEntry | None:
        real = self._refs.get(ref, ref)
        prefix = f"{DISK_REF}s"
        if not real.startswith(prefix) or not real[len(prefix):].isdigit():
            return None
        n = int(real[len(prefix):])
        return next((e for e in self._gpt() if e.number == n), None)

    def _need(self, ref: str) -> GptEntry:
        e = self._entry(ref)
        if e is None:
            raise BackendError(f"partition {ref} not found on {self.image}")
        return e

    # -- commands ------------------------------------------------------------------------
    def _sgdisk(self, *args: str) -> None:
        self.runner.check(["sgdisk", "-a", "8", *args, str(self.image)],
                          hint="the GPT of the simulated disk could not be changed")

    def _add_entry(self, ref: str, start: int, size: int, kind: PartKind, name: str,
                   part_uuid: str) -> GptEntry:
        entries = self._gpt()
        for e in entries:
            if e.uuid == part_uuid.upper() and e.start == start:
                self._refs[ref] = f"{DISK_REF}s{e.number}"
                return e  # done before an interruption
        used = {e.number for e in entries}
        n = next(i for i in range(1, 129) if i not in used)
        first, last = start // SECTOR, (start + size) // SECTOR - 1
        self._sgdisk(f"-n{n}:{first}:{last}", f"-t{n}:{TYPE_GUIDS[kind]}", f"-c{n}:{name}",
                     f"-u{n}:{part_uuid}")
        self._refs[ref] = f"{DISK_REF}s{n}"
        return self._need(ref)

    def _write_fd(self) -> int:
        return os.open(self.image, os.O_RDWR)

    # -- operations ------------------------------------------------------------------------
    def execute(self, op: Op, payloads: Payloads | None) -> None:
        match op:
            case ResizeContainer():
                self._resize(op.ref, op.new_size)
            case CreateStubContainer():
                self._create_stub(op)
            case CreateStubVolumes():
                self._stub_volumes(op)
            case CreatePartition():
                e = self._add_entry(op.ref, op.start, op.size, op.kind, op.name, op.uuid)
                self._fault(f"{type(op).__name__}:gpt")
                fd = self._write_fd()
                try:
                    punch_hole(fd, e.start, e.size)  # a new partition starts out empty
                finally:
                    os.close(fd)
            case FormatFat32():
                self._format_fat(op)
            case CopyTree():
                self._copy_tree(op, payloads)
            case WriteImage():
                self._write_image(op, payloads)
            case DeletePartition() | DeleteContainer():
                self._delete(op.ref, op.start)
            case _:
                assert_never(op)

    def _delete(self, ref: str, start: int) -> None:
        old = self._entry(ref)
        if old is None or old.start != start:
            return  # already gone
        self._sgdisk(f"-d{old.number}")
        self._fault("Delete:gpt")
        state = SimState(self.image)
        if old.uuid in state.containers or state.dir.joinpath(old.uuid).exists():
            state.drop(old.uuid)
            if state.boot == old.uuid:  # the blessed install is gone: macOS boots again
                state.boot = ""
            state.save()

    def _resize(self, ref: str, new_size: int) -> None:
        e = self._need(ref)
        state = SimState(self.image)
        sc = state.containers.get(e.uuid)
        if sc is not None and sc.used > new_size:
            raise BackendError(
                f"{ref}: its {format_size(sc.used)} of data do not fit in {format_size(new_size)}"
            )
        if e.size != new_size:
            n = e.number
            last = (e.start + new_size) // SECTOR - 1
            self._sgdisk(f"-d{n}", f"-n{n}:{e.first_lba}:{last}", f"-t{n}:{e.type_guid}",
                         f"-c{n}:{e.name}", f"-u{n}:{e.uuid}")
            self._fault("ResizeContainer:gpt")
        fd = self._write_fd()
        try:
            set_apfs_block_count(fd, e.start, new_size, ref)
        finally:
            os.close(fd)

    def _mkapfs_into(self, start: int, size: int, label: str, ctr_uuid: str) -> None:
        """Format a scratch file with mkapfs and place its data extents at ``start``."""
        with tempfile.TemporaryDirectory(dir=self.image.parent) as tmp:
            scratch = Path(tmp) / "container.img"
            with scratch.open("wb") as f:
                f.truncate(size)
            self.runner.check(["mkapfs", "-L", label, "-U", ctr_uuid, str(scratch)])
            fd = self._write_fd()
            try:
                punch_hole(fd, start, size)
                self.bytes_written += copy_sparse(scratch, fd, start)
            finally:
                os.close(fd)

    def _create_stub(self, op: CreateStubContainer) -> None:
        e = self._add_entry(op.ref, op.start, op.size, PartKind.APFS, op.label, op.uuid)
        self._fault("CreateStubContainer:gpt")
        cu = container_uuid(e.uuid)
        self._mkapfs_into(e.start, e.size, op.label, cu)
        state = SimState(self.image)
        state.containers[e.uuid] = SimContainer(cu, MiB)
        state.save()

    def _stub_volumes(self, op: CreateStubVolumes) -> None:
        e = self._need(op.ref)
        state = SimState(self.image)
        sc = state.containers.setdefault(e.uuid, SimContainer(container_uuid(e.uuid), MiB))
        want = [(f"{op.label} - Data", "Data"), (op.label, "System"),
                ("Preboot", "Preboot"), ("Recovery", "Recovery")]
        have = {v.name for v in sc.volumes}
        for name, role in want:
            if name not in have:
                vu = str(uuid.uuid5(uuid.NAMESPACE_OID, f"{e.uuid}:{name}")).upper()
                sc.volumes.append(SimVolume(name, [role], 0, vu))
            state.volume_dir(e.uuid, name).mkdir(parents=True, exist_ok=True)
        state.save()

    def _format_fat(self, op: FormatFat32) -> None:
        """mkfs.fat on a scratch file of the partition's size, placed by sparse copy
        (mkfs.fat --offset mis-writes filesystems that start beyond 2 GB into a file)."""
        e = self._need(op.ref)
        with tempfile.TemporaryDirectory(dir=self.image.parent) as tmp:
            scratch = Path(tmp) / "esp.img"
            with scratch.open("wb") as f:
                f.truncate(e.size)
            argv = ["mkfs.fat", "-F", "32", "-n", op.label]
            if op.volume_id is not None:
                argv += ["-i", f"{op.volume_id:08X}"]
            self.runner.check([*argv, str(scratch)], hint="mkfs.fat comes from dosfstools")
            fd = self._write_fd()
            try:
                punch_hole(fd, e.start, e.size)
                self.bytes_written += copy_sparse(scratch, fd, e.start)
            finally:
                os.close(fd)

    def _copy_tree(self, op: CopyTree, payloads: Payloads | None) -> None:
        if payloads is None:
            raise BackendError(f"copying {op.source}/ needs the OS package")
        e = self._need(op.ref)
        root = payloads.tree(op.source)
        names = sorted(str(p) for p in root.iterdir())
        if names:
            self.runner.check(
                ["env", "MTOOLS_SKIP_CHECK=1", "mcopy", "-s", "-o", "-Q", "-D", "o",
                 "-i", f"{self.image}@@{e.start}", *names, "::/"],
                hint="mcopy comes from mtools",
            )
            copied = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
            self.bytes_written += copied
            self._progress(copied)

    def _write_image(self, op: WriteImage, payloads: Payloads | None) -> None:
        if payloads is None:
            raise BackendError(f"writing {op.image} needs the OS package")
        e = self._need(op.ref)
        fd = self._write_fd()
        try:
            punch_hole(fd, e.start, e.size)
            with payloads.image(op.image) as src:
                pos = 0
                while True:
                    buf = src.read(CHUNK)
                    if not buf:
                        break
                    if pos + len(buf) > e.size:
                        raise BackendError(
                            f"image {op.image} is larger than partition {op.ref} "
                            f"({format_size(e.size)})"
                        )
                    self.bytes_written += write_nonzero(fd, buf, e.start + pos)  # zeros: holes
                    pos += len(buf)
                    self._progress(len(buf))
                    self._fault("WriteImage:chunk")
        finally:
            os.close(fd)

    # -- boot policy -----------------------------------------------------------------------
    def set_boot(self, stub_ref: str, admin_user: str, password: str) -> None:
        """The sim's ``bless``: records the blessed container in state.json."""
        e = self._need(stub_ref)
        state = SimState(self.image)
        sc = state.containers.get(e.uuid)
        if sc is None or not any("System" in v.roles for v in sc.volumes):
            raise BackendError(f"{stub_ref}: no System volume to bless on {self.image}")
        if not admin_user:
            raise BackendError("blessing needs an admin user name")
        state.boot = e.uuid
        state.save()

    # -- rollback --------------------------------------------------------------------------
    def undo(self, op: Op) -> None:
        match op:
            case ResizeContainer():
                e = self._entry(op.ref)
                if e is not None:
                    self._resize(op.ref, op.old_size)
            case CreateStubContainer() | CreatePartition():
                # Found by GUID: an interruption may have come before the ref was recorded.
                e = next((x for x in self._gpt() if x.uuid == op.uuid.upper()), None)
                if e is not None:
                    self._refs[op.ref] = f"{DISK_REF}s{e.number}"
                    self.execute(DeletePartition(op.ref, e.start, e.size), None)
                    state = SimState(self.image)
                    state.drop(e.uuid)
                    state.save()
            case CreateStubVolumes() | FormatFat32() | CopyTree() | WriteImage():
                pass  # lived inside a partition that the undo of its creation removes
            case DeletePartition() | DeleteContainer():
                raise BackendError(
                    f"{op.ref} was already deleted; an uninstall cannot be rolled back",
                    hint="resume the uninstall instead",
                )
            case _:
                assert_never(op)

    # -- safety ----------------------------------------------------------------------------
    def snapshot(self, owned: Sequence[tuple[int, int]]) -> dict[str, Any]:
        ranges = unowned(self._size(), owned)
        digests = hash_ranges(self.image, ranges)
        return {"ranges": [[d.start, d.end, d.digest] for d in digests],
                "partitions": partition_entries(self.read_model().disks[0], owned)}

    def verify(self, owned: Sequence[tuple[int, int]], snapshot: dict[str, Any]) -> None:
        before = [RangeDigest(s, e, d) for s, e, d in snapshot["ranges"]]
        after = hash_ranges(self.image, [(d.start, d.end) for d in before])
        bad = changed(before, after)
        if bad:
            where = ", ".join(f"[{d.start}, {d.end})" for d in bad[:3])
            raise BackendError(f"bytes outside the plan changed on {self.image}: {where}")
        check_entries(str(self.image), snapshot.get("partitions", []),
                      partition_entries(self.read_model().disks[0], owned)
                      if "partitions" in snapshot else [])


def _vol(device: str, v: SimVolume) -> Volume:
    return Volume(device, v.name, tuple(v.roles), v.used, v.uuid)


def remove_sim(image: Path) -> None:
    """Delete a simulated Mac (image, sidecar, facts)."""
    image.unlink(missing_ok=True)
    facts_path(image).unlink(missing_ok=True)
    shutil.rmtree(sidecar(image), ignore_errors=True)
