"""A plan as text (before/after layout, operations) and as JSON-ready data."""

from __future__ import annotations

from typing import Any

from installer.disk.ops import describe, op_to_dict
from installer.disk.plan import Plan, Slot
from installer.sizes import format_size


def rows(slots: tuple[Slot, ...]) -> list[str]:
    out = []
    for s in slots:
        mark = f"  [{s.change}]" if s.change else ""
        label = f"{s.ref:<10} " if s.ref else " " * 11
        out.append(
            f"    {label}{s.start:>15}  {format_size(s.size):>9}  {s.kind:<19} {s.name}{mark}"
        )
    return out


def render_plan(plan: Plan) -> str:
    lines = [f"{plan.action} {plan.os_name!r} on {plan.disk}"]
    if plan.os_size:
        lines[0] += f" ({format_size(plan.os_size)})"
    lines += ["  before:", *rows(plan.before), "  after:", *rows(plan.after), "  operations:"]
    lines += [f"    {i}. {describe(op)}" for i, op in enumerate(plan.ops, start=1)]
    lines += [f"  warning: {w}" for w in plan.warnings]
    lines += [f"  note: {n}" for n in plan.notes]
    return "\n".join(lines)


def _slot(s: Slot) -> dict[str, Any]:
    return {"start": s.start, "size": s.size, "kind": s.kind, "name": s.name, "ref": s.ref,
            "change": s.change}


def plan_to_dict(plan: Plan) -> dict[str, Any]:
    return {
        "action": plan.action,
        "disk": plan.disk,
        "os_name": plan.os_name,
        "os_size": plan.os_size,
        "before": [_slot(s) for s in plan.before],
        "after": [_slot(s) for s in plan.after],
        "operations": [op_to_dict(op) for op in plan.ops],
        "owned": [list(r) for r in plan.owned],
        "warnings": list(plan.warnings),
        "notes": list(plan.notes),
    }
