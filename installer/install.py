"""``install(request, deps, progress)``: the one install flow (``pippin install`` and the TUI).

Order, chosen so that every download and check happens before the disk is touched:

1. catalog (file or URL; the demo site when none is given) → device facts → OS entry →
   restore image (the pinned table: chip minimum, installed macOS, the entry's
   ``supported_fw``; an ``IPSW_BASE`` mirror replaces the host) → plan. A dry run stops here.
2. download and verify the OS package (SHA-256 from the catalog) and unpack it; fetch the
   restore-image members the stub and the firmware need (CRC-checked); build the raw
   firmware dump and ``vendorfw/``.
3. run the plan's operations under the journal (partitions, FAT32, package images and
   ``esp/`` tree), then fill the stub volumes (formats.md §11), write the ESP's files
   (§5: ``vendorfw/``, ``asahi/…``, ``m1n1/boot.bin`` through the downgrade-safe update) and
   the stage-1 boot object (stage1.bin + ``stage1_config(esp partuuid)``) where step 2 takes
   it (:data:`installer.stub.STAGE1_PATH` on the stub's System volume).

Any failure in step 3 rolls the journal back, so the disk holds either the whole install or
none of it. Progress: ``progress(stage, done, total)`` (bytes, or operations for "disk").

A run killed during step 3 leaves its journal (with the install's answers and how far the
file steps got, :mod:`installer.platform.journal`). A new install or plan on that target
stops first and names ``pippin resume`` and ``pippin rollback``
(:mod:`installer.lifecycle.interrupted`): resume fetches what it needs again (package,
restore-image members) and finishes the operations and every file step (``_install`` with
``resuming``, on the journal's own plan); rollback undoes them.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import plistlib
import secrets
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import requests

from installer import catalog_trust
from installer.answers import Answers, to_toml
from installer.bootobj import assemble, espupdate, layout
from installer.bootobj import vars as bvars
from installer.bootobj.stage1src import resolve_stage1
from installer.bundle import source as bundle_source
from installer.catalog import Catalog, OsEntry, PartitionType, parse_catalog
from installer.catalog_trust import Pin
from installer.demo import server as demo_server
from installer.demo.site import ensure_site
from installer.device import DeviceFacts
from installer.disk.model import DiskModel, Partition, PartKind
from installer.disk.ops import CreatePartition, CreateStubContainer
from installer.disk.plan import NEED_FREE, Choices, Plan, Space, plan_install, space_options
from installer.errors import AnswersError, BackendError, CatalogError, PippinError
from installer.firmware import FirmwareOutput, build_firmware
from installer.ipsw import images, remote
from installer.ipsw.cache import cache_root as range_cache_root
from installer.ipsw.fetch import FetchOptions, FetchProgress, fetch_members
from installer.ipsw.member import DirectorySink
from installer.ipsw.select import Needed, needed_members
from installer.net.http import request_error
from installer.ospackage import (
    ZipPayloads,
    fetch_extras,
    fetch_package,
    open_package,
    unpack_package,
)
from installer.platform.base import DirPayloads, Runner
from installer.platform.journal import (
    Journal,
    PendingRun,
    pending_run,
    rollback,
    run_plan,
    set_phase,
)
from installer.platform.simmac import SimMac
from installer.stub import STAGE1_PATH, build_stub, stub_system_version
from installer.targets.base import InstallTarget
from installer.targets.mac import MacTarget
from installer.targets.sim import SimTarget

log = logging.getLogger(__name__)

ProgressFn = Callable[[str, int, int], None]
#: Where an entry with ``copy_installer_data`` gets the catalog it came from, on its ESP.
CATALOG_COPY = "installer_data.json"
REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True, slots=True)
class InstallRequest:
    answers: Answers
    dry_run: bool = False
    auto_space: bool = False  # space not chosen: free space when it fits, else resize macOS
    admin_password: str | None = None  # for bless; never in the answers file or the log


@dataclass(frozen=True)
class InstallDeps:
    """Everything the flow uses, injected (STYLE.md: inject, don't reach)."""

    session: requests.Session
    runner: Runner
    cache_dir: Path
    clock: Callable[[], float] = time.monotonic
    env: dict[str, str] = field(default_factory=dict)  # INSTALLER_DATA, REPO_BASE, IPSW_BASE
    target: InstallTarget | None = None  # built from answers.target when None
    mac_root: Path = Path("/")  # where /Volumes and /dev are (the macOS stand-in's root)
    prebuilt: Path = REPO_ROOT / "bootchain" / "prebuilt"
    demo_assets: Path | None = REPO_ROOT / ".cache" / "test-assets"
    fetch_options: FetchOptions = FetchOptions()
    # New partitions' unique GUIDs derive from this; random per run so that no two installs
    # share a PARTUUID (stage 1 finds the ESP by it). Tests pin it for stable plans.
    guid_seed: str = field(default_factory=lambda: secrets.token_hex(16))
    # Called at each step of the disk-changing part (tests crash the run there).
    checkpoint: Callable[[str], None] = field(default=lambda point: None)
    bundle: Path | None = None  # `--source OUT`: install from this offline bundle


@dataclass(frozen=True, slots=True)
class InstallResult:
    plan: Plan
    target: str
    os_name: str
    restore_image: str
    dry_run: bool
    esp_partuuid: str = ""
    vgid: str = ""  # the stub's volume group, which step 2 hands to bputil
    stage1_path: Path | None = None
    stage1_sha256: str = ""
    bytes_downloaded: int = 0
    seconds: dict[str, float] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    answers: Answers | None = None  # the answers as carried out (space resolved, OS named)
    kernel_layout: str = ""  # how m1n1/boot.bin stores the kernel (bootobj/layout.py)

    def to_json(self) -> dict[str, object]:
        from installer.disk.render import plan_to_dict
        return {"target": self.target, "os": self.os_name, "restore_image": self.restore_image,
                "dry_run": self.dry_run, "esp_partuuid": self.esp_partuuid, "vgid": self.vgid,
                "stage1": str(self.stage1_path) if self.stage1_path else None,
                "stage1_sha256": self.stage1_sha256, "bytes_downloaded": self.bytes_downloaded,
                "seconds": self.seconds, "warnings": list(self.warnings),
                "notes": list(self.notes), "kernel_layout": self.kernel_layout,
                "plan": plan_to_dict(self.plan)}


@dataclass(frozen=True, slots=True)
class Source:
    """Where the catalog, packages and restore images come from for this run."""

    catalog: Catalog
    catalog_ref: str
    ipsw_base: str | None
    demo: bool = False
    notes: tuple[str, ...] = ()
    raw: bytes = b""  # the catalog as read (copied to the ESP when an entry asks)
    # Before planning: raises when this source cannot serve the entry + image (a bundle).
    check: Callable[[OsEntry, DeviceFacts, str], None] | None = None


def default_sim(cache_dir: Path) -> Path:
    return cache_dir / "sim" / "mac.img"


def make_target(target: str, runner: Runner, root: Path = Path("/")) -> InstallTarget:
    if target.startswith("sim:"):
        path = Path(target[4:])
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            log.info("creating a simulated Mac at %s", path)
            SimMac.create(path, runner=runner)
        return SimTarget(path, runner)
    from installer.platform.macos import MacBackend
    return MacTarget(MacBackend(runner, disk=target, root=root), runner, root)


def _read_catalog(ref: str, session: requests.Session, repo_base: str | None,
                  pins: Sequence[Pin] = ()) -> tuple[Catalog, bytes]:
    """The catalog at ``ref`` (and its bytes), used only after its signature checks out
    (catalog_trust)."""
    if remote.is_url(ref):
        try:
            resp = session.get(ref, timeout=(10.0, 30.0))
        except requests.RequestException as exc:
            raise request_error(ref, exc) from exc
        if resp.status_code != 200:
            raise CatalogError(f"GET {ref}: HTTP {resp.status_code}")
        catalog_trust.trusted(ref, resp.content, session, pins)
        base = repo_base or ref.rsplit("/", 1)[0]
        return parse_catalog(resp.content, base), resp.content
    path = remote.local_path(ref)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CatalogError(f"cannot read catalog {path}: {exc.strerror}") from exc
    catalog_trust.trusted(str(path), data, None, pins)
    return parse_catalog(data, repo_base or str(path.resolve().parent)), data


@contextlib.contextmanager
def open_source(answers: Answers, deps: InstallDeps) -> Iterator[Source]:
    """The catalog named by the answers, INSTALLER_DATA, or the demo site (served here);
    an offline bundle (``--source``, or a catalog inside one) serves everything locally."""
    ref = answers.catalog or deps.env.get("INSTALLER_DATA")
    bundle_dir = deps.bundle or bundle_source.bundle_of(ref)
    if bundle_dir is not None:
        b = bundle_source.open_bundle(bundle_dir, catalog_trust.pins_from_env(deps.env))
        yield Source(b.catalog, b.catalog_ref, b.ipsw_base, len(b.catalog.entries) == 1,
                     raw=b.raw, check=b.check)
        return
    if ref:
        cat, raw = _read_catalog(ref, deps.session, deps.env.get("REPO_BASE"),
                                 catalog_trust.pins_from_env(deps.env))
        yield Source(cat, ref, deps.env.get("IPSW_BASE"), raw=raw)
        return
    assets = deps.demo_assets
    why = ""
    if assets is not None and not (assets / ".complete").exists():
        fetch = REPO_ROOT / "scripts" / "fetch-test-assets"
        if fetch.is_file():
            log.info("fetching the demo kernel and busybox (scripts/fetch-test-assets)")
            r = deps.runner.run([str(fetch)])
            if r.rc != 0:
                tail = r.stderr.decode(errors="replace").strip().splitlines()[-1:]
                why = "scripts/fetch-test-assets failed: " + (tail[0] if tail else f"exit {r.rc}")
        if not (assets / ".complete").exists():
            why = why or f"no demo kernel in {assets} (scripts/fetch-test-assets)"
            assets = None
    elif assets is None:
        why = "no demo kernel assets configured"
    site = ensure_site(deps.cache_dir, prebuilt=deps.prebuilt, assets=assets,
                       assets_missing=why)
    for note in site.notes:  # an entry left out: say why where the user looks (stderr)
        log.warning("%s", note)
    with demo_server.serve(site.root) as srv:
        url = f"{srv.url}/{site.catalog}"
        pins = (*catalog_trust.pins_from_env(deps.env),
                catalog_trust.Pin(srv.url + "/", site.catalog_key))  # we made this site
        cat, raw = _read_catalog(url, deps.session, srv.url, pins)
        yield Source(cat, url, deps.env.get("IPSW_BASE") or srv.url, True, site.notes, raw)


def pick_entry(catalog: Catalog, answers: Answers, demo: bool) -> OsEntry:
    if answers.os:
        return catalog.find(answers.os)
    if demo and catalog.entries:
        return catalog.entries[0]
    known = ", ".join(repr(e.name.strip()) for e in catalog.entries)
    raise AnswersError("no OS chosen", hint=f"pass --os NAME (catalog: {known})")


def pick_image(entry: OsEntry, facts: DeviceFacts, ipsw_base: str | None) -> tuple[
        images.RestoreImage, str]:
    """The newest pinned image for this chip and macOS that the entry supports, and its URL."""
    usable = images.usable_images(facts.chip_id, facts.macos_version)
    if entry.supported_fw:
        usable = [i for i in usable if i.version in entry.supported_fw]
    if not usable:
        raise CatalogError(
            f"{entry.name.strip()!r} supports restore images {', '.join(entry.supported_fw)}; "
            f"none is usable on chip 0x{facts.chip_id:04X} with macOS {facts.macos_version}")
    img = usable[0]
    if img.url is None and not ipsw_base:
        raise CatalogError(f"restore image {img.version} has no pinned URL",
                           hint="set IPSW_BASE to a mirror that holds it")
    url = img.url or f"{img.version}.zip"
    return img, remote.resolve_source(url, ipsw_base)


def _choose_space(answers: Answers, request: InstallRequest, model: DiskModel,
                  entry: OsEntry) -> Answers:
    if not request.auto_space:
        return answers
    opts = space_options(model, entry, expert=answers.expert)
    need = max(NEED_FREE, entry.min_size)
    space = Space.FREE if opts.largest_free >= need or not opts.resize_offered else Space.RESIZE
    return replace(answers, space=space)


def _stub_ref(plan: Plan) -> str:
    return next(op.ref for op in plan.ops if isinstance(op, CreateStubContainer))


def _esp_ref(plan: Plan) -> str:
    return next(op.ref for op in plan.ops
                if isinstance(op, CreatePartition) and op.kind is PartKind.EFI)


class _Stages:
    """Times each stage and forwards progress."""

    def __init__(self, progress: ProgressFn | None, clock: Callable[[], float]) -> None:
        self.progress = progress or (lambda s, d, t: None)
        self.clock = clock
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        log.info("stage: %s", name)
        t0 = self.clock()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + self.clock() - t0


class _LogCapture(logging.Handler):
    """The install's log lines, for ESP asahi/installer.log."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.buf = io.StringIO()
        self.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.buf.write(self.format(record) + "\n")


def install(request: InstallRequest, deps: InstallDeps,
            progress: ProgressFn | None = None) -> InstallResult:
    """Run one install (or, with ``request.dry_run``, only plan it). See the module doc."""
    capture = _LogCapture()
    logging.getLogger("installer").addHandler(capture)
    logging.getLogger("vendorfw").addHandler(capture)
    try:
        return _install(request, deps, _Stages(progress, deps.clock), capture)
    finally:
        logging.getLogger("installer").removeHandler(capture)
        logging.getLogger("vendorfw").removeHandler(capture)


def interrupted_error(pending: PendingRun, target_ref: str) -> PippinError:
    """The one line a new install prints when an earlier one did not finish."""
    t = f" --target {target_ref}"
    return PippinError(f"an {pending.describe()} was interrupted on {target_ref}: finish it "
                       f"with `pippin resume{t}` or undo it with `pippin rollback{t}`")


def _install(request: InstallRequest, deps: InstallDeps, st: _Stages,
             capture: _LogCapture, resuming: PendingRun | None = None) -> InstallResult:
    answers = request.answers
    target_ref = answers.target or f"sim:{default_sim(deps.cache_dir)}"
    t0 = deps.clock()
    with open_source(answers, deps) as src:
        target = deps.target or make_target(target_ref, deps.runner, deps.mac_root)
        if resuming is None:
            pending = pending_run(target.journal)
            if pending is not None:
                raise interrupted_error(pending, target_ref)
        facts = target.facts()
        entry = pick_entry(src.catalog, answers, demo=src.demo)
        img, ipsw_url = pick_image(entry, facts, src.ipsw_base)
        if src.check is not None:
            src.check(entry, facts, ipsw_url)
        if resuming is not None:
            plan = _journaled_plan(target, resuming)
        else:
            model = target.backend.read_model()
            answers = _choose_space(answers, request, model, entry)
            disk = None if target_ref.startswith("sim:") else target_ref
            plan = plan_install(model, entry, Choices(
                space=answers.space, resize_to=answers.resize_to, size=answers.size,
                name=answers.name, expert=answers.expert, disk=disk, seed=deps.guid_seed))
        log.info("plan: %s on %s with restore image %s (%s)", entry.name.strip(), target_ref,
                 img.version, ipsw_url)
        final = replace(answers, target=target_ref, os=entry.name)
        result = InstallResult(plan, target_ref, entry.name.strip(), ipsw_url,
                               request.dry_run, notes=src.notes + _layout_note(entry),
                               answers=final)
        real_mac = isinstance(target, MacTarget)
        stage1 = resolve_stage1(
            boot_object=entry.boot_object, entry_name=entry.name.strip(), real_mac=real_mac,
            given=Path(answers.stage1) if answers.stage1 else None, prebuilt=deps.prebuilt)
        admin = None if request.dry_run else _admin(answers, request, real_mac)
        st.seconds["plan"] = deps.clock() - t0
        if request.dry_run:
            return replace(result, seconds=dict(st.seconds))
        log.info("stage 1: %s (%s)", stage1.source, stage1.version)
        deps.cache_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="pippin-install-", dir=deps.cache_dir) as tmp:
            return _run(result, entry, facts, target, plan, deps, st, capture, Path(tmp),
                        stage1.data, admin, resuming=resuming is not None,
                        catalog_data=src.raw)


def _admin(answers: Answers, request: InstallRequest, real_mac: bool) -> tuple[str, str] | None:
    """Who blesses the new System volume (formats.md §12): required on a Mac, optional on
    the sim (which records the blessed container)."""
    user, password = answers.admin_user, request.admin_password
    if real_mac and not (user and password):
        raise AnswersError("setting the boot volume (bless) needs an administrator's name and "
                           "password", hint="pass --admin-user NAME (or admin_user in the "
                           "answers file) and the password in PIPPIN_ADMIN_PASSWORD")
    return (user, password or "") if user else None


def _journaled_plan(target: InstallTarget, pending: PendingRun) -> Plan:
    """The interrupted install's plan, as its journal holds it (not planned again: the disk
    is half changed)."""
    j = Journal.load(target.journal)
    return Plan(action=j.action, disk=str(pending.context.get("disk", "")), ops=tuple(j.ops),
                before=(), after=(), owned=tuple(j.owned),
                os_name=str(pending.context.get("plan_os_name", "")))


def _run(result: InstallResult, entry: OsEntry, facts: DeviceFacts, target: InstallTarget,
         plan: Plan, deps: InstallDeps, st: _Stages, capture: _LogCapture,
         work: Path, stage1_src: bytes, admin: tuple[str, str] | None, *,
         resuming: bool = False, catalog_data: bytes = b"") -> InstallResult:
    downloaded = 0
    payloads: DirPayloads | ZipPayloads | None = None
    tethered = not entry.partitions  # a stub only; stage 1 waits for a development host
    if entry.package:
        with st.stage("package"):
            pkg = fetch_package(entry, deps.session, deps.cache_dir / "packages",
                                lambda d, t: st.progress("package", d, t),
                                connections=deps.fetch_options.plan.connections)
            zpath = pkg.path
            downloaded += pkg.network_bytes  # not a cached or bundled copy
            if isinstance(target, MacTarget):  # images stream to the raw devices
                payloads = open_package(zpath, work / "package", entry)
            else:
                payloads = DirPayloads(unpack_package(zpath, work / "package", entry))
    if entry.extras:
        with st.stage("extras"):
            fetch_extras(entry, deps.session, work / "extras")
    with st.stage("restore image"):
        needed, fetched, nbytes = _fetch_restore(result.restore_image, facts, deps, st, work)
        downloaded += nbytes
    fw = None
    if not tethered:
        with st.stage("firmware"):
            fw = build_firmware(fetched, needed, work / "firmware",
                                _counter(st, "firmware"), target.image_opener())
    boot_bin = b"" if tethered else _boot_bin(payloads, deps)
    context = {"answers": to_toml(result.answers or Answers()), "os": entry.name.strip(),
               "restore_image": result.restore_image, "disk": plan.disk,
               "plan_os_name": plan.os_name, "phase": "disk"}
    cp = deps.checkpoint

    def op_progress(i: int, n: int, what: str) -> None:
        st.progress("disk", i, n)
        cp(f"op {i}/{n}")
    try:
        with st.stage("disk"):
            cp("disk")
            run_plan(target.backend, plan, payloads, target.journal, progress=op_progress,
                     context=context, resuming=resuming)
            set_phase(target.journal, "files")
            cp("files")
        with st.stage("stub"):
            model = target.backend.read_model()
            refs = target.backend.refs()
            stub_part = _part(model, refs.get(_stub_ref(plan)))
            if tethered:
                esp_part, esp_uuid = None, ""
                stage1 = assemble.assemble_stage1(stage1_src, (), tethered=True)
            else:
                esp_part = _part(model, refs.get(_esp_ref(plan)))
                esp_uuid = bvars.normalize_partuuid(esp_part.uuid)
                stage1 = assemble.assemble_stage1(stage1_src, bvars.stage1_config(esp_uuid))
            with target.open_stub(stub_part) as info:
                written = build_stub(fetched, needed, info.volumes, info.vgid, stage1,
                                     os_name=plan.os_name)
                target.account_stub(stub_part, written)
            stage1_path = info.volumes.system / STAGE1_PATH
            cp("stub written")
        warnings = tuple(plan.warnings) + (fw.warnings if fw else ())
        choice: layout.Choice | None = None
        if esp_part is not None and fw is not None:
            choice = _esp_stage(st, work, entry, facts, needed, fetched, fw, info.vgid,
                                boot_bin, stage1_path, len(stage1), esp_uuid, capture, target,
                                esp_part, payloads, catalog_data)
            cp("esp written")
        if admin is not None:
            with st.stage("boot policy"):
                target.backend.set_boot(stub_part.ref, *admin)
                log.info("blessed the System volume of %s as %s", stub_part.ref, admin[0])
        set_phase(target.journal, "done")
    except (PippinError, OSError, KeyboardInterrupt) as exc:
        # The log file gets the details; the user gets one error line whose hint says the
        # disk was put back (a second ERROR line on stderr broke the one-line rule).
        log.info("install failed after the disk was changed (%s); rolling back", exc)
        _rollback(target)
        back = "the disk was rolled back to its state before the install"
        if isinstance(exc, OSError):
            raise BackendError(f"install failed: {exc}", hint=back) from exc
        if isinstance(exc, PippinError):
            exc.hint = f"{exc.hint}; {back}" if exc.hint else back
        raise
    return replace(result, esp_partuuid=esp_uuid, vgid=info.vgid, stage1_path=stage1_path,
                   kernel_layout=choice.describe() if choice is not None else "",
                   stage1_sha256=hashlib.sha256(stage1).hexdigest(),
                   bytes_downloaded=downloaded, seconds=dict(st.seconds), warnings=warnings)


def _esp_stage(st: _Stages, work: Path, entry: OsEntry, facts: DeviceFacts, needed: Needed,
               fetched: Path, fw: FirmwareOutput, vgid: str, boot_bin: bytes,
               stage1_path: Path, stage1_len: int, esp_uuid: str, capture: _LogCapture,
               target: InstallTarget, esp_part: Partition,
               payloads: DirPayloads | ZipPayloads | None, catalog_data: bytes) -> layout.Choice:
    """Everything the installer adds to the ESP (formats.md §5), the install log last;
    the kernel layout of m1n1/boot.bin it chose."""
    with st.stage("esp"):
        staging = work / "esp"
        _stage_esp(staging, entry, facts, needed, fetched, fw, vgid, boot_bin)
        choice = _kernel_layout(staging, payloads, esp_part.size)
        if catalog_data and any(p.type is PartitionType.EFI and p.copy_installer_data
                                for p in entry.partitions):
            (staging / "asahi" / CATALOG_COPY).write_bytes(catalog_data)
        if (work / "extras").is_dir():
            shutil.copytree(work / "extras", staging / "asahi" / "extras")
        log.info("stage 1 (%d bytes) at %s; ESP %s", stage1_len, stage1_path, esp_uuid)
        (staging / "asahi" / "installer.log").write_text(capture.buf.getvalue())
        target.write_esp(esp_part, staging)
    return choice


def _rollback(target: InstallTarget) -> None:
    """Undo a finished plan: reopen its journal as running, then roll it back."""
    j = Journal.load(target.journal)
    if j.status == "done":
        j.status = "running"
        j.save()
    rollback(target.backend, target.journal)


def _counter(st: _Stages, stage: str) -> Callable[[int], None]:
    done = [0]

    def add(n: int) -> None:
        done[0] += n
        st.progress(stage, done[0], 0)
    return add


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise PippinError(f"cannot read {path}: {exc.strerror}",
                          hint="run from a Pippin checkout (bootchain/prebuilt/)") from exc


def _part(model: DiskModel, ref: str | None) -> Partition:
    for p in model.disks[0].partitions:
        if p.ref == ref:
            return p
    raise BackendError(f"partition {ref} created by the plan is not on the disk")


def _layout_note(entry: OsEntry) -> tuple[str, ...]:
    """What the plan says about m1n1/boot.bin's kernel layout (decided once the package is
    here: the plan itself needs no download)."""
    esp = next((p for p in entry.partitions if p.type is PartitionType.EFI), None)
    if not entry.package or esp is None:
        return ()
    return (f"m1n1/boot.bin: a compressed kernel is stored raw (booted in place, the fast "
            f"layout) when {layout.COPIES} copies fit on the ESP beside the firmware, "
            "else it stays compressed",)


def _kernel_layout(staging: Path, payloads: DirPayloads | ZipPayloads | None,
                   esp_size: int) -> layout.Choice:
    """Issue 13: the raw kernel layout when the ESP has room (installer/bootobj/layout.py)."""
    pkg_esp = payloads.root / "esp" if payloads is not None else None
    choice = layout.choose_staged(staging, pkg_esp, esp_size)
    log.info("m1n1/boot.bin: kernel layout %s", choice.describe())
    return choice


def _boot_bin(payloads: DirPayloads | ZipPayloads | None, deps: InstallDeps) -> bytes:
    """m1n1/boot.bin: the package's (a Pippin stage 2 with payloads), else bare stage 2."""
    if payloads is not None:
        p = payloads.root / "esp" / "m1n1" / "boot.bin"
        if p.is_file():
            return p.read_bytes()
    return _read(deps.prebuilt / "stage2.bin")


