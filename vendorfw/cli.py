"""The ``vendorfw`` command line."""

from __future__ import annotations

import os
import sys

import click

from vendorfw import __version__
from vendorfw.cliboundary import default_log_path, run_click, setup_logging


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="vendorfw")
@click.option("-v", "--verbose", is_flag=True, help="Show progress milestones on stderr.")
@click.pass_context
def cli(ctx: click.Context, verbose: bool) -> None:
    """Collect, package and re-extract Apple vendor firmware for Linux on Apple Silicon.

    Firmware is packaged as vendorfw/firmware.cpio (+ firmware.tar, manifest.txt) on the
    EFI system partition, where initramfs hooks and bootloaders pick it up.
    """
    ctx.ensure_object(dict)
    ctx.obj["verbose"] = verbose


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point."""
    log_path = setup_logging(default_log_path(os.environ, "vendorfw"))
    return run_click("vendorfw", cli, argv, log_path)


if __name__ == "__main__":
    sys.exit(main())
