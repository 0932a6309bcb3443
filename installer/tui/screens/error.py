"""A failure: its one-line message and hint (never a traceback), then Back or Quit."""

from __future__ import annotations

from typing import Literal

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static

ErrorChoice = Literal["back", "quit"]


class ErrorScreen(ModalScreen[ErrorChoice]):
    def __init__(self, message: str, hint: str | None, *, can_go_back: bool) -> None:
        super().__init__()
        self.message = message
        self.hint = hint
        self.can_go_back = can_go_back

    def compose(self) -> ComposeResult:
        with Vertical(id="error-box"):
            yield Static(f"error: {self.message}", id="error-message", markup=False)
            if self.hint:
                yield Static(f"hint: {self.hint}", id="error-hint", markup=False)
            with Horizontal(id="buttons"):
                if self.can_go_back:
                    yield Button("Back", id="back", variant="primary")
                yield Button("Quit", id="quit")

    def on_mount(self) -> None:
        self.query_one(Button).focus()

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss("back" if event.button.id == "back" else "quit")
