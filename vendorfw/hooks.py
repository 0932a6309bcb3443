"""``vendorfw install-hooks``: put the initramfs hooks where each generator looks for them.

The hook files live in the repository's ``initramfs-hooks/`` (shell, not Python), found
relative to this package: a source checkout, an editable install and the release bundle all
have it beside ``vendorfw/``. A wheel does not; its users pass ``--from`` (see
initramfs-hooks/README.md).

Every source is read before anything is written, and each file is replaced atomically, so a
failure leaves each destination either as it was or complete.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import click

from vendorfw.atomic import write_bytes
from vendorfw.errors import VendorFwError

log = logging.getLogger(__name__)

DEFAULT_SOURCE = Path(__file__).resolve().parent.parent / "initramfs-hooks"
FIRMWARE_MOUNTPOINT = "lib/firmware/vendor"  # made ahead, for roots mounted read-only


class Generator(enum.StrEnum):
    COMMON = "common"
    DRACUT = "dracut"
    MKINITCPIO = "mkinitcpio"
    INITRAMFS_TOOLS = "initramfs-tools"
    GRUB = "grub"


@dataclass(frozen=True, slots=True)
class HookFile:
    """One file: where it is in initramfs-hooks/, where it goes (relative to the prefix)."""

    generator: Generator
    source: str
    dest: str
    mode: int


_DRACUT = "usr/lib/dracut/modules.d/91pippin-vendorfw"
_ITOOLS = "etc/initramfs-tools"
HOOK_FILES: tuple[HookFile, ...] = (
    HookFile(Generator.COMMON, "common/vendorfw-load", "usr/lib/pippin/vendorfw-load", 0o755),
    HookFile(Generator.COMMON, "common/vendorfw-lib.sh", "usr/lib/pippin/vendorfw-lib.sh",
             0o644),
    *(HookFile(Generator.DRACUT, f"dracut/91pippin-vendorfw/{n}", f"{_DRACUT}/{n}", 0o755)
      for n in ("module-setup.sh", "vendorfw-early.sh", "vendorfw-handoff.sh")),
    HookFile(Generator.MKINITCPIO, "mkinitcpio/install/vendorfw",
             "etc/initcpio/install/vendorfw", 0o644),
    HookFile(Generator.MKINITCPIO, "mkinitcpio/hooks/vendorfw", "etc/initcpio/hooks/vendorfw",
             0o644),
    *(HookFile(Generator.INITRAMFS_TOOLS, f"initramfs-tools/{d}/pippin-vendorfw",
               f"{_ITOOLS}/{d}/pippin-vendorfw", 0o755)
      for d in ("hooks", "scripts/init-top", "scripts/init-bottom")),
    HookFile(Generator.GRUB, "grub/pippin-vendorfw.cfg",
             "etc/default/grub.d/pippin-vendorfw.cfg", 0o644),
)

NEXT_STEPS = {
    Generator.DRACUT: "dracut -f (the module is included by default)",
    Generator.MKINITCPIO: "add `vendorfw` before `udev` in HOOKS of /etc/mkinitcpio.conf, "
    "then mkinitcpio -P",
    Generator.INITRAMFS_TOOLS: "update-initramfs -u",
    Generator.GRUB: "update-grub (only useful when /boot is on the ESP)",
}


def select(generators: Iterable[Generator]) -> list[HookFile]:
    """The files for ``generators`` (all when empty); the common core always comes along."""
    wanted = set(generators) or set(Generator)
    wanted.add(Generator.COMMON)
    return [f for f in HOOK_FILES if f.generator in wanted]


def install_hooks(prefix: Path, generators: Iterable[Generator] = (),
                  source: Path = DEFAULT_SOURCE, *, dry_run: bool = False) -> list[Path]:
    """Install the hook files below ``prefix`` and create the firmware mount point.

    Returns the paths written (with ``dry_run``: that would be written; the sources are
    still read, nothing is written). Raises :class:`VendorFwError` on a missing source or
    an unwritable destination.
    """
    files = select(generators)
    contents: list[tuple[HookFile, bytes]] = []
    for f in files:
        try:
            contents.append((f, (source / f.source).read_bytes()))
        except OSError as exc:
            raise VendorFwError(
                f"hook file {source / f.source} is unreadable: {exc.strerror}",
                hint="run from a Pippin checkout or release bundle, or pass --from "
                "<path to initramfs-hooks>",
            ) from exc
    if dry_run:
        return [prefix / f.dest for f in files]
    written: list[Path] = []
    try:
        for f, data in contents:
            dest = prefix / f.dest
            dest.parent.mkdir(parents=True, exist_ok=True)
            write_bytes(dest, data, f.mode)
            log.info("installed %s", dest)
            written.append(dest)
        (prefix / FIRMWARE_MOUNTPOINT).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        where = exc.filename or prefix
        raise VendorFwError(
            f"cannot install the initramfs hooks into {where}: {exc.strerror}",
            hint="run as root, or pass --prefix to stage them elsewhere",
        ) from exc
    return written


@click.command("install-hooks")
@click.option("--prefix", type=click.Path(file_okay=False, path_type=Path), default=Path("/"),
              show_default=True, help="Install below this directory (for packaging).")
@click.option("--generator", "generators", multiple=True,
              type=click.Choice([g.value for g in Generator if g is not Generator.COMMON]),
              help="Only this generator's files (repeatable; default: all).")
@click.option("--from", "source", type=click.Path(file_okay=False, path_type=Path),
              default=DEFAULT_SOURCE, show_default=True,
              help="The initramfs-hooks directory to install from.")
@click.option("--dry-run", is_flag=True,
              help="List the files that would be written (replacing any there); write nothing.")
def install_hooks_command(prefix: Path, generators: tuple[str, ...], source: Path,
                          dry_run: bool) -> None:
    """Install the initramfs hooks (dracut, mkinitcpio, initramfs-tools) and GRUB snippet
    that load vendor firmware from the ESP before udev.

    Also creates PREFIX/lib/firmware/vendor, the mount point the firmware is handed to.
    Existing files are replaced. Run as root; then rebuild the initramfs (the command for
    each generator is printed)."""
    chosen = [Generator(g) for g in generators]
    for path in install_hooks(prefix, chosen, source, dry_run=dry_run):
        click.echo(f"would write {path}" if dry_run else str(path))
    if dry_run:
        return
    for g in chosen or list(NEXT_STEPS):
        click.echo(f"{g.value}: next, {NEXT_STEPS[g]}", err=True)
