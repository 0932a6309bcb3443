"""``PippinApp``: the install flow as screens (STYLE.md §3).

The App owns the :class:`Answers` being built. One thread worker walks the steps: it pushes
a screen, waits for its dismissed value, and moves on (or one step back on :data:`BACK`).
Blocking work (catalog + disk model, the dry-run plan, the install) runs in that worker,
which calls the same :func:`installer.install.install` as ``pippin install --yes`` and
reaches the UI only through ``call_from_thread`` and ``post_message``.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import replace
from pathlib import Path
from typing import ClassVar, TypeVar

from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import Static
from textual.worker import get_current_worker

from installer.answers import Answers, to_toml
from installer.catalog import OsEntry
from installer.disk.plan import Space, SpaceOptions, space_options
from installer.errors import CatalogError, PippinError
from installer.install import (
    InstallDeps,
    InstallRequest,
    InstallResult,
    install,
    make_target,
)
from installer.lifecycle.interrupted import resume_install, rollback_install
from installer.lifecycle.status import render
from installer.lifecycle.uninstall import plan_for, run_uninstall
from installer.targets.base import InstallTarget
from installer.tui import flow
from installer.tui.messages import InstallLog, InstallProgress
from installer.tui.screens.admin import AdminScreen
from installer.tui.screens.confirm import ConfirmScreen, RemoveScreen
from installer.tui.screens.done import DoneScreen
from installer.tui.screens.error import ErrorScreen
from installer.tui.screens.menu import ChoiceScreen, MainMenu, TextScreen
from installer.tui.screens.name import NameScreen
from installer.tui.screens.pick_os import PickOS
from installer.tui.screens.progress import ProgressScreen
from installer.tui.screens.size import SizeScreen
from installer.tui.screens.space import SpaceScreen
from installer.tui.screens.step import Back
from vendorfw.atomic import write_bytes

log = logging.getLogger(__name__)
T = TypeVar("T")

STAGES = ("package", "restore image", "firmware", "disk")
DEFAULT_ANSWERS_FILE = Path("pippin-answers.toml")


class _Cancelled(Exception):
    """The App is closing while the worker waits for a screen."""


class _LogPoster(logging.Handler):
    """The install's INFO lines, posted to the progress screen (thread-safe)."""

    def __init__(self, screen: ProgressScreen) -> None:
        super().__init__(logging.INFO)
        self.screen = screen

    def emit(self, record: logging.LogRecord) -> None:
        self.screen.post_message(InstallLog(record.getMessage()))


