"""Offline bundles end to end: `pippin bundle create` for the demo catalog (both entries, the
sim's device class), `pippin bundle verify`, `pippin install --source` in a network namespace
with no network at all (`unshare -n`: any fetch fails), onto a fresh simulated Mac that then
boots in QEMU; damaged and incomplete bundles are refused in one line with nothing written;
a create killed with SIGKILL continues when run again."""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from installer.bundle.create import BundleRequest, create_bundle
from installer.bundle.manifest import MANIFEST, FileRecord, ImageRecord, parse_manifest
from installer.bundle.thinzip import file_pread, write_thin_zip
from installer.bundle.verify import sha256_file
from installer.demo.restoreimage import DEVICES
from installer.demo.site import DEMO_LINUX, DEMO_MARKER, UEFI_ONLY
from installer.ipsw.remote import open_archive
from installer.net.session import NetConfig, make_session
from installer.platform.simmac import SimMac
from installer.sizes import GB
from tests.support import installfix
from tests.support.installfix import image_digest, link_tree, new_sim, partuuid

demo_cache = installfix.demo_cache
demo_site = installfix.demo_site
session = installfix.session

ROOT = Path(__file__).resolve().parents[1]
SIM_DEVICE = "j314sap"  # SimMac.create's default device
pytestmark = pytest.mark.timeout(400)


def _can_unshare() -> bool:
    try:
        return subprocess.run(["unshare", "-n", "true"], capture_output=True,
                              timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def pippin(tmp_path: Path, *args: str, offline: bool = False, timeout: int = 300,
           env_extra: dict[str, str] | None = None):
    """`pippin ARGS` as a user runs it; ``offline``: in a namespace with no network."""
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env.update(PYTHONPATH=str(ROOT), XDG_CACHE_HOME=str(tmp_path / "xdg"), **(env_extra or {}))
    argv = [sys.executable, "-m", "installer.cli", *args]
    if offline:
        if not _can_unshare():
            pytest.skip("unshare -n is not permitted here (needs root or user namespaces)")
        argv = ["unshare", "-n", *argv]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, demo_cache):
    """The demo catalog's two entries for the sim's device, made once."""
    out = tmp_path_factory.mktemp("bundle") / "stick"
    s = make_session(NetConfig(read_timeout=5.0, no_proxy=("127.0.0.1",)))
    try:
        r = create_bundle(BundleRequest(out, (UEFI_ONLY, DEMO_LINUX), (SIM_DEVICE,)),
                          installfix.deps_for(demo_cache, s))
    finally:
        s.close()
    return out, r


def error_line(stderr: str) -> str:
    """The one error line (a hint may follow; warnings may precede)."""
    lines = [ln for ln in stderr.splitlines() if ln.startswith("pippin: error: ")]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0].removeprefix("pippin: error: ")


def _needed(man, out: Path) -> int:
    """The bytes the bundle must hold: members' compressed data, packages, catalog."""
    n = sum(f.size for f in man.files if not f.path.startswith("ipsw/"))
    for im in man.images:
        arc = open_archive(str(out / im.path))
        n += sum(arc.get(name).compress_size for name in im.members)
    return n


def test_bundle_contents_and_size(bundle, demo_site):
    out, r = bundle
    man = parse_manifest((out / MANIFEST).read_bytes())
    assert man.os == (UEFI_ONLY, DEMO_LINUX)
    paths = {f.path for f in man.files}
    assert paths == {"installer_data.json", "installer_data.json.sig",
                     "os/pippin-uefi-only.zip", "os/pippin-demo-linux.zip",
                     "ipsw/UniversalMac_13.5_22G74_Restore.ipsw"}
    # the catalog and packages are the served bytes; origins say where they came from
    for rel in ("installer_data.json", "installer_data.json.sig", "os/pippin-uefi-only.zip"):
        assert (out / rel).read_bytes() == (demo_site.root / rel).read_bytes()
        assert man.file(rel).origin.endswith("/" + rel)
    (img,) = man.images
    assert [d.device_class for d in img.devices] == [SIM_DEVICE]
    src = demo_site.root / Path(img.path).name
    with zipfile.ZipFile(out / img.path) as thin, zipfile.ZipFile(src) as full:
        assert thin.testzip() is None
        assert sorted(thin.namelist()) == sorted(img.members)
        assert len(full.namelist()) > len(thin.namelist())
        for name in img.members:
            assert thin.read(name) == full.read(name)
            assert thin.getinfo(name).CRC == full.getinfo(name).CRC
    total = sum(f.size for f in man.files)
    assert total == r.bundle_bytes
    assert total <= 1.01 * _needed(man, out), (total, _needed(man, out))
    assert src.stat().st_size > 10 * (out / img.path).stat().st_size  # not the whole image