def _fetch_restore(url: str, facts: DeviceFacts, deps: InstallDeps, st: _Stages,
                   work: Path) -> tuple[Needed, Path, int]:
    archive = remote.open_archive(url, deps.session, timeout=deps.fetch_options.timeout)
    cache_root = range_cache_root(deps.cache_dir)  # shared with `pippin ipsw fetch`
    needed = needed_members(archive, board_id=facts.board_id, chip_id=facts.chip_id,
                            device_class=facts.device_class, session=deps.session,
                            cache_root=cache_root)
    from installer.ipsw.manifest import firmware_members
    names = sorted(set(needed.members) | set(
        firmware_members(archive.names(), needed.identity, needed.layout)))
    out = work / "ipsw"
    out.mkdir()

    def prog(p: FetchProgress) -> None:
        st.progress("restore image", p.done, p.total)

    r = fetch_members(archive, names, DirectorySink(out), session=deps.session,
                      cache_root=cache_root, options=deps.fetch_options, progress=prog)
    log.info("restore image: %d members, %d bytes fetched in %.1f s", len(r.members),
             r.downloaded_bytes, r.seconds)
    return needed, out, r.downloaded_bytes


def _stage_esp(staging: Path, entry: OsEntry, facts: DeviceFacts, needed: Needed,
               fetched: Path, fw: FirmwareOutput, vgid: str, boot_bin: bytes) -> None:
    """Everything the installer adds to the ESP (formats.md §5), as a local tree."""
    asahi = staging / "asahi"
    asahi.mkdir(parents=True)
    shutil.copytree(fw.vendorfw, staging / "vendorfw")
    shutil.copyfile(fw.rawdump, asahi / fw.rawdump.name)
    shutil.copyfile(fw.kernelcache, asahi / fw.kernelcache.name)
    b = needed.layout.boot_prefix
    for name in ("BuildManifest.plist", "RestoreVersion.plist", "SystemVersion.plist"):
        if (fetched / (b + name)).is_file():
            shutil.copyfile(fetched / (b + name), asahi / name)
    (asahi / "AdminUserRecoveryInfo.plist").write_bytes(plistlib.dumps({}))
    info = {
        "vgid": vgid,
        "system_version": str(stub_system_version(fetched, needed).get("ProductVersion", "")),
        "manifest_info": {
            "build_number": needed.identity.build_number or needed.build_version,
            "variant": needed.identity.variant,
            "device_class": needed.identity.device_class,
            "board_id": needed.identity.board_id,
            "chip_id": needed.identity.chip_id,
        },
        "admin_users": {},
        "os_name": entry.name.strip(),
        "device": facts.device_class,
    }
    (asahi / "stub_info.json").write_text(json.dumps(info, indent=1) + "\n")
    espupdate.update_esp(staging, boot_bin)
