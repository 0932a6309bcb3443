"""``make-release``: the bundle ``pippin-<version>.tar.gz``, its index ``latest`` and the
``install`` bootstrap, written into one output directory.

Bundle layout (one top folder, ``pippin-<version>/``)::

    wheels/             the pippin wheel, every pinned dependency for macOS arm64
                        (CPython MAC_PYTHONS) and for the building host, and pip itself
    bootchain/prebuilt/ the shipped stage-1/stage-2 loaders + SHA256SUMS
    initramfs-hooks/    the hooks a booted Linux installs
    python/             a Python runtime (only with --python-runtime PATH)
    requirements.lock   the pins the wheels were chosen from
    BUNDLE.json         version, Pythons, and every wheel with its SHA-256

Same inputs, same bytes: members sorted by name, one fixed mtime (:data:`EPOCH`), owner
0/0 without names, modes reduced to 0644/0755, gzip without a name or time; the pippin
wheel is built with ``SOURCE_DATE_EPOCH`` from a clean copy of the sources.
"""

from __future__ import annotations

import contextlib
import fcntl
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import stat
import tarfile
import tempfile
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from installer.errors import ReleaseError
from installer.platform.base import Runner
from installer.release import wheels as wh
from vendorfw.atomic import atomic_file, write_bytes

#: 2024-01-01 00:00 UTC: every member's mtime, and SOURCE_DATE_EPOCH for the wheel.
EPOCH = 1_704_067_200
_URL_RE = re.compile(r"^https?://[A-Za-z0-9._~:/?#\[\]@!&()*+,;=%-]+$")
_SKIP = {"__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache"}


@dataclass(frozen=True, slots=True)
class ReleaseConfig:
    repo: Path  # the checkout to release
    out: Path
    base_url: str  # where `install`, `latest` and the bundle will be served
    python: str  # the interpreter that runs pip (the build venv's)
    wheel_cache: Path
    runtime: Path | None = None  # a Python runtime directory or .tar.gz to ship
    mac_pythons: tuple[str, ...] = wh.MAC_PYTHONS


@dataclass(frozen=True, slots=True)
class Release:
    version: str
    bundle: Path
    size: int
    sha256: str
    latest: Path
    install: Path
    wheels: tuple[str, ...]


def check_base_url(url: str) -> str:
    """An http(s) URL safe to put between single quotes in sh (no quote, space, $ or `)."""
    url = url.rstrip("/")
    if not _URL_RE.match(url):
        raise ReleaseError(f"--base-url {url!r} is not an http(s) URL without spaces or quotes")
    return url


def project_version(repo: Path) -> str:
    try:
        doc = tomllib.loads((repo / "pyproject.toml").read_text())
        version = doc["project"]["version"]
    except (OSError, tomllib.TOMLDecodeError, KeyError) as exc:
        raise ReleaseError(f"cannot read the version from {repo}/pyproject.toml") from exc
    if not isinstance(version, str) or not re.fullmatch(r"[0-9A-Za-z.+-]+", version):
        raise ReleaseError(f"pyproject.toml version {version!r} is not a plain version")
    return version


