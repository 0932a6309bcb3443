"""``pippin refresh-firmware NAME``: rebuild an install's ``vendorfw/`` for this Mac's macOS.

After a macOS update the firmware the OS needs may change. This fetches the firmware
members of the pinned restore image matching the installed macOS (the same member planner
and fetcher as an install, cached), builds the raw dump and ``vendorfw/`` with the same
collectors (:func:`installer.firmware.build_firmware`, i.e. ``vendorfw``'s build), compares
the new manifest with the one on the ESP (the ``vendorfw diff`` lines) and replaces the
ESP's ``vendorfw/`` atomically: the new tree is written beside it as ``vendorfw.new``, then
two renames swap it in; a run killed in between is repaired by the next one (the old tree
comes back when ``vendorfw/`` is missing). ``asahi/``'s raw dump and kernelcache are
replaced too, so ``vendorfw update`` in the booted OS rebuilds the same files. On a simulated
Mac the ESP is written with mtools; on a Mac (and the stand-in) it is mounted (diskutil).
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from installer.answers import Answers
from installer.disk.model import Partition
from installer.errors import BackendError, PippinError
from installer.firmware import build_firmware
from installer.install import InstallDeps, _fetch_restore, _Stages, open_source
from installer.ipsw import images, remote
from installer.lifecycle.stage1 import find_install
from installer.targets.base import InstallTarget
from installer.targets.mac import MacTarget
from installer.targets.sim import SimTarget
from vendorfw.atomic import fsync_tree
from vendorfw.errors import VendorFwError
from vendorfw.manifest import Diff, Manifest, diff_hashes

log = logging.getLogger(__name__)
ProgressFn = Callable[[str, int, int], None]


@dataclass(frozen=True, slots=True)
class FirmwareRefresh:
    name: str
    restore_image: str
    diff: Diff
    files: int
    dry_run: bool
    notes: tuple[str, ...] = ()


def _pick(chip_id: int, macos: str, ipsw_base: str | None) -> tuple[str, str, list[str]]:
    usable = images.usable_images(chip_id, macos)
    if not usable:
        raise PippinError(f"no pinned restore image is usable with macOS {macos}")
    same = [i for i in usable if i.version == macos]
    img = (same or usable)[0]
    notes = [] if same else [f"no pinned restore image for macOS {macos}; using "
                             f"{img.version}, the newest usable one"]
    if img.url is None and not ipsw_base:
        raise PippinError(f"restore image {img.version} has no pinned URL",
                          hint="set IPSW_BASE to a mirror that holds it")
    return img.version, remote.resolve_source(img.url or f"{img.version}.zip", ipsw_base), notes


@contextlib.contextmanager
def _esp(target: InstallTarget, esp: Partition) -> Iterator[_SimEsp | _MountedEsp]:
    if isinstance(target, SimTarget):
        yield _SimEsp(target, esp)
        return
    if not isinstance(target, MacTarget):
        raise BackendError(f"refresh-firmware cannot write the ESP of {type(target).__name__}")
    mounted = _MountedEsp(target, esp)
    try:
        yield mounted
    finally:
        mounted.close()


class _SimEsp:
    """The swap on a simulated Mac's ESP, with mtools (the FAT inside the image)."""

    def __init__(self, target: SimTarget, esp: Partition) -> None:
        self.target, self.at = target, f"{target.image}@@{esp.start}"

    def _run(self, *argv: str, check: bool = True) -> bool:
        cmd = ["env", "MTOOLS_SKIP_CHECK=1", argv[0], "-i", self.at, *argv[1:]]
        if check:
            self.target.runner.check(cmd, hint="mtools must be installed")
            return True
        return self.target.runner.run(cmd).rc == 0

    def exists(self, path: str) -> bool:
        return self._run("mdir", "-b", f"::/{path}", check=False)

    def repair(self) -> None:
        if not self.exists("vendorfw") and self.exists("vendorfw.old"):
            log.warning("restoring vendorfw/ from an interrupted refresh")
            self._run("mmove", "::/vendorfw.old", "::/vendorfw")
        for stale in ("vendorfw.new", "vendorfw.old"):
            if self.exists(stale):
                self._run("mdeltree", f"::/{stale}")

    def swap_in(self, new_tree: Path, asahi_files: list[Path]) -> None:
        self._run("mcopy", "-s", "-Q", str(new_tree), "::/")
        had_old = self.exists("vendorfw")
        if had_old:
            self._run("mmove", "::/vendorfw", "::/vendorfw.old")
        self._run("mmove", "::/vendorfw.new", "::/vendorfw")
        if had_old:
            self._run("mdeltree", "::/vendorfw.old")
        self._run("mcopy", "-o", "-Q", *map(str, asahi_files), "::/asahi/")


