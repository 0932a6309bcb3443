"""``vendorfw update`` in a booted Linux: find the ESP, rebuild ``vendorfw/`` from the raw
dump in ``asahi/``, replace it atomically, optionally install the files to a directory.

The ESP is found from the PARTUUID the bootloader put in the device tree (formats.md §9):
``/proc/device-tree/chosen/asahi,efi-system-partition`` → ``/dev/disk/by-partuuid/<uuid>``
→ the mount point of that device in ``/proc/self/mountinfo``. All three paths are injected.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from vendorfw import rawdump
from vendorfw.atomic import atomic_dir, fsync_tree
from vendorfw.build import check_replaceable, plan_from_source, write_vendorfw_dir
from vendorfw.errors import EspError, VendorFwError
from vendorfw.manifest import MANIFEST_ENTRY, Diff, Manifest, diff_hashes
from vendorfw.model import Problem
from vendorfw.package import Plan, Progress, iter_chunks
from vendorfw.readback import read_package
from vendorfw.source import find_kernelcache

log = logging.getLogger(__name__)

_GUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


DT_ESP_PROPERTY = Path("/proc/device-tree/chosen/asahi,efi-system-partition")
BY_PARTUUID = Path("/dev/disk/by-partuuid")
MOUNTINFO = Path("/proc/self/mountinfo")


@dataclass(frozen=True, slots=True)
class EspLocator:
    """Where the running system tells us about its ESP (overridable for tests)."""

    dt_property: Path = DT_ESP_PROPERTY
    by_partuuid: Path = BY_PARTUUID
    mountinfo: Path = MOUNTINFO


def read_partuuid(loc: EspLocator) -> str:
    try:
        raw = loc.dt_property.read_bytes()
    except FileNotFoundError:
        raise EspError(
            f"{loc.dt_property} does not exist: this system was not booted by a loader that "
            "names its ESP",
            hint="pass --esp PATH (the mounted EFI system partition)",
        ) from None
    except OSError as exc:
        raise EspError(f"cannot read {loc.dt_property}: {exc.strerror}") from exc
    uuid = raw.rstrip(b"\0").decode("ascii", errors="replace").strip().lower()
    if not _GUID.fullmatch(uuid):
        raise EspError(f"{loc.dt_property} holds {uuid[:60]!r}, not a partition UUID")
    return uuid


def _unescape(field_: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal (\\040)."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field_)


@dataclass(frozen=True, slots=True)
class EspInfo:
    """Which ESP belongs to the running OS: what a distro installer booted from other media
    needs to choose where its bootloader goes (``vendorfw esp``)."""

    partuuid: str
    device: str  # the partition's device node
    mountpoint: Path | None  # None when it is not mounted

    def as_json(self) -> dict[str, object]:
        return {"partuuid": self.partuuid, "device": self.device,
                "mountpoint": None if self.mountpoint is None else str(self.mountpoint)}


def describe_esp(loc: EspLocator | None = None) -> EspInfo:
    """PARTUUID from the device tree, its device node, and where it is mounted (if it is)."""
    loc = loc or EspLocator()
    uuid = read_partuuid(loc)
    link = loc.by_partuuid / uuid
    if not os.path.lexists(link):
        raise EspError(f"no partition with PARTUUID {uuid} ({link} is missing)",
                       hint="is the disk attached? or pass --esp PATH")
    dev = os.path.realpath(link)
    rdev = _rdev(dev)
    try:
        lines = loc.mountinfo.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as exc:
        raise EspError(f"cannot read {loc.mountinfo}: {exc.strerror}") from exc
    for line in lines:
        left, sep, right = line.partition(" - ")
        a, b = left.split(), right.split()
        if not sep or len(a) < 5 or len(b) < 2:
            continue
        source = _unescape(b[1])
        same_source = os.path.realpath(source) == dev if source.startswith("/") else False
        if (same_source or (rdev is not None and a[2] == rdev)) and a[3] == "/":
            return EspInfo(uuid, dev, Path(_unescape(a[4])))
    return EspInfo(uuid, dev, None)


def find_esp(loc: EspLocator | None = None) -> Path:
    """The mount point of the ESP named in the device tree."""
    info = describe_esp(loc)
    if info.mountpoint is None:
        raise EspError(f"the ESP {info.device} (PARTUUID {info.partuuid}) is not mounted",
                       hint="mount it (e.g. on /boot/efi), or pass --esp PATH")
    log.info("ESP %s (%s) is mounted at %s", info.partuuid, info.device, info.mountpoint)
    return info.mountpoint


def _rdev(dev: str) -> str | None:
    try:
        st = os.stat(dev)
    except OSError:
        return None
    if st.st_rdev == 0:
        return None
    return f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"


@dataclass(frozen=True, slots=True)
class UpdateReport:
    """What ``vendorfw update`` did (or, on a dry run, would do)."""

    esp: Path
    dry_run: bool
    diff: Diff
    files: int
    links: int
    stored_bytes: int
    problems: tuple[Problem, ...]
    installed_to: Path | None = None

    def as_json(self) -> dict[str, object]:
        return {
            "esp": str(self.esp),
            "dry_run": self.dry_run,
            "diff": self.diff.as_json(),
            "files": self.files,
            "links": self.links,
            "stored_bytes": self.stored_bytes,
            "problems": [{"path": p.path, "reason": p.reason} for p in self.problems],
            "installed_to": str(self.installed_to) if self.installed_to else None,
        }


def current_hashes(vendorfw_dir: Path) -> dict[str, str]:
    """Name → hash of the firmware now in ``vendorfw_dir`` (empty if none/unreadable)."""
    for name in ("manifest.txt", "firmware.cpio"):
        p = vendorfw_dir / name
        if p.is_file():
            try:
                return read_package(p).files()
            except VendorFwError as exc:
                log.warning("ignoring the current %s: %s", p, exc.message)
    return {}


def recover_interrupted(target: Path) -> None:
    """Undo what a killed earlier run of :func:`vendorfw.atomic.atomic_dir` left beside
    ``target``: put a swapped-out old tree back if ``target`` is missing, then remove the
    leftover ``.<name>.new-*`` / ``.<name>.old-*`` directories."""
    parent, name = target.parent, target.name
    try:
        olds = sorted(parent.glob(f".{name}.old-*"))
        news = sorted(parent.glob(f".{name}.new-*"))
        if not os.path.lexists(target):
            for old in olds:
                if (old / name).is_dir():
                    log.warning("restoring %s from an interrupted update", target)
                    os.rename(old / name, target)
                    break
        for leftover in olds + news:
            log.warning("removing %s left by an interrupted update", leftover)
            shutil.rmtree(leftover)
    except OSError as exc:
        raise EspError(f"cannot clean up after an interrupted update in {parent}: {exc}") from exc


def update(
    esp: Path,
    *,
    dry_run: bool = False,
    install_to: Path | None = None,
    progress: Progress | None = None,
    tmp_parent: Path | None = None,
) -> UpdateReport:
    """Rebuild ``esp/vendorfw`` from ``esp/asahi/all_firmware.tar.gz`` + kernelcache."""
    asahi = esp / "asahi"
    if not (asahi / rawdump.RAWDUMP_NAME).is_file():
        raise EspError(
            f"{asahi / rawdump.RAWDUMP_NAME} is missing: nothing to re-extract firmware from",
            hint="is this the ESP of this OS? (--esp PATH)",
        )
    # refuse before anything is written: a bad --install-to must not leave half an update
    check_replaceable(esp / "vendorfw", hint="move those files elsewhere, then run again")
    if install_to is not None:
        check_install_target(install_to)
    if not dry_run:
        recover_interrupted(esp / "vendorfw")
    old = current_hashes(esp / "vendorfw")
    if find_kernelcache(asahi) is None:
        log.warning("no kernelcache* in %s: the ASMedia xHCI firmware cannot be rebuilt", asahi)
    with plan_from_source(asahi, progress, tmp_parent) as (plan, problems):
        diff = diff_hashes(old, plan.manifest.hashes())
        if not plan.files and old:
            raise EspError(
                f"{asahi / rawdump.RAWDUMP_NAME} yields no firmware; keeping "
                f"{esp / 'vendorfw'} ({len(old)} files)",
                hint="the raw dump looks damaged; see the warnings above",
            )
        if not dry_run:
            write_vendorfw_dir(plan, esp / "vendorfw", progress)
            log.info("replaced %s", esp / "vendorfw")
            if install_to is not None:
                install_tree(plan, install_to)
    return UpdateReport(
        esp, dry_run, diff, len(plan.files), plan.links, plan.stored_bytes, tuple(problems),
        None if dry_run else install_to,
    )


def _write_tree(plan: Plan, root: Path, manifest: Manifest) -> None:
    for p in plan.files:
        path = root / p.file.name
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
        if p.link_to is not None:
            os.link(root / p.link_to, path)
            continue
        with open(path, "wb") as f:
            for chunk in iter_chunks(p.file):
                f.write(chunk)
        os.chmod(path, 0o644)
    (root / MANIFEST_ENTRY).write_text(manifest.text(), encoding="utf-8")


def check_install_target(dest: Path) -> None:
    """Refuse an install target that is not ours to replace: a file, or a non-empty
    directory without our manifest."""
    try:
        if os.path.lexists(dest) and not dest.is_dir():
            raise EspError(f"--install-to {dest} exists and is not a directory",
                           hint="use a dedicated directory such as /lib/firmware/vendor")
        if dest.is_dir() and any(dest.iterdir()) and not (dest / MANIFEST_ENTRY).is_file():
            raise EspError(
                f"--install-to {dest} is not empty and holds no {MANIFEST_ENTRY}; it would "
                "be replaced as a whole",
                hint="use a dedicated directory such as /lib/firmware/vendor",
            )
    except OSError as exc:
        raise EspError(f"cannot inspect --install-to {dest}: {exc.strerror or exc}") from exc


def install_tree(plan: Plan, dest: Path) -> None:
    """Replace ``dest`` (e.g. /lib/firmware/vendor) with the firmware files.

    A plain directory is swapped as a whole. A mount point (the tmpfs of §9) cannot be
    renamed, so the new tree is staged inside it and its entries are swapped in one by one.
    """
    check_install_target(dest)
    try:
        if dest.is_dir() and os.path.ismount(dest):
            _install_into_mount(plan, dest)
        else:
            dest.parent.mkdir(parents=True, exist_ok=True)
            with atomic_dir(dest) as new:
                _write_tree(plan, new, plan.manifest)
    except OSError as exc:
        raise EspError(f"cannot install firmware to {dest}: {exc}") from exc
    log.info("installed %d firmware files to %s", len(plan.files), dest)


def _install_into_mount(plan: Plan, dest: Path) -> None:
    staged = Path(tempfile.mkdtemp(prefix=".vendorfw.new-", dir=dest))
    old = Path(tempfile.mkdtemp(prefix=".vendorfw.old-", dir=dest))
    moved: list[str] = []
    try:
        _write_tree(plan, staged, plan.manifest)
        fsync_tree(staged)
        for child in list(dest.iterdir()):
            if child not in (staged, old):
                os.rename(child, old / child.name)
                moved.append(child.name)
        for child in list(staged.iterdir()):
            os.rename(child, dest / child.name)
    except BaseException:
        for name in moved:  # put the old files back where the new ones did not land
            if not os.path.lexists(dest / name):
                os.rename(old / name, dest / name)
        raise
    finally:
        shutil.rmtree(staged, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