class PippinApp(App[InstallResult | None]):
    CSS_PATH = "pippin.tcss"
    TITLE = "Pippin"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("w", "write_answers", "Save answers"),
        Binding("ctrl+s", "write_answers", "Save answers", show=False),  # also in inputs
        Binding("ctrl+q", "quit", "Quit"),
    ]

    def __init__(self, answers: Answers, deps: InstallDeps, *, auto_space: bool = True,
                 answers_path: Path | None = None, offer_bundle: Path | None = None) -> None:
        super().__init__()
        self.answers = answers
        self.deps = deps
        self.offer_bundle = offer_bundle  # started from an offline bundle: offer it first
        self.auto_space = auto_space
        self.answers_path = answers_path
        self.planned: InstallResult | None = None
        self.result: InstallResult | None = None
        self.error: PippinError | None = None
        self.installing = False
        self.go_install = False

    def compose(self) -> ComposeResult:
        yield Static("Pippin: reading the catalog and the disk…", classes="title")

    def on_mount(self) -> None:
        self.run_flow()

    # -- actions ---------------------------------------------------------------------------

    def action_write_answers(self) -> None:
        """Save the answers (as planned, once there is a plan) for ``--answers`` replays."""
        path = self.answers_path or DEFAULT_ANSWERS_FILE
        a = self.planned.answers if self.planned and self.planned.answers else self.answers
        try:
            write_bytes(path, to_toml(a).encode())
        except OSError as exc:
            self.notify(f"cannot write {path}: {exc.strerror}", severity="error")
            return
        self.notify(f"answers saved to {path} (replay: pippin install --answers {path})")

    async def action_quit(self) -> None:
        if self.installing:
            self.notify("the install is running; quitting now would leave it half done",
                        severity="warning")
            return
        if self.result is not None:  # installed: quitting from the done screen is success
            self.exit(self.result)
            return
        self.exit(None, return_code=1)

    # -- the flow (a thread worker) ---------------------------------------------------------

    @work(thread=True, exclusive=True, group="flow")
    def run_flow(self) -> None:
        try:
            self._flow()
        except _Cancelled:
            return
        except PippinError as exc:
            self._fail(exc)
        except Exception as exc:  # noqa: BLE001 - worker entry: one line on screen, details in the log
            log.exception("internal error in the install TUI")
            first = (str(exc).splitlines() or [""])[0]
            self._fail(PippinError(f"internal error: {exc.__class__.__name__}: {first}",
                                   hint="details in the pippin log file"))

    def _ask(self, screen: Screen[T]) -> T:
        """Push ``screen`` and wait (in the worker) for its dismissed value."""
        done: Future[T] = Future()

        def resolve(value: T | None) -> None:
            done.set_result(value)  # type: ignore[arg-type]

        worker = get_current_worker()
        if worker.is_cancelled:
            raise _Cancelled
        try:
            self.call_from_thread(self.push_screen, screen, resolve)
        except RuntimeError as exc:  # the App closed while the worker was busy
            raise _Cancelled from exc
        while True:
            try:
                return done.result(timeout=0.1)
            except TimeoutError:
                if worker.is_cancelled:
                    raise _Cancelled from None

    def _fail(self, exc: PippinError) -> None:
        self.error = exc
        try:
            self._ask(ErrorScreen(exc.message, exc.hint, can_go_back=False))
        except _Cancelled:
            return
        self.call_from_thread(self.exit, None, 1)

    def _flow(self) -> None:
        if self.offer_bundle is not None:
            r_src = self._ask(ChoiceScreen("Install source", *flow.source_choices(
                self.offer_bundle)))
            if r_src == "quit" or isinstance(r_src, Back):
                self.call_from_thread(self.exit, None, 1)
                return
            self.deps = replace(self.deps, bundle=self.offer_bundle if r_src == "bundle"
                                else None)
        setup = flow.load_setup(self.answers, self.deps)
        for note in setup.notes:  # e.g. why an OS is missing from the list (log is muted)
            self.call_from_thread(self.notify, note, severity="warning", timeout=30)
        while flow.wants_menu(setup.status):
            if not self._menu(setup):
                return
            if self.go_install:
                break
            setup = flow.load_setup(self.answers, self.deps)
        entries = flow.offered(setup.entries, self.answers.expert)
        if not entries:
            raise CatalogError("the catalog offers no OS to install",
                               hint="pass --expert to see expert-only entries")
        a = self.answers
        entry = _find(entries, a.os) or entries[0]
        opts = space_options(setup.model, entry, expert=a.expert, disk_ref=setup.disk)
        if self.auto_space:
            a = replace(a, space=flow.default_space(opts, entry))
        i = 0
        while True:
            # A size is asked only where it means something: the macOS size when shrinking
            # it, the OS size when the entry has a partition that grows to fill it.
            steps = ["os", "space", *(["resize_to"] if a.space is Space.RESIZE else []),
                     *(["size"] if entry.expandable else []), "name", "confirm"]
            step = steps[i]
            if step == "os":
                r_os = self._ask(PickOS([(e.name, flow.entry_label(e)) for e in entries], a.os))
                if isinstance(r_os, Back):
                    continue  # the first step: nothing before it
                entry = _find(entries, r_os) or entry
                opts = space_options(setup.model, entry, expert=a.expert, disk_ref=setup.disk)
                if r_os != a.os and self.auto_space:
                    a = replace(a, space=flow.default_space(opts, entry))
                a = replace(a, os=r_os)
            elif step == "space":
                r_space = self._ask(SpaceScreen(flow.space_choices(opts, entry), a.space))
                if isinstance(r_space, Back):
                    i -= 1
                    continue
                a = replace(a, space=r_space)
            elif step in ("resize_to", "size"):
                r_size = self._ask(self._size_screen(step, setup, entry, opts, a))
                if isinstance(r_size, Back):
                    i -= 1
                    continue
                a = a.override(**{step: r_size})
            elif step == "name":
                r_name = self._ask(self._name_screen(setup, entry, a))
                if isinstance(r_name, Back):
                    i -= 1
                    continue
                a = replace(a, name=r_name)
            else:
                self.answers = a
                if self._confirm(a):
                    break
                i -= 1
                continue
            self.answers = a
            i += 1
        self._install(a)

    def _menu(self, setup: flow.Setup) -> bool:
        """One pass through the main menu; False when the App is done (quit, resumed)."""
        status = setup.status
        assert status is not None
        r = self._ask(MainMenu("Pippin", flow.menu_prompt(status), flow.menu_choices(status)))
        if r == "install":
            self.go_install = True
        elif r == "status":
            self._ask(TextScreen("Status", render(status).splitlines()))
        elif r == "uninstall":
            self._uninstall(setup)
        elif r == "rollback":
            rollback_install(self._target())
            self.call_from_thread(self.notify, "rolled back; bytes outside its plan verified "
                                  "unchanged")
        elif r == "resume":
            self._run_install(f"Resuming on {setup.target}", lambda progress: resume_install(
                setup.target, self.deps, progress))
            return False
        elif r == "quit":
            self.call_from_thread(self.exit, None, 1)
            return False
        return True

    def _target(self) -> InstallTarget:
        assert self.answers.target is not None
        return self.deps.target or make_target(self.answers.target, self.deps.runner,
                                                      self.deps.mac_root)

    def _uninstall(self, setup: flow.Setup) -> None:
        assert setup.status is not None
        what = self._ask(ChoiceScreen("Uninstall", "What should be removed? Its space goes "
                                      "back to macOS where macOS can grow into it.",
                                      flow.removable(setup.status)))
        if isinstance(what, Back):
            return
        target = self._target()
        plan = plan_for(target.backend.read_model(), what)
        if self._ask(RemoveScreen(plan, ["Nothing has been removed yet."])) is not True:
            return
        run_uninstall(target, plan)
        self.call_from_thread(self.notify, f"removed {plan.os_name!r}")

    def _size_screen(self, key: str, setup: flow.Setup, entry: OsEntry, opts: SpaceOptions,
                     a: Answers) -> SizeScreen:
        title = "How large macOS stays" if key == "resize_to" else "Size of the new OS"
        return SizeScreen(title, flow.size_prompt(key, setup, entry, opts, a),
                          getattr(a, key),
                          lambda text: flow.check_size(key, text, setup, entry, a))

    def _name_screen(self, setup: flow.Setup, entry: OsEntry, a: Answers) -> NameScreen:
        def check(text: str) -> str | None:
            return flow.check_name(text, setup, entry, a)
        return NameScreen(entry.default_os_name.strip(), a.name, check)

    def _confirm(self, a: Answers) -> bool:
        """Plan as ``pippin install --dry-run`` does; True once the user chose Install."""
        try:
            planned = install(InstallRequest(a, dry_run=True), self.deps)
        except PippinError as exc:
            if self._ask(ErrorScreen(exc.message, exc.hint, can_go_back=True)) == "quit":
                self.error = exc
                self.call_from_thread(self.exit, None, 1)
                raise _Cancelled from exc
            return False
        self.planned = planned
        if self.answers_path is not None:
            self.call_from_thread(self.action_write_answers)
        r = self._ask(ConfirmScreen(planned.plan, flow.plan_note(planned)))
        return r is True

    def _install(self, a: Answers) -> None:
        password = self.deps.env.get("PIPPIN_ADMIN_PASSWORD") or None
        if not (a.target or "").startswith("sim:") and not (a.admin_user and password):
            r = self._ask(AdminScreen(a.admin_user))  # a Mac: bless needs an administrator
            if isinstance(r, Back):
                self.call_from_thread(self.exit, None, 1)
                return
            a = replace(a, admin_user=r[0])
            password = r[1]
        self._run_install(f"Installing {(a.os or '').strip()} on {a.target}",
                          lambda progress: install(InstallRequest(a, admin_password=password),
                                                   self.deps, progress))

    def _run_install(self, title: str,
                     run: Callable[[_Poster], InstallResult]) -> None:
        screen = ProgressScreen(title, STAGES)
        self.call_from_thread(self.push_screen, screen)
        handler = _LogPoster(screen)
        logging.getLogger("installer").addHandler(handler)
        self.installing = True
        try:
            result = run(_Poster(screen, self.deps))
        finally:
            self.installing = False
            logging.getLogger("installer").removeHandler(handler)
        self.result = result
        self._ask(DoneScreen(flow.next_steps(result)))
        self.call_from_thread(self.exit, result)

    def on_unmount(self) -> None:
        self.workers.cancel_group(self, "flow")


