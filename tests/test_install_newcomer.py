"""A newcomer's first `scripts/pippin install` on a fresh machine: the demo Linux entry's
asset fetch has the Debian packages it needs, and when it fails anyway the reason reaches
the user (stderr), not only the plan's notes."""

from __future__ import annotations

import asyncio
import logging
import shutil
import subprocess
from pathlib import Path

import pytest

from installer.answers import Answers
from installer.demo.site import DEMO_LINUX, UEFI_ONLY
from installer.install import InstallDeps, open_source
from installer.net.session import NetConfig, make_session
from installer.platform.base import Result, Runner
from tests.support.installfix import PREBUILT

ROOT = Path(__file__).resolve().parents[1]
FAILURE = b"fetch-test-assets: run as root once: dpkg --add-architecture arm64\n"


class FailingFetch(Runner):
    """Stands in for scripts/fetch-test-assets on a machine where it cannot run (its real
    one-line refusal, recorded); records what was run."""

    def __init__(self) -> None:
        self.argv: list[tuple[str, ...]] = []

    def run(self, argv, *, stdin=None):
        self.argv.append(tuple(argv))
        return Result(tuple(argv), 1, b"", b"some apt noise\n" + FAILURE)


def _run_packages() -> set[str]:
    lines = (ROOT / "scripts" / "debian-packages-run.txt").read_text().splitlines()
    return {ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")}


@pytest.mark.parametrize("tool", ["depmod"])
def test_bug_demo_asset_fetch_tools_are_in_the_run_package_list(tool):
    """`scripts/pippin install` installed only the sim's tools, so on a fresh machine the
    demo kernel fetch died on a missing depmod and "Pippin demo Linux" was not offered."""
    path = shutil.which(tool, path="/usr/sbin:/sbin:/usr/bin:/bin")
    assert path is not None, f"{tool} not installed (scripts/debian-packages.txt: kmod)"
    # dpkg knows the pre-usrmerge path (/sbin/depmod): ask by the name's tail.
    out = subprocess.run(["dpkg", "-S", f"bin/{tool}"], capture_output=True, text=True,
                         check=True).stdout
    owners = {ln.split(":")[0] for ln in out.splitlines() if ln.endswith(f"/{tool}")}
    assert owners & _run_packages(), owners
    assert f"command -v {tool}" in (ROOT / "scripts" / "fetch-test-assets").read_text()


def test_bug_demo_linux_left_out_silently(tmp_path, caplog):
    """When the demo assets could not be fetched, the entry was dropped and the reason
    went only into the plan's notes (not shown by `--yes`, nor by the TUI's OS list)."""
    runner = FailingFetch()
    deps = InstallDeps(session=make_session(NetConfig()), runner=runner,
                       cache_dir=tmp_path / "cache", prebuilt=PREBUILT,
                       demo_assets=tmp_path / "no-assets")
    with caplog.at_level(logging.WARNING), open_source(Answers(), deps) as src:
        names = [e.name for e in src.catalog.entries]
    assert runner.argv == [(str(ROOT / "scripts" / "fetch-test-assets"),)]
    assert names == [UEFI_ONLY]
    why = (f"{DEMO_LINUX!r} is left out: scripts/fetch-test-assets failed: "
           f"{FAILURE.decode().strip()}")
    no_uboot = (f"{UEFI_ONLY!r} holds stage 2 alone: no u-boot.bin in the test assets "
                "(scripts/fetch-test-assets)")
    assert src.notes == (why, no_uboot)
    # WARNING is what the CLI's stderr handler shows (cliboundary.setup_logging).
    assert [r.getMessage() for r in caplog.records
            if r.levelno >= logging.WARNING] == [why, no_uboot]


def test_bug_demo_linux_left_out_says_why_in_the_tui(tmp_path):
    """The TUI mutes stderr logging while it draws: the reason is a notification over the
    OS list instead."""
    from installer.tui.app import PippinApp
    from installer.tui.screens.pick_os import PickOS
    from tests.support.installfix import new_sim

    sim = new_sim(tmp_path / "mac.img")
    deps = InstallDeps(session=make_session(NetConfig(no_proxy=("127.0.0.1",))),
                       runner=FailingFetch(), cache_dir=tmp_path / "cache", prebuilt=PREBUILT,
                       demo_assets=tmp_path / "no-assets")
    app = PippinApp(Answers(target=f"sim:{sim}"), deps)

    async def look() -> list[str]:
        async with app.run_test(size=(100, 30)) as pilot:
            for _ in range(600):
                if isinstance(app.screen, PickOS) and app.screen.is_mounted:
                    break
                await pilot.pause(0.05)
            assert isinstance(app.screen, PickOS)
            await pilot.pause()
            shown = [n.message for n in app._notifications]
            app.exit(None)
            return shown

    shown = asyncio.run(look())
    assert (f"{DEMO_LINUX!r} is left out: scripts/fetch-test-assets failed: "
            f"{FAILURE.decode().strip()}") in shown
