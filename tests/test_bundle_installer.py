"""`pippin bundle create --with-installer`: the stick holds the release bundle, `latest` and
the `install` bootstrap; `sh STICK/install` (as from recoveryOS's Terminal) installs from the
stick with no network at all (a network namespace without interfaces)."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from installer.bundle.manifest import MANIFEST, parse_manifest
from installer.demo.site import DEMO_LINUX
from tests.support import installfix, releasefix
from tests.support.installfix import new_sim, partition_numbers

demo_cache = installfix.demo_cache
demo_site = installfix.demo_site

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    return releasefix.make_release(tmp_path_factory.mktemp("rel") / "dist",
                                   "http://127.0.0.1:9/not-used")


def test_stick_installs_offline_with_its_own_installer(tmp_path, release, demo_site):
    if subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode != 0:
        pytest.skip("unshare -n is not permitted here")
    stick = tmp_path / "stick"
    env = dict(os.environ, PYTHONPATH=str(ROOT), XDG_CACHE_HOME=str(tmp_path / "xdg"),
               IPSW_BASE=str(demo_site.root))
    r = subprocess.run([sys.executable, "-m", "installer.cli", "bundle", "create", str(stick),
                        "--os", DEMO_LINUX, "--device", "j314sap", "--catalog",
                        str(demo_site.root / "installer_data.json"), "--with-installer",
                        "--release", str(release.out)], env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    man = parse_manifest((stick / MANIFEST).read_bytes())
    for name in ("install", "latest", release.bundle.name):
        assert man.file(name) is not None
        assert (stick / name).read_bytes() == (release.out / name).read_bytes()
    assert stat.S_IMODE((stick / "install").stat().st_mode) == 0o755
    sim = new_sim(tmp_path / "mac.img")
    home = tmp_path / "home"
    run = subprocess.run(["unshare", "-n", "sh", str(stick / "install"), "--os", DEMO_LINUX,
                          "--target", f"sim:{sim}", "--yes"],
                         env=releasefix.clean_env(home, PIPPIN_ALLOW_NON_MAC="1"),
                         capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)
    assert run.returncode == 0, run.stderr[-3000:]
    assert f"installed {DEMO_LINUX!r}" in run.stdout
    assert {"EFI", "Root"} <= set(partition_numbers(sim))
    assert not list((home / "tmp").iterdir())  # the bootstrap cleaned up after itself


def test_install_script_on_a_stick_names_sudo_when_not_root(tmp_path, release):
    top = Path(tempfile.mkdtemp(prefix="pippin-stick-"))  # readable by nobody (tmp_path is not)
    try:
        os.chmod(top, 0o755)
        stick = top / "stick"
        stick.mkdir()
        for name in ("install", "latest", release.bundle.name):
            shutil.copyfile(release.out / name, stick / name)
        (stick / MANIFEST).write_text("{}")
        env = releasefix.clean_env(tmp_path / "home", PIPPIN_ALLOW_NON_MAC="1")
        run = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                              "sh", str(stick / "install"), "--yes"], env=env,
                             capture_output=True, text=True, timeout=60,
                             stdin=subprocess.DEVNULL)
    finally:
        shutil.rmtree(top)
    assert run.returncode == 1
    assert run.stderr.strip().splitlines() == [
        f"pippin: the installer needs root; run: sudo sh {stick}/install --yes"]
