"""``pippin status [--target T] [--json]``."""

from __future__ import annotations

import json

import click

from installer.commands import common
from installer.lifecycle.status import read_status, render, status_to_json


@click.command("status")
@common.target_option
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@click.pass_context
def status_cmd(ctx: click.Context, /, target: str | None, as_json: bool) -> int:
    """Show every install on the target: partitions, stage-1 version and variables, vendor
    firmware, whether step 2 is pending; plus leftovers of failed or half-removed installs
    and an interrupted run. Writes nothing."""
    d = common.deps(ctx)
    ref = common.target_ref(target, d)
    s = read_status(common.open_target(ref, d), ref)
    click.echo(json.dumps(status_to_json(s), indent=1) if as_json else render(s))
    return 0
