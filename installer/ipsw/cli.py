"""``pippin ipsw``: list, inspect and fetch restore-image members (for users and mirrors).

Environment values (``IPSW_BASE``, proxies, ``XDG_CACHE_HOME``) come from the dict the
top-level ``pippin`` group stored in ``ctx.obj["env"]``; nothing here reads os.environ.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click
import requests

from installer.errors import RestoreImageError
from installer.ipsw import manifest, ota
from installer.ipsw.cache import cache_root
from installer.ipsw.fetch import (
    FetchOptions,
    FetchProgress,
    FetchResult,
    fetch_members,
    read_members,
)
from installer.ipsw.member import DirectorySink
from installer.ipsw.ranges import PlanOptions
from installer.ipsw.remote import Archive, is_url, open_archive, resolve_source
from installer.ipsw.select import Purpose, needed_members
from installer.net.session import NetConfig, make_session, proxies_from_env


class _Ctx:
    """What every subcommand needs, built once from the environment dict."""

    def __init__(self, env: Mapping[str, str], cache: Path | None,
                 cache_dir: Path | None = None) -> None:
        self.env = env
        proxies, no_proxy = proxies_from_env(env)
        self.net = NetConfig(proxies=proxies, no_proxy=no_proxy)
        self.session: requests.Session = make_session(self.net)
        if cache_dir is None:
            base = env.get("XDG_CACHE_HOME") or str(Path(env.get("HOME", "/tmp")) / ".cache")
            cache_dir = Path(base) / "pippin"
        # The same place `pippin install` keeps its ranges: either resumes the other's.
        self.cache_root = cache or cache_root(cache_dir)
        self.ipsw_base = env.get("IPSW_BASE") or None

    def open(self, url: str, warm: int = 0) -> Archive:
        source = resolve_source(url, self.ipsw_base)
        return open_archive(source, self.session if is_url(source) else None,
                            timeout=self.net.timeout, warm=warm)

    def fetch(self, archive: Archive, names: list[str], sink: Any,
              options: FetchOptions | None = None, progress: Any = None) -> FetchResult:
        opts = options or FetchOptions(timeout=self.net.timeout)
        return fetch_members(archive, names, sink, session=self.session,
                             cache_root=self.cache_root, options=opts, progress=progress)

    def read(self, archive: Archive, name: str) -> bytes:
        return read_members(archive, [name], session=self.session,
                            cache_root=self.cache_root)[name]


def _emit(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True))


@click.group("ipsw")
@click.option("--cache", type=click.Path(path_type=Path, file_okay=False),
              help="Directory for partial downloads (default: ~/.cache/pippin/ranges, "
                   "shared with `pippin install`).")
@click.pass_context
def ipsw(ctx: click.Context, cache: Path | None) -> None:
    """Inspect and fetch members of Apple restore images (IPSW/OTA, URL or path).

    URL is an http(s) URL, a local path or a file:// URL. Only the bytes of the members
    asked for are downloaded (ranged requests), never the whole image.

    IPSW_BASE replaces the directory part of every image URL (a mirror or local copy).
    http_proxy, https_proxy, all_proxy and no_proxy (or their upper-case forms) are
    honoured.
    """
    env = (ctx.obj or {}).get("env", {})
    cache_dir = (ctx.obj or {}).get("cache_dir")
    ctx.obj = {**(ctx.obj or {}), "ipsw": _Ctx(env, cache, cache_dir)}


def _state(ctx: click.Context) -> _Ctx:
    st: _Ctx = ctx.obj["ipsw"]
    return st


@ipsw.command("ls")
@click.argument("url")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def ls_cmd(ctx: click.Context, url: str, as_json: bool) -> None:
    """List members: size, compressed size, compression, name."""
    arc = _state(ctx).open(url)
    rows = [{"name": m.name, "size": m.file_size, "compressed": m.compress_size,
             "compression": m.compression, "offset": m.start} for m in arc.members]
    if as_json:
        _emit(rows)
        return
    for r in rows:
        click.echo(f"{r['size']:>14} {r['compressed']:>14} {r['compression']:<8} {r['name']}")


def _manifest(st: _Ctx, arc: Archive) -> tuple[manifest.BuildManifest, ota.Layout]:
    layout = ota.detect_layout(arc.names())
    data = st.read(arc, f"{layout.boot_prefix}BuildManifest.plist")
    return manifest.parse_build_manifest(data), layout


@ipsw.command("identities")
@click.argument("url")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def identities_cmd(ctx: click.Context, url: str, as_json: bool) -> None:
    """List the build identities (device class, board, chip, variant)."""
    st = _state(ctx)
    bm, _ = _manifest(st, st.open(url))
    rows = [{"device_class": i.device_class, "board_id": f"0x{i.board_id:02X}",
             "chip_id": f"0x{i.chip_id:04X}", "restore_behavior": i.restore_behavior,
             "variant": i.variant, "build_number": i.build_number} for i in bm.identities]
    if as_json:
        _emit({"product_version": bm.product_version, "build": bm.build_version,
               "identities": rows})
        return
    for r in rows:
        click.echo(f"{r['device_class']:<10} {r['board_id']:<5} {r['chip_id']:<7} "
                   f"{r['restore_behavior']:<8} {r['variant']}")


def _int(text: str) -> int:
    try:
        return int(text, 0)
    except ValueError as exc:
        raise click.BadParameter(f"{text!r} is not a number (e.g. 0x04)") from exc


@ipsw.command("needed")
@click.argument("url")
@click.option("--device-class", required=True, help="e.g. j314sap")
@click.option("--board", "board", required=True, help="ApBoardID, e.g. 0x04")
@click.option("--chip", "chip", required=True, help="ApChipID, e.g. 0x6000")
@click.option("--firmware", is_flag=True, help="The firmware-extraction set instead.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def needed_cmd(ctx: click.Context, url: str, device_class: str, board: str, chip: str,
               firmware: bool, as_json: bool) -> None:
    """The members a stub install (or firmware extraction) of this device needs.

    Reads only BuildManifest.plist; `pippin ipsw identities URL` lists the device classes,
    boards and chips the image supports.
    """
    st = _state(ctx)
    arc = st.open(url)
    need = needed_members(arc, board_id=_int(board), chip_id=_int(chip),
                          device_class=device_class,
                          purpose=Purpose.FIRMWARE if firmware else Purpose.STUB,
                          session=st.session, cache_root=st.cache_root)
    names = list(need.members)
    if as_json:
        _emit({"members": names, "bytes": sum(arc.get(n).compress_size for n in names),
               "variant": need.identity.variant, "ota": need.layout.ota})
        return
    for n in names:
        click.echo(n)


class _Bar:
    """Progress on stderr when it is a terminal (bytes, speed, ETA)."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.member = ""

    def __call__(self, p: FetchProgress) -> None:
        if not self.tty:
            return
        if p.member is not None and p.state is not None:
            self.member = f"{p.state}: {p.member}"[-40:]
        eta = f"{p.eta:5.0f}s" if p.eta is not None else "    ?"
        click.echo(f"\r{p.done / 1e6:9.1f}/{p.total / 1e6:.1f} MB {p.speed / 1e6:7.1f} MB/s "
                   f"ETA {eta}  {self.member:<40}", err=True, nl=False)

    def end(self) -> None:
        if self.tty:
            click.echo("", err=True)


