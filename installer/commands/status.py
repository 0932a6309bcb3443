"""``pippin status [--target T] [--json]``."""

from __future__ import annotations

import json

import click

from installer.commands import common
from installer.lifecycle.status import InstallInfo, Status, read_status, status_to_json
from installer.sizes import format_size


def _install_lines(i: InstallInfo) -> list[str]:
    parts = ", ".join(f"{p.ref} {p.kind.value} {format_size(p.size)}"
                      for p in (i.stub, *([i.esp] if i.esp else []), *i.os_partitions))
    state = "  [interrupted]" if i.interrupted else ""
    out = [f"{i.name!r}: {format_size(i.size)} ({parts}){state}"]
    s1 = i.stage1
    if s1 is None:
        out.append("  stage 1: none on the stub's System volume")
    elif s1.error:
        out.append(f"  stage 1: unreadable ({s1.error})")
    else:
        fmt = {"pippin": "Pippin", "m1n1": "m1n1"}.get(s1.loader, "unknown format")
        out.append(f"  stage 1: {fmt} {s1.version or '(no version)'}, {format_size(s1.size)}")
        out += [f"    {k}={v}" for k, v in s1.variables.items()]
    fw = i.firmware
    if fw is None:
        out.append("  vendorfw: none on the ESP")
    elif fw.error:
        out.append(f"  vendorfw: manifest unreadable ({fw.error})")
    else:
        out.append(f"  vendorfw: {fw.files} files, {fw.links} links (vendorfw/manifest.txt)")
    out.append("  step 2: " + ("pending (finish it in 1TR: pick it in the startup options)"
                               if i.step2_pending else "done"))
    return out


def render(s: Status) -> str:
    lines = [f"{s.target} ({s.disk}): {len(s.installs)} install(s)"]
    for i in s.installs:
        lines += ["  " + line for line in _install_lines(i)]
    if s.pending is not None:
        lines.append(f"  interrupted: {s.pending.describe()}; finish it with `pippin resume` "
                     "or undo it with `pippin rollback`")
    for lo in s.free:
        lines.append(f"  free: {format_size(lo.size)} at {lo.ref}, {lo.why}")
    if s.leftovers:
        lines.append("  leftovers (pippin uninstall REF removes one):")
        for lo in s.leftovers:
            lines.append(f"    {lo.ref}: {format_size(lo.size)}, {lo.why}")
    else:
        lines.append("  leftovers: none")
    return "\n".join(lines)


@click.command("status")
@common.target_option
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@click.pass_context
def status_cmd(ctx: click.Context, /, target: str | None, as_json: bool) -> int:
    """Show every install on the target: partitions, stage-1 version and variables, vendor
    firmware, whether step 2 is pending; plus leftovers of failed or half-removed installs
    and an interrupted run. Writes nothing."""
    d = common.deps(ctx)
    ref = common.target_ref(target, d)
    s = read_status(common.open_target(ref, d), ref)
    click.echo(json.dumps(status_to_json(s), indent=1) if as_json else render(s))
    return 0
