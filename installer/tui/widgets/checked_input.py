"""An input whose value a caller-supplied check accepts or refuses with a one-line reason."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from textual import on
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import Input, Static

from installer.errors import PippinError

T = TypeVar("T")


class CheckedInput(Vertical, Generic[T]):
    """Enter runs ``check(text)``: a value posts :class:`Accepted`, a PippinError stays here
    with its message (and hint) on the line under the input."""

    DEFAULT_CSS = """
    CheckedInput { height: auto; }
    CheckedInput > .reason { color: $error; height: auto; }
    """

    class Accepted(Message):
        def __init__(self, value: object) -> None:
            super().__init__()
            self.value = value

    def __init__(self, value: str, check: Callable[[str], T], *, placeholder: str = "",
                 id: str | None = None) -> None:
        super().__init__(id=id)
        self.value = value
        self.check = check
        self.placeholder = placeholder

    def compose(self) -> ComposeResult:
        yield Input(self.value, placeholder=self.placeholder)
        yield Static("", classes="reason")

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        reason = self.query_one(".reason", Static)
        try:
            value = self.check(event.value)
        except PippinError as exc:
            reason.update(exc.message + (f" ({exc.hint})" if exc.hint else ""))
            return
        reason.update("")
        self.post_message(self.Accepted(value))

    @property
    def reason(self) -> str:
        """The refusal shown now ("" when none)."""
        return str(self.query_one(".reason", Static).content)