def _source_files(root: Path) -> Iterator[Path]:
    """Files under ``root`` in name order, without caches and build leftovers."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP and not d.endswith(
            ".egg-info"))
        for f in sorted(filenames):
            if not f.endswith((".pyc", ".pyo")):
                yield Path(dirpath) / f


def build_pippin_wheel(cfg: ReleaseConfig, runner: Runner, build_deps: Path, dest: Path) -> Path:
    """The pippin wheel, built from a clean copy of the sources with pinned build tools."""
    with tempfile.TemporaryDirectory(prefix="pippin-wheel-") as tmp:
        src = Path(tmp) / "src"
        for top in ("installer", "vendorfw"):
            for f in _source_files(cfg.repo / top):
                rel = f.relative_to(cfg.repo)
                (src / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(f, src / rel)
        for name in ("pyproject.toml", "README.md"):
            shutil.copyfile(cfg.repo / name, src / name)
        out = Path(tmp) / "out"
        # SOURCE_DATE_EPOCH fixes the zip times; no index: only the pinned build tools.
        r = runner.run(["env", f"SOURCE_DATE_EPOCH={EPOCH}", "PIP_CONFIG_FILE=/dev/null",
                        cfg.python, "-m", "pip", "wheel", "-q", "--disable-pip-version-check",
                        "--no-deps", "--no-index", "--find-links", str(build_deps),
                        "-w", str(out), str(src)])
        if r.rc != 0:
            tail = r.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["?"]
            raise ReleaseError(f"building the pippin wheel failed: {tail[0]}")
        built = wh.wheel_files(out)
        if len(built) != 1:
            raise ReleaseError(f"building the pippin wheel gave {len(built)} files")
        dest.mkdir(parents=True, exist_ok=True)
        return Path(shutil.copyfile(built[0], dest / built[0].name))


# -- the tar ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Member:
    name: str
    data: bytes | Path | None = None  # None with link: a symlink
    mode: int = 0o644
    link: str = ""


def _tree(src: Path, prefix: str) -> Iterator[Member]:
    """Files and symlinks under ``src`` (runtime or hooks), modes reduced to 0644/0755."""
    for dirpath, dirnames, filenames in os.walk(src):
        dirnames[:] = [d for d in dirnames if d not in _SKIP]
        for name in sorted([*filenames, *(d for d in dirnames
                                           if (Path(dirpath) / d).is_symlink())]):
            p = Path(dirpath) / name
            rel = p.relative_to(src).as_posix()
            if p.is_symlink():
                yield Member(f"{prefix}/{rel}", link=os.readlink(p))
            elif p.is_file():
                yield Member(f"{prefix}/{rel}", p, 0o755 if os.access(p, os.X_OK) else 0o644)


def _runtime_members(runtime: Path, prefix: str) -> Iterator[Member]:
    """A runtime directory (with bin/python3), or a .tar.gz whose top folder is python/."""
    if runtime.is_dir():
        if not (runtime / "bin" / "python3").exists():
            raise ReleaseError(f"--python-runtime {runtime}: no bin/python3 inside")
        yield from _tree(runtime, prefix)
        return
    try:
        with tarfile.open(runtime, "r:*") as tf:
            found = False
            for ti in tf:
                parts = ti.name.lstrip("./").split("/", 1)
                if len(parts) < 2 or parts[0] != "python" or ".." in parts[1].split("/"):
                    continue
                if parts[1] == "bin/python3":
                    found = True
                if ti.issym():
                    yield Member(f"{prefix}/{parts[1]}", link=ti.linkname)
                elif ti.isfile():
                    f = tf.extractfile(ti)
                    assert f is not None  # a regular file member
                    yield Member(f"{prefix}/{parts[1]}", f.read(),
                                 0o755 if ti.mode & 0o111 else 0o644)
    except (OSError, tarfile.TarError) as exc:
        raise ReleaseError(f"--python-runtime {runtime}: not a directory or readable "
                           f"tar archive ({exc})") from exc
    if not found:
        raise ReleaseError(f"--python-runtime {runtime}: no python/bin/python3 inside")


def write_tar_gz(path: Path, members: list[Member]) -> None:
    """A reproducible .tar.gz of ``members`` (sorted, fixed times and owners), atomically."""
    names = [m.name for m in members]
    if len(set(names)) != len(names):
        raise ReleaseError("two bundle members share a name")
    with atomic_file(path) as raw:
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0,
                           compresslevel=9) as gz, \
                tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tf:
            for m in sorted(members, key=lambda m: m.name):
                ti = tarfile.TarInfo(m.name)
                ti.mtime = EPOCH
                ti.uid = ti.gid = 0
                ti.uname = ti.gname = ""
                if m.data is None:
                    ti.type = tarfile.SYMTYPE
                    ti.linkname = m.link
                    ti.mode = 0o777
                    tf.addfile(ti)
                    continue
                data = m.data.read_bytes() if isinstance(m.data, Path) else m.data
                ti.size = len(data)
                ti.mode = m.mode
                tf.addfile(ti, io.BytesIO(data))


def render_latest(version: str, name: str, size: int, sha256: str) -> bytes:
    """The release index: ``key=value`` lines, read by the bootstrap with sed."""
    return (f"version={version}\nfile={name}\nsize={size}\nsha256={sha256}\n").encode()


def parse_latest(text: str) -> dict[str, str]:
    """The fields of a ``latest`` index (what :func:`render_latest` writes)."""
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def render_install(version: str, base_url: str, name: str, size: int, sha256: str) -> bytes:
    template = resources.files("installer.release").joinpath("bootstrap.sh").read_text()
    values = {"@PIPPIN_VERSION@": version, "@PIPPIN_BASE_URL@": base_url,
              "@PIPPIN_BUNDLE@": name, "@PIPPIN_SIZE@": str(size), "@PIPPIN_SHA256@": sha256}
    for k, v in values.items():
        if k not in template:
            raise ReleaseError(f"bootstrap template lacks {k}")
        template = template.replace(k, v)
    return template.encode()


@contextlib.contextmanager
def _locked(cache: Path) -> Iterator[None]:
    """One build at a time uses the wheel cache (parallel test workers share it)."""
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def _collect_wheels(cfg: ReleaseConfig, runner: Runner, pins: tuple[wh.Pin, ...],
                    stage: Path, log: Callable[[str], None]) -> list[str]:
    """Every wheel the bundle carries, in ``stage``: the dependencies for the host and
    each macOS Python (checked: a macOS arm64 wheel for every pin), pip, and pippin's own."""
    reqs = [str(p) for p in pins]
    fetch = wh.WheelFetcher(runner, cfg.python, cfg.wheel_cache / wh.lock_key(pins), log)
    build_deps, miss = fetch.fetch("build", list(wh.BUILD_PINS))
    tools, miss2 = fetch.fetch("tools", [wh.PIP_PIN])
    if miss or miss2:
        raise ReleaseError(f"no wheel for {', '.join(miss + miss2)}")
    host, host_missing = fetch.fetch("host", reqs)
    mac_dirs = []
    mac_files: list[str] = []
    for py in cfg.mac_pythons:
        d, _ = fetch.fetch(f"mac-cp{py.replace('.', '')}", reqs, [
            "--platform", wh.MAC_PLATFORM, "--implementation", "cp", "--python-version", py])
        mac_dirs.append(d)
        mac_files += [w.name for w in wh.wheel_files(d)]
    coverage = wh.mac_coverage(pins, mac_files, cfg.mac_pythons)
    if coverage.missing:
        gaps = ", ".join(f"{p} (CPython {py})" for p, py in coverage.missing)
        raise ReleaseError(f"no macOS arm64 wheel for {gaps}",
                           hint="pin a version that has one, or drop that Python "
                                "from the bundle")
    if host_missing:
        raise ReleaseError(f"no wheel for this host for {', '.join(host_missing)}")
    names = wh.copy_wheels([host, *mac_dirs, tools], stage)
    log("building the pippin wheel")
    own = build_pippin_wheel(cfg, runner, build_deps, stage)
    return sorted({*names, own.name})


