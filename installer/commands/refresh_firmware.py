"""``pippin refresh-firmware NAME [--target T] [--yes] [--dry-run]``."""

from __future__ import annotations

import sys

import click

from installer.commands import common
from installer.install_cli import ProgressBar
from installer.lifecycle.firmware import refresh_firmware


@click.command("refresh-firmware")
@click.argument("name")
@common.target_option
@common.write_options
@click.pass_context
def refresh_firmware_cmd(ctx: click.Context, /, name: str, target: str | None, yes: bool,
                         dry_run: bool) -> int:
    """Fetch the firmware of the restore image matching this Mac's macOS and rebuild install
    NAME's vendorfw/ on its ESP atomically; prints what changed (as `vendorfw diff`)."""
    d = common.deps(ctx)
    ref = common.target_ref(target, d)
    tgt = common.open_target(ref, d)
    if not dry_run and not common.confirm(f"Replace the vendor firmware of {name!r}?", yes):
        return 0
    bar = ProgressBar(live=sys.stderr.isatty())
    try:
        r = refresh_firmware(tgt, ref, name, d, dry_run=dry_run, progress=bar)
    finally:
        bar.close()
    for line in r.diff.lines():
        click.echo(line)
    d_ = r.diff
    click.echo(f"{len(d_.added)} added, {len(d_.removed)} removed, {len(d_.changed)} changed, "
               f"{d_.unchanged} unchanged")
    for n in r.notes:
        click.echo(f"  note: {n}")
    click.echo(f"{'dry run: would replace' if r.dry_run else 'replaced'} vendorfw/ of "
               f"{r.name!r} ({r.files} entries, restore image {r.restore_image})")
    return 0
