"""The persistent range cache: fetched bytes of a remote archive survive a crash.

One directory per archive (named by a hash of its identity, not its URL, so a mirror can
resume what the CDN started) holding a sparse ``data`` file at the archive's own offsets
and a ``journal`` of completed blocks, one line each: ``<start> <end> <crc32 hex>``.
A block is journaled only after its bytes were written; on open every journaled block is
re-read and its CRC checked, so a torn write or a half-written journal line (power loss,
kill -9) costs at most that block, never wrong bytes.
"""

from __future__ import annotations

import bisect
import hashlib
import logging
import os
import shutil
import threading
import zlib
from pathlib import Path

from installer.errors import RestoreImageError
from installer.ipsw.ranges import subtract
from vendorfw.atomic import write_bytes

log = logging.getLogger(__name__)

#: Journal granularity: a killed fetch re-downloads at most this much per active range.
BLOCK = 1 << 20


class RangeCache:
    """Sparse data file + journal of verified intervals. Thread-safe."""

    def __init__(self, root: Path, key: str, size: int) -> None:
        self.dir = Path(root) / hashlib.sha256(key.encode()).hexdigest()[:32]
        self.size = size
        self._lock = threading.Lock()
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.dir / "data", os.O_RDWR | os.O_CREAT, 0o644)
            if os.fstat(self._fd).st_size != size:
                os.ftruncate(self._fd, size)
            self._entries = self._load()
            self._journal = open(self.dir / "journal", "a", encoding="ascii")
        except OSError as exc:
            raise RestoreImageError(f"cannot use the download cache {self.dir}: {exc}") from exc
        self._have: list[tuple[int, int]] = []
        for s, e, _ in self._entries:
            self._add(s, e)

    def _load(self) -> list[tuple[int, int, int]]:
        path = self.dir / "journal"
        if not path.exists():
            return []
        good: list[tuple[int, int, int]] = []
        dropped = 0
        for line in path.read_text("ascii", errors="replace").splitlines():
            parts = line.split()
            try:
                s, e, crc = int(parts[0]), int(parts[1]), int(parts[2], 16)
            except (IndexError, ValueError):
                dropped += 1
                continue
            if 0 <= s < e <= self.size and zlib.crc32(self.read(s, e - s)) == crc:
                good.append((s, e, crc))
            else:
                dropped += 1
        if dropped:
            log.warning("download cache %s: %d damaged entries dropped", self.dir, dropped)
            self._rewrite(good)
        return good

    def _rewrite(self, entries: list[tuple[int, int, int]]) -> None:
        text = "".join(f"{s} {e} {c:08x}\n" for s, e, c in entries)
        write_bytes(self.dir / "journal", text.encode("ascii"))

    def _add(self, s: int, e: int) -> None:
        i = bisect.bisect_left(self._have, (s, e))
        if i > 0 and self._have[i - 1][1] >= s:
            i -= 1
        j = i
        while j < len(self._have) and self._have[j][0] <= e:
            s, e = min(s, self._have[j][0]), max(e, self._have[j][1])
            j += 1
        self._have[i:j] = [(s, e)]

    def intervals(self) -> list[tuple[int, int]]:
        """Merged, sorted intervals whose bytes are in the cache."""
        with self._lock:
            return list(self._have)

    def _error(self, what: str, exc: OSError) -> RestoreImageError:
        return RestoreImageError(f"cannot {what} the download cache {self.dir}: "
                                 f"{exc.strerror or exc}",
                                 hint="free some space or pass another --cache directory")

    def write(self, offset: int, data: bytes | memoryview) -> None:
        view = memoryview(data)
        while view:
            try:
                n = os.pwrite(self._fd, view, offset)
            except OSError as exc:  # ENOSPC, EIO: a clear error, not a worker traceback
                raise self._error("write", exc) from exc
            offset += n
            view = view[n:]

    def read(self, offset: int, n: int) -> bytes:
        parts = []
        while n > 0:
            try:
                b = os.pread(self._fd, n, offset)
            except OSError as exc:
                raise self._error("read", exc) from exc
            if not b:
                raise RestoreImageError(f"download cache {self.dir} is shorter than expected")
            parts.append(b)
            offset += len(b)
            n -= len(b)
        return b"".join(parts)

    def commit(self, start: int, end: int, crc: int) -> None:
        """Record that ``[start, end)`` holds verified bytes with CRC-32 ``crc``."""
        with self._lock:
            try:
                self._journal.write(f"{start} {end} {crc:08x}\n")
                self._journal.flush()
            except OSError as exc:
                raise self._error("write", exc) from exc
            self._entries.append((start, end, crc))
            self._add(start, end)

    def invalidate(self, start: int, end: int) -> None:
        """Forget every block that touches ``[start, end)`` (its bytes proved wrong)."""
        with self._lock:
            self._keep([x for x in self._entries if x[1] <= start or x[0] >= end])

    def release(self, spans: list[tuple[int, int]]) -> bool:
        """Forget the blocks inside ``spans`` (sorted, merged; their members were delivered).
        True when nothing is left; otherwise the cache holds another fetch's ranges (an
        interrupted one, e.g. the stub set while this run read only the manifest)."""
        with self._lock:
            keep = [x for x in self._entries if subtract(x[0], x[1], spans)]
            if len(keep) != len(self._entries):
                self._keep(keep)
            return not keep

    def _keep(self, entries: list[tuple[int, int, int]]) -> None:
        self._entries = entries
        try:
            self._journal.close()
            self._rewrite(entries)
            self._journal = open(self.dir / "journal", "a", encoding="ascii")
        except OSError as exc:
            raise self._error("write", exc) from exc
        self._have = []
        for s, e, _ in entries:
            self._add(s, e)

    def close(self) -> None:
        with self._lock:
            if not self._journal.closed:
                self._journal.close()
                os.close(self._fd)

    def remove(self) -> None:
        self.close()
        shutil.rmtree(self.dir, ignore_errors=True)
