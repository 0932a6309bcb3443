"""Step 1: which OS (the catalog's entries; expert-only ones only in expert mode)."""

from __future__ import annotations

from collections.abc import Sequence

from textual import on
from textual.app import ComposeResult
from textual.widgets import Footer, OptionList, Static
from textual.widgets.option_list import Option

from installer.tui.screens.step import Step


class PickOS(Step[str]):
    """``entries`` are (catalog name, label) pairs; dismisses with the chosen name."""

    def __init__(self, entries: Sequence[tuple[str, str]], selected: str | None) -> None:
        super().__init__()
        self.entries = list(entries)
        self.selected = selected

    def compose(self) -> ComposeResult:
        yield Static("Which operating system should Pippin install?", classes="title")
        yield OptionList(*(Option(label, id=f"os-{i}")
                           for i, (_name, label) in enumerate(self.entries)), id="os-list")
        yield Footer()

    def on_mount(self) -> None:
        names = [n.strip() for n, _ in self.entries]
        pick = (self.selected or "").strip()
        self.query_one(OptionList).highlighted = names.index(pick) if pick in names else 0

    @on(OptionList.OptionSelected)
    def _picked(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(self.entries[event.option_index][0])
