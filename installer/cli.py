"""The ``pippin`` command line. The only module that reads ``os.environ``."""

from __future__ import annotations

import os
import sys

import click

from installer import __version__
from installer.bootobj.cli import bootobj
from installer.catalog_cli import catalog
from installer.commands.bundle import bundle
from installer.commands.refresh_firmware import refresh_firmware_cmd
from installer.commands.resume import resume_cmd, rollback_cmd
from installer.commands.status import status_cmd
from installer.commands.uninstall import uninstall_cmd
from installer.commands.upgrade_stage1 import upgrade_stage1_cmd
from installer.disk.cli import plan_cmd, sim
from installer.install_cli import install_cmd
from installer.ipsw.cli import ipsw
from vendorfw.cliboundary import default_log_path, run_click, setup_logging


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="pippin")
@click.option("-v", "--verbose", is_flag=True, help="Show progress milestones on stderr.")
@click.pass_context
def cli(ctx: click.Context, verbose: bool) -> None:
    """Install open operating systems next to macOS on Apple Silicon Macs.

    On a machine that is not a Mac, Pippin works on a simulated Mac (a disk image).
    """
    ctx.ensure_object(dict)
    ctx.obj["verbose"] = verbose
    ctx.obj["env"] = dict(os.environ)
    ctx.obj["cache_dir"] = default_log_path(os.environ, "pippin").parent


cli.add_command(bootobj)
cli.add_command(catalog)
cli.add_command(plan_cmd)
cli.add_command(sim)
cli.add_command(ipsw)
cli.add_command(install_cmd)
cli.add_command(bundle)
for _cmd in (status_cmd, uninstall_cmd, resume_cmd, rollback_cmd, upgrade_stage1_cmd,
             refresh_firmware_cmd):
    cli.add_command(_cmd)


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point."""
    log_path = setup_logging(default_log_path(os.environ, "pippin"))
    return run_click("pippin", cli, argv, log_path)


if __name__ == "__main__":
    sys.exit(main())
