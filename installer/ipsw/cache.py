"""The persistent range cache: fetched bytes of a remote archive survive a crash.

One directory per archive (named by a hash of its identity, not its URL, so a mirror can
resume what the CDN started, and ``pippin install`` and ``pippin ipsw fetch`` share it: see
:func:`cache_root`). It holds only the bytes fetched, one file per block under ``blocks/``,
named ``<start>-<end>-<crc32>`` (hex; archive offsets, end exclusive). A block is written
under a temporary name and renamed, and on open every block is re-read and its CRC checked,
so a torn write (power loss, kill -9) costs at most that block, never wrong bytes.

A ``lock`` file (``flock``) makes one process at a time the cache's user: a second
``pippin`` fetching the same image waits for the first (and then finds its bytes), so
two processes can never interleave writes or remove what the other is reading.

Removing a cache whose members were all delivered is one rename, then deletion in the
background: the whole directory is moved aside to ``.<name>.<token>.stale`` (atomic, under
the lock) and a background thread deletes it, off the fetch's critical path (unlinking a few
hundred freshly written block files takes 0.03-0.3 s, more under disk load; ``rm -rf`` in
a process of its own, so a ``pippin ipsw fetch`` with nothing left to do exits at once). A crash
leaves either the whole cache (its members delivered or not, a rerun finds every byte) or
a stale aside directory, which the next open of any cache under the same root deletes
(again in the background). :func:`wait_released` waits for those deletions.
"""

from __future__ import annotations

import bisect
import contextlib
import fcntl
import hashlib
import itertools
import logging
import os
import secrets
import shutil
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path

from installer.errors import RestoreImageError
from installer.ipsw.ranges import subtract

log = logging.getLogger(__name__)

#: Block granularity: a killed fetch re-downloads at most this much per active range.
BLOCK = 1 << 20
STALE = ".stale"  # suffix of a cache directory moved aside for deletion

#: Deletes a cache moved aside, in a process of its own (its own session: Ctrl-C on the
#: terminal does not stop it): it outlives a ``pippin ipsw fetch`` that has nothing left to
#: do, and a crash of Pippin does not stop it.
RM: tuple[str, ...] = ("/bin/rm", "-rf", "--")

_reapers: dict[Path, threading.Thread | int] = {}  # aside directory -> thread or pid
_reapers_lock = threading.Lock()


def _alive(r: threading.Thread | int, block: bool = False) -> bool:
    if isinstance(r, threading.Thread):
        if block:
            r.join()
        return r.is_alive()
    try:
        pid, _status = os.waitpid(r, 0 if block else os.WNOHANG)
    except ChildProcessError:  # reaped already
        return False
    return pid == 0


def _spawn_rm(path: Path) -> int:
    null = [(os.POSIX_SPAWN_OPEN, fd, os.devnull, os.O_RDWR, 0) for fd in (0, 1, 2)]
    try:
        return os.posix_spawn(RM[0], [*RM, str(path)], {}, file_actions=null, setsid=True)
    except NotImplementedError:  # no POSIX_SPAWN_SETSID here: the same session, then
        return os.posix_spawn(RM[0], [*RM, str(path)], {}, file_actions=null)


def _reap(path: Path) -> None:
    """Delete ``path`` (a cache moved aside) in the background: ``rm -rf`` as a process of
    its own, or a thread of this process when that cannot be started."""
    with _reapers_lock:
        for p, r in list(_reapers.items()):  # collect finished ones (no zombies)
            if not _alive(r):
                del _reapers[p]
        if path in _reapers:
            return
        try:
            _reapers[path] = _spawn_rm(path)
        except (OSError, NotImplementedError) as exc:
            log.debug("cannot start %s (%s); deleting %s in a thread", RM[0], exc, path)
            t = threading.Thread(target=shutil.rmtree, args=(path,),
                                 kwargs={"ignore_errors": True}, name="ipsw-cache-release")
            t.start()
            _reapers[path] = t


def wait_released() -> None:
    """Wait until every cache this process moved aside (or found stale) is deleted."""
    with _reapers_lock:
        reapers = dict(_reapers)
    for path, r in reapers.items():
        _alive(r, block=True)
        with _reapers_lock:
            _reapers.pop(path, None)


def _sweep(root: Path) -> None:
    """Delete (in the background) caches a crashed run moved aside but did not delete."""
    with contextlib.suppress(OSError):
        for entry in os.scandir(root):
            if entry.name.startswith(".") and entry.name.endswith(STALE) and entry.is_dir(
                    follow_symlinks=False):
                _reap(Path(entry.path))


