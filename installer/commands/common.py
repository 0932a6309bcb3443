"""What every lifecycle verb shares: ``--target`` (default: this Mac, or the default
simulated Mac off a Mac), ``--yes``/``--dry-run``, the injected dependencies, and asking."""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from installer.answers import check_target
from installer.errors import PippinError
from installer.install import InstallDeps, default_sim, make_target
from installer.net.session import NetConfig, make_session, proxies_from_env
from installer.platform.base import SubprocessRunner
from installer.targets.base import InstallTarget

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def target_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--target", help="sim:PATH or a macOS disk id (disk0). Default: this "
                        "Mac's disk0, or off a Mac the simulated Mac in the cache directory.")(f)


def write_options(f: Callable[..., Any]) -> Callable[..., Any]:
    f = click.option("--dry-run", is_flag=True, help="Show what would change; write nothing.")(f)
    return click.option("--yes", is_flag=True, help="Do it without asking.")(f)


def deps(ctx: click.Context) -> InstallDeps:
    """The real dependencies for a verb, from the environment main() captured."""
    obj = ctx.find_root().obj or {}
    env: dict[str, str] = dict(obj.get("env", {}))
    cache = Path(obj.get("cache_dir") or Path.home() / ".cache" / "pippin")
    proxies, no_proxy = proxies_from_env(env)
    session = make_session(NetConfig(proxies=proxies, no_proxy=no_proxy + LOOPBACK))
    # PIPPIN_MAC_ROOT: where /Volumes and /dev are (set by scripts/mac-standin; "/" on a Mac)
    root = Path(env.get("PIPPIN_MAC_ROOT") or "/")
    d = InstallDeps(session=session, runner=SubprocessRunner(env or None), cache_dir=cache,
                    env=env, mac_root=root)
    # Run from a release bundle (not a checkout): the bootstrap says where its loaders are.
    if env.get("PIPPIN_PREBUILT"):
        d = dataclasses.replace(d, prebuilt=Path(env["PIPPIN_PREBUILT"]))
    if env.get("PIPPIN_DEMO_ASSETS"):  # the demo kernel + busybox (scripts/fetch-test-assets)
        d = dataclasses.replace(d, demo_assets=Path(env["PIPPIN_DEMO_ASSETS"]))
    return d


def target_ref(target: str | None, d: InstallDeps) -> str:
    if target:
        return check_target(target)
    return "disk0" if sys.platform == "darwin" else f"sim:{default_sim(d.cache_dir)}"


def open_target(ref: str, d: InstallDeps) -> InstallTarget:
    """The target, which must exist (a lifecycle verb never creates a simulated Mac)."""
    if ref.startswith("sim:") and not Path(ref[4:]).exists():
        raise PippinError(f"no simulated Mac at {ref[4:]}",
                          hint="`pippin install` creates it, or pass --target sim:PATH")
    return d.target or make_target(ref, d.runner, d.mac_root)


def is_terminal() -> bool:
    return sys.stdin.isatty() and sys.stdout.isatty()


def confirm(question: str, yes: bool) -> bool:
    """``--yes``: go on; a terminal: ask; otherwise say how to go on and stop (exit 0, as
    ``pippin install`` without a terminal). Answered no: exit 1, as a cancelled install."""
    if yes:
        return True
    if not is_terminal():
        click.echo("pippin: nothing written (no terminal to confirm on); rerun with --yes",
                   err=True)
        return False
    if click.confirm(question):
        return True
    click.echo("pippin: cancelled; nothing written", err=True)
    click.get_current_context().exit(1)
    return False  # not reached: exit raises



def replace_target(d: InstallDeps, target: InstallTarget) -> InstallDeps:
    return dataclasses.replace(d, target=target)
