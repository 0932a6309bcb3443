"""``pippin upgrade-stage1 NAME [--stage1 PATH] [--allow-downgrade] [--yes] [--dry-run]``."""

from __future__ import annotations

from pathlib import Path

import click

from installer.commands import common
from installer.errors import PippinError
from installer.lifecycle.stage1 import apply_upgrade, plan_upgrade, step2_commands


@click.command("upgrade-stage1")
@click.argument("name")
@click.option("--stage1", "stage1_path", type=click.Path(path_type=Path, dir_okay=False),
              help="The new stage-1 loader image (Pippin's, or an m1n1-format image). "
                   "Default: Pippin's prebuilt bootchain/prebuilt/stage1.bin.")
@click.option("--allow-downgrade", is_flag=True, help="Install an older version too.")
@common.target_option
@common.write_options
@click.pass_context
def upgrade_stage1_cmd(ctx: click.Context, /, name: str, stage1_path: Path | None,
                       allow_downgrade: bool, target: str | None, yes: bool,
                       dry_run: bool) -> int:
    """Rebuild the stage-1 boot object of install NAME with a new loader, keeping the
    variables read back from the installed one; then run step 2 again (printed)."""
    d = common.deps(ctx)
    ref = common.target_ref(target, d)
    tgt = common.open_target(ref, d)
    src = stage1_path or d.prebuilt / "stage1.bin"
    try:
        image = src.read_bytes()
    except OSError as exc:
        raise PippinError(f"cannot read stage 1 {src}: {exc.strerror}") from exc
    up = plan_upgrade(tgt, name, image, allow_downgrade=allow_downgrade)
    click.echo(f"stage 1 of {up.name!r}: {up.old_version} -> {up.new_version} ({up.path})")
    click.echo("\n".join(f"  keeps {v.name}={v.value}" for v in up.variables))
    click.echo("\n".join(f"  note: {n}" for n in up.notes), nl=bool(up.notes))
    if dry_run:
        click.echo("dry run: nothing changed", err=True)
        return 0
    if not common.confirm("Write it?", yes):
        return 0
    apply_upgrade(tgt, up)
    click.echo("written; now run step 2 again in 1TR (startup options, then the new OS):")
    click.echo("\n".join(f"  {c}" for c in step2_commands(up.name, up.vgid)))
    return 0
