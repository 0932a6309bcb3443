"""``pippin install``: answers file + options → :func:`installer.install.install`.

- ``--yes``: install without asking (progress bar on stderr).
- ``--dry-run``: print the plan and stop (writes nothing on the target).
- neither, on a terminal: the Textual installer (:mod:`installer.tui`); with ``--no-tui``
  plain prompts for the few choices (OS, size), the plan, a confirmation.
- neither, without a terminal (CI, pipes): print the plan for the given or default choices,
  say on stderr that ``--yes`` installs it, exit 0 having written nothing.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import click

from installer.answers import Answers, check_choice, check_target, load_answers, to_toml
from installer.bundle.source import started_from
from installer.commands import common
from installer.disk.plan import Space
from installer.disk.render import render_plan
from installer.install import (
    InstallDeps,
    InstallRequest,
    InstallResult,
    default_sim,
    install,
    open_source,
)
from installer.sizes import format_size
from vendorfw.atomic import write_bytes


class ProgressBar:
    """One stderr line per stage; on a terminal a live bar with bytes, speed and ETA."""

    def __init__(self, live: bool, clock: Any = time.monotonic) -> None:
        self.live = live
        self.clock = clock
        self.stage = ""
        self.t0 = 0.0
        self.last = 0.0

    def __call__(self, stage: str, done: int, total: int) -> None:
        now = self.clock()
        if stage != self.stage:
            if self.live and self.stage:
                click.echo("", err=True)
            self.stage, self.t0, self.last = stage, now, 0.0
            if not self.live:
                click.echo(f"pippin: {stage}…", err=True)
        if not self.live or (now - self.last < 0.1 and done != total):
            return
        self.last = now
        if stage == "disk":
            text = f"operation {done}/{total}"
        else:
            speed = done / max(now - self.t0, 1e-6)
            text = format_size(done)
            if total:
                eta = (total - done) / speed if speed > 0 else 0.0
                text += f" / {format_size(total)} ({100 * done // max(total, 1)}%), " \
                        f"{format_size(int(speed))}/s, ETA {eta:.0f} s"
            else:
                text += f", {format_size(int(speed))}/s"
        click.echo(f"\r{stage:<14} {text:<64}", err=True, nl=False)

    def close(self) -> None:
        if self.live and self.stage:
            click.echo("", err=True)


_deps = common.deps


def _password(ctx: click.Context) -> str | None:
    """The administrator's password for bless: PIPPIN_ADMIN_PASSWORD (never a file/option)."""
    env: dict[str, str] = (ctx.find_root().obj or {}).get("env", {})
    return env.get("PIPPIN_ADMIN_PASSWORD") or None


def _answers(kw: dict[str, Any]) -> tuple[Answers, bool]:
    """Answers file + options; also whether the space choice was given at all."""
    path: Path | None = kw["answers_file"]
    base = load_answers(path) if path else Answers()
    space_given = kw["space"] is not None or (
        path is not None and "space" in tomllib.loads(path.read_text()))
    a = base.override(
        target=check_target(kw["target"]) if kw["target"] else None,
        catalog=kw["catalog"], os=kw["os_name"],
        space=Space(kw["space"]) if kw["space"] else None,
        resize_to=check_choice("--resize-to", kw["resize_to"]) if kw["resize_to"] else None,
        size=check_choice("--size", kw["size"]) if kw["size"] else None,
        name=kw["name"], expert=kw["expert"], admin_user=kw["admin_user"],
        stage1=str(kw["stage1"]) if kw["stage1"] else None)
    return a, not space_given


def _show(result: InstallResult, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=1))
        return
    click.echo(render_plan(result.plan))
    click.echo(f"  restore image: {result.restore_image}")
    for n in result.notes:
        click.echo(f"  note: {n}")


def _prompt(deps: InstallDeps, a: Answers) -> Answers:
    """``--no-tui`` prompts: OS from the catalog, then size."""
    if a.os is None:
        with open_source(a, deps) as src:
            names = [e.name.strip() for e in src.catalog.entries if not e.expert or a.expert]
        for i, n in enumerate(names, 1):
            click.echo(f"  {i}. {n}")
        pick = click.prompt("OS to install", type=click.IntRange(1, len(names)), default=1)
        a = a.override(os=names[pick - 1])
    size = click.prompt("size (max, min, NN%, or e.g. 20GB)", default=a.size)
    return a.override(size=check_choice("size", size))


def _run_tui(deps: InstallDeps, a: Answers, auto_space: bool, write_answers: Path | None,
             offer_bundle: Path | None = None) -> int:
    """The Textual installer; its result (or failure) is repeated on the terminal after.
    Started from an offline bundle (``--source``, or run inside one), it offers it first."""
    from installer.tui.app import run_tui  # Textual loads only for interactive runs

    result, error = run_tui(a, deps, auto_space=auto_space, answers_path=write_answers,
                            offer_bundle=offer_bundle)
    if error is not None:
        raise error
    if result is None:
        click.echo("pippin install: cancelled; nothing written", err=True)
        return 1
    click.echo(f"installed {result.os_name!r} on {result.target}: ESP {result.esp_partuuid}, "
               f"stage 1 at {result.stage1_path}")
    if result.target.startswith("sim:") and result.kernel_layout.startswith("firmware"):
        click.echo("  boot it: scripts/make-uefi-media media.img && "
                   f"scripts/qemu-boot {result.target[4:]} --media media.img")
    elif result.target.startswith("sim:"):
        click.echo(f"  boot it: scripts/qemu-boot {result.target[4:]}")
    return 0