class _Poster:
    """``install()``'s progress callback: InstallProgress messages, at most ~20 per second
    per stage (the last of a stage always)."""

    def __init__(self, screen: ProgressScreen, deps: InstallDeps) -> None:
        self.screen = screen
        self.clock = deps.clock
        self.stage = ""
        self.t0 = 0.0
        self.last = 0.0

    def __call__(self, stage: str, done: int, total: int) -> None:
        now = self.clock()
        if stage != self.stage:
            self.stage, self.t0, self.last = stage, now, 0.0
        elif now - self.last < 0.05 and done != total:
            return
        self.last = now
        self.screen.post_message(InstallProgress(stage, done, total, now - self.t0))


def _find(entries: tuple[OsEntry, ...], name: str | None) -> OsEntry | None:
    if name is None:
        return None
    return next((e for e in entries if e.name.strip() == name.strip()), None)


def run_tui(answers: Answers, deps: InstallDeps, *, auto_space: bool,
            answers_path: Path | None, offer_bundle: Path | None = None,
            ) -> tuple[InstallResult | None, PippinError | None]:
    """Run the TUI; the install's result (None when cancelled or failed) and the failure."""
    app = PippinApp(answers, deps, auto_space=auto_space, answers_path=answers_path,
                    offer_bundle=offer_bundle)
    t0 = time.monotonic()
    with _quiet_terminal_logging():
        app.run()
    log.info("TUI closed after %.0f s", time.monotonic() - t0)
    return app.result, app.error


@contextlib.contextmanager
def _quiet_terminal_logging() -> Iterator[None]:
    """Mute log handlers that write to the terminal while the App draws on it (their lines
    would land across the screens); the log file still gets everything."""
    muted = [h for h in logging.getLogger().handlers
             if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)]
    levels = [h.level for h in muted]
    for h in muted:
        h.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        for h, level in zip(muted, levels, strict=True):
            h.setLevel(level)
