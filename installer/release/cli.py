"""``scripts/make-release``: build ``pippin-<version>.tar.gz``, ``latest`` and ``install``.

Reads the environment (``XDG_CACHE_HOME`` is not used: the wheel cache lives in the
checkout's ``.cache/``) only here, and passes values down.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from installer.platform.base import SubprocessRunner
from installer.release.bundle import ReleaseConfig, build_release
from installer.release.wheels import MAC_PYTHONS
from vendorfw.cliboundary import run_click, setup_logging

REPO = Path(__file__).resolve().parents[2]


@click.command("make-release", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), default=Path("dist"),
              show_default=True, help="Directory that receives the bundle, latest, install.")
@click.option("--base-url", default="http://127.0.0.1:8000", show_default=True,
              help="Where the three files will be served; written into `install`.")
@click.option("--python-runtime", default="system", show_default=True,
              help="A Python runtime to ship (a directory with bin/python3, or a .tar.gz "
                   "whose top folder is python/), or 'system' to use the Mac's python3.")
@click.option("--mac-python", "mac_pythons", multiple=True, default=MAC_PYTHONS,
              show_default=True, help="CPython versions to carry macOS arm64 wheels for.")
@click.option("--wheel-cache", type=click.Path(path_type=Path, file_okay=False),
              default=REPO / ".cache" / "release-wheels", show_default=True,
              help="Where downloaded wheels are kept between builds.")
def make_release(out: Path, base_url: str, python_runtime: str,
                 mac_pythons: tuple[str, ...], wheel_cache: Path) -> int:
    """Build a release: the verified bundle, its index and the curl | sh bootstrap.

    The bundle holds the pippin wheel and every dependency as wheels for macOS arm64 and
    for this host, the prebuilt loaders, the initramfs hooks and, when given, a Python
    runtime. Same inputs give the same bytes.
    """
    runtime = None if python_runtime == "system" else Path(python_runtime)
    if runtime is not None and not runtime.exists():
        raise click.BadParameter(f"{runtime} does not exist", param_hint="--python-runtime")
    cfg = ReleaseConfig(repo=REPO, out=out, base_url=base_url, python=sys.executable,
                        wheel_cache=wheel_cache, runtime=runtime,
                        mac_pythons=tuple(mac_pythons))
    rel = build_release(cfg, SubprocessRunner(dict(os.environ)),
                        log=lambda s: click.echo(f"make-release: {s}", err=True))
    click.echo(f"{rel.bundle}  {rel.size} bytes  sha256 {rel.sha256}")
    click.echo(f"{rel.latest}")
    click.echo(f"{rel.install}  (curl -fsSL {base_url.rstrip('/')}/install | sh)")
    return 0


def main(argv: list[str] | None = None) -> int:
    log_path = setup_logging(None)
    return run_click("make-release", make_release, argv, log_path)


if __name__ == "__main__":
    sys.exit(main())