def cache_root(cache_dir: Path) -> Path:
    """Where range caches live under Pippin's cache directory (``~/.cache/pippin``): one
    place for ``pippin install`` and ``pippin ipsw fetch``."""
    return cache_dir / "ranges"


@dataclass(frozen=True, slots=True)
class _Block:
    start: int
    end: int
    crc: int
    seq: int  # newer blocks win where two overlap

    @property
    def name(self) -> str:
        return f"{self.start:012x}-{self.end:012x}-{self.crc:08x}"


def _parse(name: str) -> tuple[int, int, int] | None:
    parts = name.split("-")
    if len(parts) != 3:
        return None
    try:
        s, e, c = int(parts[0], 16), int(parts[1], 16), int(parts[2], 16)
    except ValueError:
        return None
    return (s, e, c) if name == f"{s:012x}-{e:012x}-{c:08x}" else None


class RangeCache:
    """Block files + an exclusive lock for one archive. Thread-safe within a process."""

    def __init__(self, root: Path, key: str, size: int) -> None:
        self.dir = Path(root) / hashlib.sha256(key.encode()).hexdigest()[:32]
        self.blocks_dir = self.dir / "blocks"
        self.size = size
        self._lock = threading.Lock()
        self._seq = itertools.count()
        self._blocks: list[_Block] = []  # sorted by start
        self._have: list[tuple[int, int]] = []
        self._lock_fd = -1
        _sweep(Path(root))
        try:
            self._lock_fd = self._acquire()
            self.blocks_dir.mkdir(exist_ok=True)
            self._load()
        except OSError as exc:
            self.close()
            raise RestoreImageError(f"cannot use the download cache {self.dir}: "
                                    f"{exc.strerror or exc}") from exc

    # --- the inter-process lock --------------------------------------------------------

    def _acquire(self) -> int:
        path = self.dir / "lock"
        while True:
            self.dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
                    log.warning("another pippin (pid %s) is fetching the same image into "
                                "%s; waiting for it to finish", holder or "?", self.dir)
                    fcntl.flock(fd, fcntl.LOCK_EX)
                # The holder may have removed the cache (and its lock file) meanwhile: then
                # this lock guards nothing; take the new file's.
                if os.path.exists(path) and os.stat(path).st_ino == os.fstat(fd).st_ino:
                    os.ftruncate(fd, 0)
                    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
                    return fd
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)

    # --- loading -----------------------------------------------------------------------

    def _load(self) -> None:
        dropped = 0
        for entry in os.scandir(self.blocks_dir):
            parsed = _parse(entry.name)
            ok = False
            if parsed is not None:
                s, e, crc = parsed
                if 0 <= s < e <= self.size and entry.stat().st_size == e - s:
                    with contextlib.suppress(OSError):
                        ok = zlib.crc32(Path(entry.path).read_bytes()) == crc
            if ok and parsed is not None:
                self._insert(_Block(*parsed, next(self._seq)))
                continue
            dropped += not entry.name.startswith(".")  # a temp file of a killed writer
            with contextlib.suppress(OSError):
                os.unlink(entry.path)
        if dropped:
            log.warning("download cache %s: %d damaged blocks dropped", self.dir, dropped)

    # --- bookkeeping (callers hold self._lock) -----------------------------------------

    def _insert(self, b: _Block) -> None:
        bisect.insort(self._blocks, b, key=lambda x: (x.start, x.seq))
        self._add(b.start, b.end)

    def _add(self, s: int, e: int) -> None:
        i = bisect.bisect_left(self._have, (s, e))
        if i > 0 and self._have[i - 1][1] >= s:
            i -= 1
        j = i
        while j < len(self._have) and self._have[j][0] <= e:
            s, e = min(s, self._have[j][0]), max(e, self._have[j][1])
            j += 1
        self._have[i:j] = [(s, e)]

    def _rebuild(self) -> None:
        self._have = []
        for b in self._blocks:
            self._add(b.start, b.end)

    def _covering(self, pos: int) -> _Block | None:
        """The newest block holding byte ``pos`` (blocks are at most BLOCK long)."""
        i = bisect.bisect_right(self._blocks, pos, key=lambda x: x.start)
        best = None
        for b in reversed(self._blocks[max(0, i - 64):i]):
            if b.start <= pos < b.end and (best is None or b.seq > best.seq):
                best = b
            if b.start + 2 * BLOCK < pos:
                break
        return best

    # --- the API -----------------------------------------------------------------------

    def intervals(self) -> list[tuple[int, int]]:
        """Merged, sorted intervals whose bytes are in the cache."""
        with self._lock:
            return list(self._have)

    def fetched_bytes(self) -> int:
        """Bytes the block files hold (what the cache takes on disk, before metadata)."""
        with self._lock:
            return sum(b.end - b.start for b in self._blocks)

    def _error(self, what: str, exc: OSError) -> RestoreImageError:
        return RestoreImageError(f"cannot {what} the download cache {self.dir}: "
                                 f"{exc.strerror or exc}",
                                 hint="free some space or pass another --cache directory")

    def put(self, start: int, data: bytes | bytearray | memoryview) -> None:
        """Store ``data`` as the bytes at ``[start, start + len(data))`` (at most BLOCK)."""
        n = len(data)
        if n == 0:
            return
        if not (0 <= start and start + n <= self.size and n <= BLOCK):
            raise ValueError(f"block {start}+{n} outside the archive or too large")
        b = _Block(start, start + n, zlib.crc32(data), next(self._seq))
        tmp = self.blocks_dir / f".{b.name}.{threading.get_ident()}.tmp"
        try:
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, self.blocks_dir / b.name)
        except OSError as exc:  # ENOSPC, EIO: a clear error, not a worker traceback
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise self._error("write", exc) from exc
        with self._lock:
            self._blocks = [x for x in self._blocks if x.name != b.name]
            self._insert(b)

    def read(self, offset: int, n: int) -> bytes:
        parts = []
        while n > 0:
            with self._lock:
                b = self._covering(offset)
            if b is None:
                raise RestoreImageError(f"download cache {self.dir} lacks byte {offset}")
            take = min(n, b.end - offset)
            try:
                with open(self.blocks_dir / b.name, "rb") as f:
                    data = os.pread(f.fileno(), take, offset - b.start)
            except OSError as exc:
                raise self._error("read", exc) from exc
            if len(data) != take:
                raise RestoreImageError(f"download cache {self.dir}: block {b.name} is "
                                        "shorter than its name says")
            parts.append(data)
            offset += take
            n -= take
        return b"".join(parts)

    def invalidate(self, start: int, end: int) -> None:
        """Forget the bytes ``[start, end)`` (they proved wrong); a block reaching beyond
        keeps its other bytes (rewritten as smaller blocks)."""
        with self._lock:
            hit = [b for b in self._blocks if b.start < end and b.end > start]
        for b in hit:
            for s, e in ((b.start, max(b.start, start)), (min(b.end, end), b.end)):
                if e > s:
                    self.put(s, self.read(s, e - s))
            self._drop(b)

    def _drop(self, b: _Block) -> None:
        with self._lock:
            self._blocks = [x for x in self._blocks if x is not b]
            if not any(x.name == b.name for x in self._blocks):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.blocks_dir / b.name)
            self._rebuild()

    def release(self, spans: list[tuple[int, int]]) -> bool:
        """Forget the blocks inside ``spans`` (sorted, merged; their members were delivered).
        True when nothing is left; otherwise the cache holds another fetch's ranges (an
        interrupted one, e.g. the stub set while this run read only the manifest). When
        nothing is left no file is touched here: :meth:`remove` moves the whole cache aside
        at once."""
        with self._lock:
            keep = [b for b in self._blocks if subtract(b.start, b.end, spans)]
            if not keep:
                return True
            names = {b.name for b in keep}
            gone = {b.name for b in self._blocks} - names
            self._blocks = keep
            self._rebuild()
        for name in gone:
            try:
                os.unlink(self.blocks_dir / name)
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise self._error("write", exc) from exc
        return not keep

    def close(self) -> None:
        with self._lock:
            if self._lock_fd >= 0:
                os.close(self._lock_fd)  # releases the flock
                self._lock_fd = -1

    def remove(self) -> None:
        """Delete the cache: move it aside in one rename (still holding the lock, so no one
        starts on it meanwhile; a process waiting for the lock sees that its lock file is
        gone and takes a new one) and delete it in the background (:func:`wait_released`)."""
        aside = self.dir.with_name(f".{self.dir.name}.{secrets.token_hex(4)}{STALE}")
        try:
            os.rename(self.dir, aside)
        except OSError:  # e.g. the root is read-only now: delete in place, as before
            shutil.rmtree(self.blocks_dir, ignore_errors=True)
            with contextlib.suppress(OSError):
                os.unlink(self.dir / "lock")
            self.close()
            with contextlib.suppress(OSError):
                self.dir.rmdir()
            return
        self.close()
        with self._lock:
            self._blocks, self._have = [], []
        _reap(aside)
