"""The install TUI driven by Pilot key presses: the demo catalog behind nginx and a simulated
Mac. The walk asserts the Answers built and the plan shown; one run installs through the
worker and reads the result back with sgdisk; bad input stays on its screen with the reason."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from textual.app import App

from installer.answers import Answers, load_answers
from installer.demo.site import CATALOG_NAME, DEMO_LINUX, UEFI_ONLY
from installer.disk.plan import Space, SpaceOptions
from installer.errors import CatalogError
from installer.tui import flow
from installer.tui.app import PippinApp
from installer.tui.messages import InstallLog, InstallProgress
from installer.tui.screens.confirm import ConfirmScreen
from installer.tui.screens.done import DoneScreen
from installer.tui.screens.error import ErrorScreen
from installer.tui.screens.name import NameScreen
from installer.tui.screens.pick_os import PickOS
from installer.tui.screens.progress import ProgressScreen
from installer.tui.screens.size import SizeScreen
from installer.tui.screens.space import SpaceScreen
from installer.tui.widgets.checked_input import CheckedInput
from tests.support import installfix
from tests.support.installfix import (
    deps_for,
    image_digest,
    new_sim,
    partition_numbers,
    sgdisk,
)

demo_cache = installfix.demo_cache
demo_site = installfix.demo_site
www = installfix.www
session = installfix.session

pytestmark = pytest.mark.timeout(120)
SIZE = (100, 30)


@pytest.fixture
def make_app(tmp_path, www, session):
    _root, srv = www
    sim = new_sim(tmp_path / "mac.img")

    def make(catalog=None, **kw):
        deps = deps_for(tmp_path / "cache", session, env={"IPSW_BASE": srv.base_url},
                        guid_seed="tui-test")
        answers = Answers(target=f"sim:{sim}", catalog=catalog or srv.url(CATALOG_NAME))
        return PippinApp(answers, deps, **kw)

    make.sim = sim
    make.catalog = srv.url(CATALOG_NAME)
    return make


async def until(pilot, what, timeout=30.0):
    """Let the app run until ``what()`` holds (the worker thread does real I/O)."""
    deadline = time.monotonic() + timeout
    while not what():
        assert time.monotonic() < deadline, f"timed out; screen is {pilot.app.screen!r}"
        await pilot.pause(0.05)


async def on(pilot, screen_type, **attrs):
    def ready():
        s = pilot.app.screen
        return isinstance(s, screen_type) and s.is_mounted and all(
            getattr(s, k) == v for k, v in attrs.items())
    await until(pilot, ready)
    await pilot.pause()
    return pilot.app.screen


async def type_answer(pilot, text):
    """Replace the focused input's text and press Enter."""
    inp = pilot.app.screen.query_one("Input")
    inp.value = ""
    await pilot.press(*text, "enter")
    await pilot.pause()


async def install_defaults(pilot):
    """UEFI environment only with every default, then Install."""
    app = pilot.app
    await on(pilot, PickOS)
    await pilot.press("enter")
    for _ in range(3):  # space, macOS size, name
        await until(pilot, lambda: not isinstance(app.screen, PickOS))
        screen = app.screen
        await pilot.press("enter")
        await until(pilot, lambda s=screen: app.screen is not s)
    await on(pilot, ConfirmScreen)
    await pilot.click("#install")


