"""``pippin uninstall NAME|PART [--target T] [--yes] [--dry-run] [--json]``."""

from __future__ import annotations

import json
import shutil

import click

from installer.commands import common
from installer.disk.ops import describe
from installer.disk.render import plan_to_dict
from installer.disk.scalemap import render_map
from installer.lifecycle.uninstall import plan_for, run_uninstall


@click.command("uninstall")
@click.argument("what", metavar="NAME|PART")
@common.target_option
@common.write_options
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
@click.pass_context
def uninstall_cmd(ctx: click.Context, /, what: str, target: str | None, yes: bool,
                  dry_run: bool, as_json: bool) -> int:
    """Remove an install (by its name or stub container, see `pippin status`) or a leftover
    (a partition ref, or free@START for stranded free space), give the space back to macOS
    where it can grow into it. Journaled: a killed run is finished by `pippin resume`."""
    d = common.deps(ctx)
    ref = common.target_ref(target, d)
    tgt = common.open_target(ref, d)
    plan = plan_for(tgt.backend.read_model(), what)
    if as_json:
        click.echo(json.dumps(plan_to_dict(plan), indent=1))
    else:
        width = min(shutil.get_terminal_size((80, 24)).columns, 100) - 2
        click.echo(f"uninstall {plan.os_name!r} from {ref}:")
        click.echo("\n".join("  " + line for line in render_map(plan, width)))
        click.echo("  operations:")
        click.echo("\n".join(f"    {i}. {describe(op)}" for i, op in enumerate(plan.ops, 1)))
        click.echo("\n".join(f"  note: {n}" for n in plan.notes), nl=bool(plan.notes))
    if dry_run:
        click.echo("dry run: nothing changed", err=True)
        return 0
    if not common.confirm(f"Remove {plan.os_name!r}?", yes):
        return 0
    run_uninstall(tgt, plan)
    click.echo(f"removed {plan.os_name!r}; bytes outside the plan verified unchanged")
    return 0
