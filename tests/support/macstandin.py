"""Run `pippin` through scripts/mac-standin (the macOS code path on a simulated Mac image)
and read back what an install left: GPT entries, ESP files, stub volume trees."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from installer.demo.site import ensure_site
from installer.platform.gpt import read_gpt
from installer.platform.simstate import SimState, sidecar
from tests.support.installfix import MTOOLS_ENV, PREBUILT

ROOT = Path(__file__).resolve().parents[2]
STAGE1 = PREBUILT / "stage1.bin"  # Pippin's own, given as --stage1 so QEMU can boot it
EFI_GUID = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
APFS_GUID = "7C3457EF-0000-11AA-AA11-00306543ECAC"


@pytest.fixture(scope="session")
def mac_xdg(tmp_path_factory: pytest.TempPathFactory, test_assets: Path) -> Path:
    """An XDG_CACHE_HOME whose pippin/ holds the generated demo site (both entries)."""
    xdg = tmp_path_factory.mktemp("mac-xdg")
    site = ensure_site(xdg / "pippin", prebuilt=PREBUILT, assets=test_assets)
    assert len(site.entries) == 2, site.notes
    return xdg


def _env(xdg: Path, password: str | None, extra: dict[str, str] | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("INSTALLER_DATA", "IPSW_BASE", "REPO_BASE", "PIPPIN_ADMIN_PASSWORD",
                        "PIPPIN_MAC_ROOT", "PIPPIN_STANDIN", "PIPPIN_STANDIN_SOCK")}
    env["XDG_CACHE_HOME"] = str(xdg)
    env["PYTHONPATH"] = str(ROOT)
    if password is not None:
        env["PIPPIN_ADMIN_PASSWORD"] = password
    env.update(extra or {})
    return env


def pippin_mac(sim: Path, xdg: Path, *args: str, admin: str | None = "alice:pw",
               password: str | None = "pw", external: bool = False,
               env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``scripts/mac-standin --sim SIM [--admin A] -- pippin ARGS…``."""
    argv = [str(ROOT / "scripts" / "mac-standin"), "--sim", str(sim)]
    if admin is not None:
        argv += ["--admin", admin]
    if external:
        argv.append("--external")
    argv += ["--", sys.executable, "-m", "installer.cli", *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=600, cwd=ROOT,
                          env=_env(xdg, password, env), stdin=subprocess.DEVNULL)


def pippin_sim(xdg: Path, *args: str, password: str | None = None,
               env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "installer.cli", *args], capture_output=True,
                          text=True, timeout=600, cwd=ROOT, env=_env(xdg, password, env),
                          stdin=subprocess.DEVNULL)


def argv_log(sim: Path) -> list[list[str]]:
    path = sidecar(sim) / "standin-argv.log"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


# hdiutil attaches the restore image's BaseSystem read-only (a file, not the disk);
# tests/test_mac_basesystem.py checks that sequence.
READS = (["diskutil", "list"], ["diskutil", "apfs", "list"], ["diskutil", "info"],
         ["diskutil", "apfs", "listVolumeGroups"], ["sw_vers"], ["ioreg"], ["hdiutil"])


def writes(log: list[list[str]]) -> list[list[str]]:
    """The argv that change something (reads and resize limits left out)."""
    return [a for a in log if not any(a[:len(r)] == r for r in READS) and "limits" not in a]


def gpt(sim: Path) -> list[tuple[int, str, int, int, str, str]]:
    fd = os.open(sim, os.O_RDONLY)
    try:
        t = read_gpt(fd, sim.stat().st_size, str(sim))
    finally:
        os.close(fd)
    return [(e.number, e.type_guid, e.start, e.size, e.name, e.uuid) for e in t.entries]


def esp_files(sim: Path, dest: Path) -> dict[str, bytes]:
    """Every file of the (last) EFI partition, read with mtools."""
    esp = [e for e in gpt(sim) if e[1] == EFI_GUID][-1]
    dest.mkdir(parents=True)
    subprocess.run(["mcopy", "-s", "-n", "-i", f"{sim}@@{esp[2]}", "::/*", str(dest) + "/"],
                   check=True, capture_output=True, env=MTOOLS_ENV)
    return {p.relative_to(dest).as_posix(): p.read_bytes() for p in sorted(dest.rglob("*"))
            if p.is_file()}


def stub_trees(sim: Path, partuuid: str) -> dict[str, dict[str, str]]:
    """Volume name → {relative path: sha256} of a container's sidecar folders."""
    state = SimState(sim)
    out: dict[str, dict[str, str]] = {}
    for v in state.containers[partuuid].volumes:
        root = state.volume_dir(partuuid, v.name)
        out[v.name] = {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes())
                       .hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}
    return out