@pytest.mark.qemu
def test_offline_install_from_bundle_boots(tmp_path, bundle):
    out, _ = bundle
    r = pippin(tmp_path, "bundle", "verify", str(out))
    assert r.returncode == 0, r.stderr
    assert "all verified" in r.stdout
    sim = new_sim(tmp_path / "mac.img")
    r = pippin(tmp_path, "install", "--source", str(out), "--os", DEMO_LINUX,
               "--target", f"sim:{sim}", "--yes", offline=True)
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"installed {DEMO_LINUX!r}" in r.stdout
    assert not (tmp_path / "xdg" / "pippin" / "demo").exists()  # no demo site was made
    boot = subprocess.run([str(ROOT / "scripts" / "qemu-boot"), str(sim), "--timeout", "240"],
                          capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
                          env=dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "xdg")))
    console = boot.stdout.replace("\r", "")
    assert DEMO_MARKER in console, (boot.stderr + console)[-3000:]
    esp = partuuid(sim, 5)
    assert f"PIPPIN-DEMO: chosen/asahi,efi-system-partition={esp}\n" in console


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.unlink()  # a hard-linked copy: break the link, keep the original intact
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("rel", ["ipsw/UniversalMac_13.5_22G74_Restore.ipsw",
                                 "os/pippin-demo-linux.zip", "installer_data.json"])
def test_one_byte_changed_fails_verify_and_install(tmp_path, bundle, rel):
    out = link_tree(bundle[0], tmp_path / "stick")
    size = (out / rel).stat().st_size
    _flip(out / rel, size // 2)
    r = pippin(tmp_path, "bundle", "verify", str(out))
    assert r.returncode == 1
    assert f"pippin bundle verify: {rel}: SHA-256 differs from {MANIFEST} (damaged)" in r.stderr
    sim = new_sim(tmp_path / "mac.img")
    before = image_digest(sim)
    r = pippin(tmp_path, "install", "--source", str(out), "--os", DEMO_LINUX,
               "--target", f"sim:{sim}", "--yes", offline=True)
    assert r.returncode == 1
    assert error_line(r.stderr) == (f"bundle {out}: {rel}: SHA-256 differs from {MANIFEST} "
                                    "(damaged); not installing from it")
    assert image_digest(sim) == before


def test_missing_file_and_foreign_device_refused_before_writing(tmp_path, bundle):
    out = link_tree(bundle[0], tmp_path / "stick")
    (out / "os" / "pippin-demo-linux.zip").unlink()
    r = pippin(tmp_path, "bundle", "verify", str(out))
    assert r.returncode == 1
    assert "pippin bundle verify: os/pippin-demo-linux.zip: missing" in r.stderr
    sim = tmp_path / "other.img"
    SimMac.create(sim, device="j274ap", disk_size=64 * GB, macos_used=20 * GB)
    before = image_digest(sim)
    r = pippin(tmp_path, "install", "--source", str(out), "--os", UEFI_ONLY,
               "--target", f"sim:{sim}", "--dry-run", offline=True)
    assert r.returncode == 1
    assert error_line(r.stderr) == ("the bundle's restore image 13.5 holds no members for "
                                    f"this Mac (j274ap; it has {SIM_DEVICE})")
    assert image_digest(sim) == before
    sim = new_sim(tmp_path / "mac.img")
    before = image_digest(sim)
    r = pippin(tmp_path, "install", "--source", str(out), "--os", DEMO_LINUX,
               "--target", f"sim:{sim}", "--yes", offline=True)
    assert r.returncode == 1
    assert error_line(r.stderr) == (f"bundle {out}: os/pippin-demo-linux.zip: missing; not "
                                    "installing from it")
    assert image_digest(sim) == before
    r = pippin(tmp_path, "install", "--source", str(tmp_path), "--os", UEFI_ONLY,
               "--target", f"sim:{sim}", "--yes", offline=True)
    assert r.returncode == 1
    assert error_line(r.stderr) == f"{tmp_path} is not a Pippin bundle (no {MANIFEST})"


def _crash(site: Path, cache: Path, out: Path, point: str):
    return subprocess.run([sys.executable, "-m", "tests.support.crashbundle", str(site),
                           str(cache), str(out), point], capture_output=True, text=True,
                          timeout=300, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)))


