"""The name shown in the boot picker (blank keeps the catalog's default)."""

from __future__ import annotations

from collections.abc import Callable

from textual import on
from textual.app import ComposeResult
from textual.widgets import Footer, Static

from installer.tui.screens.step import Step
from installer.tui.widgets.checked_input import CheckedInput


class NameScreen(Step[str | None]):
    """Dismisses with the name, or None for the default; ``check`` refuses unusable names."""

    def __init__(self, default: str, value: str | None,
                 check: Callable[[str], str | None]) -> None:
        super().__init__()
        self.default = default
        self.value = value
        self.check = check

    def compose(self) -> ComposeResult:
        yield Static("Name in the boot picker", classes="title")
        yield Static(f"Leave it blank for {self.default!r}.", classes="prompt")
        yield CheckedInput(self.value or "", self.check, placeholder=self.default,
                           id="name-input")
        yield Footer()

    @on(CheckedInput.Accepted)
    def _accepted(self, event: CheckedInput.Accepted) -> None:
        assert event.value is None or isinstance(event.value, str)
        self.dismiss(event.value)
