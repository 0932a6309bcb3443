"""A loopback HTTP server with single-range support, for the demo catalog and restore image.

Python's ``http.server`` in a daemon thread: enough for one user's demo install, and it makes
the installer run its real download path (range GETs checked for 206 + Content-Range). It
binds 127.0.0.1 on a free port and serves one directory, read-only.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
_RANGE_RE = re.compile(r"bytes=(\d*)-(\d*)$")
_CHUNK = 1 << 20


class _Handler(SimpleHTTPRequestHandler):
    """GET/HEAD of files with ``Range: bytes=a-b`` / ``a-`` / ``-n``; no directory listings."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
        log.debug("demo server: " + format, *args)

    def list_directory(self, path: str | os.PathLike[str]) -> None:
        self.send_error(HTTPStatus.NOT_FOUND)
        return None

    def send_head(self) -> Any:
        path = Path(self.translate_path(self.path))
        if not path.is_file():
            self.send_error(HTTPStatus.NOT_FOUND)
            return None
        size = path.stat().st_size
        start, end = 0, size  # [start, end)
        status = HTTPStatus.OK
        rng = self.headers.get("Range")
        if rng:
            m = _RANGE_RE.match(rng.strip())
            if m is None or (not m.group(1) and not m.group(2)):
                self.send_error(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE)
                return None
            if m.group(1):
                start = int(m.group(1))
                end = min(size, int(m.group(2)) + 1) if m.group(2) else size
            else:
                start = max(0, size - int(m.group(2)))
            if start >= size or end <= start:
                self.send_response(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return None
            status = HTTPStatus.PARTIAL_CONTENT
        f = path.open("rb")
        f.seek(start)
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(end - start))
        if status is HTTPStatus.PARTIAL_CONTENT:
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{size}")
        self.end_headers()
        self._left = end - start
        return f

    def copyfile(self, source: Any, outputfile: Any) -> None:
        left = self._left
        while left > 0:
            buf = source.read(min(_CHUNK, left))
            if not buf:
                break
            outputfile.write(buf)
            left -= len(buf)


@dataclass(frozen=True, slots=True)
class Served:
    url: str  # base URL, no trailing slash
    root: Path


@contextlib.contextmanager
def serve(root: Path) -> Iterator[Served]:
    """Serve ``root`` on 127.0.0.1 (a free port) until the block ends."""
    root = Path(root).resolve()

    def handler(*args: Any) -> _Handler:
        return _Handler(*args, directory=str(root))

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, name="pippin-demo-http", daemon=True)
    thread.start()
    host, port = httpd.server_address[:2]
    log.info("demo server on http://%s:%d serving %s", host, port, root)
    try:
        yield Served(f"http://127.0.0.1:{port}", root)
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)