def test_walk_the_flow_back_and_save_answers(make_app, tmp_path):
    saved = tmp_path / "answers.toml"
    app = make_app(answers_path=saved)

    async def walk():
        async with app.run_test(size=SIZE) as pilot:
            await on(pilot, PickOS)
            await pilot.press("down", "enter")
            space = await on(pilot, SpaceScreen)
            # 64 GB sim disk without free space: only shrinking macOS is offered
            labels = [c.label for c in space.choices]
            assert labels[0].startswith("Use free space: largest free region 0 B (too small")
            assert labels[1].startswith("Shrink macOS: container ")
            await pilot.press("enter")
            size = await on(pilot, SizeScreen, title_text="How large macOS stays")
            assert "the smallest possible is " in size.prompt

            await type_answer(pilot, "12 parsecs")
            assert app.screen is size
            assert size.query_one(CheckedInput).reason == \
                "unknown size unit 'parsecs' in '12 parsecs' (use KB, MB, GB, TB, KiB…)"
            await type_answer(pilot, "1GB")  # below what macOS uses: the planner's reason
            assert app.screen is size
            assert "1.0 GB" in size.query_one(CheckedInput).reason
            await type_answer(pilot, "min")
            # the demo Linux has no growing partition: no OS size to ask
            await on(pilot, NameScreen)
            await pilot.press("escape")  # Back: the macOS size again, answer kept
            size = await on(pilot, SizeScreen, title_text="How large macOS stays")
            assert size.value == "min"
            await pilot.press("enter")
            await on(pilot, NameScreen)
            await pilot.press("ctrl+s")  # saving works from inside an input too
            await until(pilot, saved.exists)
            assert load_answers(saved).resize_to == "min"
            saved.unlink()
            await type_answer(pilot, "a/b")
            assert isinstance(app.screen, NameScreen)
            assert "must be 1-200 printable bytes" in app.screen.query_one(CheckedInput).reason
            await type_answer(pilot, "Tui Linux")

            confirm = await on(pilot, ConfirmScreen)
            assert confirm.plan_text.startswith("install 'Tui Linux' on disk0 (3.1 GB)")
            assert "resize APFS container disk0s2" in confirm.plan_text
            assert "write image root.img" in confirm.plan_text  # the demo Linux's root
            assert any("Nothing has been written yet" in n for n in confirm.notes)
            await until(pilot, saved.exists)  # --write-answers: saved once planned
            saved.unlink()
            await pilot.press("w")
            await until(pilot, saved.exists)

            await pilot.click("#back")
            await on(pilot, NameScreen)
            await pilot.press("enter")
            await on(pilot, ConfirmScreen)
            answers = app.answers
            await pilot.press("ctrl+q")
        return answers

    answers = asyncio.run(walk())
    want = Answers(target=f"sim:{make_app.sim}", catalog=make_app.catalog, os=DEMO_LINUX,
                   space=Space.RESIZE, resize_to="min", name="Tui Linux")
    assert answers == want
    assert load_answers(saved) == want
    assert app.return_code == 1
    assert app.result is None


def test_install_through_the_worker(make_app):
    app = make_app()
    progress: list[InstallProgress] = []

    def hook(msg):
        if isinstance(msg, InstallProgress):
            progress.append(msg)

    async def run():
        async with app.run_test(size=SIZE, message_hook=hook) as pilot:
            await install_defaults(pilot)
            await until(pilot, lambda: isinstance(app.screen, ProgressScreen | DoneScreen))
            done = await on(pilot, DoneScreen)
            await pilot.press("ctrl+q")  # quitting here is success, like the Quit button
        return done

    done = asyncio.run(run())
    assert app.error is None
    assert app.return_value is app.result
    assert app.return_code == 0
    assert app.result.os_name == UEFI_ONLY
    assert f"  scripts/qemu-boot {make_app.sim}" in done.lines
    assert any(line.strip().startswith("kmutil configure-boot") for line in done.lines)
    assert "EFI" in partition_numbers(make_app.sim)
    assert "EF00" in sgdisk("-p", str(make_app.sim))
    disk = [m for m in progress if m.stage == "disk"]
    assert disk
    assert disk[-1].done == disk[-1].total
    assert {m.stage for m in progress} >= {"restore image", "firmware", "disk"}


def test_error_is_one_line_with_hint(make_app, tmp_path):
    app = make_app(catalog=str(tmp_path / "missing.json"))

    async def run():
        async with app.run_test(size=SIZE) as pilot:
            err = await on(pilot, ErrorScreen)
            text = [str(w.content) for w in err.query("Static")]
            await pilot.press("enter")
        return text

    text = asyncio.run(run())
    assert text[0].startswith("error: cannot read catalog ")
    assert all("Traceback" not in t and "\n" not in t for t in text)
    assert isinstance(app.error, CatalogError)
    assert app.return_code == 1


