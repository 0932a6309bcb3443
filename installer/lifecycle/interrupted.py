"""``pippin resume`` / ``pippin rollback``: finish or undo the run a kill interrupted.

An install's journal carries its answers and how far its file steps got, so resume finishes
the partition operations and then writes every file step again (stub volumes, ESP files,
stage 1), downloading the OS package and restore-image members again when they are not
cached (:func:`resume_install`). Any other journaled run (an uninstall)
needs no payloads and is finished operation by operation. Rollback undoes the operations
newest first; the file steps lived inside the partitions it removes.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from installer.answers import parse_answers
from installer.disk.ops import describe
from installer.errors import PippinError
from installer.install import (
    InstallDeps,
    InstallRequest,
    InstallResult,
    ProgressFn,
    _install,
    _LogCapture,
    _rollback,
    _Stages,
    make_target,
)
from installer.platform.journal import Journal, PendingRun, pending_run, resume
from installer.targets.base import InstallTarget

log = logging.getLogger(__name__)


def resume_install(target_ref: str, deps: InstallDeps, progress: ProgressFn | None = None,
                   admin_password: str | None = None) -> InstallResult:
    """Finish the interrupted install on ``target_ref``: the rest of its operations, then
    every file step again (stub volumes, ESP files, stage 1, boot policy), downloading what
    it needs."""
    target = deps.target or make_target(target_ref, deps.runner, deps.mac_root)
    pending = pending_run(target.journal)
    if pending is None or not pending.is_install:
        raise PippinError(f"no interrupted install on {target_ref}",
                          hint="`pippin status` shows what is installed")
    answers = parse_answers(str(pending.context["answers"]).encode(), str(target.journal))
    log.info("resuming the %s", pending.describe())
    capture = _LogCapture()
    logging.getLogger("installer").addHandler(capture)
    try:
        return _install(InstallRequest(answers, admin_password=admin_password),
                        replace(deps, target=target), _Stages(progress, deps.clock), capture,
                        resuming=pending)
    finally:
        logging.getLogger("installer").removeHandler(capture)


def rollback_install(target: InstallTarget) -> PendingRun:
    """Undo the interrupted run on ``target`` (its partitions, and so every file written
    into them); bytes outside its plan are verified unchanged. Returns what was undone."""
    pending = pending_run(target.journal)
    if pending is None:
        raise PippinError("no interrupted install to roll back",
                          hint="`pippin uninstall` removes a finished install")
    _rollback(target)
    return pending


def find(target: InstallTarget) -> PendingRun | None:
    return pending_run(target.journal)


def remaining(target: InstallTarget) -> list[str]:
    """What a resume would still do, in order (operations, then the file steps)."""
    j = Journal.load(target.journal)
    out = [describe(op) for op in j.ops[j.done:]] if j.status == "running" else []
    if (j.context or {}).get("answers"):
        out += ["fill the stub volumes (System, Preboot, Recovery) and the stage-1 object",
                "write the ESP files (vendorfw/, asahi/, m1n1/boot.bin)"]
    return out


def undone(target: InstallTarget) -> list[str]:
    """What a rollback would undo, newest first."""
    j = Journal.load(target.journal)
    last = j.started if j.started is not None else j.done - 1
    if j.status == "done":
        last = len(j.ops) - 1
    return [describe(j.ops[i]) for i in range(last, -1, -1)]


def resume_run(target: InstallTarget, target_ref: str, deps: InstallDeps,
               progress: ProgressFn | None = None,
               admin_password: str | None = None) -> InstallResult | None:
    """Finish the interrupted run; an install's result, or None for another action.
    ``admin_password``: for bless on a Mac (the resumed install sets the boot policy)."""
    pending = find(target)
    if pending is None:
        raise PippinError(f"nothing to resume on {target_ref}",
                          hint="`pippin status` shows what is installed")
    if pending.is_install:
        return resume_install(target_ref, deps, progress, admin_password)
    resume(target.backend, target.journal, None)
    return None


def rollback_run(target: InstallTarget) -> PendingRun:
    return rollback_install(target)
