"""Step 2: where the new OS goes: the free region, or space freed by shrinking macOS."""

from __future__ import annotations

from collections.abc import Sequence

from textual import on
from textual.app import ComposeResult
from textual.widgets import Footer, OptionList, Static
from textual.widgets.option_list import Option

from installer.disk.plan import Space
from installer.tui.flow import SpaceChoice
from installer.tui.screens.step import Step


class SpaceScreen(Step[Space]):
    def __init__(self, choices: Sequence[SpaceChoice], selected: Space) -> None:
        super().__init__()
        self.choices = list(choices)
        self.selected = selected

    def compose(self) -> ComposeResult:
        yield Static("Where should the new OS go?", classes="title")
        yield OptionList(*(Option(c.label, id=f"space-{c.space}", disabled=not c.enabled)
                           for c in self.choices), id="space-list")
        yield Footer()

    def on_mount(self) -> None:
        spaces = [c.space for c in self.choices if c.enabled]
        pick = self.selected if self.selected in spaces else (spaces[0] if spaces else None)
        if pick is not None:
            self.query_one(OptionList).highlighted = [c.space for c in self.choices].index(pick)

    @on(OptionList.OptionSelected)
    def _picked(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(self.choices[event.option_index].space)
