"""On a Mac: the administrator who sets the new System volume as the boot volume (bless).

The password is passed to ``bless`` on stdin and kept nowhere else (not in the answers file,
not in the log).
"""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.widgets import Footer, Input, Static

from installer.tui.screens.step import Step


class AdminScreen(Step[tuple[str, str]]):
    """Dismisses with (user, password) once both are given."""

    def __init__(self, user: str | None) -> None:
        super().__init__()
        self.user = user or ""

    def compose(self) -> ComposeResult:
        yield Static("Administrator", classes="title")
        yield Static("macOS asks an administrator to make the new system the boot volume "
                     "(bless). The password goes to bless only.", classes="prompt")
        yield Input(self.user, placeholder="user name", id="admin-user")
        yield Input("", placeholder="password", password=True, id="admin-password")
        yield Static("", classes="reason", id="admin-reason")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#admin-password" if self.user else "#admin-user", Input).focus()

    @on(Input.Submitted, "#admin-user")
    def _user(self, event: Input.Submitted) -> None:
        event.stop()
        self.query_one("#admin-password", Input).focus()

    @on(Input.Submitted, "#admin-password")
    def _password(self, event: Input.Submitted) -> None:
        event.stop()
        user = self.query_one("#admin-user", Input).value.strip()
        if not user or not event.value:
            self.query_one("#admin-reason", Static).update(
                "both the user name and the password are needed")
            return
        self.dismiss((user, event.value))
