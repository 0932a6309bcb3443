"""One install stage: its name, a progress bar and the bytes/speed/ETA text."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Label, ProgressBar


class StageBar(Horizontal):
    DEFAULT_CSS = """
    StageBar { height: 1; }
    StageBar > .stage { width: 16; }
    StageBar > ProgressBar { width: 32; }
    StageBar > .rate { width: 1fr; padding-left: 1; }
    """

    def __init__(self, stage: str) -> None:
        super().__init__()
        self.stage = stage
        self.finished = False
        self.text = "waiting"

    def compose(self) -> ComposeResult:
        yield Label(self.stage, classes="stage")
        yield ProgressBar(total=1, show_eta=False)  # 0% until it starts: no animation
        yield Label("waiting", classes="rate")

    def show(self, done: int, total: int, text: str) -> None:
        self.text = text
        # no total (a byte count alone): the bar animates as indeterminate
        self.query_one(ProgressBar).update(total=total or None, progress=done)
        self.query_one(".rate", Label).update(text)

    def finish(self) -> None:
        """The stage ended (the next one began): a full bar, its last numbers kept."""
        if self.finished:
            return
        self.finished = True
        bar = self.query_one(ProgressBar)
        bar.update(total=bar.total or 1, progress=bar.total or 1)
        self.query_one(".rate", Label).update(
            "done" if self.text == "waiting" else f"done: {self.text}")