def test_failed_install_shows_the_error_and_leaves_the_disk(make_app, www):
    root, _srv = www
    pkg = root / "os" / "pippin-uefi-only.zip"
    pkg.unlink()  # a hard link into the shared site: replace, don't write through
    pkg.write_bytes(b"not the package the catalog's SHA-256 names")
    before = image_digest(make_app.sim)
    app = make_app()

    async def run():
        async with app.run_test(size=SIZE) as pilot:
            await install_defaults(pilot)
            err = await on(pilot, ErrorScreen)
            assert not err.can_go_back
            text = [str(w.content) for w in err.query("Static")]
            await pilot.press("enter")
        return text

    text = asyncio.run(run())
    assert text[0].startswith("error: ")
    assert "does not match the catalog's" in text[0]
    assert all("Traceback" not in t for t in text)
    assert app.result is None
    assert app.return_code == 1
    assert image_digest(make_app.sim) == before


def _entry(expert=False, name="X"):
    from installer.catalog import OsEntry
    return OsEntry(name, name, None, None, None, None, (), (), expert, False, ())


def test_flow_helpers():
    plain, expert = _entry(name="A"), _entry(expert=True, name="B")
    assert flow.offered((plain, expert), expert=False) == (plain,)
    assert flow.offered((plain, expert), expert=True) == (plain, expert)
    opts = SpaceOptions(largest_free=50 * 10**9, resize_offered=False, resize_min=0,
                        resize_current=100 * 10**9, freeable=0, os_min=1, os_recommended=1,
                        why_not_resize="macOS is too full")
    free, resize = flow.space_choices(opts, plain)
    assert (free.enabled, resize.enabled) == (True, False)
    assert free.label == "Use free space: largest free region 50.0 GB"
    assert resize.label == "Shrink macOS: not possible (macOS is too full)"
    assert flow.default_space(opts, plain) is Space.FREE
    assert flow.rate_text("restore image", 25 * 10**6, 100 * 10**6, 5.0) == \
        "25.0 MB / 100.0 MB (25%), 5.0 MB/s, ETA 15 s"
    assert flow.rate_text("disk", 3, 8, 1.0) == "operation 3 of 8"


def test_interactive_install_runs_the_tui(make_app, monkeypatch, capsys, tmp_path):
    """On a terminal without --yes/--dry-run, `pippin install` hands over to the TUI."""
    import sys

    from installer import install_cli
    from installer.cli import main

    seen = []

    def fake_tui(answers, deps, *, auto_space, answers_path, offer_bundle=None):
        seen.append((answers, auto_space, answers_path))
        assert offer_bundle is None  # no --source and not run from a bundle
        return None, None

    monkeypatch.setattr("installer.tui.app.run_tui", fake_tui)
    monkeypatch.setattr(sys.stdin, "isatty", lambda: True)
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    assert install_cli.sys is sys
    rc = main(["install", "--target", f"sim:{make_app.sim}", "--catalog", make_app.catalog,
               "--write-answers", str(tmp_path / "a.toml")])
    assert rc == 1
    assert "cancelled; nothing written" in capsys.readouterr().err
    [(answers, auto_space, path)] = seen
    assert (answers.target, answers.catalog, auto_space) == (
        f"sim:{make_app.sim}", make_app.catalog, True)
    assert path == tmp_path / "a.toml"


def test_bug_log_warnings_drew_over_the_screens():
    """The CLI's stderr log handler wrote WARNING lines onto the terminal the TUI draws on."""
    import io
    import logging

    from installer.tui.app import _quiet_terminal_logging

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setLevel(logging.WARNING)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        with _quiet_terminal_logging():
            logging.getLogger("installer.test").warning("during the TUI")
        logging.getLogger("installer.test").warning("after it")
    finally:
        root.removeHandler(handler)
    assert stream.getvalue() == "after it\n"


# -- snapshots: each screen alone with fixed data (no paths, ports or clocks on screen) -------

TCSS = str(Path(flow.__file__).with_name("pippin.tcss"))
OPTS = SpaceOptions(largest_free=0, resize_offered=True, resize_min=238 * 10**9,
                    resize_current=506 * 10**9, freeable=268 * 10**9, os_min=3 * 10**9,
                    os_recommended=3 * 10**9)
