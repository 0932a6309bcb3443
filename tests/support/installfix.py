"""Fixtures and helpers for the install tests: the demo site (generated once per session),
fresh simulated Macs, nginx-served copies of the site that tests may tamper with, and
readers for what an install left on the disk (sgdisk, mtools)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from installer.answers import Answers
from installer.demo.site import Site, ensure_site
from installer.install import InstallDeps, InstallRequest, InstallResult, install
from installer.net.session import NetConfig, make_session
from installer.platform.base import SubprocessRunner
from installer.platform.safety import hash_ranges
from installer.platform.simmac import SimMac
from installer.sizes import GB
from tests.support import nginx

ROOT = Path(__file__).resolve().parents[2]
PREBUILT = ROOT / "bootchain" / "prebuilt"
MTOOLS_ENV = dict(os.environ, MTOOLS_SKIP_CHECK="1")


@pytest.fixture(scope="session")
def demo_cache(tmp_path_factory: pytest.TempPathFactory, test_assets: Path) -> Path:
    """A cache directory holding the generated demo site (both entries)."""
    cache = tmp_path_factory.mktemp("pippin-cache")
    site = ensure_site(cache, prebuilt=PREBUILT, assets=test_assets)
    assert len(site.entries) == 2, site.notes
    return cache


@pytest.fixture(scope="session")
def demo_site(demo_cache: Path, test_assets: Path) -> Site:
    return ensure_site(demo_cache, prebuilt=PREBUILT, assets=test_assets)


def new_sim(path: Path) -> Path:
    """A small simulated Mac (64 GB disk, macOS using 20 GB: resize needed)."""
    SimMac.create(path, disk_size=64 * GB, macos_used=20 * GB)
    return path


def image_digest(path: Path) -> str:
    """Digest of every non-zero block of a (sparse) disk image."""
    return hash_ranges(path, [(0, path.stat().st_size)])[0].digest


@pytest.fixture
def session():
    s = make_session(NetConfig(read_timeout=5.0, no_proxy=("127.0.0.1",)))
    yield s
    s.close()


def deps_for(cache: Path, session, **kw) -> InstallDeps:
    return InstallDeps(session=session, runner=SubprocessRunner(), cache_dir=cache,
                       prebuilt=PREBUILT, **kw)


def run_install(cache: Path, session, sim: Path, os_name: str, *, dry_run: bool = False,
                **deps_kw) -> InstallResult:
    answers = Answers(target=f"sim:{sim}", os=os_name)
    return install(InstallRequest(answers, dry_run=dry_run, auto_space=True),
                   deps_for(cache, session, **deps_kw))


def link_tree(src: Path, dst: Path) -> Path:
    """A copy of ``src`` made of hard links (cheap; replace files to tamper with them)."""
    for dirpath, _dirs, files in os.walk(src):
        rel = Path(dirpath).relative_to(src)
        (dst / rel).mkdir(parents=True, exist_ok=True)
        for f in files:
            os.link(Path(dirpath) / f, dst / rel / f)
    return dst


@pytest.fixture
def www(tmp_path: Path, demo_site: Site) -> Iterator[tuple[Path, nginx.Nginx]]:
    """A hard-linked copy of the demo site behind a real nginx (tamper before use)."""
    root = link_tree(demo_site.root, tmp_path / "www")
    with nginx.serve(root, tmp_path / "nginx") as srv:
        yield root, srv


def sgdisk(*args: str) -> str:
    return subprocess.run(["sgdisk", *args], check=True, capture_output=True,
                          text=True).stdout


def partuuid(image: Path, number: int) -> str:
    for line in sgdisk("-i", str(number), str(image)).splitlines():
        if line.startswith("Partition unique GUID:"):
            return line.split(":", 1)[1].strip().lower()
    raise AssertionError(f"no partition {number} on {image}")


def partition_numbers(image: Path) -> dict[str, int]:
    """GPT partition name → number, from ``sgdisk -p``."""
    out: dict[str, int] = {}
    lines = sgdisk("-p", str(image)).splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Number"))
    for line in lines[start + 1:]:
        parts = line.split(None, 6)
        if len(parts) == 7:
            out[parts[6]] = int(parts[0])
    return out


def partition_start(image: Path, number: int) -> int:
    for line in sgdisk("-i", str(number), str(image)).splitlines():
        if line.startswith("First sector:"):
            return int(line.split(":", 1)[1].split()[0]) * 512
    raise AssertionError(number)


def mtype(image: Path, offset: int, path: str) -> bytes:
    return subprocess.run(["mtype", "-i", f"{image}@@{offset}", "::/" + path], check=True,
                          capture_output=True, env=MTOOLS_ENV).stdout


def mdir(image: Path, offset: int, path: str = "") -> str:
    return subprocess.run(["mdir", "-b", "-i", f"{image}@@{offset}", "::/" + path],
                          check=True, capture_output=True, text=True, env=MTOOLS_ENV).stdout
