"""What the TUI screens show and check, as plain functions (no terminal needed to test).

The screens only lay these out: the offered catalog entries, the space choices with their
numbers, size/name checks (the same parsers and planner ``pippin install`` uses), progress
text and the next steps after an install.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from installer.answers import Answers, check_choice
from installer.bundle.source import describe
from installer.catalog import OsEntry
from installer.disk.model import DiskModel
from installer.disk.plan import NEED_FREE, Choices, Plan, Space, SpaceOptions, plan_install
from installer.errors import AnswersError
from installer.install import InstallDeps, InstallResult, make_target, open_source
from installer.lifecycle.status import Status, read_status
from installer.sizes import format_size, parse_size
from installer.stub import STAGE1_PATH

#: Guid seed for the checks' throw-away plans (the real plan uses the run's random seed).
CHECK_SEED = "pippin-tui-check"


@dataclass(frozen=True, slots=True)
class Setup:
    """What the screens need before planning: the catalog entries and the disk."""

    entries: tuple[OsEntry, ...]
    model: DiskModel
    target: str
    notes: tuple[str, ...] = ()
    status: Status | None = None  # what is on the target already (the main menu shows it)

    @property
    def disk(self) -> str | None:
        """The disk the planner targets (None: the sim's only disk)."""
        return None if self.target.startswith("sim:") else self.target


@dataclass(frozen=True, slots=True)
class SpaceChoice:
    space: Space
    label: str
    enabled: bool


def load_setup(answers: Answers, deps: InstallDeps) -> Setup:
    """Read the catalog (the demo site when none is named) and the target's disk model."""
    assert answers.target is not None  # the CLI fills in the default target
    with open_source(answers, deps) as src:
        entries, notes = src.catalog.entries, src.notes
    target = deps.target or make_target(answers.target, deps.runner, deps.mac_root)
    return Setup(entries, target.backend.read_model(), answers.target, notes,
                 read_status(target, answers.target))


def menu_choices(status: Status) -> list[tuple[str, str]]:
    """The main menu: resume/rollback first when a run was interrupted (a new install is
    refused until then), else install another; status; uninstall when there is something."""
    out: list[tuple[str, str]] = []
    if status.pending is not None:
        out += [("resume", f"Resume the interrupted {status.pending.describe()}"),
                ("rollback", "Roll it back: remove what it wrote, macOS gets its space back")]
    else:
        out.append(("install", "Install another OS"))
    out.append(("status", "Status: installs, stage 1, vendor firmware, leftovers"))
    if removable(status) and status.pending is None:
        out.append(("uninstall", "Uninstall an OS, or remove a leftover"))
    return [*out, ("quit", "Quit")]


def removable(status: Status) -> list[tuple[str, str]]:
    """What uninstall can remove: (what to pass to plan_for, label)."""
    out = [(i.stub.ref, f"{i.name!r}: {format_size(i.size)} ({i.stub.ref}…)")
           for i in status.installs if i.esp is not None]
    out += [(lo.ref, f"leftover {lo.ref}: {format_size(lo.size)}, {lo.why}")
            for lo in status.leftovers]
    return out


def menu_prompt(status: Status) -> str:
    names = ", ".join(repr(i.name) for i in status.installs) or "none"
    text = f"On {status.target}: installed {names}."
    if status.leftovers:
        text += f" {len(status.leftovers)} leftover(s) of failed installs."
    if status.pending is not None:
        text += f" Interrupted: {status.pending.describe()}."
    return text


def wants_menu(status: Status | None) -> bool:
    return status is not None and bool(status.installs or status.leftovers or status.pending)


def offered(entries: tuple[OsEntry, ...], expert: bool) -> tuple[OsEntry, ...]:
    """Catalog entries the OS list shows: expert-only ones only in expert mode."""
    return tuple(e for e in entries if expert or not e.expert)


def entry_label(entry: OsEntry) -> str:
    text = f"{entry.name.strip()}  (needs {format_size(entry.min_size)}"
    if entry.recommended_size != entry.min_size:
        text += f", recommended {format_size(entry.recommended_size)}"
    return text + ")"


def need(entry: OsEntry) -> int:
    return max(NEED_FREE, entry.min_size)


def default_space(opts: SpaceOptions, entry: OsEntry) -> Space:
    """The same rule as an install without a space answer: free space when it fits."""
    return (Space.FREE if opts.largest_free >= need(entry) or not opts.resize_offered
            else Space.RESIZE)


def space_choices(opts: SpaceOptions, entry: OsEntry) -> tuple[SpaceChoice, SpaceChoice]:
    n = need(entry)
    free_ok = opts.largest_free >= n
    free = f"Use free space: largest free region {format_size(opts.largest_free)}"
    if not free_ok:
        free += f" (too small: needs {format_size(n)})"
    if opts.resize_offered:
        resize = (f"Shrink macOS: container {format_size(opts.resize_current)}, can shrink "
                  f"to {format_size(opts.resize_min)}, frees up to {format_size(opts.freeable)}")
    else:
        resize = f"Shrink macOS: not possible ({opts.why_not_resize or 'no macOS container'})"
    return (SpaceChoice(Space.FREE, free, free_ok),
            SpaceChoice(Space.RESIZE, resize, opts.resize_offered))


def check_plan(setup: Setup, entry: OsEntry, answers: Answers) -> Plan:
    """Plan with these answers (pure); PlanError says why it cannot be done."""
    return plan_install(setup.model, entry, Choices(
        space=answers.space, resize_to=answers.resize_to, size=answers.size,
        name=answers.name, expert=answers.expert, disk=setup.disk, seed=CHECK_SEED))


def check_size(key: str, text: str, setup: Setup, entry: OsEntry, answers: Answers) -> str:
    """A size answer (``size`` or ``resize_to``) checked by its parser and by the planner.

    Raises AnswersError (not a size) or PlanError (out of range, with the numbers).
    """
    value = check_size_text(key, text)
    check_plan(setup, entry, answers.override(**{key: value}))
    return value


def check_size_text(key: str, text: str) -> str:
    """``min``/``max``/``NN%``/a size; AnswersError with the size parser's own reason."""
    word = text.strip().lower()
    if word not in ("min", "max") and not word.endswith("%"):
        try:
            parse_size(text)
        except ValueError as exc:  # the parser's one-line reason, as the user typed it
            raise AnswersError(str(exc)) from None
    return check_choice(key, text)


def check_name(text: str, setup: Setup, entry: OsEntry, answers: Answers) -> str | None:
    """The boot-picker name (blank: the catalog's default); PlanError when unusable."""
    name = text.strip() or None
    check_plan(setup, entry, replace(answers, name=name))
    return name


def size_prompt(key: str, setup: Setup, entry: OsEntry, opts: SpaceOptions,
                answers: Answers) -> str:
    """The numbers shown above a size input."""
    if key == "resize_to":
        return (f"How large should macOS stay? Its container is "
                f"{format_size(opts.resize_current)}; the smallest possible is "
                f"{format_size(opts.resize_min)}. Answer min, NN% or a size (e.g. 100GB).")
    if answers.space is Space.RESIZE:
        room = f"the space freed by shrinking macOS (up to {format_size(opts.freeable)})"
    else:
        room = f"the free region ({format_size(opts.largest_free)})"
    return (f"How large should {entry.name.strip()} be? It needs at least "
            f"{format_size(entry.min_size)}, recommended {format_size(entry.recommended_size)}; "
            f"it goes into {room}. Answer max, min, NN% or a size (e.g. 20GB).")


def rate_text(stage: str, done: int, total: int, elapsed: float) -> str:
    """``12.0 MB / 40.0 MB (30%), 4.0 MB/s, ETA 7 s``; operations for the disk stage."""
    if stage == "disk":
        return f"operation {done} of {total}"
    speed = done / elapsed if elapsed > 0 else 0.0
    text = format_size(done)
    if total:
        text += f" / {format_size(total)} ({100 * done // total}%)"
    if speed > 0:  # one report alone (a stage done at once) has no speed
        text += f", {format_size(int(speed))}/s"
    if total and speed > 0 and done < total:
        text += f", ETA {(total - done) / speed:.0f} s"
    return text


def plan_note(planned: InstallResult) -> list[str]:
    """Lines under the plan on the confirm screen."""
    out = [f"restore image: {planned.restore_image}"]
    out += [f"note: {n}" for n in planned.notes]
    out.append("Nothing has been written yet: this is the dry-run plan (pippin install "
               "--dry-run shows the same). Install carries it out.")
    return out


def next_steps(result: InstallResult) -> list[str]:
    """What to do after the install, with the exact commands."""
    lines = [f"Installed {result.os_name!r} on {result.target}.",
             f"ESP partition UUID: {result.esp_partuuid}",
             f"Stage-1 boot object: {result.stage1_path}"]
    lines += [f"warning: {w}" for w in result.warnings]
    if result.target.startswith("sim:"):
        lines += ["Next: boot the simulated Mac in QEMU (stage 1 → stage 2 → kernel):",
                  f"  scripts/qemu-boot {result.target[4:]}"]
    system = f"/Volumes/{result.plan.os_name}"
    lines += [
        ("On a real Mac, step 2 follows" if result.target.startswith("sim:") else "Next, step 2")
        + " in One True Recovery (1TR):",
        "  1. Shut the Mac down. Press and hold the power button until 'Loading startup",
        "     options' appears, pick the new OS and confirm the Finish Installation prompt.",
        "  2. Step 2 registers the boot object (what it runs, for reference):",
        f"       bputil -nc -v {result.vgid or '<VGID of the new stub>'}",
        f"       kmutil configure-boot -c '{system}/{STAGE1_PATH}' --raw --entry-point "
        f"2048 --lowest-virtual-address 0 -v '{system}'",
        "  3. The Mac then restarts into the new OS.",
    ]
    return lines



def source_choices(bundle: Path) -> tuple[str, list[tuple[str, str]]]:
    """The prompt and choices when the installer was started from an offline bundle."""
    return (f"Pippin was started from an offline bundle: {describe(bundle)}",
            [("bundle", "Install from this bundle (no network needed)"),
             ("online", "Install from the internet (the online catalog)"),
             ("quit", "Quit")])