def _demo_plan():
    """A resize install of the demo Linux on a 512 GB Mac (the shape plan_install makes)."""
    from installer.disk.model import PartKind
    from installer.disk.ops import (
        CopyTree,
        CreatePartition,
        CreateStubContainer,
        CreateStubVolumes,
        FormatFat32,
        ResizeContainer,
        WriteImage,
    )
    from installer.disk.plan import Plan, Slot

    gb, mb = 10**9, 10**6
    isc = Slot(20480, 524 * mb, "Apple_APFS_ISC", "iBootSystemContainer", "disk0s1")
    rec = Slot(494 * gb, 5 * gb, "Apple_APFS_Recovery", "RecoveryOSContainer", "disk0s3")
    before = (isc, Slot(524308480, 493 * gb, "Apple_APFS", "Container", "disk0s2"), rec)
    after = (isc, Slot(524308480, 238 * gb, "Apple_APFS", "Container", "disk0s2", "resized"),
             Slot(239 * gb, 2500 * mb, "Apple_APFS", "Pippin demo Linux", "new:0", "new"),
             Slot(242 * gb, 524 * mb, "EFI", "EFI", "new:1", "new"),
             Slot(243 * gb, 67 * mb, "Linux Filesystem", "Root", "new:2", "new"),
             Slot(244 * gb, 250 * gb, "free", "", ""), rec)
    ops = (ResizeContainer("disk0s2", 493 * gb, 238 * gb),
           CreateStubContainer("new:0", "disk0s2", 239 * gb, 2500 * mb, "Pippin demo Linux", "A"),
           CreateStubVolumes("new:0", "Pippin demo Linux"),
           CreatePartition("new:1", "new:0", 242 * gb, 524 * mb, PartKind.EFI, "EFI", "B"),
           FormatFat32("new:1", "EFI", None), CopyTree("new:1", "esp"),
           CreatePartition("new:2", "new:1", 243 * gb, 67 * mb, PartKind.LINUX, "Root", "C"),
           WriteImage("new:2", "root.img", 67 * mb))
    return Plan("install", "disk0", ops, before, after, ((0, 1),), os_name="Pippin demo Linux",
                os_size=3100 * mb)


def one_screen(make):
    class One(App):
        CSS_PATH = TCSS

        def on_mount(self):
            self.push_screen(make())

    return One()


def _check_size(text):
    return flow.check_size_text("size", text)


async def _progress(pilot):
    await pilot.pause()
    screen = pilot.app.screen
    for m in (InstallProgress("package", 12 * 10**6, 12 * 10**6, 1.0),
              InstallProgress("restore image", 25 * 10**6, 100 * 10**6, 5.0),
              InstallLog("stage: restore image")):
        screen.post_message(m)
    await pilot.pause()


SCREENS = {
    "pick_os": (lambda: PickOS([("UEFI environment only", "UEFI environment only  (needs 3.0 GB)"),
                                ("Pippin demo Linux", "Pippin demo Linux  (needs 3.1 GB)")],
                               None), ["down"], None),
    "space": (lambda: SpaceScreen(flow.space_choices(OPTS, _entry()), Space.RESIZE), [], None),
    "size_refused": (lambda: SizeScreen("Size of the new OS", "It needs at least 3.1 GB.", "",
                                        _check_size), [*"12 parsecs", "enter"], None),
    "name": (lambda: NameScreen("Pippin demo Linux", None, lambda t: t or None), [], None),
    "confirm": (lambda: ConfirmScreen(_demo_plan(), ["Nothing has been written yet."]), [], None),
    "progress": (lambda: ProgressScreen("Installing", ["package", "restore image", "disk"]), [],
                 _progress),
    "done": (lambda: DoneScreen(["Installed 'X' on sim:mac.img.", "  scripts/qemu-boot mac.img"]),
             [], None),
    "error": (lambda: ErrorScreen("cannot read catalog x.json: No such file or directory",
                                  "pass --catalog", can_go_back=True), [], None),
}


