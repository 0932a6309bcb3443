"""``pippin resume`` and ``pippin rollback`` (``--target T``, ``--yes``, ``--dry-run``)."""

from __future__ import annotations

import sys
from collections.abc import Callable

import click

from installer.commands import common
from installer.errors import PippinError
from installer.install import InstallDeps
from installer.install_cli import ProgressBar
from installer.lifecycle import interrupted
from installer.platform.journal import PendingRun
from installer.targets.base import InstallTarget


def _pending(ctx: click.Context, target: str | None, yes: bool, dry_run: bool, *,
             verb: str, does: str, steps: Callable[[InstallTarget], list[str]],
             question: str) -> tuple[InstallDeps, str, InstallTarget, PendingRun] | None:
    """The interrupted run on the target and what ``verb`` would do to it (shared preamble
    of resume and rollback); None when it should stop here (dry run, or not confirmed)."""
    d = common.deps(ctx)
    ref = common.target_ref(target, d)
    tgt = common.open_target(ref, d)
    p = interrupted.find(tgt)
    if p is None:
        raise PippinError(f"nothing to {verb} on {ref}: no interrupted run",
                          hint="`pippin status` shows what is installed")
    click.echo(f"interrupted on {ref}: {p.describe()}; {does}:")
    click.echo("\n".join(f"  {i}. {w}" for i, w in enumerate(steps(tgt), 1)))
    if dry_run:
        click.echo("dry run: nothing changed", err=True)
        return None
    if not common.confirm(question, yes):
        return None
    return d, ref, tgt, p


@click.command("resume")
@common.target_option
@common.write_options
@click.pass_context
def resume_cmd(ctx: click.Context, /, target: str | None, yes: bool, dry_run: bool) -> int:
    """Finish an install (or uninstall) that was interrupted: the remaining disk operations,
    then the stub volumes, ESP files and stage 1, fetching the OS package and restore-image
    members again when needed."""
    got = _pending(ctx, target, yes, dry_run, verb="resume", does="resume does",
                   steps=interrupted.remaining, question="Resume it?")
    if got is None:
        return 0
    d, ref, tgt, p = got
    bar = ProgressBar(live=sys.stderr.isatty())
    try:
        result = interrupted.resume_run(tgt, ref, common.replace_target(d, tgt), bar,
                                        d.env.get("PIPPIN_ADMIN_PASSWORD") or None)
    finally:
        bar.close()
    if result is None:
        click.echo(f"finished the {p.action}")
        return 0
    click.echo(f"installed {result.os_name!r} on {result.target}: ESP {result.esp_partuuid}, "
               f"stage 1 at {result.stage1_path}")
    if result.target.startswith("sim:"):
        click.echo(f"  boot it: scripts/qemu-boot {result.target[4:]}")
    return 0


@click.command("rollback")
@common.target_option
@common.write_options
@click.pass_context
def rollback_cmd(ctx: click.Context, /, target: str | None, yes: bool, dry_run: bool) -> int:
    """Undo an interrupted install: remove what it created (partitions, and with them the
    stub volumes and ESP files) and give macOS its size back; bytes outside the plan are
    verified unchanged."""
    got = _pending(ctx, target, yes, dry_run, verb="roll back", does="rollback undoes",
                   steps=interrupted.undone, question="Roll it back?")
    if got is None:
        return 0
    _d, _ref, tgt, p = got
    interrupted.rollback_run(tgt)
    click.echo(f"rolled back the {p.action}; bytes outside its plan verified unchanged")
    return 0
