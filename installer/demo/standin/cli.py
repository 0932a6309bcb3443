"""Entry points of the macOS stand-in (a CLI module: it reads ``os.environ``).

- ``python -m installer.demo.standin.cli run --sim IMAGE [--admin USER:PASSWORD]
  [--external] -- CMD ARGS…`` (``scripts/mac-standin``): prepare ``<image>.d/standin/``,
  run CMD with the shims first on PATH and ``PIPPIN_MAC_ROOT`` set to the stand-in's root,
  move raw-device writes into the image at the end, exit with CMD's status.
- the shims: ``bin/<command>`` links to ``bin/standin-shim``, which dispatches on the name
  it was called by (``PIPPIN_STANDIN`` names the stand-in directory).
"""

from __future__ import annotations

import argparse
import os
import socketserver
import subprocess
import sys
import tempfile
import threading
import traceback
from pathlib import Path

from installer.demo.standin import commands
from installer.demo.standin.machine import (
    Config,
    Machine,
    StandInError,
    password_digest,
    standin_dir,
)

ENV_DIR = "PIPPIN_STANDIN"
ENV_ROOT = "PIPPIN_MAC_ROOT"
ENV_SOCK = "PIPPIN_STANDIN_SOCK"
REPO = Path(__file__).resolve().parents[3]


def execute(d: Path, argv: list[str], stdin: bytes) -> tuple[int, bytes, bytes]:
    """One stand-in command: (exit status, stdout, stderr)."""
    cmd = os.path.basename(argv[0])
    m = Machine(d)
    with m.locked():
        m.log_argv([cmd, *argv[1:]])
        try:
            m.sync_devices()
            rc, out = commands.run(m, cmd, argv[1:], stdin)
        except commands.NotImplemented_ as exc:
            return 78, b"", (f"mac-standin: `{exc}` is not implemented by the macOS "
                             "stand-in (nothing was done)\n").encode()
        except StandInError as exc:
            return 1, b"", f"{exc}\n".encode()
        except Exception as exc:  # noqa: BLE001 - the shim's boundary: one line, details logged
            with (m.dir / "errors.log").open("a") as f:
                f.write(f"{[cmd, *argv[1:]]}\n{traceback.format_exc()}\n")
            return 70, b"", (f"mac-standin: internal error in {cmd}: {exc!r} (details in "
                             f"{m.dir / 'errors.log'})\n").encode()
        finally:
            m.refresh_devices()
    return rc, out, b""


def shim_main(argv: list[str]) -> int:
    """A shim run in its own process (no launcher listening, or caffeinate CMD)."""
    cmd = os.path.basename(argv[0])
    d = os.environ.get(ENV_DIR)
    if not d:
        sys.stderr.write(f"{cmd}: stand-in shim run outside mac-standin ({ENV_DIR} unset)\n")
        return 70
    stdin = sys.stdin.buffer.read() if cmd == "bless" else b""
    rc, out, err = execute(Path(d), [cmd, *argv[1:]], stdin)
    sys.stdout.buffer.write(out)
    sys.stderr.buffer.write(err)
    return rc


class _Handler(socketserver.StreamRequestHandler):
    """One request from a shim: ``b"<argv bytes> <stdin bytes>\\n"``, then the argv joined by
    NULs, then stdin; the answer: ``b"<rc> <out bytes> <err bytes>\\n"``, out, err. (No JSON:
    the shim then needs no module beyond the built-in ``_socket``.)"""

    server: _Server

    def handle(self) -> None:
        na, ni = (int(x) for x in self.rfile.readline().split())
        argv = [os.fsdecode(a) for a in self.rfile.read(na).split(b"\0")]
        stdin = self.rfile.read(ni)
        rc, out, err = execute(self.server.standin, argv, stdin)
        self.wfile.write(b"%d %d %d\n" % (rc, len(out), len(err)) + out + err)


class _Server(socketserver.UnixStreamServer):
    def __init__(self, path: str, standin: Path) -> None:
        self.standin = standin
        super().__init__(path, _Handler)