@pytest.mark.parametrize("name", sorted(SCREENS))
def test_snapshot(snap_compare, name):
    make, press, before = SCREENS[name]
    assert snap_compare(one_screen(make), press=press, terminal_size=SIZE, run_before=before)


def test_snapshot_plan_at_80x24(snap_compare):
    """recoveryOS's Terminal: the map, what shrinks and what is created, with sizes, all in
    view without scrolling sideways (and no byte offsets)."""
    assert snap_compare(one_screen(lambda: ConfirmScreen(_demo_plan(), ["note"])),
                        terminal_size=(80, 24))


def test_plan_fits_80_columns_without_offsets():
    from installer.tui.screens.confirm import plan_lines
    head, map_lines, ops = plan_lines(_demo_plan())
    assert all(len(line) <= 74 for line in map_lines)
    assert map_lines[0].startswith("before |")
    assert map_lines[1].startswith("after  |")
    assert map_lines[2] == ("       = APFS  s stub  E ESP  L Linux  i iBoot  "
                            "r recovery  . free")
    assert "shrink  macOS container disk0s2: 493.0 GB -> 238.0 GB" in map_lines
    assert "create  stub APFS container 'Pippin demo Linux': 2.5 GB" in map_lines
    assert "create  Linux Filesystem partition 'Root': 67.0 MB" in map_lines
    assert not any(str(239 * 10**9) in line for line in [head, *map_lines, *ops])


# -- bugs found when tried as a new user would ---------------------------------------------

GROWING = "Growing Linux"


@pytest.fixture
def growing_catalog(www):
    """The demo catalog plus an entry whose root partition grows (so the OS size is asked)."""
    import json
    root, srv = www
    doc = json.loads((root / CATALOG_NAME).read_text())
    entry = json.loads(json.dumps(next(e for e in doc["os_list"] if e["name"] == DEMO_LINUX)))
    entry["name"] = entry["default_os_name"] = GROWING
    entry["partitions"][1]["expand"] = True
    doc["os_list"].append(entry)
    (root / "growing.json").write_text(json.dumps(doc))
    return srv.url("growing.json")


async def pick(pilot, screen_type, label_start):
    screen = await on(pilot, screen_type)
    options = screen.query_one("OptionList")
    index = next(i for i in range(options.option_count)
                 if str(options.get_option_at_index(i).prompt).startswith(label_start))
    options.highlighted = index
    await pilot.press("enter")


def test_bug_os_size_step_showed_the_macos_title_and_an_empty_error(make_app,
                                                                      growing_catalog):
    """After the macOS size, the OS-size step showed 'How large macOS stays' and refused an
    empty value before anything was typed; Back from the name screen skipped the OS size."""
    app = make_app(catalog=growing_catalog)

    async def walk():
        async with app.run_test(size=SIZE) as pilot:
            await pick(pilot, PickOS, GROWING)
            await pick(pilot, SpaceScreen, "Shrink macOS")
            await on(pilot, SizeScreen, title_text="How large macOS stays")
            await type_answer(pilot, "min")
            size = await on(pilot, SizeScreen, title_text="Size of the new OS")
            assert str(size.query_one(".title").content) == "Size of the new OS"
            assert size.query_one(CheckedInput).reason == ""
            assert size.query_one("Input").value == "max"
            await type_answer(pilot, "10GB")
            await on(pilot, NameScreen)
            await pilot.press("escape")
            size = await on(pilot, SizeScreen, title_text="Size of the new OS")
            assert size.query_one("Input").value == "10GB"
            await pilot.press("escape")
            size = await on(pilot, SizeScreen, title_text="How large macOS stays")
            assert size.query_one("Input").value == "min"
            await pilot.press("ctrl+q")

    asyncio.run(walk())