def build_release(cfg: ReleaseConfig, runner: Runner,
                  log: Callable[[str], None] = lambda s: None) -> Release:
    """Build the three release files into ``cfg.out``; see the module doc."""
    base_url = check_base_url(cfg.base_url)
    version = project_version(cfg.repo)
    pins = wh.read_pins(cfg.repo / "requirements.lock")
    top = f"pippin-{version}"
    members: list[Member] = []
    if cfg.runtime is not None:  # checked before anything is downloaded
        members += _runtime_members(cfg.runtime, f"{top}/python")
    with tempfile.TemporaryDirectory(prefix="pippin-release-") as tmp:
        stage = Path(tmp) / "wheels"
        with _locked(cfg.wheel_cache):
            names = _collect_wheels(cfg, runner, pins, stage, log)
        wheels = {n: (stage / n).read_bytes() for n in names}  # read once: packed and hashed
        members += [Member(f"{top}/wheels/{n}", data) for n, data in wheels.items()]
        prebuilt = cfg.repo / "bootchain" / "prebuilt"
        members += _tree(prebuilt, f"{top}/bootchain/prebuilt")
        members += _tree(cfg.repo / "initramfs-hooks", f"{top}/initramfs-hooks")
        lock = (cfg.repo / "requirements.lock").read_bytes()
        members.append(Member(f"{top}/requirements.lock", lock))
        manifest = {
            "version": version, "mac_platform": wh.MAC_PLATFORM,
            "mac_pythons": list(cfg.mac_pythons), "runtime": cfg.runtime is not None,
            "wheels": {n: hashlib.sha256(data).hexdigest() for n, data in wheels.items()},
        }
        members.append(Member(f"{top}/BUNDLE.json",
                              json.dumps(manifest, indent=1, sort_keys=True).encode() + b"\n"))
        for m in members:
            if isinstance(m.data, Path) and not stat.S_ISREG(m.data.stat().st_mode):
                raise ReleaseError(f"{m.data} is not a regular file")
        cfg.out.mkdir(parents=True, exist_ok=True)
        bundle = cfg.out / f"{top}.tar.gz"
        log(f"writing {bundle}")
        write_tar_gz(bundle, members)
    size = bundle.stat().st_size
    with bundle.open("rb") as f:
        digest = hashlib.file_digest(f, "sha256").hexdigest()
    latest = cfg.out / "latest"
    write_bytes(latest, render_latest(version, bundle.name, size, digest))
    install = cfg.out / "install"
    write_bytes(install, render_install(version, base_url, bundle.name, size, digest))
    return Release(version, bundle, size, digest, latest, install, tuple(names))
