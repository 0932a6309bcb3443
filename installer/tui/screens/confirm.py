"""The plan (before/after layout and operations) with an explicit Install or Back."""

from __future__ import annotations

from collections.abc import Sequence

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Button, Footer, Static

from installer.tui.screens.step import BACK, Step


class ConfirmScreen(Step[bool]):
    """Dismisses True on Install, :data:`BACK` on Back or Escape."""

    def __init__(self, plan_text: str, notes: Sequence[str]) -> None:
        super().__init__()
        self.plan_text = plan_text
        self.notes = list(notes)

    def compose(self) -> ComposeResult:
        yield Static("The plan", classes="title")
        with VerticalScroll(id="plan-scroll"):
            yield Static(self.plan_text, id="plan", markup=False)
            yield Static("\n".join(self.notes), id="plan-notes", markup=False)
        with Horizontal(id="buttons"):
            yield Button("Install", id="install", variant="error")
            yield Button("Back", id="back")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#back", Button).focus()

    @on(Button.Pressed, "#install")
    def _install(self) -> None:
        self.dismiss(True)

    @on(Button.Pressed, "#back")
    def _back(self) -> None:
        self.dismiss(BACK)
