"""scripts/make-release: the bundle (reproducible bytes, what it holds, a macOS arm64 wheel
for every dependency), the ``latest`` index, the ``install`` bootstrap, and the end-to-end
``curl -fsSL …/install | sh`` onto a fresh simulated Mac that then boots in QEMU."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import tarfile
import zipfile
from pathlib import Path

import pytest

from installer.demo.site import DEMO_LINUX, DEMO_MARKER, image_file_name
from installer.errors import ReleaseError
from installer.release import wheels as wh
from installer.release.bundle import EPOCH, check_base_url
from tests.conftest import require_tool
from tests.support import installfix, nginx, releasefix
from tests.support.installfix import link_tree
from tests.support.releasefix import clean_env, curl_sh, make_release

served_release = releasefix.served_release
demo_cache = installfix.demo_cache
demo_site = installfix.demo_site

ROOT = Path(__file__).resolve().parents[1]


def members(bundle: Path) -> list[tarfile.TarInfo]:
    with tarfile.open(bundle, "r:gz") as tf:
        return tf.getmembers()


def read_all(bundle: Path) -> dict[str, bytes]:
    out = {}
    with tarfile.open(bundle, "r:gz") as tf:
        for ti in tf:
            f = tf.extractfile(ti)
            if f is not None:
                out[ti.name] = f.read()
    return out


# -- the bundle ------------------------------------------------------------------------


def test_same_inputs_give_the_same_bytes(served_release, tmp_path):
    b = served_release.built
    again = make_release(tmp_path / "again", served_release.url("rel"))
    for name in (b.bundle.name, "latest", "install"):
        assert (b.out / name).read_bytes() == (again.out / name).read_bytes(), name
    infos = members(b.bundle)
    names = [i.name for i in infos]
    assert names == sorted(names)
    assert {i.mtime for i in infos} == {EPOCH}
    assert {(i.uid, i.gid, i.uname, i.gname) for i in infos} == {(0, 0, "", "")}
    assert {i.mode for i in infos} <= {0o644, 0o755, 0o777}
    raw = b.bundle.read_bytes()
    assert raw[4:8] == b"\0\0\0\0"  # gzip header: no time
    assert raw[3] & 0x08 == 0  # and no file name


def test_bundle_holds_wheels_loaders_hooks_and_manifest(served_release):
    b = served_release.built
    top = f"pippin-{b.version}"
    files = read_all(b.bundle)
    names = set(files)
    for f in ("stage1.bin", "stage2.bin", "SHA256SUMS"):
        got = files[f"{top}/bootchain/prebuilt/{f}"]
        assert got == (ROOT / "bootchain" / "prebuilt" / f).read_bytes()
    assert f"{top}/initramfs-hooks/common/vendorfw-load" in names
    assert f"{top}/requirements.lock" in names
    assert not any("/python/" in n for n in names)  # built with the system runtime
    manifest = json.loads(files[f"{top}/BUNDLE.json"])
    assert manifest["version"] == b.version
    assert manifest["mac_pythons"] == list(wh.MAC_PYTHONS)
    wheel_names = sorted(n.rsplit("/", 1)[1] for n in names if n.startswith(f"{top}/wheels/"))
    assert sorted(manifest["wheels"]) == wheel_names
    for n in wheel_names:
        assert hashlib.sha256(files[f"{top}/wheels/{n}"]).hexdigest() == manifest["wheels"][n]
    own = f"pippin-{b.version}-py3-none-any.whl"
    assert own in wheel_names
    assert any(n.startswith("pip-") for n in wheel_names)
    with zipfile.ZipFile(io.BytesIO(files[f"{top}/wheels/{own}"])) as z:
        listed = z.namelist()
    assert "installer/release/bootstrap.sh" in listed
    assert "installer/cli.py" in listed
    assert "vendorfw/cli.py" in listed
    assert not any("__pycache__" in n for n in listed)


def test_every_dependency_has_a_macos_arm64_wheel(served_release):
    """Lists each pinned dependency with the wheel that installs it on a Mac, per Python."""
    b = served_release.built
    pins = wh.read_pins(ROOT / "requirements.lock")
    files = [i.name.rsplit("/", 1)[1] for i in members(b.bundle) if "/wheels/" in i.name]
    cov = wh.mac_coverage(pins, files, wh.MAC_PYTHONS)
    table = "\n".join(f"{p}: " + ", ".join(cov.wheels.get((p.name, py), "MISSING")
                                            for py in wh.MAC_PYTHONS) for p in pins)
    print(table)
    assert cov.missing == (), table
    assert len(pins) >= 20  # the whole lock, not a subset
    for (_name, _py), wheel in cov.wheels.items():
        plat = wh.WheelName.parse(wheel).platform
        assert plat == {"any"} or all("arm64" in p or "universal2" in p for p in plat), wheel


@pytest.mark.parametrize(("wheel", "py", "ok"), [
    ("cffi-2.1.1-cp311-cp311-macosx_11_0_arm64.whl", "3.11", True),
    ("cffi-2.1.1-cp311-cp311-macosx_11_0_arm64.whl", "3.12", False),
    ("cryptography-50.0.2-cp311-abi3-macosx_11_0_arm64.whl", "3.13", True),
    ("cryptography-50.0.2-cp311-abi3-macosx_11_0_arm64.whl", "3.10", False),
    ("charset_normalizer-3.5.2-cp312-cp312-macosx_10_13_universal2.whl", "3.12", True),
    ("x-1-cp312-cp312-macosx_14_0_arm64.whl", "3.12", False),  # needs macOS 14
    ("x-1-cp312-cp312-macosx_11_0_x86_64.whl", "3.12", False),
    ("x-1-cp311-cp311-manylinux_2_17_x86_64.whl", "3.11", False),
    ("asn1-2.8.0-py2.py3-none-any.whl", "3.13", True),
])
def test_wheel_tags_for_macos_arm64(wheel, py, ok):
    assert wh.WheelName.parse(wheel).runs_on_mac(py) is ok


def test_a_missing_platform_wheel_is_named():
    pins = (wh.Pin("cffi", "2.1.1"), wh.Pin("asn1", "2.8.0"))
    files = ["cffi-2.1.1-cp311-cp311-macosx_11_0_arm64.whl",
             "cffi-2.1.1-cp312-cp312-manylinux_2_17_x86_64.whl", "asn1-2.8.0-py3-none-any.whl"]
    cov = wh.mac_coverage(pins, files, ("3.11", "3.12"))
    assert cov.missing == ((wh.Pin("cffi", "2.1.1"), "3.12"),)


def test_base_url_must_be_safe_in_sh():
    assert check_base_url("https://example.org/pippin/") == "https://example.org/pippin"
    for bad in ("ftp://x", "http://x/'; rm -rf /", "http://x/$(id)", "http://a b"):
        with pytest.raises(ReleaseError):
            check_base_url(bad)


def test_make_release_refuses_a_bad_runtime_in_one_line(tmp_path):
    (tmp_path / "rt").mkdir()
    r = subprocess.run([str(releasefix.MAKE_RELEASE), "--out", str(tmp_path / "o"),
                        "--python-runtime", str(tmp_path / "rt")], capture_output=True,
                       text=True, timeout=600, stdin=subprocess.DEVNULL)
    assert r.returncode == 1
    assert r.stderr.strip().splitlines()[-1] == \
        f"make-release: error: --python-runtime {tmp_path / 'rt'}: no bin/python3 inside"
    assert not (tmp_path / "o" / "latest").exists()


def test_latest_names_the_bundle(served_release):
    b = served_release.built
    f = releasefix.latest_fields(b.latest)
    assert f == {"version": b.version, "file": b.bundle.name,
                 "size": str(b.bundle.stat().st_size),
                 "sha256": hashlib.sha256(b.bundle.read_bytes()).hexdigest()}


def test_install_script_has_the_values_and_passes_shellcheck(served_release):
    b = served_release.built
    text = b.install.read_text()
    assert f"built_base='{served_release.url('rel')}'" in text
    assert f"built_sha='{b.sha256}'" in text
    assert f"built_size='{b.size}'" in text
    assert "@PIPPIN_" not in text
    lines = text.rstrip("\n").splitlines()
    assert lines[-1] == 'pippin_bootstrap "$@"'  # the only top-level command but the trap
    # .shellcheckrc's one waiver (SC3043, `local`) spelled out: the file is outside the tree
    r = subprocess.run([require_tool("shellcheck"), "-s", "sh", "-e", "SC3043", str(b.install)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout


# -- end to end ---------------------------------------------------------------------------


@pytest.mark.qemu
@pytest.mark.timeout(900)
def test_curl_sh_installs_the_demo_linux_and_it_boots(served_release, tmp_path, demo_site):
    """curl | sh → verified bundle → wheels → `pippin install --answers A --yes` onto a
    fresh simulated Mac (under caffeinate) → scripts/qemu-boot boots the result.

    The catalog, OS packages and restore image come from the same nginx through
    INSTALLER_DATA, REPO_BASE and IPSW_BASE (the demo site, signed, its key pinned with
    PIPPIN_CATALOG_KEY), with EXPERT=1: the access log shows each one was used."""
    site = link_tree(demo_site.root, served_release.root / "site")
    assert (site / "installer_data.json.sig").is_file()
    sim = tmp_path / "mac.img"
    answers = tmp_path / "a.toml"
    answers.write_text(f'target = "sim:{sim}"\nos = "{DEMO_LINUX}"\n')
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "caffeinate").write_text(
        f'#!/bin/sh\necho "$@" > {tmp_path}/caffeinate.args\n'
        'while [ $# -gt 0 ] && [ "${1#-}" != "$1" ]; do shift; done\nexec "$@"\n')
    (shim / "caffeinate").chmod(0o755)
    base = served_release.url("site")
    env = clean_env(tmp_path / "home", PIPPIN_ALLOW_NON_MAC="1", EXPERT="1",
                    INSTALLER_DATA=f"{base}/installer_data.json", REPO_BASE=base,
                    IPSW_BASE=base, PIPPIN_CATALOG_KEY=f"ed25519:{demo_site.catalog_key.hex()}")
    env["PATH"] = f"{shim}:{env['PATH']}"
    r = curl_sh(served_release.url("rel/install"), env, "--answers", str(answers), "--yes")
    assert r.rc == 0, r.stderr[-3000:]
    assert f"installed '{DEMO_LINUX}' on sim:{sim}" in r.stdout
    assert "WARNING: catalog" not in r.stderr  # signed by the pinned key: no notice
    args = (tmp_path / "caffeinate.args").read_text().split()
    assert args[0] == "-dis"
    assert args[2:] == ["-m", "installer.cli", "install", "--expert", "--answers",
                        str(answers), "--yes"]
    assert list((tmp_path / "home" / "tmp").iterdir()) == []  # the temp dir is gone
    log = served_release.server.log_lines()
    bundle = served_release.built.bundle.name
    assert any(ln.startswith(f"GET /rel/{bundle} ") and " 200 " in ln for ln in log)
    for path in ("/site/installer_data.json ", "/site/installer_data.json.sig ",
                 "/site/os/pippin-demo-linux.zip ", f"/site/{image_file_name()} "):
        assert any(f"GET {path}" in ln for ln in log), path
    boot = subprocess.run([str(ROOT / "scripts" / "qemu-boot"), str(sim), "--timeout", "240"],
                          capture_output=True, text=True, timeout=300,
                          stdin=subprocess.DEVNULL)
    console = boot.stdout.replace("\r", "")
    assert DEMO_MARKER in console, (boot.stderr + console)[-3000:]
    assert "pippin stage2" in console


@pytest.mark.timeout(900)
def test_bundled_runtime_is_preferred_and_dry_run_prints_the_plan(tmp_path):
    """A release built with --python-runtime DIR runs pippin with that runtime (a stand-in
    that records its use and hands over to this host's Python)."""
    rt = tmp_path / "runtime"
    (rt / "bin").mkdir(parents=True)
    real = subprocess.run(["sh", "-c", "command -v python3"], capture_output=True, text=True,
                          env=clean_env(tmp_path / "h0")).stdout.strip()
    (rt / "bin" / "python3").write_text(
        f'#!/bin/sh\necho "$@" >> "$HOME/runtime-used"\nexec {real} "$@"\n')
    (rt / "bin" / "python3").chmod(0o755)
    www = tmp_path / "www"
    www.mkdir()
    with nginx.serve(www, tmp_path / "ngx") as server:
        built = make_release(www / "r", server.url("r"), "--python-runtime", str(rt))
        env = clean_env(tmp_path / "home", PIPPIN_ALLOW_NON_MAC="1")
        r = curl_sh(server.url("r/install"), env, "--target", f"sim:{tmp_path / 'mac.img'}",
                    "--dry-run")
    assert r.rc == 0, r.stderr[-3000:]
    assert "operations:" in r.stdout
    assert "UEFI environment only" in r.stdout
    used = (tmp_path / "home" / "runtime-used").read_text()
    assert "pip install" in used
    assert "-m installer.cli install" in used
    names = {i.name for i in members(built.bundle)}
    assert f"pippin-{built.version}/python/bin/python3" in names


def _tar_gz(path: Path, entries: list[tuple[str, bytes | None, str]]) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for name, data, link in entries:
            ti = tarfile.TarInfo(name)
            if data is None:
                ti.type, ti.linkname = tarfile.SYMTYPE, link
                tf.addfile(ti)
            else:
                ti.size, ti.mode = len(data), 0o755
                tf.addfile(ti, io.BytesIO(data))
    return path


def test_runtime_tarball_members(tmp_path):
    """A python-build-standalone style tarball (top folder python/): files and symlinks are
    carried under pippin-<v>/python/; members outside python/ or with .. are dropped."""
    from installer.release.bundle import _runtime_members

    rt = _tar_gz(tmp_path / "rt.tar.gz", [
        ("python/bin/python3.12", b"ELF", ""), ("python/bin/python3", None, "python3.12"),
        ("python/lib/x.py", b"x", ""), ("other/evil", b"e", ""),
        ("python/../../evil", b"e", "")])
    got = {m.name: m for m in _runtime_members(rt, "p/python")}
    assert sorted(got) == ["p/python/bin/python3", "p/python/bin/python3.12",
                           "p/python/lib/x.py"]
    assert got["p/python/bin/python3"].link == "python3.12"
    assert got["p/python/bin/python3.12"].mode == 0o755
    bad = _tar_gz(tmp_path / "bad.tar.gz", [("python/lib/x.py", b"x", "")])
    with pytest.raises(ReleaseError, match="no python/bin/python3 inside"):
        list(_runtime_members(bad, "p/python"))
    (tmp_path / "junk").write_bytes(b"not a tar")
    with pytest.raises(ReleaseError, match="not a directory or readable tar archive"):
        list(_runtime_members(tmp_path / "junk", "p/python"))
