"""The ``vendorfw`` command line."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import click

from vendorfw import __version__
from vendorfw.build import build_vendorfw, check_replaceable
from vendorfw.cliboundary import default_log_path, run_click, setup_logging
from vendorfw.errors import EspError, ManifestError, VendorFwError
from vendorfw.esp import (
    BY_PARTUUID,
    DT_ESP_PROPERTY,
    MOUNTINFO,
    EspLocator,
    describe_esp,
    find_esp,
    update,
)
from vendorfw.hooks import install_hooks_command
from vendorfw.manifest import diff_hashes
from vendorfw.progress import ByteMeter, human
from vendorfw.readback import Kind, read_package, verify

F = TypeVar("F", bound=Callable[..., Any])


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
    if verbose:
        for h in logging.getLogger().handlers:
            if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler):
                h.setLevel(logging.INFO)


def _progress_opt(f: F) -> F:
    return click.option(
        "--progress/--no-progress",
        "show_progress",
        default=None,
        help="Show bytes processed on stderr (default: only on a terminal).",
    )(f)


def _json_opt(f: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print a JSON result.")(f)


@contextlib.contextmanager
def _meter(show: bool | None, label: str) -> Iterator[ByteMeter | None]:
    if show is None:
        show = sys.stderr.isatty()
    meter = ByteMeter(sys.stderr, label) if show else None
    try:
        yield meter
    finally:
        if meter is not None:
            meter.finish()


def _echo(text: str) -> None:
    # names from a hostile archive may hold surrogates: show them escaped, never crash
    click.echo(text.encode("utf-8", "backslashreplace").decode("utf-8"))


def _emit_json(data: object) -> None:
    _echo(json.dumps(data, indent=2, sort_keys=True))


def _dir_arg(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise VendorFwError(f"{what} {path} is not a directory")
    return path


@cli.command()
@click.argument("src", type=click.Path(path_type=Path))
@click.argument("dest", type=click.Path(path_type=Path))
@click.option("--tmpdir", type=click.Path(path_type=Path),
              help="Where to unpack the raw dump (default: the system temporary directory).")
@_progress_opt
@_json_opt
def extract(src: Path, dest: Path, tmpdir: Path | None, show_progress: bool | None,
            as_json: bool) -> None:
    """Build the vendorfw/ directory DEST from SRC.

    SRC is a directory holding all_firmware.tar.gz (+ kernelcache*), an unpacked raw dump,
    or a macOS-style firmware tree. DEST gets firmware.cpio, firmware.tar, manifest.txt
    (and u-boot/asmedia/); it is replaced only once the new one is complete. A packed dump
    is unpacked into --tmpdir (e.g. when /tmp is a small tmpfs).
    """
    _dir_arg(src, "firmware source")
    check_replaceable(dest)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise VendorFwError(f"cannot create {dest.parent}: {exc.strerror or exc}") from exc
    with _meter(show_progress, "extract") as meter:
        report = build_vendorfw(src, dest, meter, tmp_parent=tmpdir)
    if as_json:
        _emit_json(report.as_json())
        return
    _echo(
        f"wrote {dest}: {report.files} files ({report.links} hard links), "
        f"{human(report.stored_bytes)} of firmware"
    )
    if report.problems:
        _echo(f"{len(report.problems)} source files skipped (see warnings above)")


@cli.command("update")
@click.option("--esp", type=click.Path(path_type=Path), help="Mounted ESP (default: found "
              "from the device tree).")
@click.option("--install-to", type=click.Path(path_type=Path),
              help="Also install the files here, e.g. /lib/firmware/vendor (replaced as a "
              "whole; refused unless empty or installed by vendorfw).")
@click.option("--dry-run", is_flag=True, help="Show what would change; write nothing.")
@click.option("--dt-property", type=click.Path(path_type=Path), hidden=True,
              default=DT_ESP_PROPERTY)
@click.option("--by-partuuid", type=click.Path(path_type=Path), hidden=True,
              default=BY_PARTUUID)
@click.option("--mountinfo", type=click.Path(path_type=Path), hidden=True,
              default=MOUNTINFO)
@click.option("--tmpdir", type=click.Path(path_type=Path),
              help="Where to unpack the raw dump (default: the system temporary directory).")
@_progress_opt
@_json_opt
def update_cmd(
    esp: Path | None,
    install_to: Path | None,
    dry_run: bool,
    dt_property: Path,
    by_partuuid: Path,
    mountinfo: Path,
    tmpdir: Path | None,
    show_progress: bool | None,
    as_json: bool,
) -> None:
    """Re-extract firmware on the ESP from asahi/all_firmware.tar.gz + kernelcache.

    The ESP is the mounted partition whose PARTUUID the bootloader put in
    /proc/device-tree/chosen/asahi,efi-system-partition (or --esp PATH). vendorfw/ is
    rebuilt in a new directory and swapped in when complete; the old one stays in place
    until then. Run with --dry-run first to see which files would be added, removed or
    changed.
    """
    if esp is None:
        esp = find_esp(EspLocator(dt_property, by_partuuid, mountinfo))
    elif not esp.is_dir():
        raise EspError(f"--esp {esp} is not a directory")
    with _meter(show_progress, "update") as meter:
        report = update(esp, dry_run=dry_run, install_to=install_to, progress=meter,
                        tmp_parent=tmpdir)
    if as_json:
        _emit_json(report.as_json())
        return
    d = report.diff
    for line in d.lines():
        _echo(line)
    verb = "would replace" if dry_run else "replaced"
    _echo(
        f"{verb} {esp / 'vendorfw'}: {report.files} files ({len(d.added)} added, "
        f"{len(d.removed)} removed, {len(d.changed)} changed, {d.unchanged} unchanged)"
    )
    if report.installed_to is not None:
        _echo(f"installed to {report.installed_to}")


@cli.command("esp")
@click.option("--dt-property", type=click.Path(path_type=Path), hidden=True,
              default=DT_ESP_PROPERTY)
@click.option("--by-partuuid", type=click.Path(path_type=Path), hidden=True,
              default=BY_PARTUUID)
@click.option("--mountinfo", type=click.Path(path_type=Path), hidden=True,
              default=MOUNTINFO)
@_json_opt
def esp_cmd(dt_property: Path, by_partuuid: Path, mountinfo: Path, as_json: bool) -> None:
    """Show which EFI system partition belongs to the running OS.

    The bootloader names it in /proc/device-tree/chosen/asahi,efi-system-partition (a
    PARTUUID); this prints that PARTUUID, its device node and where it is mounted, e.g. for
    an OS installer booted from USB that must choose the ESP to install its bootloader into.
    """
    info = describe_esp(EspLocator(dt_property, by_partuuid, mountinfo))
    if as_json:
        _emit_json(info.as_json())
        return
    where = f"mounted at {info.mountpoint}" if info.mountpoint else "not mounted"
    _echo(f"ESP {info.partuuid}: {info.device}, {where}")


@cli.command("verify")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--manifest", "manifest_path", type=click.Path(path_type=Path),
              help="Manifest for a firmware.tar (default: manifest.txt beside it).")
@_json_opt
def verify_cmd(path: Path, manifest_path: Path | None, as_json: bool) -> None:
    """Check a firmware.cpio or firmware.tar against its manifest (hashes, links, layout)."""
    pkg = read_package(path, manifest_path)
    if pkg.kind is Kind.MANIFEST:
        raise ManifestError(f"{pkg.path} is a manifest: verify checks a firmware.cpio or "
                            "firmware.tar against one")
    problems = verify(pkg)
    if as_json:
        _emit_json({"path": str(pkg.path), "kind": str(pkg.kind), "ok": not problems,
                    "files": len(pkg.files()), "problems": problems})
    else:
        for p in problems:
            _echo(p)
    if problems:
        raise ManifestError(f"{pkg.path} does not match its manifest ({len(problems)} problems)")
    if not as_json:
        _echo(f"{pkg.path}: OK, {len(pkg.files())} files match the manifest")


@cli.command("list")
@click.argument("path", type=click.Path(path_type=Path))
@_json_opt
def list_cmd(path: Path, as_json: bool) -> None:
    """List the firmware files in a firmware.cpio, firmware.tar, manifest or vendorfw/ dir."""
    pkg = read_package(path)
    rows: list[dict[str, object]] = []
    if pkg.members:
        for m in pkg.members:
            if m.type in ("file", "link") and m.sha256 is not None:
                rows.append({"name": m.name, "size": m.size if m.type == "file" else None,
                             "sha256": m.sha256, "link_to": m.link_to})
    else:
        assert pkg.manifest is not None  # a manifest-only package always has one
        rows = [{"name": e.name, "size": None, "sha256": e.sha256, "link_to": e.link_to}
                for e in pkg.manifest.entries]
    if as_json:
        _emit_json(rows)
        return
    for r in rows:
        size = "" if r["size"] is None else str(r["size"])
        link = f" -> {r['link_to']}" if r["link_to"] else ""
        _echo(f"{str(r['sha256'])[:16]} {size:>9} {r['name']}{link}")


@cli.command("diff")
@click.argument("old", type=click.Path(path_type=Path))
@click.argument("new", type=click.Path(path_type=Path))
@_json_opt
def diff_cmd(old: Path, new: Path, as_json: bool) -> None:
    """Show which firmware files NEW adds, removes or changes compared with OLD."""
    d = diff_hashes(read_package(old).files(), read_package(new).files())
    if as_json:
        _emit_json(d.as_json())
        return
    for line in d.lines():
        _echo(line)
    _echo(f"{len(d.added)} added, {len(d.removed)} removed, {len(d.changed)} changed, "
               f"{d.unchanged} unchanged")


cli.add_command(install_hooks_command)


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point."""
    log_path = setup_logging(default_log_path(os.environ, "vendorfw"))
    return run_click("vendorfw", cli, argv, log_path)


if __name__ == "__main__":
    sys.exit(main())
