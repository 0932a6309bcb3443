"""The base of every step: a titled screen that returns a value, or :data:`BACK` on Escape."""

from __future__ import annotations

import enum
from typing import ClassVar, TypeVar

from textual.binding import Binding, BindingType
from textual.screen import Screen

T = TypeVar("T")


class Back(enum.Enum):
    """The result of a step the user left with Back (the App shows the previous step)."""

    BACK = "back"


BACK = Back.BACK


class Step(Screen[T | Back]):
    """A screen of the install flow; ``dismiss(BACK)`` goes one step back."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "back", "Back")]

    def action_back(self) -> None:
        self.dismiss(BACK)
