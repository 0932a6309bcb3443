"""Exceptions of the vendorfw package, and the diagnostic base both Pippin packages share.

Every user-facing failure is one of these: a one-line ``message`` saying what failed and on
what, and an optional ``hint`` saying what to do. The CLI boundary prints them; nothing
below it prints or exits.
"""

from __future__ import annotations


class DiagnosticError(Exception):
    """A failure a user can act on: one-line message plus optional hint."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class VendorFwError(DiagnosticError):
    """Base of all vendorfw errors."""


class CollectError(VendorFwError):
    """A firmware source file is malformed or names an unknown dimension."""


class ArchiveError(VendorFwError):
    """An archive (cpio, tar, tar.gz) is unreadable, truncated or hostile."""


class ManifestError(VendorFwError):
    """A firmware package does not match its manifest."""


class EspError(VendorFwError):
    """The EFI system partition cannot be found, read or updated."""
