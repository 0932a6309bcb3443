"""The installed demo Linux boots: scripts/qemu-boot runs the stage-1 object the install left
for step 2, stage 1 finds the ESP by PARTUUID on the sim disk and loads m1n1/boot.bin, stage
2 boots the kernel, and the guest sees the ESP's PARTUUID in /chosen."""

from __future__ import annotations

import os
import subprocess

import pytest

from installer.demo.site import DEMO_LINUX, DEMO_MARKER
from tests.support import installfix
from tests.support.installfix import new_sim, partition_numbers, partuuid, run_install

demo_cache = installfix.demo_cache
demo_site = installfix.demo_site
session = installfix.session


@pytest.mark.qemu
@pytest.mark.timeout(400)
def test_installed_demo_linux_boots_through_the_chain(tmp_path, demo_cache, session,
                                                      repo_root):
    sim = new_sim(tmp_path / "mac.img")
    res = run_install(demo_cache, session, sim, DEMO_LINUX)
    esp = partuuid(sim, partition_numbers(sim)["EFI"])
    r = subprocess.run([str(repo_root / "scripts" / "qemu-boot"), str(sim), "--timeout", "240"],
                       capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
                       env=dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "xdg")))
    console = r.stdout.replace("\r", "")
    assert DEMO_MARKER in console, (r.stderr + console)[-3000:]
    assert "pippin stage1" in console
    assert "pippin stage2" in console
    assert f"PIPPIN-DEMO: chosen/asahi,efi-system-partition={esp}\n" in console
    assert esp == res.esp_partuuid
    assert str(res.stage1_path) in r.stderr  # the script used the installed stage 1