@pytest.mark.parametrize("point", ["package os/pippin-uefi-only.zip", "package mid-file",
                                   "restore image", "thin zip"])
def test_create_killed_then_rerun_continues(tmp_path, demo_site, point):
    cache, out = tmp_path / "cache", tmp_path / "stick"
    r = _crash(demo_site.root, cache, out, point)
    assert r.returncode == -9, r.stderr[-2000:]
    assert "crashbundle: killed at" in r.stderr
    assert not (out / MANIFEST).exists()  # an unfinished bundle is not mistaken for one
    again = _crash(demo_site.root, cache, out, "-")
    assert again.returncode == 0, again.stderr[-2000:]
    res = json.loads(again.stdout)
    fresh = json.loads(_crash(demo_site.root, tmp_path / "cache2", tmp_path / "b2",
                              "-").stdout)
    if point.startswith("package"):
        assert "os/pippin-uefi-only.zip" in res["reused"]
        assert res["downloaded"] < fresh["downloaded"]
        if point == "package mid-file":  # the killed package continued from its record
            uefi = (out / "os/pippin-uefi-only.zip").stat().st_size
            assert fresh["downloaded"] - res["downloaded"] >= uefi + (1 << 20)
    else:  # the image's fetched ranges were kept: fewer bytes came again
        assert res["downloaded"] < fresh["downloaded"]
    assert not list(out.rglob(".*.tmp"))
    r = pippin(tmp_path, "bundle", "verify", str(out))
    assert r.returncode == 0, r.stderr
    for rel in ("os/pippin-demo-linux.zip", "ipsw/UniversalMac_13.5_22G74_Restore.ipsw"):
        assert (out / rel).read_bytes() == (tmp_path / "b2" / rel).read_bytes()


def test_create_refusals_are_one_line(tmp_path, demo_site):
    r = pippin(tmp_path, "bundle", "create", str(tmp_path / "o"), "--os", UEFI_ONLY)
    assert r.returncode == 1
    assert error_line(r.stderr) == "no device class chosen"
    r = pippin(tmp_path, "bundle", "create", str(tmp_path / "o"), "--os", UEFI_ONLY,
               "--device", "j999ap", "--catalog", str(demo_site.root / "installer_data.json"),
               offline=True, env_extra={"IPSW_BASE": str(demo_site.root)})
    assert r.returncode == 1, r.stderr
    assert error_line(r.stderr) == (f"no restore image for {UEFI_ONLY!r} has build "
                                    "identities for j999ap")
    shutil.rmtree(tmp_path / "o", ignore_errors=True)


@pytest.mark.parametrize(("text", "why"), [
    ("not json", "bundle.json is not valid JSON: Expecting value: line 1 column 1 (char 0)"),
    ('{"format": 2}', "bundle.json: format 2 is not supported (this Pippin reads 1)"),
    ('{"format": 1, "pippin": "0.1.0", "catalog": "../../etc/passwd", "catalog_origin": "x",'
     ' "os": [], "images": [], "files": []}',
     "bundle.json: catalog '../../etc/passwd' is not a path inside the bundle"),
    ('{"format": 1, "pippin": "0.1.0", "catalog": "c.json", "catalog_origin": "x", "os": [],'
     ' "images": [], "files": [{"path": "/etc/passwd", "size": 1, "sha256": "' + "0" * 64
     + '", "origin": "x"}]}',
     "bundle.json: files[0].path '/etc/passwd' is not a path inside the bundle"),
])
def test_hostile_manifest_is_refused_in_one_line(tmp_path, text, why):
    out = tmp_path / "stick"
    out.mkdir()
    (out / MANIFEST).write_text(text)
    r = pippin(tmp_path, "bundle", "verify", str(out))
    assert r.returncode == 1
    assert error_line(r.stderr) == why
    r = pippin(tmp_path, "install", "--source", str(out), "--dry-run", offline=True)
    assert r.returncode == 1
    assert error_line(r.stderr) == why


