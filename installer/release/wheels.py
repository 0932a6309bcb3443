"""The wheels a release bundle carries: every pinned dependency, for macOS arm64 and the host.

``pip download`` does the fetching (through whatever index the machine's pip is set up
for); this module decides what to ask for, reads the pins from ``requirements.lock``, and
checks the result: for each macOS Python a bundle supports, every pin must have a wheel
that runs on ``macosx_11_0_arm64``. A pin without one is named, with the Python versions
it lacks, instead of leaving a bundle that fails on the user's Mac.

Downloads are kept in a cache directory keyed by the lock file's hash and the target, so
a rebuild with the same pins needs no network (PyPI files never change under a name).
"""

from __future__ import annotations

import hashlib
import re
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from installer.errors import ReleaseError
from installer.platform.base import Runner
from vendorfw.atomic import atomic_dir

#: The macOS Pythons a bundle carries wheels for (a Mac without a bundled runtime uses
#: the python3 on its PATH, which is one of these when it is new enough).
MAC_PYTHONS: tuple[str, ...] = ("3.11", "3.12", "3.13")
MAC_PLATFORM = "macosx_11_0_arm64"
#: pip itself, run from its wheel by the bootstrap (``python pip.whl/pip install …``), so a
#: Python without pip (Debian's python3, a minimal runtime) can still install the bundle.
PIP_PIN = "pip==26.2.1"
#: What builds the pippin wheel (pyproject's build-system), pinned for reproducible bytes.
BUILD_PINS: tuple[str, ...] = ("setuptools==84.0.0",)

