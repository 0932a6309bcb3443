"""After the install: the summary and the next steps with their exact commands."""

from __future__ import annotations

from collections.abc import Sequence

from textual import on
from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import Button, Static


class DoneScreen(Screen[None]):
    def __init__(self, lines: Sequence[str]) -> None:
        super().__init__()
        self.lines = list(lines)

    def compose(self) -> ComposeResult:
        yield Static("Done", classes="title")
        yield Static("\n".join(self.lines), id="summary", markup=False)
        yield Button("Quit", id="quit", variant="primary")

    def on_mount(self) -> None:
        self.query_one(Button).focus()

    @on(Button.Pressed, "#quit")
    def _quit(self) -> None:
        self.dismiss(None)
