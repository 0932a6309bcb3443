"""The plan: the before/after layout to scale, what shrinks and what is created with sizes,
the operations, and an explicit choice. No button has focus when the screen opens, so Enter
does nothing by accident: Install is ``i`` or a click, Back is ``b``/Escape or a click; a
focused button (Tab) is drawn reversed."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Button, Footer, Static

from installer.disk.ops import describe
from installer.disk.plan import Plan
from installer.disk.scalemap import render_map
from installer.sizes import format_size
from installer.tui.screens.step import BACK, Step

MAP_WIDTH = 74  # fits 80 columns with the screen's padding and the border


def plan_lines(plan: Plan, width: int = MAP_WIDTH) -> tuple[str, list[str], list[str]]:
    """The headline, the map with the decision, and the numbered operations (no offsets)."""
    head = f"{plan.action} {plan.os_name!r} on {plan.disk}"
    if plan.os_size:
        head += f" ({format_size(plan.os_size)})"
    ops = [f"{i}. {describe(op, offsets=False)}" for i, op in enumerate(plan.ops, 1)]
    ops += [f"warning: {w}" for w in plan.warnings] + [f"note: {n}" for n in plan.notes]
    return head, render_map(plan, width), ops


class ConfirmScreen(Step[bool]):
    """Dismisses True on Install, :data:`BACK` on Back or Escape."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("i", "install", "Install"),
        Binding("b", "back", "Back"),
        Binding("escape", "back", "Back", show=False),
    ]

    ACCEPT = "Install (i)"

    def __init__(self, plan: Plan, notes: Sequence[str]) -> None:
        super().__init__()
        self.plan = plan
        self.notes = list(notes)
        head, self.map_lines, self.op_lines = plan_lines(plan)
        self.plan_text = "\n".join([head, *self.map_lines, *self.op_lines])
        self.head = head

    def compose(self) -> ComposeResult:
        yield Static(f"The plan: {self.head}", classes="title", markup=False)
        yield Static("\n".join(self.map_lines), id="plan-map", markup=False)
        with VerticalScroll(id="plan-scroll"):
            yield Static("\n".join(self.op_lines), id="plan", markup=False)
            yield Static("\n".join(self.notes), id="plan-notes", markup=False)
        with Horizontal(id="buttons"):
            yield Button(self.ACCEPT, id="install", variant="error")
            yield Button("Back (b)", id="back")
        yield Footer()

    def on_mount(self) -> None:
        self.set_focus(None)

    def action_install(self) -> None:
        self.dismiss(True)

    @on(Button.Pressed, "#install")
    def _install(self) -> None:
        self.dismiss(True)

    @on(Button.Pressed, "#back")
    def _back(self) -> None:
        self.dismiss(BACK)


class RemoveScreen(ConfirmScreen):
    """The uninstall plan: Remove is ``r`` or a click (Back: ``b``/Escape)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("r", "install", "Remove"),
        Binding("b", "back", "Back"),
        Binding("escape", "back", "Back", show=False),
    ]
    ACCEPT = "Remove (r)"
