"""The running install: a bar per stage with bytes, speed and ETA, and the log's tail."""

from __future__ import annotations

from collections.abc import Sequence

from textual import on
from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import Log, Static

from installer.tui.flow import rate_text
from installer.tui.messages import InstallLog, InstallProgress
from installer.tui.widgets.stage_bar import StageBar


class ProgressScreen(Screen[None]):
    """Shown while the install worker runs; the App replaces it when the worker ends."""

    def __init__(self, title: str, stages: Sequence[str]) -> None:
        super().__init__()
        self.title_text = title
        self.stages = list(stages)
        self.current = ""

    def compose(self) -> ComposeResult:
        yield Static(self.title_text, classes="title")
        for s in self.stages:
            yield StageBar(s)
        yield Log(max_lines=200, id="log")

    def bar(self, stage: str) -> StageBar | None:
        return next((b for b in self.query(StageBar) if b.stage == stage), None)

    @on(InstallProgress)
    def _progress(self, msg: InstallProgress) -> None:
        if msg.stage != self.current and msg.stage in self.stages:
            idx = self.stages.index(msg.stage)
            for b in self.query(StageBar):  # stages run in order: earlier ones are done
                if self.stages.index(b.stage) < idx:
                    b.finish()
            self.current = msg.stage
        bar = self.bar(msg.stage)
        if bar is not None:
            bar.show(msg.done, msg.total, rate_text(msg.stage, msg.done, msg.total, msg.elapsed))

    @on(InstallLog)
    def _log(self, msg: InstallLog) -> None:
        self.query_one(Log).write_line(msg.line)
