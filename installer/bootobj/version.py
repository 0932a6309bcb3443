"""Versions of boot objects, and the variables of an existing install (formats.md §2, §4).

Markers embedded in loader images (exact bytes; the Zig loaders in bootchain/ embed the
Pippin ones, m1n1 embeds its own):

- m1n1:   ``##m1n1_ver##<tag>\\0``            e.g. ``##m1n1_ver##v1.4.11\\0``
- Pippin: ``##pippin_ver##<semver>\\0``        e.g. ``##pippin_ver##0.1.0\\0``
          ``##pippin_stage##<kind>\\0``        kind = ``stage1`` or ``stage2``

The value runs to the first NUL and is at most 64 printable ASCII bytes. Pippin's markers sit
in the header area (before the entry at 0x800), so a payload holding another Pippin image
cannot be mistaken for the loader; the first m1n1 marker in the file is the image's own.
A Pippin marker whose value carries the kind instead (``stage2-0.1.0``, ``stage2:0.1.0``,
``stage2 0.1.0``) is read the same way.

Where the image ends (and appended variables or payloads start): Pippin images record their
file size in the arm64 Image header's ``image_size`` field (LE u64 at 0x10; bss and stack are
file-backed). m1n1 images end with the 8 bytes ``STACKBOT``; the variables of an m1n1 install
are the text after it up to the first NUL.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from enum import StrEnum

from installer.bootobj import vars as bvars
from installer.errors import BootObjectError

M1N1_MARKER = b"##m1n1_ver##"
PIPPIN_MARKER = b"##pippin_ver##"
PIPPIN_STAGE_MARKER = b"##pippin_stage##"
IMAGE_END = b"STACKBOT"
MAX_MARKER_VALUE = 64
PIPPIN_MARKER_AREA = 0x800

_SEMVER_RE = re.compile(
    r"v?(?P<major>0|[1-9]\d*)\.(?P<minor>0|[1-9]\d*)(?:\.(?P<patch>0|[1-9]\d*))?"
    r"(?:-(?P<pre>[0-9A-Za-z.-]+))?(?:\+(?P<build>[0-9A-Za-z.-]+))?"
)
# `git describe` output (m1n1 tags): v1.4.11-12-gabcdef0[-dirty] is 12 commits *after* v1.4.11.
_DESCRIBE_RE = re.compile(r"(?P<n>\d+)-g[0-9a-f]{4,40}(?:-dirty)?")
_KIND_IN_VALUE_RE = re.compile(r"(?P<kind>stage[12])[-: ](?P<ver>.+)")


class LoaderKind(StrEnum):
    PIPPIN = "pippin"
    M1N1 = "m1n1"


class Stage(StrEnum):
    STAGE1 = "stage1"
    STAGE2 = "stage2"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True, order=False)
class Version:
    """A semantic version (semver 2.0 precedence) plus the ``git describe`` commit count."""

    major: int
    minor: int
    patch: int
    pre: tuple[str, ...] = ()
    post: int = 0
    text: str = ""

    def key(self) -> tuple[int, int, int, tuple[tuple[int, int, str], ...], int]:
        # A release sorts after its pre-releases: mark it with an identifier above any.
        pre = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in self.pre)
        return (self.major, self.minor, self.patch, pre or ((2, 0, ""),), self.post)

    def __lt__(self, other: Version) -> bool:
        return self.key() < other.key()

    def __le__(self, other: Version) -> bool:
        return self.key() <= other.key()

    def __gt__(self, other: Version) -> bool:
        return self.key() > other.key()

    def __ge__(self, other: Version) -> bool:
        return self.key() >= other.key()

    def same_precedence(self, other: Version) -> bool:
        return self.key() == other.key()

    def __str__(self) -> str:
        return self.text or f"{self.major}.{self.minor}.{self.patch}"


def parse_version(text: str) -> Version:
    """``1.2.3``, ``v1.2.3-rc.1+build``, ``v1.4.11-12-gabcdef0`` → :class:`Version`."""
    m = _SEMVER_RE.fullmatch(text.strip())
    if m is None:
        raise BootObjectError(f"not a semantic version: {text!r}")
    pre_text = m["pre"] or ""
    post = 0
    describe = _DESCRIBE_RE.search(pre_text)
    if describe is not None and describe.end() == len(pre_text):
        post = int(describe["n"])
        pre_text = pre_text[: describe.start()].rstrip("-")
    pre = tuple(pre_text.split(".")) if pre_text else ()
    if any(p == "" or (p.isdigit() and len(p) > 1 and p[0] == "0") for p in pre):
        raise BootObjectError(f"bad pre-release in version {text!r}")
    return Version(
        int(m["major"]), int(m["minor"]), int(m["patch"] or 0), pre, post, text.strip()
    )


@dataclass(frozen=True, slots=True)
class ImageVersion:
    """What a loader image says about itself."""

    kind: LoaderKind
    version: Version
    stage: Stage
    offset: int


def is_pippin(data: bytes) -> bool:
    """Whether ``data`` starts with a Pippin loader image (marker in the header area)."""
    return data.find(PIPPIN_MARKER, 0, PIPPIN_MARKER_AREA) >= 0


def _marker_value(data: bytes, marker: bytes, limit: int | None = None) -> tuple[str, int] | None:
    at = data.find(marker, 0, len(data) if limit is None else limit)
    if at < 0:
        return None
    start = at + len(marker)
    end = data.find(b"\0", start, start + MAX_MARKER_VALUE + 1)
    if end < 0:
        raise BootObjectError(f"version marker at offset {at} has no NUL within 64 bytes")
    raw = data[start:end]
    if not raw or not all(0x20 < b < 0x7F for b in raw):
        raise BootObjectError(f"version marker at offset {at} holds no printable version")
    return raw.decode("ascii"), at


def read_version(data: bytes) -> ImageVersion | None:
    """The loader version embedded in ``data`` (Pippin's preferred over m1n1's), or None."""
    found = _marker_value(data, PIPPIN_MARKER, PIPPIN_MARKER_AREA)
    if found is not None:
        value, at = found
        stage = Stage.UNKNOWN
        m = _KIND_IN_VALUE_RE.fullmatch(value)
        if m is not None:
            stage, value = Stage(m["kind"]), m["ver"]
        kind_value = _marker_value(data, PIPPIN_STAGE_MARKER, PIPPIN_MARKER_AREA)
        if kind_value is not None:
            try:
                stage = Stage(kind_value[0])
            except ValueError as exc:
                raise BootObjectError(f"unknown Pippin stage kind {kind_value[0]!r}") from exc
        return ImageVersion(LoaderKind.PIPPIN, parse_version(value), stage, at)
    found = _marker_value(data, M1N1_MARKER)
    if found is not None:
        value, at = found
        # m1n1 builds one binary for both roles; which one it is depends on where it sits.
        return ImageVersion(LoaderKind.M1N1, parse_version(value), Stage.UNKNOWN, at)
    return None


def pippin_image_end(data: bytes) -> int:
    """End of a Pippin loader image: its ``image_size`` header field, checked."""
    if len(data) < 0x40:
        raise BootObjectError("image is too short for an arm64 Image header")
    (size,) = struct.unpack_from("<Q", data, 0x10)
    if not 0x800 < size <= len(data):
        raise BootObjectError(
            f"image_size {size} in the header does not fit the {len(data)}-byte file"
        )
    return int(size)


def read_installed_vars(data: bytes) -> tuple[bvars.Variable, ...]:
    """The variables of an installed stage-1 object (the text after the image up to a NUL).

    Pippin images: from ``image_size`` on. m1n1 images: after ``STACKBOT``. Only the
    structure is checked (values written by another tool are reported as they are).

    The same 8 bytes may occur inside the image's code, so the ``STACKBOT`` taken is the
    first whose text parses and is followed only by NULs to the end of the data; failing
    that (an object with trailing data), the first whose text parses.
    """
    if is_pippin(data):
        end = pippin_image_end(data)
        nul = data.find(b"\0", end)
        text = data[end:] if nul < 0 else data[end:nul]
        if nul >= 0 and data[nul : nul + 4] != bvars.TERMINATOR[: len(data) - nul]:
            raise BootObjectError("installed variables are not ended by four NUL bytes")
        return bvars.parse_text(text, check_values=False)
    fallback: tuple[bvars.Variable, ...] | None = None
    last_error: BootObjectError | None = None
    at = data.find(IMAGE_END)
    if at < 0:
        raise BootObjectError("no STACKBOT end marker: not an m1n1-style loader image")
    while at >= 0:
        start = at + len(IMAGE_END)
        end = data.find(b"\0", start)
        end = len(data) if end < 0 else end
        try:
            parsed = bvars.parse_text(data[start:end], check_values=False)
        except BootObjectError as exc:
            last_error = exc
        else:
            if data.count(0, end) == len(data) - end:
                return parsed
            fallback = parsed if fallback is None else fallback
        at = data.find(IMAGE_END, start)
    if fallback is not None:
        return fallback
    assert last_error is not None
    raise BootObjectError(f"installed variables are malformed: {last_error.message}")