class _MountedEsp:
    """The same swap on a mounted ESP (a Mac: ``diskutil mount``, plain renames)."""

    def __init__(self, target: MacTarget, esp: Partition) -> None:
        self.target, self.esp = target, esp
        self.root = target.mac.mount(esp.ref)

    def close(self) -> None:
        self.target.mac.unmount(self.esp.ref)

    def repair(self) -> None:
        cur, old, new = (self.root / n for n in ("vendorfw", "vendorfw.old", "vendorfw.new"))
        try:
            if not cur.exists() and old.is_dir():
                log.warning("restoring vendorfw/ from an interrupted refresh")
                old.rename(cur)
            for stale in (old, new):
                if stale.exists():
                    shutil.rmtree(stale)
        except OSError as exc:
            raise BackendError(f"repairing vendorfw/ on {self.esp.ref}: {exc}") from exc

    def swap_in(self, new_tree: Path, asahi_files: list[Path]) -> None:
        cur, old, new = (self.root / n for n in ("vendorfw", "vendorfw.old", "vendorfw.new"))
        try:
            shutil.copytree(new_tree, new)
            fsync_tree(new)
            had_old = cur.exists()
            if had_old:
                cur.rename(old)
            new.rename(cur)
            if had_old:
                shutil.rmtree(old)
            (self.root / "asahi").mkdir(exist_ok=True)
            for f in asahi_files:
                shutil.copyfile(f, self.root / "asahi" / f.name)
        except OSError as exc:
            raise BackendError(f"replacing vendorfw/ on {self.esp.ref}: {exc}",
                               hint="the ESP may be full") from exc


def refresh_firmware(target: InstallTarget, target_ref: str, name: str, deps: InstallDeps,
                     *, dry_run: bool = False,
                     progress: ProgressFn | None = None) -> FirmwareRefresh:
    inst = find_install(target, name)
    if inst.esp is None:
        raise PippinError(f"{inst.name!r} has no ESP", hint="`pippin status` lists leftovers")
    facts = target.facts()
    if not dry_run:  # a swap killed halfway: the old tree back first, then compare with it
        with _esp(target, inst.esp) as esp:
            esp.repair()
    old_text = (target.read_esp(inst.esp, "vendorfw/manifest.txt")
                or target.read_esp(inst.esp, "vendorfw.old/manifest.txt"))
    try:
        old = Manifest.parse(old_text.decode(), "vendorfw/manifest.txt").hashes() \
            if old_text is not None else {}
    except (VendorFwError, UnicodeDecodeError) as exc:
        log.warning("ignoring the ESP's unreadable vendorfw/manifest.txt: %s", exc)
        old = {}
    st = _Stages(progress, deps.clock)
    deps.cache_dir.mkdir(parents=True, exist_ok=True)
    with open_source(Answers(target=target_ref), deps) as src, \
            tempfile.TemporaryDirectory(prefix="pippin-fw-", dir=deps.cache_dir) as tmp:
        work = Path(tmp)
        version, url, notes = _pick(facts.chip_id, facts.macos_version, src.ipsw_base)
        log.info("refresh-firmware %r from restore image %s (%s)", inst.name, version, url)
        with st.stage("restore image"):
            needed, fetched, _n = _fetch_restore(url, facts, deps, st, work)
        with st.stage("firmware"):
            fw = build_firmware(fetched, needed, work / "firmware",
                                open_image=target.image_opener())
        new = Manifest.parse((fw.vendorfw / "manifest.txt").read_text(),
                             "new vendorfw/manifest.txt")
        diff = diff_hashes(old, new.hashes())
        if not dry_run:
            tree = work / "vendorfw.new"
            shutil.copytree(fw.vendorfw, tree)
            with _esp(target, inst.esp) as esp:
                esp.swap_in(tree, [fw.rawdump, fw.kernelcache])
            log.info("replaced vendorfw/ on %s (%d files)", inst.esp.ref, len(new.entries))
    return FirmwareRefresh(inst.name, version, diff, len(new.entries), dry_run,
                           (*notes, *fw.warnings))
