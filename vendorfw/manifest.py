"""The firmware manifest (formats.md §6): text form, parsing, and name rules.

One line per file, in the order files were added::

    FILE <name> SHA256 <hex>
    LINK <name> <first name with the same content>

Names are relative to ``vendorfw/``. The manifest is pure data: no I/O here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from vendorfw.errors import ManifestError

MANIFEST_ENTRY = ".vendorfw.manifest"
_HEX64 = re.compile(r"[0-9a-f]{64}")
# A manifest line is space-separated, and the name also becomes a path on FAT, ext4 and in
# cpio/tar headers: refuse anything that could split a line or leave the tree.
_BAD_CHARS = re.compile(r"[\x00-\x20\x7f\\]")


def byte_key(name: str) -> bytes:
    """Sort key for byte order; a name read from a hostile archive may hold surrogates."""
    return name.encode("utf-8", "surrogateescape")


def _is_utf8(name: str) -> bool:
    """False for a file name whose undecodable bytes Python kept as surrogates."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_name(name: str) -> str | None:
    """Why ``name`` is not a safe relative firmware path, or None when it is."""
    if not name:
        return "empty name"
    if name.startswith("/"):
        return "absolute path"
    if not _is_utf8(name):
        return "name is not valid UTF-8"
    if _BAD_CHARS.search(name):
        return "whitespace, control character or backslash in name"
    parts = name.split("/")
    if any(p in ("", ".", "..") for p in parts):
        return "empty, '.' or '..' path component"
    if name == MANIFEST_ENTRY:
        return f"{MANIFEST_ENTRY} is reserved for the manifest"
    return None


@dataclass(frozen=True, slots=True)
class ManifestEntry:
    """One file: its name, content hash, and the first file it is a hard link to (if any)."""

    name: str
    sha256: str
    link_to: str | None = None

    def line(self) -> str:
        if self.link_to is None:
            return f"FILE {self.name} SHA256 {self.sha256}\n"
        return f"LINK {self.name} {self.link_to}\n"


@dataclass(frozen=True, slots=True)
class Manifest:
    """The ordered manifest of a firmware package."""

    entries: tuple[ManifestEntry, ...]

    def text(self) -> str:
        return "".join(e.line() for e in self.entries)

    def hashes(self) -> dict[str, str]:
        """Name → SHA-256 of the content (links resolved to their target's hash)."""
        return {e.name: e.sha256 for e in self.entries}

    @classmethod
    def build(cls, named_hashes: Iterable[tuple[str, str]]) -> Manifest:
        """Manifest for files in order: the first file of each content is a FILE."""
        first: dict[str, str] = {}
        out: list[ManifestEntry] = []
        seen: set[str] = set()
        for name, digest in named_hashes:
            _admit(name, seen, "firmware name")
            target = first.setdefault(digest, name)
            out.append(ManifestEntry(name, digest, None if target == name else target))
        _check_tree(seen)
        return cls(tuple(out))

    @classmethod
    def parse(cls, text: str, where: str) -> Manifest:
        """Parse manifest text; errors name ``where`` and the line number."""
        entries: list[ManifestEntry] = []
        files: dict[str, str] = {}
        seen: set[str] = set()
        for no, line in enumerate(text.splitlines(), 1):
            parts = line.split(" ")
            if len(parts) == 4 and parts[0] == "FILE" and parts[2] == "SHA256":
                name, digest = parts[1], parts[3]
                if not _HEX64.fullmatch(digest):
                    raise ManifestError(f"{where}:{no}: bad SHA-256 {digest!r}")
                entry = ManifestEntry(name, digest)
                files[name] = digest
            elif len(parts) == 3 and parts[0] == "LINK":
                name, target = parts[1], parts[2]
                if target not in files:
                    raise ManifestError(f"{where}:{no}: LINK {name} to {target!r}, no FILE before")
                entry = ManifestEntry(name, files[target], target)
            else:
                raise ManifestError(f"{where}:{no}: not a FILE or LINK line: {line[:80]!r}")
            _admit(name, seen, f"{where}:{no}: name")
            entries.append(entry)
        if text and not text.endswith("\n"):
            raise ManifestError(f"{where}: truncated (no newline after the last line)")
        return cls(tuple(entries))


def _admit(name: str, seen: set[str], what: str) -> None:
    """Add ``name`` to ``seen``; a bad or repeated name is a :class:`ManifestError`."""
    why = check_name(name)
    if why is not None:
        raise ManifestError(f"bad {what} {name!r}: {why}")
    if name in seen:
        raise ManifestError(f"{what} {name!r} appears twice")
    seen.add(name)


def _check_tree(names: set[str]) -> None:
    """A name must not also be a directory of another name (``a`` and ``a/b``)."""
    for name in names:
        parts = name.split("/")
        for i in range(1, len(parts)):
            parent = "/".join(parts[:i])
            if parent in names:
                raise ManifestError(f"firmware name {parent!r} is also a directory of {name!r}")


@dataclass(frozen=True, slots=True)
class Diff:
    """How the file set changes from an old package to a new one (by name and content)."""

    added: tuple[str, ...]
    removed: tuple[str, ...]
    changed: tuple[str, ...]
    unchanged: int

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed)

    def lines(self) -> list[str]:
        """``+ name`` / ``- name`` / ``~ name`` lines, sorted by name (byte order)."""
        marked = [("+", n) for n in self.added] + [("-", n) for n in self.removed]
        marked += [("~", n) for n in self.changed]
        return [f"{m} {n}" for m, n in sorted(marked, key=lambda x: byte_key(x[1]))]

    def as_json(self) -> dict[str, object]:
        return {
            "added": list(self.added),
            "removed": list(self.removed),
            "changed": list(self.changed),
            "unchanged": self.unchanged,
        }


def diff_hashes(old: dict[str, str], new: dict[str, str]) -> Diff:
    """Compare name → SHA-256 maps."""

    key = byte_key
    return Diff(
        tuple(sorted((n for n in new if n not in old), key=key)),
        tuple(sorted((n for n in old if n not in new), key=key)),
        tuple(sorted((n for n in new if n in old and old[n] != new[n]), key=key)),
        sum(1 for n in new if old.get(n) == new[n]),
    )
