"""The backend seam: ``Backend`` (reads the disk model, executes ops) and ``Runner``.

Callers hold only these base classes (STYLE.md §1). ``Runner`` is argv in, rc/stdout/
stderr out; the macOS tests swap in PATH shims, never a mock object.
"""

from __future__ import annotations

import logging
import subprocess
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from installer.disk.model import DiskModel
from installer.disk.ops import Op
from installer.errors import BackendError, CommandError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Result:
    argv: tuple[str, ...]
    rc: int
    stdout: bytes
    stderr: bytes


class Runner(ABC):
    @abstractmethod
    def run(self, argv: Sequence[str], *, stdin: bytes | None = None) -> Result:
        """Run ``argv`` to completion; never raises for a non-zero exit."""

    def check(self, argv: Sequence[str], *, stdin: bytes | None = None,
              hint: str | None = None) -> bytes:
        """Run and return stdout; a non-zero exit becomes ``CommandError`` (stderr verbatim)."""
        r = self.run(argv, stdin=stdin)
        if r.rc != 0:
            err = r.stderr.decode(errors="replace") or r.stdout.decode(errors="replace")
            raise CommandError(list(argv), r.rc, err, hint=hint)
        return r.stdout


class SubprocessRunner(Runner):
    """The real runner. ``env`` is passed down by the CLI (only cli.py reads os.environ)."""

    def __init__(self, env: Mapping[str, str] | None = None, timeout: float = 3600) -> None:
        self.env = dict(env) if env is not None else None
        self.timeout = timeout

    def run(self, argv: Sequence[str], *, stdin: bytes | None = None) -> Result:
        log.debug("run: %s", list(argv))
        try:
            p = subprocess.run(
                list(argv), input=stdin, capture_output=True, env=self.env,
                timeout=self.timeout, check=False,
            )
        except FileNotFoundError as exc:
            raise BackendError(f"{argv[0]} not found", hint="install it or fix PATH") from exc
        except subprocess.TimeoutExpired as exc:
            raise BackendError(f"{argv[0]} did not finish in {self.timeout:.0f} s") from exc
        return Result(tuple(argv), p.returncode, p.stdout, p.stderr)


class Payloads(Protocol):
    """Where WriteImage/CopyTree data comes from (the OS package, unpacked or streamed)."""

    def image(self, name: str) -> BinaryIO: ...

    def tree(self, name: str) -> Path: ...


class DirPayloads:
    """Payloads from a local directory (an unpacked package)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _path(self, name: str) -> Path:
        p = (self.root / name).resolve()
        if not p.is_relative_to(self.root.resolve()):
            raise BackendError(f"package member {name!r} escapes the package directory")
        return p

    def image(self, name: str) -> BinaryIO:
        try:
            return self._path(name).open("rb")
        except OSError as exc:
            raise BackendError(f"cannot open package image {name}: {exc.strerror}") from exc

    def tree(self, name: str) -> Path:
        p = self._path(name)
        if not p.is_dir():
            raise BackendError(f"package directory {name}/ is missing")
        return p


class Backend(ABC):
    """Reads the disk model and executes plan operations, one at a time."""

    name: str

    @abstractmethod
    def read_model(self) -> DiskModel: ...

    @abstractmethod
    def execute(self, op: Op, payloads: Payloads | None) -> None:
        """Carry out ``op``; must be safe to repeat after an interruption (idempotent)."""

    @abstractmethod
    def undo(self, op: Op) -> None:
        """Reverse a completed (or partly done) ``op`` for rollback; no-op if nothing to undo."""

    @abstractmethod
    def refs(self) -> dict[str, str]:
        """Plan refs (``new:1``) → the backend's partition refs, for the journal."""

    @abstractmethod
    def restore_refs(self, refs: Mapping[str, str]) -> None: ...

    @abstractmethod
    def snapshot(self, owned: Sequence[tuple[int, int]]) -> dict[str, Any]:
        """JSON-able state of everything outside the ``owned`` byte ranges."""

    @abstractmethod
    def verify(self, owned: Sequence[tuple[int, int]], snapshot: dict[str, Any]) -> None:
        """Raise ``BackendError`` naming what changed outside the ``owned`` ranges."""

    def set_boot(self, stub_ref: str, admin_user: str, password: str) -> None:
        """Make the System volume of the stub container on ``stub_ref`` (a partition ref or
        a plan ref such as ``new:0``) the default boot volume (macOS: ``bless``)."""
        raise BackendError(f"the {self.name} backend cannot set the boot volume")