@ipsw.command("fetch")
@click.argument("url")
@click.option("--member", "members", multiple=True, help="Member name (repeatable).")
@click.option("--members-from", type=click.File("r"), help="File with one name per line.")
@click.option("--out", "out", required=True, type=click.Path(path_type=Path, file_okay=False),
              help="Directory for the members (created; a member's file is replaced only "
                   "once its bytes are verified).")
@click.option("--connections", default=8, show_default=True, type=click.IntRange(1, 32),
              help="Parallel HTTP connections (large members are split across them).")
@click.option("--keep-cache", is_flag=True, help="Keep fetched ranges after success.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable summary.")
@click.pass_context
def fetch_cmd(ctx: click.Context, url: str, members: tuple[str, ...],
              members_from: Any, out: Path, connections: int, keep_cache: bool,
              as_json: bool) -> None:
    """Fetch members of the image at URL into OUT, each verified by CRC-32.

    Fetched ranges are kept in the download cache (see --cache) until the fetch succeeds:
    after a crash or Ctrl-C, run the same command again and only the missing bytes are
    downloaded. Progress (bytes, speed, ETA, last member) is shown on a terminal.
    """
    names = list(members)
    if members_from is not None:
        names += [ln.strip() for ln in members_from if ln.strip()]
    if not names:
        raise click.UsageError("give --member NAME or --members-from FILE")
    st = _state(ctx)
    arc = st.open(url, warm=connections)
    for n in names:
        arc.get(n)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RestoreImageError(f"cannot create {out}: {exc}") from exc
    opts = FetchOptions(plan=PlanOptions(connections=connections), timeout=st.net.timeout,
                        keep_cache=keep_cache)
    bar = _Bar()
    try:
        res = st.fetch(arc, names, DirectorySink(out), opts, bar)
    finally:
        bar.end()
    if as_json:
        _emit({"members": list(res.members), "needed_bytes": res.needed_bytes,
               "downloaded_bytes": res.downloaded_bytes, "cached_bytes": res.cached_bytes,
               "requests": res.requests, "retries": res.retries,
               "refetched": list(res.refetched), "steals": res.steals,
               "seconds": round(res.seconds, 3)})
        return
    click.echo(f"fetched {len(res.members)} members ({res.needed_bytes} bytes, "
               f"{res.downloaded_bytes} downloaded, {res.cached_bytes} from cache) into {out}")
