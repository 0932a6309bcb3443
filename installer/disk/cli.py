"""``pippin plan`` and ``pippin sim create|inspect|run|resume|rollback``."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from installer import catalog_trust
from installer.answers import Answers, check_choice, check_target, load_answers
from installer.catalog import parse_catalog
from installer.device import KNOWN_DEVICES, DeviceFacts
from installer.disk.model import Disk, DiskModel, find_stub_installs
from installer.disk.plan import Choices, Plan, Space, layout, plan_install, plan_uninstall
from installer.disk.render import plan_to_dict, render_plan, rows
from installer.errors import AnswersError, CatalogError
from installer.platform.base import Backend, DirPayloads, SubprocessRunner
from installer.platform.journal import pending_run, resume, rollback, run_plan
from installer.platform.macos import MacBackend
from installer.platform.sim import SimBackend
from installer.platform.simmac import SimMac
from installer.platform.simstate import SimState, sidecar
from installer.sizes import format_size, parse_size
from vendorfw.progress import ByteMeter


def _cache_dir(ctx: click.Context) -> Path:
    obj = ctx.find_root().obj or {}
    if "cache_dir" in obj:
        return Path(obj["cache_dir"])
    env = obj.get("env", {})
    return Path(env.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "pippin"


def _env(ctx: click.Context) -> dict[str, str]:
    return dict((ctx.find_root().obj or {}).get("env", {}))


def default_target(ctx: click.Context) -> str:
    if sys.platform == "darwin":
        return "disk0"
    return f"sim:{_cache_dir(ctx) / 'sim' / 'mac.img'}"


def make_backend(target: str, env: dict[str, str]) -> Backend:
    """The one factory for real backends (STYLE.md: inject, don't reach)."""
    runner = SubprocessRunner(env or None)
    if target.startswith("sim:"):
        return SimBackend(Path(target[4:]), runner)
    return MacBackend(runner, disk=target)


def _size_arg(text: str, what: str) -> int:
    try:
        return parse_size(text)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=what) from None


def plan_options(f: Callable[..., Any]) -> Callable[..., Any]:
    opts = [
        click.option("--answers", "answers_file", type=click.Path(path_type=Path),
                     help="TOML answers file; options below override it."),
        click.option("--target", help="sim:PATH or a macOS disk id (disk0)."),
        click.option("--catalog", help="installer_data.json path."),
        click.option("--os", "os_name", help="Exact catalog entry name."),
        click.option("--space", type=click.Choice(["free", "resize"]), default=None,
                     help="free: the largest free region; resize: shrink macOS first."),
        click.option("--region", type=click.IntRange(min=0), metavar="START",
                     help="With --space free: the free region starting at byte START (see "
                          "the plan's layout); default: the largest."),
        click.option("--resize-to", help="macOS container size: min, NN%, or a size."),
        click.option("--size", help="New OS size: max, min, NN%, or a size."),
        click.option("--name", help="Name shown in the boot picker."),
        click.option("--expert/--no-expert", default=None,
                     help="Expert mode: expert-only OSes, macOS may keep only 1 GB free."),
        click.option("--uninstall", "uninstall_ref", metavar="PART",
                     help="Plan removing the stub install whose container is PART."),
    ]
    return functools.reduce(lambda acc, o: o(acc), reversed(opts), f)


def _answers(ctx: click.Context, kw: dict[str, Any]) -> Answers:
    base = load_answers(kw["answers_file"]) if kw["answers_file"] else Answers()
    over: dict[str, Any] = {
        "target": check_target(kw["target"]) if kw["target"] else None,
        "catalog": kw["catalog"], "os": kw["os_name"],
        "space": Space(kw["space"]) if kw["space"] else None,
        "resize_to": check_choice("--resize-to", kw["resize_to"]) if kw["resize_to"] else None,
        "size": check_choice("--size", kw["size"]) if kw["size"] else None,
        "name": kw["name"], "expert": kw["expert"],
    }
    a = base.override(**over)
    return a if a.target else a.override(target=default_target(ctx))


