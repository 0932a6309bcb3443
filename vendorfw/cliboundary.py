"""The one place where errors become exit codes and log handlers are set up.

Both console scripts (``pippin`` and ``vendorfw``) call :func:`run`. A known error is one
line on stderr (plus its hint) and exit 1; anything else is "internal error, details in LOG"
and exit 70, with the traceback only in the log file.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

import click

from vendorfw.errors import DiagnosticError

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 70
EXIT_INTERRUPTED = 130


def default_log_path(env: dict[str, str] | os._Environ[str], name: str) -> Path:
    """``$XDG_CACHE_HOME/pippin/<name>.log`` (``~/.cache`` when unset)."""
    base = env.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "pippin" / f"{name}.log"


class _OneLineFormatter(logging.Formatter):
    """stderr gets the message only: tracebacks belong in the log file. File names that
    are not UTF-8 (surrogates) are shown escaped, whatever the stream's error handler."""

    def format(self, record: logging.LogRecord) -> str:
        record.message = record.getMessage()
        text = self.formatMessage(record)
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _not_file_only(record: logging.LogRecord) -> bool:
    # urllib3 logs each connection retry as a WARNING; the one-line error that follows says
    # what finally failed, so those records go to the log file only.
    if record.name.startswith("urllib3") and record.levelno < logging.ERROR:
        return False
    return not getattr(record, "file_only", False)


def setup_logging(log_path: Path | None, *, verbose: bool = False) -> Path | None:
    """DEBUG to the log file (when it can be opened), WARNING (or INFO) to stderr."""
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
        h.close()
    root.setLevel(logging.DEBUG)
    err = logging.StreamHandler(sys.stderr)
    err.setLevel(logging.INFO if verbose else logging.WARNING)
    err.setFormatter(_OneLineFormatter("%(levelname)s: %(message)s"))
    err.addFilter(_not_file_only)
    root.addHandler(err)
    if log_path is None:
        return None
    try:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        # errors=: a file name that is not UTF-8 must not break logging
        fh = logging.FileHandler(log_path, encoding="utf-8", errors="backslashreplace")
    except OSError:
        return None
    fh.setLevel(logging.DEBUG)
    fh.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    root.addHandler(fh)
    return log_path


def run(prog: str, body: Callable[[], int | None], log_path: Path | None) -> int:
    """Run ``body`` and turn its outcome into an exit code."""
    log = logging.getLogger(prog)
    try:
        rc = body()
        return rc or 0
    except DiagnosticError as exc:
        log.debug("%s failed", prog, exc_info=True)
        print(f"{prog}: error: {exc.message}", file=sys.stderr)
        if exc.hint:
            print(f"{prog}: hint: {exc.hint}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception:  # noqa: BLE001 - the one boundary that catches everything
        log.exception("internal error", extra={"file_only": True})  # stderr: one line below
        where = f", details in {log_path}" if log_path else ""
        print(f"{prog}: internal error{where}", file=sys.stderr)
        return EXIT_INTERNAL


def run_click(
    prog: str, command: click.Command, argv: list[str] | None, log_path: Path | None
) -> int:
    """Run a click command under :func:`run`, keeping click's own usage errors and --help."""

    def body() -> int:
        try:
            rv = command.main(args=argv, prog_name=prog, standalone_mode=False)
        except click.exceptions.Exit as exc:
            return int(exc.exit_code)
        except click.ClickException as exc:
            exc.show()
            return int(exc.exit_code)
        except click.exceptions.Abort:
            print(f"{prog}: aborted", file=sys.stderr)
            return EXIT_ERROR
        return int(rv) if isinstance(rv, int) else 0

    return run(prog, body, log_path)
