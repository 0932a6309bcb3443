"""Exceptions of the installer package: one base, one subclass per area.

Each carries a one-line ``message`` (what failed, on what) and an optional ``hint`` (what to
do). Modules translate foreign exceptions (requests, remotezip, plistlib, subprocess…) into
these where the library is called, with ``raise … from exc``.
"""

from __future__ import annotations

from collections.abc import Sequence

from vendorfw.errors import DiagnosticError


class PippinError(DiagnosticError):
    """Base of all installer errors."""


class CatalogError(PippinError):
    """The OS catalog (installer_data.json) is unreadable, malformed or lacks an entry."""


class NetworkError(PippinError):
    """A download failed or a server answered wrongly (status, Content-Range, length)."""


class RestoreImageError(PippinError):
    """A restore image (IPSW/OTA) is malformed or lacks what the install needs."""


class PlanError(PippinError):
    """The requested install cannot be planned on this disk (with the numbers why)."""


class BackendError(PippinError):
    """A platform backend could not carry out an operation."""


class BootObjectError(PippinError):
    """A boot object (stage-1/stage-2 image, payloads, variables, signature) is invalid."""


class CommandError(BackendError):
    """An external command failed; keeps argv, exit code and the tail of stderr."""

    def __init__(
        self, argv: Sequence[str], rc: int, stderr: str, *, hint: str | None = None
    ) -> None:
        tail = stderr.strip().splitlines()[-1:] or ["(no output)"]
        super().__init__(f"{argv[0]} failed (exit {rc}): {tail[0]}", hint=hint)
        self.argv = list(argv)
        self.rc = rc
        self.stderr = stderr


class AnswersError(PippinError):
    """An answers file (TOML) or a command-line choice is malformed; names the key."""


class ReleaseError(PippinError):
    """A release bundle cannot be built (a missing platform wheel, a bad --base-url…)."""


class BundleError(PippinError):
    """An offline bundle (``pippin bundle``): missing, damaged, or lacking what is asked."""