def build_plan(ctx: click.Context, kw: dict[str, Any], backend: Backend) -> Plan:
    a = _answers(ctx, kw)
    model = backend.read_model()
    if kw["uninstall_ref"]:
        return plan_uninstall(model, kw["uninstall_ref"])
    catalog = a.catalog or _env(ctx).get("INSTALLER_DATA")
    if not catalog:
        raise CatalogError("no catalog given", hint="pass --catalog FILE, set catalog in the "
                           "answers file, or set INSTALLER_DATA")
    if "://" in catalog:
        raise CatalogError(f"catalog {catalog} is a URL; planning reads a local file",
                           hint="download it first, or use `pippin install`")
    if not a.os:
        raise AnswersError("no OS chosen", hint="pass --os NAME or set os in the answers file")
    cat_path = Path(catalog)
    repo_base = _env(ctx).get("REPO_BASE") or str(cat_path.resolve().parent)
    try:
        data = cat_path.read_bytes()
    except OSError as exc:
        raise CatalogError(f"cannot read catalog {cat_path}: {exc.strerror}") from exc
    # verified (or noticed as unsigned) before anything in it is used
    catalog_trust.trusted(str(cat_path), data, None, catalog_trust.pins_from_env(_env(ctx)))
    entry = parse_catalog(data, repo_base).find(a.os)
    disk = None if (a.target or "").startswith("sim:") else a.target
    choices = Choices(space=a.space, resize_to=a.resize_to, size=a.size, name=a.name,
                      expert=a.expert, disk=disk, region=kw.get("region"))
    return plan_install(model, entry, choices)


@click.command("plan")
@plan_options
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
@click.pass_context
def plan_cmd(ctx: click.Context, /, as_json: bool, **kw: Any) -> int:
    """Print what an install (or --uninstall) would do. Writes nothing; no network."""
    target = _answers(ctx, kw).target or default_target(ctx)
    if not kw["uninstall_ref"]:  # an install planned on a half-done disk would mislead
        run = pending_run(_target_journal(ctx, target))
        if run is not None:
            from installer.install import interrupted_error
            raise interrupted_error(run, target)
    plan = build_plan(ctx, kw, make_backend(target, _env(ctx)))
    if as_json:
        click.echo(json.dumps(plan_to_dict(plan), indent=1))
    else:
        click.echo(render_plan(plan))
    return 0


def _target_journal(ctx: click.Context, target: str) -> Path:
    """Where an install on ``target`` keeps its journal (the sim's sidecar, or the Mac's)."""
    if target.startswith("sim:"):
        return _journal(Path(target[4:]))
    from installer.targets.mac import JOURNAL
    return Path(_env(ctx).get("PIPPIN_MAC_ROOT") or "/") / JOURNAL


@click.group("sim")
def sim() -> None:
    """The simulated Mac: a sparse disk image with a factory Apple Silicon layout."""


@sim.command("create")
@click.argument("path", type=click.Path(path_type=Path), required=False)
@click.option("--device", default="j314sap", show_default=True,
              help=f"Device class to simulate ({', '.join(sorted(KNOWN_DEVICES))}).")
@click.option("--disk-size", default="512GB", show_default=True,
              help="SSD size (sparse: the image costs only what it holds).")
@click.option("--macos-used", default="200GB", show_default=True,
              help="Space macOS already uses inside its container.")
@click.option("--overhead", default="0",
              help="APFS snapshot/pending-update space to simulate (raises the resize "
                   "minimum; above 16 GB the planner warns).")
