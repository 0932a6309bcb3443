"""The TUI started from an offline bundle offers it first: "Install from this bundle" lists
only the bundle's entries and plans from its files; "from the internet" uses the catalog as
usual (here the demo site)."""

from __future__ import annotations

import asyncio

import pytest

from installer.answers import Answers
from installer.bundle.create import BundleRequest, create_bundle
from installer.demo.site import DEMO_LINUX, UEFI_ONLY
from installer.tui.app import PippinApp
from installer.tui.screens.menu import ChoiceScreen
from installer.tui.screens.pick_os import PickOS
from tests.support import installfix
from tests.support.installfix import deps_for, new_sim
from tests.test_tui import SIZE, on

demo_cache = installfix.demo_cache
demo_site = installfix.demo_site
session = installfix.session

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def stick(tmp_path, demo_cache, session):
    out = tmp_path / "stick"
    create_bundle(BundleRequest(out, (UEFI_ONLY,), ("j314sap",)), deps_for(demo_cache, session))
    return out


@pytest.mark.parametrize(("keys", "source", "offered"), [
    (["enter"], "bundle", [UEFI_ONLY]),
    (["down", "enter"], "online", [UEFI_ONLY, DEMO_LINUX]),
])
def test_tui_offers_the_bundle_it_started_from(tmp_path, stick, demo_cache, session, keys,
                                               source, offered):
    sim = new_sim(tmp_path / "mac.img")
    app = PippinApp(Answers(target=f"sim:{sim}"), deps_for(demo_cache, session),
                    offer_bundle=stick)
    asyncio.run(_walk(app, stick, keys, source, offered))


async def _walk(app, stick, keys, source, offered):
    async with app.run_test(size=SIZE) as pilot:
        screen = await on(pilot, ChoiceScreen)
        assert screen.title_text == "Install source"
        assert str(stick) in screen.prompt
        assert UEFI_ONLY in screen.prompt
        assert screen.keys == ["bundle", "online", "quit"]
        await pilot.press(*keys)
        pick = await on(pilot, PickOS)
        assert [n.strip() for n, _ in pick.entries] == offered
        assert app.deps.bundle == (stick if source == "bundle" else None)
        await pilot.press("ctrl+q")


def test_tui_quit_at_the_source_choice_writes_nothing(tmp_path, stick, demo_cache, session):
    sim = new_sim(tmp_path / "mac.img")
    before = installfix.image_digest(sim)
    app = PippinApp(Answers(target=f"sim:{sim}"), deps_for(demo_cache, session),
                    offer_bundle=stick)

    async def run():
        async with app.run_test(size=SIZE) as pilot:
            await on(pilot, ChoiceScreen)
            await pilot.press("down", "down", "enter")
            await pilot.pause(0.5)
    asyncio.run(run())
    assert app.return_code == 1
    assert installfix.image_digest(sim) == before
