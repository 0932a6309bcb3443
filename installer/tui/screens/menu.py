"""Lists to choose from (the main menu, what to uninstall) and a page of text (status)."""

from __future__ import annotations

from collections.abc import Sequence

from textual import on
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Button, Footer, OptionList, Static
from textual.widgets.option_list import Option

from installer.tui.screens.step import BACK, Step


class ChoiceScreen(Step[str]):
    """``choices`` are (key, label) pairs; dismisses with the chosen key (Back: Escape)."""

    def __init__(self, title: str, prompt: str, choices: Sequence[tuple[str, str]]) -> None:
        super().__init__()
        self.title_text = title
        self.prompt = prompt
        self.choices = list(choices)

    def compose(self) -> ComposeResult:
        yield Static(self.title_text, classes="title", markup=False)
        if self.prompt:
            yield Static(self.prompt, classes="prompt", markup=False)
        yield OptionList(*(Option(label, id=f"choice-{key}") for key, label in self.choices),
                         id="choices")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(OptionList).highlighted = 0

    @property
    def keys(self) -> list[str]:
        return [k for k, _ in self.choices]

    @on(OptionList.OptionSelected)
    def _picked(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(self.choices[event.option_index][0])


class MainMenu(ChoiceScreen):
    """The first screen when the target already holds an install (or an interrupted one)."""


class TextScreen(Step[None]):
    """A page of text (``pippin status``'s lines) with a Back button."""

    def __init__(self, title: str, lines: Sequence[str]) -> None:
        super().__init__()
        self.title_text = title
        self.lines = list(lines)

    def compose(self) -> ComposeResult:
        yield Static(self.title_text, classes="title", markup=False)
        with VerticalScroll(id="text-scroll"):
            yield Static("\n".join(self.lines), id="text", markup=False)
        yield Button("Back", id="back", variant="primary")
        yield Footer()

    @on(Button.Pressed, "#back")
    def _back(self) -> None:
        self.dismiss(BACK)
