"""The Textual installer on a Mac target (through the macOS stand-in): after Install it asks
for the administrator who blesses the new System volume; the password reaches bless on
stdin and nothing else (not the answers, not the argv log)."""

from __future__ import annotations

import asyncio
import os

import pytest

from installer.answers import Answers
from installer.demo.site import CATALOG_NAME, UEFI_ONLY
from installer.demo.standin.cli import prepare
from installer.install import InstallDeps
from installer.platform.base import SubprocessRunner
from installer.platform.simstate import SimState, sidecar
from installer.tui.app import PippinApp
from installer.tui.screens.admin import AdminScreen
from installer.tui.screens.done import DoneScreen
from tests.support import installfix
from tests.support.installfix import PREBUILT, new_sim
from tests.support.macstandin import STAGE1, argv_log, gpt
from tests.test_tui import SIZE, install_defaults, on, until

demo_cache = installfix.demo_cache
demo_site = installfix.demo_site
www = installfix.www
session = installfix.session

pytestmark = pytest.mark.timeout(300)


def test_tui_on_a_mac_asks_for_the_administrator(tmp_path, www, session):
    _root, srv = www
    sim = new_sim(tmp_path / "mac.img")
    d = prepare(sim, "alice:s3cret", external=False)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIPPIN_")}
    env.update(PATH=f"{d / 'bin'}:{env['PATH']}", PIPPIN_STANDIN=str(d))
    deps = InstallDeps(session=session, runner=SubprocessRunner(env),
                       cache_dir=tmp_path / "cache", prebuilt=PREBUILT,
                       env={"IPSW_BASE": srv.base_url}, mac_root=d / "root",
                       guid_seed="mac-tui")
    answers = Answers(target="disk0", catalog=srv.url(CATALOG_NAME), os=UEFI_ONLY,
                      stage1=str(STAGE1))
    app = PippinApp(answers, deps)

    async def run():
        async with app.run_test(size=SIZE) as pilot:
            await install_defaults(pilot)
            await on(pilot, AdminScreen)
            await pilot.press(*"alice", "enter")
            await pilot.press("enter")  # no password yet: stays, says why
            assert "needed" in str(app.screen.query_one("#admin-reason").content)
            await pilot.press(*"s3cret", "enter")
            await until(pilot, lambda: isinstance(app.screen, DoneScreen), timeout=240)
            await pilot.press("ctrl+q")

    asyncio.run(run())
    assert app.error is None
    assert app.result is not None
    assert app.result.answers is not None
    stub = [e for e in gpt(sim) if e[4] == UEFI_ONLY][0][5]
    assert SimState(sim).boot == stub  # bless accepted alice's password
    assert ["bless", "--setBoot", "--device", "/dev/disk5s2", "--user", "alice",
            "--stdinpass"] in argv_log(sim)
    assert b"s3cret" not in (sidecar(sim) / "standin-argv.log").read_bytes()
