"""``pippin bundle create``: an install source that needs no network.

For the chosen catalog entries: the catalog as served (with its ``.sig``), each entry's
package (SHA-256 checked against the catalog), and for each restore image the entry
supports a thin zip (:mod:`installer.bundle.thinzip`) of the members a stub install and the
firmware need on the chosen device classes (``pippin ipsw needed`` and its ``--firmware``
set, for each matching build identity). ``bundle.json`` is written last.

Resumable: every finished file is recorded in ``.bundle-progress.json`` (size, SHA-256); a
rerun keeps a file whose bytes still match and fetches only the rest, and a restore image's
fetched ranges survive in the range cache (shared with ``pippin install``) until its thin
zip is written.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import logging
import os
import shutil
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

from installer import __version__, catalog_trust
from installer.answers import Answers
from installer.bundle.manifest import (
    MANIFEST,
    PROGRESS,
    BundleManifest,
    Device,
    FileRecord,
    ImageRecord,
    file_dict,
    parse_file,
)
from installer.bundle.source import IPSW_DIR
from installer.bundle.thinzip import ThinZip, file_pread, write_thin_zip
from installer.bundle.verify import DiscardSink, check_file, load_manifest, sha256_file
from installer.catalog import OsEntry
from installer.errors import BundleError, PippinError, ReleaseError
from installer.install import REPO_ROOT, InstallDeps, open_source
from installer.ipsw import images, manifest, ota
from installer.ipsw.cache import RangeCache
from installer.ipsw.cache import cache_root as range_cache_root
from installer.ipsw.fetch import FetchProgress, fetch_members, read_members
from installer.ipsw.ranges import coalesce
from installer.ipsw.remote import Archive, Member, is_url, local_path, open_archive, resolve_source
from installer.ospackage import fetch_package
from installer.release.bundle import ReleaseConfig, build_release, parse_latest
from installer.sizes import format_size
from vendorfw.atomic import atomic_file, write_bytes

log = logging.getLogger(__name__)
ProgressFn = Callable[[str, int, int], None]
#: The base URL written into a bundle's own `install` (run from the bundle, it is not used).
OFFLINE_BASE = "https://pippin.invalid/offline"
FAT32_MAX = (4 << 30) - 1
LOCK = ".bundle-lock"


@dataclass(frozen=True, slots=True)
class BundleRequest:
    out: Path
    os_names: tuple[str, ...]
    devices: tuple[str, ...] = ()
    all_devices: bool = False
    catalog: str | None = None  # default: INSTALLER_DATA or the demo site
    with_installer: bool = False
    release: Path | None = None  # a make-release output for --with-installer


@dataclass(frozen=True, slots=True)
class BundleResult:
    out: Path
    manifest: BundleManifest
    needed_bytes: int  # members' compressed data + packages + catalog
    bundle_bytes: int  # every file listed
    downloaded_bytes: int
    reused: tuple[str, ...]  # files kept from an earlier (interrupted) run
    notes: tuple[str, ...] = ()


@dataclass
class _State:
    out: Path
    done: dict[str, FileRecord] = field(default_factory=dict)
    reused: list[str] = field(default_factory=list)
    downloaded: int = 0
    needed: int = 0

    def keep(self, path: str) -> FileRecord | None:
        """The record of ``path`` from an earlier run, when its bytes still match."""
        rec = self.done.get(path)
        if rec is not None and check_file(self.out, rec) is None:
            self.reused.append(path)
            return rec
        return None

    def record(self, path: str, origin: str, sha256: str | None = None) -> FileRecord:
        """``path`` is finished; ``sha256`` when its writer already hashed (or checked) its
        bytes, so a large file is not read again."""
        p = self.out / path
        rec = FileRecord(path, p.stat().st_size, sha256 or sha256_file(p), origin)
        self.done[path] = rec
        write_bytes(self.out / PROGRESS, json.dumps(
            [file_dict(r) for r in self.done.values()], indent=1).encode())
        return rec


def _load_done(out: Path) -> dict[str, FileRecord]:
    done: dict[str, FileRecord] = {}
    if (out / MANIFEST).is_file():
        try:
            done.update({f.path: f for f in load_manifest(out).files})
        except BundleError as exc:
            log.warning("ignoring the old %s: %s", MANIFEST, exc.message)
    try:
        raw = json.loads((out / PROGRESS).read_bytes())
        done.update({r.path: r for r in (parse_file(d, PROGRESS) for d in raw)})
    except FileNotFoundError:
        pass
    except (ValueError, TypeError, BundleError) as exc:  # torn or foreign: start over
        log.warning("ignoring %s: %s", out / PROGRESS, exc)
    return done


def _base_name(ref: str) -> str:
    name = PurePosixPath(unquote(urlsplit(ref).path)).name
    if not name or name in (".", ".."):
        raise BundleError(f"{ref!r} names no file")
    return name


def create_bundle(req: BundleRequest, deps: InstallDeps, progress: ProgressFn | None = None,
                  checkpoint: Callable[[str], None] = lambda point: None) -> BundleResult:
    """Make (or finish) the bundle ``req.out``; see the module doc."""
    if not req.os_names:
        raise BundleError("no OS chosen", hint="pass --os NAME (repeatable)")
    if not req.devices and not req.all_devices:
        raise BundleError("no device class chosen", hint="pass --device CLASS (e.g. j314sap; "
                          "`pippin ipsw identities URL` lists them) or --all-devices")
    out = req.out
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BundleError(f"cannot create {out}: {exc.strerror}") from exc
    with _locked(out):
        return _create(req, deps, progress, checkpoint)


@contextlib.contextmanager
def _locked(out: Path) -> Iterator[None]:
    """One create at a time per bundle (an flock on ``OUT/.bundle-lock``)."""
    try:
        fd = os.open(out / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise BundleError(f"cannot create {out / LOCK}: {exc.strerror}") from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BundleError(f"another `pippin bundle create` is writing {out}",
                              hint="wait for it, or run it again after it ends") from None
        yield
    finally:
        os.close(fd)


def _create(req: BundleRequest, deps: InstallDeps, progress: ProgressFn | None,
            checkpoint: Callable[[str], None]) -> BundleResult:
    out = req.out
    try:
        (out / "os").mkdir(exist_ok=True)
        (out / IPSW_DIR).mkdir(exist_ok=True)
    except OSError as exc:
        raise BundleError(f"cannot create {out}: {exc.strerror}") from exc
    for d in (out, out / "os", out / IPSW_DIR):  # temp files of a killed run
        for tmp in d.glob(".*.tmp"):
            tmp.unlink(missing_ok=True)
    st = _State(out, _load_done(out))
    prog = progress or (lambda s, d, t: None)
    notes: list[str] = []
    with open_source(Answers(catalog=req.catalog), deps) as src:
        notes += src.notes
        entries = [src.catalog.find(n) for n in req.os_names]
        for e in entries:
            if e.extras:
                raise BundleError(f"{e.name.strip()!r} has extras ({', '.join(e.extras)}); "
                                  "bundles do not carry extras yet")
        cat_name = _base_name(src.catalog_ref)
        data = src.raw  # the bytes open_source read and checked, as served
        sig = catalog_trust.fetch_signature(src.catalog_ref, deps.session
                                            if is_url(src.catalog_ref) else None)
        catalog_trust.check_catalog(src.catalog_ref, data, sig, ())  # the copy is whole
        write_bytes(out / cat_name, data)
        files = [st.record(cat_name, src.catalog_ref)]
        if sig is not None:
            write_bytes(out / (cat_name + catalog_trust.SIG_SUFFIX), sig)
            files.append(st.record(cat_name + catalog_trust.SIG_SUFFIX,
                                   src.catalog_ref + catalog_trust.SIG_SUFFIX))
        st.needed += sum(f.size for f in files)
        files += _packages(entries, deps, st, prog, checkpoint)
        imgs, img_files = _images(entries, src.ipsw_base, req, deps, st, prog, checkpoint,
                                  notes)
        files += img_files
    if req.with_installer:
        files += _installer(out, req.release, deps, st)
    man = BundleManifest(__version__, cat_name, src.catalog_ref,
                         tuple(e.name.strip() for e in entries), tuple(imgs), tuple(files))
    write_bytes(out / MANIFEST, man.to_json())
    (out / PROGRESS).unlink(missing_ok=True)
    total = sum(f.size for f in files)
    big = [f.path for f in files if f.size > FAT32_MAX]
    if big:  # the USB stick: FAT32 cannot hold a file of 4 GiB or more
        notes.append(f"{', '.join(big)} is 4 GiB or larger: it does not fit on a FAT32 "
                     "stick (use exFAT or APFS)")
    log.info("bundle %s: %d files, %s (needed %s)", out, len(files), format_size(total),
             format_size(st.needed))
    return BundleResult(out, man, st.needed, total, st.downloaded, tuple(st.reused),
                        tuple(notes))


def _packages(entries: Sequence[OsEntry], deps: InstallDeps, st: _State, prog: ProgressFn,
              checkpoint: Callable[[str], None]) -> list[FileRecord]:
    out: list[FileRecord] = []
    origins: dict[str, str] = {}
    for e in entries:
        if not e.package:
            continue
        rel = f"os/{_base_name(e.package)}"
        if origins.setdefault(rel, e.package) != e.package:
            raise BundleError(f"two packages would both be {rel} ({origins[rel]}, "
                              f"{e.package})")
        rec = st.keep(rel)
        if rec is None:
            st.downloaded += _package(e, st.out / rel, deps, prog)
            # a catalog SHA-256 was checked against the bytes as they were written
            rec = st.record(rel, e.package, e.sha256.lower() if e.sha256 else None)
        st.needed += rec.size
        out.append(rec)
        checkpoint(f"package {rel}")
    return out


def _package(e: OsEntry, dest: Path, deps: InstallDeps, prog: ProgressFn) -> int:
    """The package at ``dest``, as the install fetches it (parallel resumable ranges from a
    URL, a copy from a path); returns the bytes taken from the network."""
    got = fetch_package(e, deps.session, dest.parent, lambda d, t: prog("package", d, t),
                        connections=deps.fetch_options.plan.connections)
    assert got.path == dest  # fetch_package keeps the file name
    return got.network_bytes


def _candidates(entry: OsEntry) -> list[images.RestoreImage]:
    return [i for i in images.IMAGES if not entry.supported_fw or i.version in entry.supported_fw]


def _identities(bm: manifest.BuildManifest, layout: ota.Layout, req: BundleRequest,
                img: images.RestoreImage) -> list[manifest.BuildIdentity]:
    behavior, variant = (("Update", manifest.VARIANT_UPDATE) if layout.ota
                         else ("Erase", manifest.VARIANT_ERASE))
    want = {d.lower() for d in req.devices}
    return [i for i in bm.identities
            if i.restore_behavior == behavior and i.variant == variant
            and (req.all_devices or i.device_class in want)
            and (img.chips is None or i.chip_id in img.chips)]


def _images(entries: Sequence[OsEntry], ipsw_base: str | None, req: BundleRequest,
            deps: InstallDeps, st: _State, prog: ProgressFn, checkpoint: Callable[[str], None],
            notes: list[str]) -> tuple[list[ImageRecord], list[FileRecord]]:
    recs: list[ImageRecord] = []
    files: list[FileRecord] = []
    covered: dict[str, set[str]] = {e.name.strip(): set() for e in entries}
    by_url: dict[str, ImageRecord | None] = {}  # None: no identity for the chosen devices
    for e in entries:
        for img in _candidates(e):
            if img.url is None and not ipsw_base:
                note = (f"restore image {img.version} has no pinned URL and no IPSW_BASE is "
                        "set: not in the bundle")
                if note not in notes:  # once, however many entries support it
                    notes.append(note)
                continue
            url = resolve_source(img.url or f"{img.version}.zip", ipsw_base)
            if url not in by_url:
                got = _image(img, url, req, deps, st, prog)
                by_url[url] = got[0] if got is not None else None
                if got is not None:
                    recs.append(got[0])
                    files.append(got[1])
                    checkpoint(f"image {got[0].path}")
            rec = by_url[url]
            if rec is not None:
                covered[e.name.strip()].update(d.device_class for d in rec.devices)
    for name, devs in covered.items():
        missing = sorted({d.lower() for d in req.devices} - devs)
        if not devs or missing:
            raise BundleError(f"no restore image for {name!r} has build identities for "
                              f"{', '.join(missing) or 'any device'}",
                              hint="`pippin ipsw identities URL` lists an image's devices")
    return recs, files


def _image(img: images.RestoreImage, url: str, req: BundleRequest, deps: InstallDeps,
           st: _State, prog: ProgressFn) -> tuple[ImageRecord, FileRecord] | None:
    rel = f"{IPSW_DIR}/{_base_name(url)}"
    remote = is_url(url)
    arc = open_archive(url, deps.session if remote else None,
                       timeout=deps.fetch_options.timeout)
    layout = ota.detect_layout(arc.names())
    cache_root = range_cache_root(deps.cache_dir)
    bm_name = f"{layout.boot_prefix}BuildManifest.plist"
    bm = manifest.parse_build_manifest(read_members(arc, [bm_name], session=deps.session,
                                                    cache_root=cache_root)[bm_name])
    idents = _identities(bm, layout, req, img)
    if not idents:
        log.info("restore image %s: no identity for the chosen devices; skipped", img.version)
        return None
    names = {bm_name}
    for ident in idents:
        names.update(manifest.stub_members(arc.names(), ident, layout))
        names.update(manifest.firmware_members(arc.names(), ident, layout))
    members = sorted((arc.get(n) for n in names), key=lambda m: m.start)
    devices = tuple(sorted({Device(i.device_class, i.board_id, i.chip_id) for i in idents},
                           key=lambda d: (d.device_class, d.board_id, d.chip_id)))
    rec = ImageRecord(rel, img.version, url, devices, tuple(m.name for m in members))
    st.needed += sum(m.compress_size for m in members)
    kept = st.keep(rel)
    if kept is not None and _same_members(st.out / rel, rec.members):
        return rec, kept
    thin = _write_image(arc, members, st, rel, deps, prog)
    return rec, st.record(rel, url, thin.sha256)


def _same_members(path: Path, names: Iterable[str]) -> bool:
    try:
        return set(open_archive(str(path)).names()) == set(names)
    except PippinError:
        return False


def _write_image(arc: Archive, members: list[Member], st: _State, rel: str,
                 deps: InstallDeps, prog: ProgressFn) -> ThinZip:
    cache_root = range_cache_root(deps.cache_dir)
    opts = dataclasses.replace(deps.fetch_options, keep_cache=True)

    def fetch_prog(p: FetchProgress) -> None:
        prog("restore image", p.done, p.total)

    names = [m.name for m in members]
    # verified here, copied raw afterwards by the thin zip writer
    r = fetch_members(arc, names, DiscardSink(), session=deps.session, cache_root=cache_root,
                      options=opts, progress=fetch_prog)
    st.downloaded += r.downloaded_bytes
    total = sum(m.compress_size for m in members)
    done = [0]

    def copied(n: int) -> None:
        done[0] += n
        prog("thin zip", done[0], total)

    cache = RangeCache(cache_root, arc.identity_key(), arc.size) if arc.is_remote else None
    pread, close = ((cache.read, cache.close) if cache is not None
                    else file_pread(local_path(arc.source)))
    try:
        with atomic_file(st.out / rel) as f:
            thin = write_thin_zip(f, members, pread, progress=copied)
        if cache is not None:  # the members' ranges are in the thin zip now
            spans = coalesce(((m.start, m.end) for m in members), opts.plan.max_gap)
            if cache.release(spans):
                cache.remove()
    finally:
        close()
    log.info("thin zip %s: %d members", rel, len(members))
    return thin


def _installer(out: Path, release: Path | None, deps: InstallDeps,
               st: _State) -> list[FileRecord]:
    """The release bundle, ``latest`` and the ``install`` bootstrap (which, run from the
    bundle's folder, installs from it without network), copied from ``release`` (a
    ``scripts/make-release`` output) or built from this checkout."""
    if release is None:
        if not (REPO_ROOT / "pyproject.toml").is_file():
            raise BundleError("--with-installer needs --release DIR (a scripts/make-release "
                              "output) when Pippin does not run from a checkout")
        cfg = ReleaseConfig(repo=REPO_ROOT, out=out / ".release", base_url=OFFLINE_BASE,
                            python=sys.executable,
                            wheel_cache=REPO_ROOT / ".cache" / "release-wheels")
        try:
            build_release(cfg, deps.runner, log=lambda s: log.info("make-release: %s", s))
        except ReleaseError as exc:
            raise BundleError(f"--with-installer: {exc.message}", hint=exc.hint) from exc
        release, origin = out / ".release", "pippin make-release"
    else:
        origin = str(release.resolve())
    try:
        index = parse_latest((release / "latest").read_text())
    except OSError as exc:
        raise BundleError(f"--release {release}: cannot read latest: {exc.strerror}") from exc
    name = index.get("file", "")
    if not name.startswith("pippin-") or "/" in name or not (release / name).is_file():
        raise BundleError(f"--release {release}: latest names no release bundle beside it")
    if sha256_file(release / name) != index.get("sha256"):
        raise BundleError(f"--release {release}: {name} does not match the SHA-256 in latest")
    recs = []
    for rel, mode in ((name, 0o644), ("latest", 0o644), ("install", 0o755)):
        kept = st.keep(rel)
        if kept is None:
            with (release / rel).open("rb") as fin, atomic_file(out / rel, mode) as fout:
                shutil.copyfileobj(fin, fout)
            kept = st.record(rel, f"{origin}/{rel}")
        recs.append(kept)
    if release == out / ".release":
        shutil.rmtree(release, ignore_errors=True)
    return recs

