"""A plan drawn to scale: one bar per layout (before, after), segments proportional to
their size, and the decision under it in plain words (what shrinks, what is created, how
big). Sized for an 80-column terminal (recoveryOS's Terminal is 80×24); byte offsets stay
in ``--json``."""

from __future__ import annotations

from installer.disk.ops import CreatePartition, CreateStubContainer, ResizeContainer
from installer.disk.plan import Plan, Slot
from installer.sizes import format_size

#: Fill character and legend word per slot kind; a new APFS container is a stub ("s").
FILL = {"Apple_APFS": ("=", "APFS"), "stub": ("s", "stub"), "EFI": ("E", "ESP"),
        "Linux Filesystem": ("L", "Linux"), "Apple_APFS_ISC": ("i", "iBoot"),
        "Apple_APFS_Recovery": ("r", "recovery"), "free": (".", "free")}


def _key(s: Slot) -> str:
    return "stub" if s.kind == "Apple_APFS" and s.change == "new" else s.kind


def _fill(s: Slot) -> str:
    return FILL.get(_key(s), ("#", ""))[0]


def _widths(sizes: list[int], width: int) -> list[int]:
    """Proportional widths, each at least 1, summing to ``width`` (largest remainders)."""
    n = len(sizes)
    if n == 0:
        return []
    width = max(width, n)
    total = sum(sizes) or 1
    spare = width - n  # every segment gets 1, the rest is shared by size
    raw = [s * spare / total for s in sizes]
    out = [1 + int(r) for r in raw]
    left = width - sum(out)
    for i in sorted(range(n), key=lambda i: raw[i] - int(raw[i]), reverse=True)[:left]:
        out[i] += 1
    return out


def _label(s: Slot, macos: str) -> str:
    name = "free" if s.kind == "free" else "macOS" if s.ref == macos else s.name
    if name == s.kind != "free":  # diskutil names a partition by its type (see the legend)
        name = ""
    return f"{name} {format_size(s.size)}" if name else format_size(s.size)


def macos_ref(slots: tuple[Slot, ...]) -> str:
    """The macOS container: the first APFS container that the plan did not create."""
    return next((s.ref for s in sorted(slots, key=lambda s: s.start)
                 if s.kind == "Apple_APFS" and s.change in ("", "resized")), "")


def bar(slots: tuple[Slot, ...], width: int, macos: str = "") -> str:
    """``|i|=====macOS 238.0 GB=====|E|..free 12.0 GB..|r|``: one line, ``width`` long."""
    shown = [s for s in sorted(slots, key=lambda s: s.start) if s.change != "deleted"]
    inner = width - 1 - len(shown)  # one "|" before each segment and one at the end
    cells = []
    for s, w in zip(shown, _widths([s.size for s in shown], inner), strict=True):
        fill = _fill(s)
        label = _label(s, macos)
        if len(label) + 2 > w:
            label = ""  # too narrow: the fill and the legend say what it is
        pad = w - len(label)
        cells.append(fill * (pad // 2) + label + fill * (pad - pad // 2))
    return "|" + "|".join(cells) + "|"


def _what(s: Slot) -> str:
    if s.kind == "free":
        return "free space"
    return s.kind if s.name in ("", s.kind) else f"{s.kind} {s.name!r}"


def decision(plan: Plan) -> list[str]:
    """What shrinks, grows, is created and deleted, with sizes (no byte offsets)."""
    out: list[str] = []
    for op in plan.ops:
        if isinstance(op, ResizeContainer):
            verb = "shrink" if op.new_size < op.old_size else "grow"
            out.append(f"{verb:<7} macOS container {op.ref}: {format_size(op.old_size)} -> "
                       f"{format_size(op.new_size)}")
        elif isinstance(op, CreateStubContainer):
            out.append(f"create  stub APFS container {op.label!r}: {format_size(op.size)}")
        elif isinstance(op, CreatePartition):
            out.append(f"create  {op.kind.value} partition {op.name!r}: "
                       f"{format_size(op.size)}")
    for s in plan.after:
        if s.change == "deleted":
            out.append(f"delete  {_what(s)} ({s.ref}): {format_size(s.size)}")
    free = [s for s in plan.after if s.kind == "free"]
    if free:
        out.append(f"free    left unpartitioned: {format_size(sum(s.size for s in free))}")
    return out


def render_map(plan: Plan, width: int = 78) -> list[str]:
    """The before/after bars and the decision, each line at most ``width`` columns."""
    bw = width - 7
    mac = macos_ref(plan.before)
    lines = [f"before {bar(plan.before, bw, mac)}", f"after  {bar(plan.after, bw, mac)}"]
    keys = sorted({_key(s) for s in (*plan.before, *plan.after) if s.change != "deleted"},
                  key=lambda k: list(FILL).index(k) if k in FILL else len(FILL))
    legend = "  ".join(f"{FILL[k][0]} {FILL[k][1]}" if k in FILL else f"# {k}" for k in keys)
    lines.append(("       " + legend)[:width])
    return lines + [line[:width] for line in decision(plan)]
