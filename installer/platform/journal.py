"""Execute a plan under an operation journal, so an interrupted run resumes or rolls back.

The journal (JSON, replaced atomically at every step) holds the operations, how many are
done, which one was started, the backend's ref map (``new:1`` → ``disk0s4``) and the
snapshot of everything the plan does not own. After the last operation, and after a
rollback, that snapshot is checked again: bytes outside the plan never change.

A ``pippin install`` also keeps its own context in the journal (``context``: the answers as
carried out, the OS entry, the restore image, and ``phase``: ``disk`` while the operations
run, ``files`` while the stub volumes and ESP files are written, ``done``), so that an
install killed at any point, partition operations or file steps, is found again
(:func:`pending_install`) and resumed or rolled back as a whole.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from installer.disk.ops import (
    CreatePartition,
    CreateStubContainer,
    Op,
    describe,
    op_from_dict,
    op_to_dict,
)
from installer.disk.plan import Plan
from installer.errors import BackendError
from installer.platform.base import Backend, Payloads
from vendorfw.atomic import write_bytes

log = logging.getLogger(__name__)

Progress = Callable[[int, int, str], None]


@dataclass
class Journal:
    path: Path
    action: str
    ops: list[Op]
    owned: list[tuple[int, int]]
    snapshot: dict[str, Any]
    done: int = 0
    started: int | None = None
    refs: dict[str, str] | None = None
    status: str = "running"  # running | done | rolled-back
    context: dict[str, Any] | None = None  # an install's own record (see the module doc)

    @property
    def digest(self) -> str:
        return plan_digest(self.ops, self.owned)

    def save(self) -> None:
        doc = {
            "version": 1, "action": self.action, "digest": self.digest,
            "ops": [op_to_dict(o) for o in self.ops], "owned": [list(r) for r in self.owned],
            "snapshot": self.snapshot, "done": self.done, "started": self.started,
            "refs": self.refs or {}, "status": self.status, "context": self.context or {},
        }
        write_bytes(self.path, json.dumps(doc, indent=1).encode() + b"\n")

    @classmethod
    def load(cls, path: Path) -> Journal:
        try:
            doc = json.loads(path.read_bytes())
            j = cls(
                path=path, action=str(doc["action"]),
                ops=[op_from_dict(d) for d in doc["ops"]],
                owned=[(int(s), int(e)) for s, e in doc["owned"]],
                snapshot=dict(doc["snapshot"]), done=int(doc["done"]),
                started=None if doc["started"] is None else int(doc["started"]),
                refs={str(k): str(v) for k, v in doc["refs"].items()},
                status=str(doc["status"]),
                context=dict(doc.get("context") or {}),
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise BackendError(f"journal {path} is unreadable ({exc})") from exc
        if doc.get("digest") != j.digest:
            raise BackendError(f"journal {path} does not match its own operations")
        return j


def plan_digest(ops: list[Op], owned: list[tuple[int, int]]) -> str:
    blob = json.dumps([[op_to_dict(o) for o in ops], owned], sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()


def _run_from(backend: Backend, j: Journal, payloads: Payloads | None,
              progress: Progress | None) -> None:
    backend.restore_refs(j.refs or {})
    total = len(j.ops)
    for i in range(j.done, total):
        op = j.ops[i]
        j.started = i
        j.save()
        if progress:
            progress(i + 1, total, describe(op))
        log.info("op %d/%d: %s", i + 1, total, describe(op))
        backend.execute(op, payloads)
        j.refs = backend.refs()
        j.done = i + 1
        j.started = None
        j.save()
    backend.verify(j.owned, j.snapshot)
    j.status = "done"
    j.save()


def run_plan(backend: Backend, plan: Plan, payloads: Payloads | None, journal: Path, *,
             progress: Progress | None = None, context: dict[str, Any] | None = None,
             resuming: bool = False) -> None:
    """Run ``plan`` from the start, or resume it when ``journal`` holds the same plan.

    ``context`` is stored with a new journal. ``resuming``: the journal must hold this plan
    already; when its operations all finished, nothing runs again.
    """
    ops, owned = list(plan.ops), list(plan.owned)
    if resuming:
        j = Journal.load(journal)
        if j.digest != plan_digest(ops, owned):
            raise BackendError(f"the journal {journal} holds a different plan")
        if j.status == "done":
            log.info("all %d operations were done before the interruption", len(j.ops))
            backend.restore_refs(j.refs or {})
            return
    if journal.exists():
        j = Journal.load(journal)
        if j.status == "running":
            if j.digest != plan_digest(ops, owned):
                raise BackendError(
                    f"an interrupted run of a different plan is recorded in {journal}",
                    hint="resume or roll it back first (pippin sim resume/rollback)",
                )
            log.info("resuming at operation %d of %d", j.done + 1, len(j.ops))
            _run_from(backend, j, payloads, progress)
            return
    j = Journal(journal, plan.action, ops, owned, backend.snapshot(owned), context=context)
    j.save()
    _run_from(backend, j, payloads, progress)


def resume(backend: Backend, journal: Path, payloads: Payloads | None, *,
           progress: Progress | None = None) -> None:
    j = Journal.load(journal)
    if j.status != "running":
        raise BackendError(f"nothing to resume: the run in {journal} is {j.status}")
    _run_from(backend, j, payloads, progress)


def rollback(backend: Backend, journal: Path) -> None:
    """Undo every started or finished operation, newest first, then verify."""
    j = Journal.load(journal)
    if j.status != "running":
        raise BackendError(f"nothing to roll back: the run in {journal} is {j.status}")
    backend.restore_refs(j.refs or {})
    last = j.started if j.started is not None else j.done - 1
    for i in range(last, -1, -1):
        log.info("undo %d: %s", i + 1, describe(j.ops[i]))
        backend.undo(j.ops[i])
        j.done = i
        j.started = None if i == 0 else i - 1
        j.save()
    backend.verify(j.owned, j.snapshot)
    j.status = "rolled-back"
    j.save()


def set_phase(journal: Path, phase: str) -> None:
    """Record how far an install's file steps got (``files``, ``done``)."""
    j = Journal.load(journal)
    j.context = {**(j.context or {}), "phase": phase}
    j.save()


@dataclass(frozen=True, slots=True)
class PendingRun:
    """A journaled run that did not finish: operations, or an install's file steps."""

    action: str
    done: int
    total: int
    phase: str  # disk | files (an install's), "" for a bare `pippin sim run`
    context: dict[str, Any]
    created: tuple[str, ...]  # GUIDs (upper case) of the partitions the run creates

    @property
    def is_install(self) -> bool:
        return bool(self.context.get("answers"))

    def describe(self) -> str:
        """``install of 'X' (7 of 8 disk operations done)``."""
        what = str(self.context.get("os") or "")
        head = f"{self.action} of {what!r}" if what else self.action
        if self.phase == "files":
            return f"{head} (disk operations done, stub volumes and ESP files not finished)"
        return f"{head} ({self.done} of {self.total} disk operations done)"


def pending_run(journal: Path) -> PendingRun | None:
    """The run recorded in ``journal`` when it did not finish (an unreadable journal is a
    BackendError naming it)."""
    if not journal.exists():
        return None
    j = Journal.load(journal)
    ctx = j.context or {}
    phase = str(ctx.get("phase", ""))
    if j.status == "running":
        phase = phase if phase or not ctx else "disk"
    elif not (j.status == "done" and phase == "files"):
        return None
    created = tuple(op.uuid.upper() for op in j.ops
                    if isinstance(op, CreatePartition | CreateStubContainer))
    return PendingRun(j.action, j.done, len(j.ops), phase, ctx, created)
