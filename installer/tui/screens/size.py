"""A size answer (the new OS's size, or how large macOS stays), checked as it is entered."""

from __future__ import annotations

from collections.abc import Callable

from textual import on
from textual.app import ComposeResult
from textual.widgets import Footer, Static

from installer.tui.screens.step import Step
from installer.tui.widgets.checked_input import CheckedInput


class SizeScreen(Step[str]):
    """``check`` turns the text into the answer or raises a PippinError (shown inline)."""

    def __init__(self, title: str, prompt: str, value: str, check: Callable[[str], str]) -> None:
        super().__init__()
        self.title_text = title
        self.prompt = prompt
        self.value = value
        self.check = check

    def compose(self) -> ComposeResult:
        yield Static(self.title_text, classes="title")
        yield Static(self.prompt, classes="prompt")
        yield CheckedInput(self.value, self.check, placeholder="max, min, 50%, 20GB",
                           id="size-input")
        yield Footer()

    @on(CheckedInput.Accepted)
    def _accepted(self, event: CheckedInput.Accepted) -> None:
        assert isinstance(event.value, str)
        self.dismiss(event.value)
