"""Messages the install worker posts to the progress screen (thread-safe post_message)."""

from __future__ import annotations

from textual.message import Message


class InstallProgress(Message):
    """``install()``'s progress callback: bytes (operations for "disk") done of total."""

    def __init__(self, stage: str, done: int, total: int, elapsed: float) -> None:
        super().__init__()
        self.stage = stage
        self.done = done
        self.total = total
        self.elapsed = elapsed


class InstallLog(Message):
    """One log line of the running install (the tail is shown under the bars)."""

    def __init__(self, line: str) -> None:
        super().__init__()
        self.line = line
