"""Sparse-file primitives: data extents (SEEK_DATA/SEEK_HOLE), hole punching, sparse copy.

A 512 GB simulated disk costs only what it holds; these keep every scan and copy
proportional to the allocated bytes, never to the disk size.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
from collections.abc import Iterator

CHUNK = 1 << 20
_FALLOC_FL_KEEP_SIZE = 0x01
_FALLOC_FL_PUNCH_HOLE = 0x02


def data_extents(fd: int, start: int, end: int) -> Iterator[tuple[int, int]]:
    """Allocated ``[s, e)`` ranges of ``fd`` clipped to ``[start, end)``."""
    pos = start
    while pos < end:
        try:
            s = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # no data after pos
                return
            raise
        if s >= end:
            return
        e = min(os.lseek(fd, s, os.SEEK_HOLE), end)
        yield s, e
        pos = e


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


def punch_hole(fd: int, offset: int, length: int) -> None:
    """Deallocate ``[offset, offset+length)`` (reads as zeros afterwards); keeps the size."""
    if length <= 0:
        return
    libc = _libc()
    libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    rc = libc.fallocate(fd, _FALLOC_FL_PUNCH_HOLE | _FALLOC_FL_KEEP_SIZE, offset, length)
    if rc != 0:
        err = ctypes.get_errno()
        if err not in (errno.EOPNOTSUPP, errno.ENOSYS):
            raise OSError(err, os.strerror(err))
        # Filesystem without hole punching: write zeros only where data is allocated.
        for s, e in list(data_extents(fd, offset, offset + length)):
            zeros = bytes(min(CHUNK, e - s))
            while s < e:
                n = os.pwrite(fd, zeros[: e - s], s)
                s += n


def write_nonzero(fd: int, buf: bytes, offset: int, block: int = 4096) -> int:
    """Write the non-zero ``block``-sized pieces of ``buf`` at ``offset`` (runs coalesced),
    leaving zero pieces as holes; returns bytes written. The target must read as zeros."""
    written = 0
    run_start = -1
    n = len(buf)
    for i in range(0, n + block, block):
        piece = buf[i:min(i + block, n)]
        zero = not piece or piece.count(0) == len(piece)
        if not zero and run_start < 0:
            run_start = i
        elif zero and run_start >= 0:
            os.pwrite(fd, buf[run_start:min(i, n)], offset + run_start)
            written += min(i, n) - run_start
            run_start = -1
    return written


def copy_sparse(src: str | os.PathLike[str], dst_fd: int, dst_offset: int) -> int:
    """Copy the data extents of file ``src`` to ``dst_fd`` at ``dst_offset``; returns bytes
    written. The destination range must already read as zeros (punch it first)."""
    written = 0
    fd = os.open(src, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        for s, e in data_extents(fd, 0, size):
            pos = s
            while pos < e:
                buf = os.pread(fd, min(CHUNK, e - pos), pos)
                if not buf:
                    break
                written += write_nonzero(dst_fd, buf, dst_offset + pos)
                pos += len(buf)
    finally:
        os.close(fd)
    return written


def allocated_bytes(path: str | os.PathLike[str]) -> int:
    return os.stat(path).st_blocks * 512