#: The shim: a thin client of the launcher (one Python start-up with no imports beyond
#: the built-in _socket, instead of loading the stand-in for each of the ~100 commands of an
#: install); run in-process when no launcher listens, and for caffeinate CMD.
SHIM = """#!{python} -S
import os, sys
name = os.path.basename(sys.argv[0])
sock = os.environ.get("PIPPIN_STANDIN_SOCK", "")
if sock and name != "caffeinate":
    import _socket
    stdin = sys.stdin.buffer.read() if name == "bless" else b""
    blob = b"\\0".join(os.fsencode(a) for a in [name, *sys.argv[1:]])
    s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    s.connect(sock)
    s.sendall(b"%d %d\\n" % (len(blob), len(stdin)) + blob + stdin)
    data = b""
    while chunk := s.recv(1 << 16):
        data += chunk
    head, _, body = data.partition(b"\\n")
    rc, nout, nerr = (int(x) for x in head.split())
    sys.stdout.buffer.write(body[:nout])
    sys.stderr.buffer.write(body[nout:nout + nerr])
    sys.exit(rc)
sys.path.insert(0, {repo!r})
from installer.demo.standin.cli import shim_main
sys.exit(shim_main(sys.argv))
"""


def write_shims(d: Path) -> Path:
    bin_dir = d / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    entry = bin_dir / "standin-shim"
    entry.write_text(SHIM.format(python=sys.executable, repo=str(REPO)))
    entry.chmod(0o755)
    for name in commands.SHIMS:
        link = bin_dir / name
        link.unlink(missing_ok=True)
        link.symlink_to("standin-shim")
    return bin_dir


def prepare(image: Path, admin: str | None, external: bool) -> Path:
    """Set up ``<image>.d/standin/`` for a run (volumes left mounted by a killed run stay
    mounted, as on a Mac: mounting them again is a no-op)."""
    d = standin_dir(image)
    for sub in ("root/Volumes", "root/dev", "root/Library"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    user, digest = "", ""
    if admin:
        user, _, password = admin.partition(":")
        digest = password_digest(user, password)
    Config(image.resolve(), user, digest, external).save(d)
    write_shims(d)
    m = Machine(d)
    m.refresh_devices()
    return d


def launcher_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="mac-standin",
        description="Run CMD as on a Mac whose disk is the simulated Mac IMAGE: diskutil, "
        "newfs_msdos, bless, bputil, kmutil, nvram, ioreg, sw_vers, hdiutil, caffeinate "
        "(and ditto) are shims that act on the image; /Volumes and /dev are under "
        "IMAGE.d/standin/root (PIPPIN_MAC_ROOT). Every argv is logged to "
        "IMAGE.d/standin-argv.log. Forms it does not simulate say so and exit 78.")
    p.add_argument("--sim", required=True, type=Path, help="the simulated Mac image")
    p.add_argument("--admin", help="USER:PASSWORD of the administrator bless accepts")
    p.add_argument("--external", action="store_true",
                   help="also list an external USB disk (disk1; never written)")
    p.add_argument("cmd", nargs=argparse.REMAINDER, help="-- CMD ARGS…")
    args = p.parse_args(argv)
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        p.error("no command given (mac-standin --sim IMAGE -- CMD ARGS…)")
    image: Path = args.sim
    if not image.is_file():
        sys.stderr.write(f"mac-standin: no simulated Mac at {image} "
                         f"(create one: scripts/pippin sim create {image})\n")
        return 1
    if args.admin is not None and ":" not in args.admin:
        p.error("--admin takes USER:PASSWORD")
    d = prepare(image, args.admin, args.external)
    env = dict(os.environ)
    env["PATH"] = f"{d / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}"
    env[ENV_DIR] = str(d)
    env[ENV_ROOT] = str(d / "root")
    with tempfile.TemporaryDirectory(prefix="standin-") as sockdir:
        # A short path: AF_UNIX names are limited to ~100 bytes.
        env[ENV_SOCK] = sock = os.path.join(sockdir, "s")
        server = _Server(sock, d)
        thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
        thread.start()
        try:
            rc = subprocess.run(cmd, env=env, check=False).returncode
        except FileNotFoundError:
            sys.stderr.write(f"mac-standin: {cmd[0]}: command not found\n")
            return 127
        finally:
            server.shutdown()
            server.server_close()
    m = Machine(d)
    with m.locked():
        try:
            m.sync_devices()
        except StandInError as exc:
            sys.stderr.write(f"mac-standin: {exc}\n")
            return rc or 1
        if m.mounts:
            sys.stderr.write("mac-standin: still mounted at exit: "
                             + ", ".join(sorted(m.mounts)) + "\n")
    return rc


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "run":
        sys.exit(launcher_main(sys.argv[2:]))
    sys.exit(shim_main(sys.argv))
