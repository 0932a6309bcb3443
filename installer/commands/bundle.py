"""``pippin bundle create OUT …`` and ``pippin bundle verify OUT`` (parsing and printing;
the work is in :mod:`installer.bundle`)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from installer.bundle.create import BundleRequest, create_bundle
from installer.bundle.verify import verify_bundle
from installer.commands import common
from installer.install_cli import ProgressBar
from installer.sizes import format_size


@click.group("bundle")
def bundle() -> None:
    """Offline install sources: a folder or USB stick holding the catalog, the OS packages
    and the parts of the restore images an install needs.

    Install from one with `pippin install --source OUT` (no network is used), or by
    pointing INSTALLER_DATA at OUT/installer_data.json.
    """


@bundle.command("create")
@click.argument("out", type=click.Path(path_type=Path, file_okay=False))
@click.option("--os", "os_names", multiple=True, required=True,
              help="Catalog entry to include (exact name; repeatable).")
@click.option("--device", "devices", multiple=True,
              help="Device class whose restore-image members to include, e.g. j314sap "
              "(repeatable; `pippin ipsw identities URL` lists them).")
@click.option("--all-devices", is_flag=True, help="Every device class of each image.")
@click.option("--catalog", help="installer_data.json path or URL (default: INSTALLER_DATA, "
              "else the generated demo catalog).")
@click.option("--with-installer", is_flag=True,
              help="Add the release bundle and the `install` script, so that OUT on a "
              "USB stick installs from recoveryOS's Terminal without network.")
@click.option("--release", type=click.Path(path_type=Path, file_okay=False, exists=True),
              help="With --with-installer: a scripts/make-release output to copy (default: "
              "build one from this checkout).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable summary.")
@click.pass_context
def create_cmd(ctx: click.Context, /, out: Path, os_names: tuple[str, ...],
               devices: tuple[str, ...], all_devices: bool, catalog: str | None,
               with_installer: bool, release: Path | None, as_json: bool) -> int:
    """Make (or finish) the offline bundle OUT.

    Downloads the catalog (with its signature), each chosen entry's package, and from each
    restore image the entry supports only the members a stub install and the firmware need
    on the chosen devices, written as a smaller zip under the image's own file name.
    bundle.json lists every file's size, SHA-256 and origin. Interrupted? Run the same
    command again: finished files are kept and fetched ranges are reused.
    """
    if devices and all_devices:
        raise click.UsageError("give --device or --all-devices, not both")
    if release is not None and not with_installer:
        raise click.UsageError("--release goes with --with-installer")
    d = common.deps(ctx)
    req = BundleRequest(out, os_names, devices, all_devices, catalog, with_installer, release)
    bar = ProgressBar(live=sys.stderr.isatty())
    try:
        r = create_bundle(req, d, bar)
    finally:
        bar.close()
    if as_json:
        click.echo(json.dumps({"out": str(r.out), "files": len(r.manifest.files),
                               "bundle_bytes": r.bundle_bytes, "needed_bytes": r.needed_bytes,
                               "downloaded_bytes": r.downloaded_bytes,
                               "reused": list(r.reused), "notes": list(r.notes)}, indent=1))
        return 0
    for n in r.notes:
        click.echo(f"  note: {n}")
    for im in r.manifest.images:
        devs = ", ".join(sorted({x.device_class for x in im.devices}))
        click.echo(f"  restore image {im.version}: {len(im.members)} members ({devs})")
    click.echo(f"bundle {r.out}: {len(r.manifest.files)} files, {format_size(r.bundle_bytes)}"
               f" ({format_size(r.downloaded_bytes)} downloaded"
               + (f", {len(r.reused)} files kept from an earlier run" if r.reused else "")
               + f"); install with: pippin install --source {r.out}")
    return 0


@bundle.command("verify")
@click.argument("out", type=click.Path(path_type=Path, file_okay=False))
def verify_cmd(out: Path) -> int:
    """Check every file of the bundle OUT against bundle.json (size, SHA-256), the catalog
    signature, and every restore-image member's CRC-32. Exit 1 on any problem."""
    r = verify_bundle(out)
    for p in r.problems:
        click.echo(f"pippin bundle verify: {p}", err=True)
    if not r.ok:
        click.echo(f"bundle {out}: {len(r.problems)} problems in {r.files} files", err=True)
        return 1
    click.echo(f"bundle {out}: {r.files} files, {format_size(r.bytes)}: all verified")
    return 0