@click.pass_context
def sim_create(ctx: click.Context, /, path: Path | None, device: str, disk_size: str,
               macos_used: str, overhead: str) -> int:
    """Create a simulated Mac at PATH (plus PATH.d/ and PATH.device.json).

    PATH defaults to the cache directory's sim/mac.img, the default target of plan/install.
    """
    path = _sim_path(ctx, path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mac = SimMac.create(
        path, device=device, disk_size=_size_arg(disk_size, "--disk-size"),
        macos_used=_size_arg(macos_used, "--macos-used"),
        overhead=_size_arg(overhead, "--overhead"),
    )
    click.echo(f"created {mac.path} ({mac.facts.product}, {format_size(mac.path.stat().st_size)})")
    return 0


def _boot_name(disk: Disk, boot_uuid: str) -> str:
    """Name of the blessed install ("" or unknown: macOS, as shipped)."""
    for i in find_stub_installs(disk):
        if boot_uuid and i.stub.uuid == boot_uuid:
            return i.name
    mac = disk.macos_partition()
    system = mac.container.system_volume() if mac and mac.container else None
    return system.name if system else "macOS"


def inspect_dict(model: DiskModel, facts: DeviceFacts, boot_uuid: str = "") -> dict[str, Any]:
    disk = model.disks[0]
    return {
        "boot": _boot_name(disk, boot_uuid),
        "device": facts.to_json(),
        "disk": {"ref": disk.ref, "size": disk.size, "system": disk.is_system},
        "layout": [vars_slot(s) for s in layout(disk)],
        "containers": [
            {"partition": p.ref, "ceiling": p.container.ceiling, "free": p.container.free,
             "stub": p.container.is_stub, "volume_group": p.container.volume_group,
             "volumes": [{"name": v.name, "roles": list(v.roles), "used": v.used}
                         for v in p.container.volumes]}
            for p in disk.ordered() if p.container is not None
        ],
        "installs": [{"stub": i.stub.ref, "name": i.name,
                      "partitions": [p.ref for p in i.partitions]}
                     for i in find_stub_installs(disk)],
    }


def vars_slot(s: Any) -> dict[str, Any]:
    return {"start": s.start, "size": s.size, "kind": s.kind, "name": s.name, "ref": s.ref}


@sim.command("inspect")
@click.argument("path", type=click.Path(path_type=Path), required=False)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def sim_inspect(ctx: click.Context, /, path: Path | None, as_json: bool) -> int:
    """Show a simulated Mac: device facts, partitions, containers, installed OSes."""
    path = _sim_path(ctx, path)
    mac = SimMac.open(path)
    model = mac.backend().read_model()
    boot = SimState(path).boot
    pending = _interrupted(path)
    if as_json:
        doc = inspect_dict(model, mac.facts, boot)
        doc["interrupted"] = pending
        busy = set(pending["partuuids"]) if pending else set()
        for inst, i in zip(doc["installs"], find_stub_installs(model.disks[0]), strict=True):
            inst["interrupted"] = i.stub.uuid.upper() in busy  # not installed yet
        click.echo(json.dumps(doc, indent=1))
        return 0
    f = mac.facts
    disk = model.disks[0]
    click.echo(f"{path}: {f.product} ({f.device_class}, board 0x{f.board_id:02x}, "
               f"chip 0x{f.chip_id:04x}, {f.system_firmware}, macOS {f.macos_version})")
    click.echo(f"  disk {disk.ref}: {format_size(disk.size)}")
    for line in rows(layout(disk)):
        click.echo(line)
    for p in disk.ordered():
        if p.container is None:
            continue
        stub = " (stub)" if p.container.is_stub else ""
        click.echo(f"  container on {p.ref}{stub}: {format_size(p.container.used)} used of "
                   f"{format_size(p.container.ceiling)}")
        for v in p.container.volumes:
            click.echo(f"    {v.name} [{', '.join(v.roles)}] {format_size(v.used)}")
    run = pending_run(_journal(path))
    busy = set(run.created) if run else set()
    for i in find_stub_installs(disk):
        # The stub an interrupted run created is not installed yet (step 3 did not finish).
        state = "interrupted" if i.stub.uuid.upper() in busy else "installed"
        click.echo(f"  {state}: {i.name!r} ({', '.join(p.ref for p in i.partitions)})")
    click.echo(f"  boots: {_boot_name(disk, boot)!r}")
    if run is not None:
        click.echo(f"  interrupted: {run.describe()}; finish it with `pippin sim resume` "
                   "or undo it with `pippin sim rollback`")
    return 0


def _interrupted(path: Path) -> dict[str, Any] | None:
    """The journaled run that did not finish, if any (an unreadable journal is an error)."""
    run = pending_run(_journal(path))
    if run is None:
        return None
    return {"action": run.action, "done": run.done, "total": run.total, "phase": run.phase,
            "partuuids": list(run.created)}


class OpMeter:
    """`[i/n] operation` lines on stderr, each followed by a byte meter while it writes."""

    def __init__(self, show_bytes: bool) -> None:
        self.show_bytes = show_bytes
        self.meter: ByteMeter | None = None

    def step(self, i: int, n: int, what: str) -> None:
        self.close()
        click.echo(f"[{i}/{n}] {what}", err=True)
        if self.show_bytes:
            self.meter = ByteMeter(sys.stderr, f"  [{i}/{n}] written")

    def bytes(self, n: int) -> None:
        if self.meter is not None:
            self.meter(n)

    def close(self) -> None:
        if self.meter is not None:
            self.meter.finish()
            self.meter = None


def _sim_path(ctx: click.Context, path: Path | None) -> Path:
    return path if path is not None else _cache_dir(ctx) / "sim" / "mac.img"


def _journal(path: Path) -> Path:
    return sidecar(path) / "journal.json"


@sim.command("run")
@click.argument("path", type=click.Path(path_type=Path), required=False)
@plan_options
@click.option("--package", type=click.Path(path_type=Path, file_okay=False),
              help="Unpacked OS package (images and esp/ tree).")
@click.option("--dry-run", is_flag=True, help="Print the plan and change nothing.")
@click.option("--progress/--no-progress", "show_progress", default=None,
              help="Show bytes written per operation on stderr (default: on a terminal).")
@click.pass_context
def sim_run(ctx: click.Context, /, path: Path | None, package: Path | None, dry_run: bool,
            show_progress: bool | None, **kw: Any) -> int:
    """Plan and execute on the simulated Mac at PATH (journaled, resumable).

    An interrupted run is continued by running the same plan again, or by `pippin sim
    resume`; `pippin sim rollback` undoes it.
    """
    path = _sim_path(ctx, path)
    kw["target"] = f"sim:{path}"
    meter = OpMeter(sys.stderr.isatty() if show_progress is None else show_progress)
    backend = SimBackend(path, SubprocessRunner(_env(ctx) or None), progress=meter.bytes)
    plan = build_plan(ctx, kw, backend)
    click.echo(render_plan(plan))
    if dry_run:
        click.echo("dry run: nothing changed")
        return 0
    try:
        run_plan(backend, plan, DirPayloads(package) if package else None, _journal(path),
                 progress=meter.step)
    finally:
        meter.close()
    click.echo("done; bytes outside the plan verified unchanged")
    return 0


@sim.command("resume")
@click.argument("path", type=click.Path(path_type=Path), required=False)
@click.option("--package", type=click.Path(path_type=Path, file_okay=False),
              help="The unpacked OS package the interrupted run used.")
@click.pass_context
def sim_resume(ctx: click.Context, /, path: Path | None, package: Path | None) -> int:
    """Finish an interrupted `sim run`, or an interrupted `pippin install` (as `pippin
    resume` does: the OS package and restore-image members are fetched again)."""
    path = _sim_path(ctx, path)
    run = pending_run(_journal(path))
    if run is not None and run.is_install and package is None:
        from installer.commands.common import deps
        from installer.lifecycle.interrupted import resume_install
        result = resume_install(f"sim:{path}", deps(ctx))
        click.echo(f"resumed and finished: {result.os_name!r} installed, ESP "
                   f"{result.esp_partuuid}")
        return 0
    resume(SimBackend(path), _journal(path), DirPayloads(package) if package else None)
    click.echo("resumed and finished")
    return 0


@sim.command("rollback")
@click.argument("path", type=click.Path(path_type=Path), required=False)
@click.pass_context
def sim_rollback(ctx: click.Context, /, path: Path | None) -> int:
    """Undo an interrupted `sim run`."""
    path = _sim_path(ctx, path)
    run = pending_run(_journal(path))
    if run is not None and run.is_install:
        from installer.lifecycle.interrupted import rollback_install
        from installer.targets.sim import SimTarget
        rollback_install(SimTarget(path, SubprocessRunner(_env(ctx) or None)))
    else:
        rollback(SimBackend(path), _journal(path))
    click.echo("rolled back")
    return 0
