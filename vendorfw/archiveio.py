"""The libarchive seam: entry fields libarchive-c does not expose, and error translation.

libarchive writes and reads the cpio/tar/tar.gz bytes; this module only adds the inode and
link-count setters (the newc layout of §6 needs explicit inode numbers and nlink in every
link entry) and turns libarchive's exceptions into :class:`ArchiveError`.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
from collections.abc import Iterator
from typing import Any, BinaryIO

import libarchive
import libarchive.exception
from libarchive import ffi

from vendorfw.errors import ArchiveError

_lib = ffi.libarchive


def _bind(name: str, argtypes: list[Any], restype: Any) -> Any:
    fn = getattr(_lib, name)
    fn.argtypes = argtypes
    fn.restype = restype
    return fn


_set_ino = _bind("archive_entry_set_ino64", [ctypes.c_void_p, ctypes.c_int64], None)
_set_nlink = _bind("archive_entry_set_nlink", [ctypes.c_void_p, ctypes.c_uint], None)
_set_dev = _bind("archive_entry_set_dev", [ctypes.c_void_p, ctypes.c_uint64], None)
_ino = _bind("archive_entry_ino64", [ctypes.c_void_p], ctypes.c_int64)
_nlink = _bind("archive_entry_nlink", [ctypes.c_void_p], ctypes.c_uint)
_copy_hardlink = _bind("archive_entry_copy_hardlink", [ctypes.c_void_p, ctypes.c_char_p], None)
_copy_symlink = _bind("archive_entry_copy_symlink", [ctypes.c_void_p, ctypes.c_char_p], None)
_read_data_into_fd = _bind("archive_read_data_into_fd", [ctypes.c_void_p, ctypes.c_int],
                           ctypes.c_int)
_read_data_into_fd.errcheck = ffi.check_int  # libarchive's ArchiveError, see translated()

FILE = int(libarchive.entry.FileType.REGULAR_FILE)
DIR = int(libarchive.entry.FileType.DIRECTORY)
SYMLINK = int(libarchive.entry.FileType.SYMBOLINK_LINK)


def new_entry(
    path: str,
    filetype: int,
    perm: int,
    size: int = 0,
    *,
    ino: int = 0,
    nlink: int = 1,
    hardlink: str | None = None,
    symlink: str | None = None,
) -> libarchive.entry.ArchiveEntry:
    """An entry with uid, gid, mtime and dev 0: the same input gives the same bytes."""
    e = libarchive.entry.ArchiveEntry(
        pathname=path, filetype=filetype, perm=perm, size=size, mtime=0, uid=0, gid=0
    )
    _set_ino(e._entry_p, ino)
    _set_nlink(e._entry_p, nlink)
    _set_dev(e._entry_p, 0)
    if hardlink is not None:
        _copy_hardlink(e._entry_p, hardlink.encode())
    if symlink is not None:
        _copy_symlink(e._entry_p, symlink.encode())
    return e


def _text(value: str | bytes | None) -> str:
    # libarchive-c hands back bytes when a name is not UTF-8; keep such bytes as surrogates
    # (like os.listdir does) so callers always get str and can reject or reproduce them
    if value is None:
        return ""
    return os.fsdecode(value) if isinstance(value, bytes) else value


def entry_path(e: libarchive.entry.ArchiveEntry) -> str:
    """The member name as str (undecodable bytes as surrogates)."""
    return _text(e.pathname)


def entry_link(e: libarchive.entry.ArchiveEntry) -> str:
    """The hard-link or symlink target as str (undecodable bytes as surrogates)."""
    return _text(e.linkpath)


def entry_ino(e: libarchive.entry.ArchiveEntry) -> int:
    return int(_ino(e._entry_p))


def entry_nlink(e: libarchive.entry.ArchiveEntry) -> int:
    return int(_nlink(e._entry_p))


def read_data_into_fd(archive: Any, fd: int) -> None:
    """Copy the current entry's data to ``fd`` at its file position, in C: no Python buffer
    per block (libarchive hands out its own decompression buffer)."""
    _read_data_into_fd(archive._pointer, fd)


def write_entry(archive: Any, e: libarchive.entry.ArchiveEntry) -> None:
    """Write a header; data follows through :func:`write_data`."""
    ffi.write_header(archive._pointer, e._entry_p)


def write_data(archive: Any, chunk: bytes | memoryview) -> None:
    ffi.write_data(archive._pointer, bytes(chunk) if isinstance(chunk, memoryview) else chunk,
                   len(chunk))


def finish_entry(archive: Any) -> None:
    ffi.write_finish_entry(archive._pointer)


@contextlib.contextmanager
def translated(what: str) -> Iterator[None]:
    """Turn libarchive failures on ``what`` into one-line :class:`ArchiveError`."""
    try:
        yield
    except libarchive.exception.ArchiveError as exc:
        msg = exc.msg.decode(errors="replace") if isinstance(exc.msg, bytes) else str(exc.msg)
        raise ArchiveError(f"{what}: {msg or 'libarchive error'}") from exc


class Sink:
    """Write callback for ``libarchive.custom_writer`` that never raises into C.

    An exception inside a ctypes callback would only be printed; instead the OSError is
    kept, libarchive is told the write failed (-1), and :meth:`check` re-raises ours.
    """

    def __init__(self, stream: BinaryIO, what: str) -> None:
        self.stream = stream
        self.what = what
        self.error: OSError | None = None

    def __call__(self, data: Any) -> int:
        if self.error is not None:
            return -1
        try:
            self.stream.write(data)
        except OSError as exc:
            self.error = exc
            return -1
        return len(data)

    def check(self) -> None:
        if self.error is not None:
            raise ArchiveError(f"cannot write {self.what}: {self.error.strerror or self.error}")