@click.command("install")
@click.option("--answers", "answers_file", type=click.Path(path_type=Path, dir_okay=False),
              help="TOML answers file; the options below override it.")
@click.option("--target", help="sim:PATH or a macOS disk id (disk0). Default on a non-Mac: "
              "the simulated Mac in the cache directory (created on first use).")
@click.option("--catalog", help="installer_data.json path or URL (default: INSTALLER_DATA, "
              "else the generated demo catalog).")
@click.option("--os", "os_name", help="Exact catalog entry name.")
@click.option("--source", "source", type=click.Path(path_type=Path, file_okay=False),
              help="Install from an offline bundle (`pippin bundle create`): catalog, "
              "packages and restore images come from this directory; no network is used.")
@click.option("--space", type=click.Choice(["free", "resize"]), default=None,
              help="Default: free space when it fits, else shrink macOS.")
@click.option("--resize-to", help="macOS container size when resizing: min, NN%, or a size.")
@click.option("--size", help="Size of the new OS: max, min, NN%, or a size.")
@click.option("--name", help="Name shown in the boot picker.")
@click.option("--expert/--no-expert", default=None)
@click.option("--stage1", type=click.Path(path_type=Path, dir_okay=False),
              help="m1n1-format stage-1 image to register (needed on a real Mac: Pippin's "
              "own stage 1 has no Apple platform yet).")
@click.option("--admin-user", help="Administrator who sets the boot volume (bless); the "
              "password comes from PIPPIN_ADMIN_PASSWORD or is asked for.")
@click.option("--yes", is_flag=True, help="Install without asking.")
@click.option("--dry-run", is_flag=True, help="Print the plan; write nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the plan or result as JSON.")
@click.option("--tui/--no-tui", default=True,
              help="On a terminal: the full-screen installer (default) or plain prompts.")
@click.option("--write-answers", type=click.Path(path_type=Path, dir_okay=False),
              help="Save the final answers to this TOML file (replay with --answers).")
@click.pass_context
def install_cmd(ctx: click.Context, /, yes: bool, dry_run: bool, as_json: bool, tui: bool,
                write_answers: Path | None, **kw: Any) -> int:
    """Install an OS next to macOS (on a non-Mac: onto the simulated Mac)."""
    deps = _deps(ctx)
    source: Path | None = kw.pop("source")
    if source is not None:
        deps = dataclasses.replace(deps, bundle=source)
    a, auto_space = _answers(kw)
    if a.target is None:  # this Mac (or the macOS stand-in's), else the simulated one
        on_mac = sys.platform == "darwin" or deps.mac_root != Path("/")
        a = a.override(target="disk0" if on_mac else f"sim:{default_sim(deps.cache_dir)}")
    interactive = not yes and not dry_run and sys.stdin.isatty() and sys.stdout.isatty()
    if interactive and tui and not as_json:  # --json: the plan as JSON, then prompts
        offer = started_from(Path.cwd(), source)
        return _run_tui(dataclasses.replace(deps, bundle=None), a, auto_space, write_answers,
                        offer)
    if interactive:
        a = _prompt(deps, a)
    request = InstallRequest(a, dry_run=True, auto_space=auto_space)
    if write_answers is not None or dry_run or not yes:
        planned = install(request, deps)
        if write_answers is not None:  # as planned: the space choice and OS made explicit
            write_bytes(write_answers, to_toml(planned.answers or a).encode())
    if dry_run or not yes:
        _show(planned, as_json)
        if dry_run:
            return 0
        if not interactive:
            click.echo("pippin install: nothing written (no terminal to confirm on); rerun "
                       "with --yes to carry out this plan", err=True)
            return 0
        if not click.confirm(f"Install {planned.os_name!r} on {planned.target}?"):
            click.echo("pippin install: cancelled; nothing written", err=True)
            return 1
    password = _password(ctx)
    if interactive and a.admin_user and not password and not (a.target or "").startswith("sim:"):
        password = click.prompt(f"password of {a.admin_user} (for bless)", hide_input=True)
    bar = ProgressBar(live=sys.stderr.isatty())
    try:
        result = install(InstallRequest(a, auto_space=auto_space, admin_password=password),
                         deps, bar)
    finally:
        bar.close()
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=1))
        return 0
    if yes:  # otherwise the plan was shown before the confirmation
        click.echo(render_plan(result.plan))
    for w in result.warnings:
        click.echo(f"  warning: {w}")
    if result.esp_partuuid:
        click.echo(f"installed {result.os_name!r} on {result.target}: ESP "
                   f"{result.esp_partuuid}, stage 1 at {result.stage1_path}")
    else:
        click.echo(f"installed {result.os_name!r} on {result.target} (tethered: stage 1 waits "
                   f"for a development host), stage 1 at {result.stage1_path}")
    if result.kernel_layout:
        click.echo(f"  m1n1/boot.bin kernel layout: {result.kernel_layout}")
    click.echo(f"  downloaded {format_size(result.bytes_downloaded)}; "
               + ", ".join(f"{k} {v:.1f} s" for k, v in result.seconds.items()))
    if result.target.startswith("sim:") and result.kernel_layout.startswith("firmware"):
        click.echo("  boot it: scripts/make-uefi-media media.img && "
                   f"scripts/qemu-boot {result.target[4:]} --media media.img")
    elif result.target.startswith("sim:"):
        click.echo(f"  boot it: scripts/qemu-boot {result.target[4:]}")
    return 0