def test_all_devices_holds_every_identity(tmp_path, demo_cache, session):
    r = create_bundle(BundleRequest(tmp_path / "all", (UEFI_ONLY,), all_devices=True),
                      installfix.deps_for(demo_cache, session))
    (img,) = r.manifest.images
    assert sorted(d.device_class for d in img.devices) == sorted(d.device_class for d in DEVICES)
    one = create_bundle(BundleRequest(tmp_path / "one", (UEFI_ONLY,), (SIM_DEVICE,)),
                        installfix.deps_for(demo_cache, session))
    assert set(one.manifest.images[0].members) < set(img.members)


def test_member_missing_from_the_thin_zip_is_named_before_writing(tmp_path, bundle):
    """A bundle whose files all match bundle.json but whose restore image lacks a member the
    install needs (e.g. made by a Pippin with other member lists)."""
    out = link_tree(bundle[0], tmp_path / "stick")
    man = parse_manifest((out / MANIFEST).read_bytes())
    (img,) = man.images
    arc = open_archive(str(out / img.path))
    gone = next(n for n in img.members if n.startswith("kernelcache"))
    keep = [arc.get(n) for n in img.members if n != gone]
    pread, close = file_pread(out / img.path)
    try:
        with (tmp_path / "thin").open("wb") as f:
            write_thin_zip(f, keep, pread)
    finally:
        close()
    (out / img.path).unlink()
    (tmp_path / "thin").rename(out / img.path)
    new_img = ImageRecord(img.path, img.version, img.origin, img.devices,
                          tuple(m.name for m in keep))
    files = tuple(FileRecord(f.path, (out / f.path).stat().st_size,
                             sha256_file(out / f.path), f.origin) for f in man.files)
    man = dataclasses.replace(man, images=(new_img,), files=files)
    (out / MANIFEST).unlink()
    (out / MANIFEST).write_bytes(man.to_json())
    assert pippin(tmp_path, "bundle", "verify", str(out)).returncode == 0
    sim = new_sim(tmp_path / "mac.img")
    before = image_digest(sim)
    r = pippin(tmp_path, "install", "--source", str(out), "--os", UEFI_ONLY,
               "--target", f"sim:{sim}", "--yes", offline=True)
    assert r.returncode == 1
    assert error_line(r.stderr) == f"restore image lacks needed members: {gone}"
    assert image_digest(sim) == before


def test_bundled_package_is_not_counted_as_downloaded(tmp_path, bundle):
    """An install from a bundle copies its package from the stick: 0 network bytes (it used
    to report the package's size as downloaded)."""
    out, _ = bundle
    sim = new_sim(tmp_path / "mac.img")
    r = pippin(tmp_path, "install", "--source", str(out), "--os", UEFI_ONLY,
               "--target", f"sim:{sim}", "--yes", offline=True)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "  downloaded 0 B; " in r.stdout, r.stdout


def test_installer_data_inside_a_bundle_installs_from_it(tmp_path, bundle):
    out, _ = bundle
    sim = new_sim(tmp_path / "mac.img")
    r = pippin(tmp_path, "install", "--os", UEFI_ONLY, "--target", f"sim:{sim}", "--dry-run",
               offline=True, env_extra={"INSTALLER_DATA": str(out / "installer_data.json")})
    assert r.returncode == 0, r.stderr
    assert f"restore image: {out}/ipsw/UniversalMac_13.5_22G74_Restore.ipsw" in r.stdout


def test_a_second_create_on_the_same_bundle_is_refused(tmp_path):
    out = tmp_path / "stick"
    out.mkdir()
    with (out / ".bundle-lock").open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        r = pippin(tmp_path, "bundle", "create", str(out), "--os", UEFI_ONLY,
                   "--device", SIM_DEVICE)
    assert r.returncode == 1
    assert error_line(r.stderr) == f"another `pippin bundle create` is writing {out}"
    assert [p.name for p in out.iterdir()] == [".bundle-lock"]  # nothing else written