_PIN_RE = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[^\s;#]+)")
_NOT_FOUND_RE = re.compile(
    r"(?:No matching distribution found for|satisfies the requirement) (?P<req>\S+)")
_MAC_RE = re.compile(r"^macosx_(?P<major>\d+)_(?P<minor>\d+)_(?P<arch>arm64|universal2)$")


@dataclass(frozen=True, slots=True)
class Pin:
    name: str  # normalized (PEP 503)
    version: str

    def __str__(self) -> str:
        return f"{self.name}=={self.version}"


@dataclass(frozen=True, slots=True)
class WheelName:
    """The parts of a wheel file name (PEP 427) that decide where it installs."""

    name: str  # normalized
    version: str
    python: frozenset[str]
    abi: frozenset[str]
    platform: frozenset[str]

    @classmethod
    def parse(cls, filename: str) -> WheelName:
        if not filename.endswith(".whl"):
            raise ReleaseError(f"{filename}: not a wheel")
        parts = filename[:-4].split("-")
        if len(parts) not in (5, 6):
            raise ReleaseError(f"{filename}: not a wheel file name (name-version-py-abi-plat)")
        py, abi, plat = parts[-3:]
        return cls(normalize(parts[0]), parts[1], frozenset(py.split(".")),
                   frozenset(abi.split(".")), frozenset(plat.split(".")))

    def runs_on_mac(self, python: str) -> bool:
        """Installable by CPython ``python`` (e.g. "3.12") on macOS 11 arm64."""
        minor = int(python.split(".")[1])
        plat_ok = "any" in self.platform or any(
            (m := _MAC_RE.match(p)) and (int(m["major"]), int(m["minor"])) <= (11, 0)
            for p in self.platform)
        if not plat_ok:
            return False
        if "none" in self.abi:
            return bool({"py3", f"py3{minor}", f"cp3{minor}"} & self.python)
        if "abi3" in self.abi:
            return any(t.startswith("cp3") and int(t[3:]) <= minor for t in self.python
                       if t[3:].isdigit())
        return f"cp3{minor}" in self.abi and f"cp3{minor}" in self.python


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_pins(lock: Path) -> tuple[Pin, ...]:
    """``name==version`` lines of a pip/uv lock file (comments and hashes ignored)."""
    try:
        text = lock.read_text()
    except OSError as exc:
        raise ReleaseError(f"cannot read {lock}: {exc.strerror}") from exc
    pins = []
    for line in text.splitlines():
        m = _PIN_RE.match(line.strip())
        if m:
            pins.append(Pin(normalize(m["name"]), m["version"]))
    if not pins:
        raise ReleaseError(f"{lock} pins nothing (expected name==version lines)")
    return tuple(pins)


def lock_key(pins: Sequence[Pin]) -> str:
    return hashlib.sha256("\n".join(map(str, pins)).encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class MacCoverage:
    """Which wheel serves each pin on each macOS Python; ``missing`` lists the gaps."""

    wheels: dict[tuple[str, str], str]  # (pin name, python) -> wheel file name
    missing: tuple[tuple[Pin, str], ...]  # (pin, python) without a macOS arm64 wheel


def mac_coverage(pins: Sequence[Pin], files: Sequence[str],
                 pythons: Sequence[str]) -> MacCoverage:
    """For every pin and Python, the wheel among ``files`` that installs on a Mac."""
    parsed = [WheelName.parse(f) for f in files if f.endswith(".whl")]
    found: dict[tuple[str, str], str] = {}
    missing: list[tuple[Pin, str]] = []
    for pin in pins:
        for py in pythons:
            hit = next((f for f, w in zip(files, parsed, strict=True)
                        if w.name == pin.name and w.version == pin.version
                        and w.runs_on_mac(py)), None)
            if hit is None:
                missing.append((pin, py))
            else:
                found[(pin.name, py)] = hit
    return MacCoverage(found, tuple(missing))


class WheelFetcher:
    """Runs ``pip download`` (``python -m pip``) into a cache, one directory per target."""

    def __init__(self, runner: Runner, python: str, cache: Path,
                 log: Callable[[str], None] = lambda s: None) -> None:
        self.runner = runner
        self.python = python
        self.cache = cache
        self.log = log

    def _download(self, dest: Path, reqs: Sequence[str], extra: Sequence[str]) -> list[str]:
        """Download ``reqs`` into ``dest``; returns the requirements pip found nothing for."""
        argv = [self.python, "-m", "pip", "download", "--disable-pip-version-check", "-q",
                "--no-deps", "--only-binary=:all:", "-d", str(dest), *extra, *reqs]
        r = self.runner.run(argv)
        if r.rc == 0:
            return []
        err = r.stderr.decode(errors="replace")
        m = _NOT_FOUND_RE.search(err)
        if m is None:
            tail = err.strip().splitlines()[-1:] or [f"exit {r.rc}"]
            raise ReleaseError(f"pip download failed: {tail[0]}",
                               hint="is the package index reachable? (pip config list)")
        return [m["req"]]

    def fetch(self, label: str, reqs: Sequence[str], extra: Sequence[str] = ()) -> tuple[
            Path, tuple[str, ...]]:
        """The cached directory of wheels for ``reqs`` and the requirements that had none.

        pip stops at the first requirement without a wheel; that one is set aside and the
        rest asked for again, so one build names every gap at once.
        """
        key = hashlib.sha256("\n".join([label, *reqs, *extra]).encode()).hexdigest()[:16]
        final = self.cache / f"{label}-{key}"
        missing_file = final / ".missing"
        if (final / ".complete").is_file():
            return final, tuple(missing_file.read_text().split())
        self.log(f"downloading wheels: {label} ({len(reqs)} packages)")
        final.parent.mkdir(parents=True, exist_ok=True)
        missing: list[str] = []
        with atomic_dir(final) as new:
            todo = list(reqs)
            while todo:
                gone = self._download(new, todo, extra)
                if not gone:
                    break
                gone_n = {normalize(g.split("==")[0]) for g in gone}
                left = [r for r in todo if normalize(r.split("==")[0]) not in gone_n]
                if len(left) == len(todo):  # pip named something we did not ask for
                    raise ReleaseError(f"pip download ({label}): no wheel for {gone[0]}")
                missing += [r for r in todo if r not in left]
                todo = left
            (new / ".missing").write_text("".join(m + "\n" for m in missing))
            (new / ".complete").write_bytes(b"")
        return final, tuple(missing)


def wheel_files(d: Path) -> list[Path]:
    return sorted(p for p in d.iterdir() if p.suffix == ".whl")


def copy_wheels(dirs: Sequence[Path], dest: Path) -> list[str]:
    """Copy every wheel of ``dirs`` into ``dest`` (same name = same file); sorted names."""
    names: dict[str, Path] = {}
    for d in dirs:
        for w in wheel_files(d):
            prev = names.setdefault(w.name, w)
            if prev != w and prev.read_bytes() != w.read_bytes():
                raise ReleaseError(f"two different files are both named {w.name}")
    dest.mkdir(parents=True, exist_ok=True)
    for name, src in names.items():
        shutil.copyfile(src, dest / name)
    return sorted(names)
