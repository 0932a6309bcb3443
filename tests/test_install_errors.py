"""Hostile and wrong inputs to `pippin install`: one-line error, non-zero exit, and the disk
exactly as before (checked by hashing every non-zero block of the sim image)."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile

import pytest

from installer.answers import Answers
from installer.cli import main
from installer.demo.site import CATALOG_NAME, UEFI_ONLY, image_file_name
from installer.errors import BackendError
from installer.install import InstallRequest, install
from installer.platform.base import SubprocessRunner
from installer.platform.journal import Journal
from installer.targets.sim import SimTarget
from tests.support import installfix
from tests.support.installfix import deps_for, image_digest, new_sim, sgdisk

demo_cache = installfix.demo_cache
demo_site = installfix.demo_site
session = installfix.session
www = installfix.www

pytestmark = pytest.mark.timeout(300)


def _replace(path, data: bytes) -> None:
    path.unlink()  # a hard link into the shared site: never write through it
    path.write_bytes(data)
    if path.name == CATALOG_NAME:  # an edited catalog is unsigned (else its .sig refuses it)
        path.with_name(CATALOG_NAME + ".sig").unlink(missing_ok=True)


def _run_cli(monkeypatch, capsys, tmp_path, srv, sim, *args):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("IPSW_BASE", srv.base_url)
    monkeypatch.delenv("INSTALLER_DATA", raising=False)
    monkeypatch.delenv("REPO_BASE", raising=False)
    rc = main(["install", "--catalog", srv.url(CATALOG_NAME), "--target", f"sim:{sim}",
               *args])
    return rc, capsys.readouterr()


def _one_line_error(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.startswith("pippin: error:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def test_bad_catalog(tmp_path, www, monkeypatch, capsys):
    root, srv = www
    _replace(root / CATALOG_NAME, b'{"os_list": [ {"name": 3}')
    sim = new_sim(tmp_path / "mac.img")
    before = image_digest(sim)
    rc, out = _run_cli(monkeypatch, capsys, tmp_path, srv, sim, "--yes", "--os", UEFI_ONLY)
    assert rc == 1
    assert "catalog is not valid JSON" in _one_line_error(out.err)
    assert image_digest(sim) == before


def test_unknown_os(tmp_path, www, monkeypatch, capsys):
    _root, srv = www
    sim = new_sim(tmp_path / "mac.img")
    before = image_digest(sim)
    rc, out = _run_cli(monkeypatch, capsys, tmp_path, srv, sim, "--yes", "--os", "Haiku")
    assert rc == 1
    line = _one_line_error(out.err)
    assert "'Haiku' not in the catalog" in line
    assert repr(UEFI_ONLY) in line
    assert image_digest(sim) == before


@pytest.mark.parametrize("how", ["catalog-sha", "server-lies"])
def test_package_sha256_mismatch_installs_nothing(tmp_path, www, monkeypatch, capsys, how):
    root, srv = www
    if how == "catalog-sha":
        doc = json.loads((root / CATALOG_NAME).read_bytes())
        doc["os_list"][0]["sha256"] = "0" * 64
        _replace(root / CATALOG_NAME, json.dumps(doc).encode())
    else:  # same catalog, other bytes behind the package URL
        pkg = root / "os" / "pippin-uefi-only.zip"
        data = bytearray(pkg.read_bytes())
        data[len(data) // 2] ^= 0xFF
        _replace(pkg, bytes(data))
    sim = new_sim(tmp_path / "mac.img")
    before = image_digest(sim)
    rc, out = _run_cli(monkeypatch, capsys, tmp_path, srv, sim, "--yes", "--os", UEFI_ONLY)
    assert rc == 1
    assert "does not match the catalog" in _one_line_error(out.err)
    assert image_digest(sim) == before
    assert list((tmp_path / "xdg" / "pippin" / "packages").iterdir()) == []


def test_lying_restore_image_server(tmp_path, www, monkeypatch, capsys):
    """A needed member's bytes differ from its CRC: the fetch refuses, the disk stays."""
    root, srv = www
    ipsw = root / image_file_name()
    with zipfile.ZipFile(ipsw) as zf:
        info = zf.getinfo("kernelcache.release.j314")
    tampered = tmp_path / "tampered.ipsw"
    subprocess.run(["cp", "--sparse=always", str(ipsw), str(tampered)], check=True)
    with tampered.open("r+b") as f:
        f.seek(info.header_offset + 26)
        name_len, extra_len = (int.from_bytes(f.read(2), "little") for _ in range(2))
        f.seek(info.header_offset + 30 + name_len + extra_len + 4096)
        f.write(b"\xde\xad\xbe\xef" * 64)
    ipsw.unlink()
    tampered.rename(ipsw)
    sim = new_sim(tmp_path / "mac.img")
    before = image_digest(sim)
    rc, out = _run_cli(monkeypatch, capsys, tmp_path, srv, sim, "--yes", "--os", UEFI_ONLY)
    assert rc == 1
    assert "kernelcache.release.j314" in _one_line_error(out.err)
    assert image_digest(sim) == before


class _FailingEsp(SimTarget):
    def write_esp(self, esp, staging):
        raise BackendError("ESP write failed (injected)")


def test_failure_after_the_disk_changed_rolls_back(tmp_path, demo_cache, session):
    sim = new_sim(tmp_path / "mac.img")
    gpt = sgdisk("-p", str(sim))
    head = _head(sim)
    inspect = _inspect(sim)
    target = _FailingEsp(sim, SubprocessRunner())
    deps = deps_for(demo_cache, session, target=target)
    req = InstallRequest(Answers(target=f"sim:{sim}", os=UEFI_ONLY), auto_space=True)
    with pytest.raises(BackendError, match="injected"):
        install(req, deps)
    j = Journal.load(target.journal)
    assert j.status == "rolled-back"
    # What a user sees is as before: the GPT, the containers and volumes, and every byte
    # outside the plan's ranges (the freed space keeps the stale bytes of the removed
    # partitions, as on a real disk).
    assert sgdisk("-p", str(sim)) == gpt
    assert _head(sim) == head
    assert _inspect(sim) == inspect
    target.backend.verify(j.owned, j.snapshot)


def _head(sim):
    with sim.open("rb") as f:
        return f.read(34 * 512)


def _inspect(sim):
    out = subprocess.run([sys.executable, "-m", "installer.cli", "sim", "inspect", "--json",
                          str(sim)], capture_output=True, text=True, check=True).stdout
    return json.loads(out)