def test_bug_enter_on_the_plan_activated_back(make_app):
    """The plan screen focused Back, so Enter (meant for nothing) went back a step. Now no
    button has focus until chosen: Enter does nothing, Install takes i or a click."""
    app = make_app()

    async def walk():
        async with app.run_test(size=SIZE) as pilot:
            await pick(pilot, PickOS, UEFI_ONLY)
            for _ in range(3):  # space, macOS size, name: the defaults
                screen = app.screen
                await until(pilot, lambda s=screen: not isinstance(app.screen, PickOS))
                screen = app.screen
                await pilot.press("enter")
                await until(pilot, lambda s=screen: app.screen is not s)
            confirm = await on(pilot, ConfirmScreen)
            await pilot.press("enter")
            await pilot.pause(0.2)
            assert app.screen is confirm
            assert app.focused is None or app.focused.id not in ("back", "install")
            await pilot.press("b")
            await on(pilot, NameScreen)
            await pilot.press("ctrl+q")

    asyncio.run(walk())


# -- the main menu when the target already holds an install --------------------------------


def _gpt(sim):
    return sgdisk("-p", str(sim)).split("\n", 1)[1]


async def choose(pilot, screen, key):
    options = screen.query_one("OptionList")
    options.highlighted = screen.keys.index(key)
    await pilot.press("enter")


def test_main_menu_status_then_uninstall(make_app, demo_cache, session):
    from installer.tui.screens.confirm import RemoveScreen
    from installer.tui.screens.menu import ChoiceScreen, MainMenu, TextScreen

    before = _gpt(make_app.sim)
    installfix.run_install(demo_cache, session, make_app.sim, UEFI_ONLY)
    app = make_app()

    async def walk():
        async with app.run_test(size=SIZE) as pilot:
            menu = await on(pilot, MainMenu)
            assert menu.keys == ["install", "status", "uninstall", "quit"]
            assert menu.prompt.startswith(
                f"On sim:{make_app.sim}: installed 'UEFI environment only'")
            await choose(pilot, menu, "status")
            text = await on(pilot, TextScreen)
            assert any(line.startswith("    stage 1: Pippin 0.1.0") for line in text.lines)
            await pilot.click("#back")
            menu = await on(pilot, MainMenu)
            await choose(pilot, menu, "uninstall")
            pick_one = await on(pilot, ChoiceScreen, title_text="Uninstall")
            assert pick_one.keys == ["disk0s4"]
            await pilot.press("enter")
            remove = await on(pilot, RemoveScreen)
            assert ("delete  Apple_APFS 'UEFI environment only' (disk0s4): 2.5 GB"
                    in remove.plan_text)
            await pilot.press("enter")  # nothing focused: Enter removes nothing
            await pilot.pause(0.2)
            assert app.screen is remove
            await pilot.press("r")
            await on(pilot, PickOS)  # nothing installed any more: straight to a new install
            await pilot.press("ctrl+q")

    asyncio.run(walk())
    assert _gpt(make_app.sim) == before


def test_main_menu_offers_resume_or_rollback_after_a_kill(make_app, demo_cache):
    from installer.tui.screens.menu import MainMenu
    from tests.test_lifecycle_resume import crash

    before = _gpt(make_app.sim)
    assert crash(demo_cache, make_app.sim, UEFI_ONLY, 6).returncode == -9
    app = make_app()

    async def walk():
        async with app.run_test(size=SIZE) as pilot:
            menu = await on(pilot, MainMenu)
            assert menu.keys == ["resume", "rollback", "status", "quit"]
            assert "Interrupted: install of 'UEFI environment only' (" in menu.prompt
            await choose(pilot, menu, "rollback")
            await on(pilot, PickOS)
            await pilot.press("ctrl+q")

    asyncio.run(walk())
    assert _gpt(make_app.sim) == before


def test_main_menu_resumes_an_interrupted_install(make_app, demo_cache):
    from installer.tui.screens.menu import MainMenu
    from tests.test_lifecycle_resume import crash

    assert crash(demo_cache, make_app.sim, UEFI_ONLY, 6).returncode == -9
    app = make_app()

    async def walk():
        async with app.run_test(size=SIZE) as pilot:
            menu = await on(pilot, MainMenu)
            await choose(pilot, menu, "resume")
            done = await on(pilot, DoneScreen)
            await pilot.press("ctrl+q")
        return done

    done = asyncio.run(walk())
    assert app.result is not None
    assert app.result.os_name == UEFI_ONLY
    assert f"  scripts/qemu-boot {make_app.sim}" in done.lines
    assert "EF00" in sgdisk("-p", str(make_app.sim))
