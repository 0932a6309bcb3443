"""A real nginx on a free loopback port serving a directory (Range requests included).

Runs as the current user with its own prefix, config, pid and logs in a temp directory
(``daemon off``), so tests need no root and leave nothing behind. The access log records
each request's Range header, status and body bytes sent.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

CONF = """\
{user}
worker_processes 1;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 256; }}
http {{
    log_format fmt '$request_method $uri "$http_range" $status $body_bytes_sent "$http_user_agent"';
    access_log {prefix}/access.log fmt;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    default_type application/octet-stream;
    sendfile on;
    keepalive_requests 100000;
    add_header X-Pippin-Instance "{token}" always;
    server {{
        listen 127.0.0.1:{port};
        root {root};
        location / {{ }}
{extra}
    }}
}}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Nginx:
    root: Path
    prefix: Path
    port: int
    proc: subprocess.Popen[bytes]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, name: str) -> str:
        return f"{self.base_url}/{name}"

    def log_lines(self) -> list[str]:
        path = self.prefix / "access.log"
        return path.read_text().splitlines() if path.exists() else []


def _answers(port: int, token: str) -> bool:
    """Whether the server on ``port`` is this nginx (not another one that won the port)."""
    with socket.create_connection(("127.0.0.1", port), 2) as s:
        s.sendall(b"HEAD / HTTP/1.0\r\n\r\n")
        head = b""
        while b"\r\n\r\n" not in head:
            data = s.recv(4096)
            if not data:
                break
            head += data
    return f"x-pippin-instance: {token}".encode() in head.lower()


def _wait_listening(port: int, proc: subprocess.Popen[bytes], token: str,
                    timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"nginx exited with {proc.returncode}")
        with contextlib.suppress(OSError):
            if _answers(port, token):
                return
            raise RuntimeError("another server took the port")
        time.sleep(0.02)
    raise RuntimeError("nginx did not start listening")


@contextlib.contextmanager
def serve(root: Path, prefix: Path, extra: str = "") -> Iterator[Nginx]:
    """Run nginx serving ``root``; ``prefix`` (a fresh directory) holds its state.
    ``extra``: more directives for the server block (e.g. ``location = /x { return 500; }``).
    """
    exe = shutil.which("nginx") or "/usr/sbin/nginx"
    prefix.mkdir(parents=True, exist_ok=True)
    user = f"user {pwd.getpwuid(os.geteuid()).pw_name};" if os.geteuid() == 0 else ""
    for _ in range(5):  # a free port can be taken between probe and bind: try again
        port = free_port()
        conf = prefix / "nginx.conf"
        token = secrets.token_hex(8)  # told apart from another nginx that won the port
        conf.write_text(CONF.format(user=user, prefix=prefix, port=port, root=root,
                                    token=token, extra=extra))
        err = open(prefix / "stderr.log", "wb")  # noqa: SIM115 - handed to the child
        proc = subprocess.Popen([exe, "-p", str(prefix), "-c", str(conf)],
                                stdout=err, stderr=err)
        err.close()
        try:
            _wait_listening(port, proc, token, 10)
        except RuntimeError:
            proc.kill()
            proc.wait()
            continue
        try:
            yield Nginx(root, prefix, port, proc)
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return
    raise RuntimeError(f"nginx did not start; see {prefix}/stderr.log")
