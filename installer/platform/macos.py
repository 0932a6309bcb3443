"""The ``macos`` backend: the exact command forms of formats.md §12, through a ``Runner``.

Command errors surface verbatim (``CommandError`` keeps stderr) plus a hint. New
partitions are found by comparing ``diskutil list`` before and after, and must land where
the plan put them; otherwise the run stops.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, assert_never

from installer.disk.diskutil import (
    DiskInfo,
    build_model,
    group_of,
    parse_apfs_list,
    parse_info,
    parse_limits,
    parse_list,
    parse_volume_groups,
)
from installer.disk.model import TYPE_GUIDS, DiskModel, PartKind, ResizeLimits
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
from installer.platform.base import Backend, Payloads, Runner
from installer.platform.safety import check_entries, partition_entries
from installer.platform.sparse import CHUNK

log = logging.getLogger(__name__)

STUB_MAX = 5 * 1000**3  # an unmounted container this small with a System volume is a stub
HINT = "see the diskutil message above; nothing after this step was changed"


class MacBackend(Backend):
    name = "macos"

    def __init__(self, runner: Runner, *, disk: str = "disk0", root: Path = Path("/"),
                 dev_root: Path | None = None,
                 progress: Callable[[int], None] | None = None) -> None:
        self.runner = runner
        self.disk = disk
        #: Where /Volumes and /dev are: "/" on a Mac, the stand-in's root off one.
        self.root = root
        self.dev_root = dev_root if dev_root is not None else root / "dev"
        self._refs: dict[str, str] = {}
        self._containers: dict[str, str] = {}  # partition ref -> APFS container ref
        # `diskutil info` of partitions (offset, GUID): fixed while the partition exists,
        # so asked once per run (each call costs a diskutil start); dropped when our own
        # operation deletes or resizes it.
        self._pinfo: dict[str, DiskInfo] = {}
        self._progress = progress or (lambda n: None)  # image bytes written, as they go

    def _du(self, *args: str, hint: str = HINT) -> bytes:
        return self.runner.check(["diskutil", *args], hint=hint)

    # -- reading ---------------------------------------------------------------------------
    def read_model(self) -> DiskModel:
        listed = parse_list(self._du("list", "-plist"))
        containers = parse_apfs_list(self._du("apfs", "list", "-plist"))
        infos: dict[str, DiskInfo] = {}
        synthesized = {d.ref for d in listed if d.apfs_stores}
        for d in listed:
            if d.ref in synthesized:
                continue
            infos[d.ref] = self._part_info(d.ref)  # a whole disk's facts do not change
            for pid, *_ in d.partitions:
                infos[pid] = self._part_info(pid)
        stubs: dict[str, bool] = {}
        limits: dict[str, ResizeLimits] = {}
        groups: dict[str, str] = {}
        for c in containers:
            self._containers.update({s: c.ref for s in c.stores})
            system = [v for v in c.volumes if "System" in v.roles]
            if not system:
                continue
            stubs[c.ref] = self._is_stub(system[0].device, c.ceiling)
            groups[c.ref] = group_of(parse_volume_groups(
                self._du("apfs", "listVolumeGroups", c.ref, "-plist")), system[0].uuid)
            if not stubs[c.ref] and {"Data"} <= {r for v in c.volumes for r in v.roles}:
                store = c.stores[0]
                limits[store] = parse_limits(
                    self._du("apfs", "resizeContainer", store, "limits", "-plist"))
        return build_model(listed, containers, infos, limits, stubs, groups)

    def _part_info(self, pid: str) -> DiskInfo:
        if pid not in self._pinfo:
            self._pinfo[pid] = parse_info(self._du("info", "-plist", pid))
        return self._pinfo[pid]

    def _is_stub(self, system_volume: str, ceiling: int) -> bool:
        """formats.md §1: a System volume without /Library. Unmounted: judge by size."""
        info = parse_info(self._du("info", "-plist", system_volume))
        if info.mount_point is None:
            return ceiling <= STUB_MAX
        library = self.local(info.mount_point.rstrip("/") + "/Library")
        return self.runner.run(["test", "-d", str(library)]).rc != 0

    def local(self, path: str) -> Path:
        """A path macOS reports (a mount point) as this process opens it."""
        return self.root / path.lstrip("/")

    def mount(self, dev: str) -> Path:
        """``diskutil mount`` a volume or partition; its mount point (under ``root``)."""
        self._du("mount", dev)
        mp = parse_info(self._du("info", "-plist", dev)).mount_point
        if mp is None:
            raise BackendError(f"{dev} did not mount")
        return self.local(mp)

    def unmount(self, dev: str) -> None:
        self._du("unmount", dev)

    # -- refs --------------------------------------------------------------------------------
    def refs(self) -> dict[str, str]:
        return dict(self._refs)

    def restore_refs(self, refs: Mapping[str, str]) -> None:
        self._refs = dict(refs)

    def _real(self, ref: str) -> str:
        if ref.startswith("new:"):
            if ref not in self._refs:
                raise BackendError(f"partition {ref} of the plan was never created")
            return self._refs[ref]
        return ref

    def _partition_ids(self) -> list[str]:
        for d in parse_list(self._du("list", "-plist", self.disk)):
            if d.ref == self.disk:
                return [p[0] for p in d.partitions]
        raise BackendError(f"diskutil list: {self.disk} disappeared")

    def _add(self, ref: str, after: str, args: list[str], start: int) -> str:
        if ref in self._refs:  # created before an interruption
            return self._refs[ref]
        ids = self._partition_ids()
        # created, but the run stopped before the journal said so
        found = next((pid for pid in ids if self._part_info(pid).offset == start), None)
        if found is not None:
            log.info("adopting %s at byte %d as %s", found, start, ref)
            self._refs[ref] = found
            return found
        before = set(ids)
        self._du("addPartition", self._real(after), *args)
        new = [p for p in self._partition_ids() if p not in before]
        if len(new) != 1:
            raise BackendError(f"diskutil addPartition: expected one new partition, got {new}")
        got = self._part_info(new[0]).offset
        self._refs[ref] = new[0]
        if got != start:
            raise BackendError(
                f"diskutil put {new[0]} at byte {got}, the plan at {start}; stopping",
                hint="roll back with the journal, then plan again",
            )
        return new[0]

    def _container_of(self, part: str) -> str:
        for c in parse_apfs_list(self._du("apfs", "list", "-plist")):
            if part in c.stores:
                self._containers[part] = c.ref
                return c.ref
        raise BackendError(f"no APFS container on {part}")

    # -- operations --------------------------------------------------------------------------
    def execute(self, op: Op, payloads: Payloads | None) -> None:
        match op:
            case ResizeContainer():
                self._pinfo.pop(self._real(op.ref), None)
                self._du("apfs", "resizeContainer", self._real(op.ref), str(op.new_size),
                         hint="if APFS snapshots block the resize, delete them "
                              "(tmutil deletelocalsnapshots /) and plan again")
            case CreateStubContainer():
                if op.ref in self._refs:
                    return
                part = self._add(op.ref, op.after, ["apfs", op.label, str(op.size)], op.start)
                # addPartition makes one plain volume; the stub needs role-tagged ones.
                ctr = next((c for c in parse_apfs_list(self._du("apfs", "list", "-plist"))
                            if part in c.stores), None)
                if ctr is None:
                    raise BackendError(f"no APFS container on {part}")
                self._containers[part] = ctr.ref
                for v in ctr.volumes:
                    self._du("apfs", "deleteVolume", v.device)
            case CreateStubVolumes():
                self._stub_volumes(op)
            case CreatePartition():
                kind = "%EFI%" if op.kind is PartKind.EFI else f"%{TYPE_GUIDS[op.kind]}%"
                self._add(op.ref, op.after, [kind, "%noformat%", str(op.size)], op.start)
            case FormatFat32():
                argv = ["newfs_msdos", "-F", "32", "-v", op.label]
                if op.volume_id is not None:
                    argv += ["-I", f"0x{op.volume_id:08x}"]
                self.runner.check([*argv, f"/dev/r{self._real(op.ref)}"], hint=HINT)
            case CopyTree():
                self._copy_tree(op, payloads)
            case WriteImage():
                self._write_image(op, payloads)
            case DeletePartition():
                self._delete(self._real(op.ref), op.start, container=False)
            case DeleteContainer():
                self._delete(self._real(op.ref), op.start, container=True)
            case _:
                assert_never(op)

    def _at(self, part: str, start: int) -> bool:
        """Does ``part`` still exist, at byte ``start``? (A repeated delete finds it gone.)"""
        if part not in self._partition_ids():
            return False
        return self._part_info(part).offset == start

    def _find_at(self, start: int) -> str | None:
        for pid in self._partition_ids():
            if self._part_info(pid).offset == start:
                return pid
        return None

    def _delete(self, part: str, start: int, *, container: bool) -> None:
        """Idempotent: an interruption may come between deleteContainer and eraseVolume,
        or after the partition is gone but before the journal recorded it."""
        if not self._at(part, start):
            log.info("%s at byte %d is already gone", part, start)
            return
        if container and any(part in c.stores
                             for c in parse_apfs_list(self._du("apfs", "list", "-plist"))):
            self._du("apfs", "deleteContainer", part)
        self._pinfo.pop(part, None)
        self._du("eraseVolume", "free", "free", part)

    def _stub_volumes(self, op: CreateStubVolumes) -> None:
        part = self._real(op.ref)
        ctr = self._containers.get(part) or self._container_of(part)
        have = {v.name: v.device for c in parse_apfs_list(self._du("apfs", "list", "-plist"))
                if c.ref == ctr for v in c.volumes}
        data = f"{op.label} - Data"
        if data not in have:
            self._du("apfs", "addVolume", ctr, "apfs", data, "-role", "D")
            have = {v.name: v.device for c in parse_apfs_list(self._du("apfs", "list", "-plist"))
                    if c.ref == ctr for v in c.volumes}
        for name, role, extra in ((op.label, "S", ["-groupWith", have[data]]),
                                  ("Preboot", "B", []), ("Recovery", "R", [])):
            if name not in have:
                self._du("apfs", "addVolume", ctr, "apfs", name, "-role", role, *extra)

    def _copy_tree(self, op: CopyTree, payloads: Payloads | None) -> None:
        if payloads is None:
            raise BackendError(f"copying {op.source}/ needs the OS package")
        part = self._real(op.ref)
        src = payloads.tree(op.source)
        self._du("mount", part)
        mp = parse_info(self._du("info", "-plist", part)).mount_point
        if mp is None:
            raise BackendError(f"{part} did not mount")
        try:
            self.runner.check(["ditto", str(src), mp], hint="the ESP may be full")
        finally:
            self._du("unmount", part)

    def _write_image(self, op: WriteImage, payloads: Payloads | None) -> None:
        if payloads is None:
            raise BackendError(f"writing {op.image} needs the OS package")
        dev = self.dev_root / f"r{self._real(op.ref)}"
        try:
            with payloads.image(op.image) as src, dev.open("r+b") as out:
                while buf := src.read(CHUNK):
                    out.write(buf)
                    self._progress(len(buf))
        except OSError as exc:
            raise BackendError(f"writing {op.image} to {dev}: {exc.strerror}") from exc

    # -- boot policy -------------------------------------------------------------------------
    def set_boot(self, stub_ref: str, admin_user: str, password: str) -> None:
        """formats.md §12: ``bless --setBoot --device /dev/<system volume> --user <admin>
        --stdinpass``; the password goes to stdin, never into argv or the log."""
        part = self._real(stub_ref)
        ctr = self._containers.get(part) or self._container_of(part)
        system = next((v for c in parse_apfs_list(self._du("apfs", "list", "-plist"))
                       if c.ref == ctr for v in c.volumes if "System" in v.roles), None)
        if system is None:
            raise BackendError(f"{part}: the container {ctr} has no System volume to bless")
        self.runner.check(
            ["bless", "--setBoot", "--device", f"/dev/{system.device}", "--user", admin_user,
             "--stdinpass"],
            stdin=(password + "\n").encode(),
            hint=f"check that {admin_user} is an administrator and the password is right",
        )

    def boot_policy(self, vgid: str) -> str:
        """``bputil -d -v <vgid>``: the boot policy of one install, as bputil prints it."""
        out = self.runner.check(["bputil", "-d", "-v", vgid],
                                hint="bputil needs the install's volume group UUID")
        return out.decode(errors="replace")

    # -- rollback ----------------------------------------------------------------------------
    def undo(self, op: Op) -> None:
        match op:
            case ResizeContainer():
                self._pinfo.pop(self._real(op.ref), None)
                self._du("apfs", "resizeContainer", self._real(op.ref), str(op.old_size))
            case CreateStubContainer() | CreatePartition():
                # Found by offset when the run stopped before the journal recorded the ref.
                part = self._refs.pop(op.ref, None) or self._find_at(op.start)
                if part is not None:
                    self._delete(part, op.start,
                                 container=isinstance(op, CreateStubContainer))
            case CreateStubVolumes() | FormatFat32() | CopyTree() | WriteImage():
                pass
            case DeletePartition() | DeleteContainer():
                raise BackendError(
                    f"{op.ref} was already deleted; an uninstall cannot be rolled back",
                    hint="resume the uninstall instead",
                )
            case _:
                assert_never(op)

    # -- safety ------------------------------------------------------------------------------
    def snapshot(self, owned: Sequence[tuple[int, int]]) -> dict[str, Any]:
        return {"partitions": partition_entries(self.read_model().disk(self.disk), owned)}

    def verify(self, owned: Sequence[tuple[int, int]], snapshot: dict[str, Any]) -> None:
        now = partition_entries(self.read_model().disk(self.disk), owned)
        check_entries(self.disk, snapshot["partitions"], now)
