"""Boot-object variables (formats.md §2): ``name=value\\n`` lines ended by four NUL bytes.

The same text is appended to the stage-1 image (its configuration) and to ``boot.bin`` (stage-2
variables); stage 1 forwards its ``chosen.*`` lines to stage 2 in the same form. Parsers on the
far side are simple C/Zig loops, so the rules are enforced on both write and read:

- name 1..64 bytes of FDT property-name characters, not starting with ``#``;
- value ≤ 1024 bytes of UTF-8 without NUL, CR or LF;
- at most 16 ``chosen.*`` variables; no blank, comment or ``=``-less lines;
- PARTUUIDs (``chainload=``, ``chosen.asahi,efi-system-partition=``) are lowercase.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from installer.errors import BootObjectError

log = logging.getLogger(__name__)

MAX_NAME = 64
MAX_VALUE = 1024
MAX_CHOSEN = 16
TERMINATOR = b"\0\0\0\0"
CHOSEN_PREFIX = "chosen."
ESP_VAR = "chosen.asahi,efi-system-partition"
STAGE1_VERSION_VAR = "chosen.asahi,m1n1-stage1-version"
STAGE2_PATH = "m1n1/boot.bin"
KNOWN_NAMES = frozenset({"chainload", "chainload.key", "display", "mitigations", "tso"})

# FDT property names allow these characters (devicetree spec 2.2.4); '#' may not lead,
# because a line starting with '#' reads as a comment to some parsers.
_NAME_RE = re.compile(r"[0-9A-Za-z,._+?#-]+")
_PARTUUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_KEY_RE = re.compile(r"ed25519:[0-9a-f]{64}")
_DISPLAY_RE = re.compile(r"(auto|[1-9][0-9]*x[1-9][0-9]*(@[1-9][0-9]*)?)(,retina)?")
_MITIGATION_RE = re.compile(r"[0-9A-Za-z_.+-]+(,[0-9A-Za-z_.+-]+)*")


@dataclass(frozen=True, slots=True)
class Variable:
    """One ``name=value`` line."""

    name: str
    value: str

    def line(self) -> bytes:
        return f"{self.name}={self.value}\n".encode()


def normalize_partuuid(text: str) -> str:
    """``8-4-4-4-12`` hex GUID text in any case → the lowercase form §2 requires."""
    low = text.strip().lower()
    if not _PARTUUID_RE.fullmatch(low):
        raise BootObjectError(
            f"not a PARTUUID: {text!r}", hint="expected 8-4-4-4-12 hex digits, e.g. from sgdisk -i"
        )
    return low


def _check_name(name: str) -> None:
    raw = name.encode("utf-8", "surrogateescape")
    if not raw:
        raise BootObjectError("variable with an empty name")
    if len(raw) > MAX_NAME:
        raise BootObjectError(f"variable name longer than {MAX_NAME} bytes: {name[:70]!r}")
    if not _NAME_RE.fullmatch(name) or name.startswith("#"):
        raise BootObjectError(
            f"bad variable name {name!r}",
            hint="names use letters, digits and , . _ + ? # - (not leading #)",
        )


def _check_value(var: Variable, known: bool = True) -> None:
    raw = var.value.encode("utf-8", "surrogateescape")
    if len(raw) > MAX_VALUE:
        raise BootObjectError(f"value of {var.name} longer than {MAX_VALUE} bytes ({len(raw)})")
    for ch, what in (("\0", "a NUL byte"), ("\n", "a newline"), ("\r", "a carriage return")):
        if ch in var.value:
            raise BootObjectError(f"value of {var.name} contains {what}")
    if known:
        _check_known(var)


def _check_known(var: Variable) -> None:
    """Values of the names stage 1 interprets must have the form it expects."""
    name, value = var.name, var.value
    if name == "chainload":
        uuid, sep, path = value.partition(";")
        if not sep or not path:
            raise BootObjectError(f"chainload={value!r} is not <PARTUUID>;<path>")
        if not _PARTUUID_RE.fullmatch(uuid):
            hint = "PARTUUIDs are written lowercase" if uuid.lower() != uuid else None
            raise BootObjectError(f"chainload: bad PARTUUID {uuid!r}", hint=hint)
    elif name == ESP_VAR:
        if not _PARTUUID_RE.fullmatch(value):
            hint = "PARTUUIDs are written lowercase" if value.lower() != value else None
            raise BootObjectError(f"{ESP_VAR}: bad PARTUUID {value!r}", hint=hint)
    elif name == "chainload.key":
        if not _KEY_RE.fullmatch(value):
            raise BootObjectError(
                "chainload.key must be ed25519:<64 lowercase hex digits>", hint=f"got {value!r}"
            )
    elif name == "display":
        if not _DISPLAY_RE.fullmatch(value):
            raise BootObjectError(
                f"display={value!r}: expected auto, WxH or WxH@fps, optionally ,retina"
            )
    elif name == "mitigations":
        if not _MITIGATION_RE.fullmatch(value):
            raise BootObjectError(f"mitigations={value!r}: expected a comma-separated list")
    elif name == "tso" and value != "1":
        raise BootObjectError(f"tso={value!r}: the only accepted value is 1")


def validate(
    variables: Sequence[Variable], *, unique: bool = True, check_values: bool = True
) -> None:
    """Raise :class:`BootObjectError` on the first variable that breaks a §2 rule.

    ``check_values=False`` keeps the structural rules only (for reading what another tool
    wrote, e.g. an uppercase PARTUUID, which is then reported rather than refused).
    """
    seen: set[str] = set()
    chosen = 0
    for var in variables:
        _check_name(var.name)
        _check_value(var, check_values)
        if var.name.startswith(CHOSEN_PREFIX):
            chosen += 1
            if len(var.name) == len(CHOSEN_PREFIX):
                raise BootObjectError("variable 'chosen.' names no property")
        elif var.name not in KNOWN_NAMES and check_values:
            log.warning("variable %s is not one stage 1 or stage 2 knows; it will be ignored",
                        var.name)
        if unique and var.name in seen:
            raise BootObjectError(f"variable {var.name} is set twice")
        seen.add(var.name)
    if chosen > MAX_CHOSEN:
        raise BootObjectError(f"{chosen} chosen.* variables; at most {MAX_CHOSEN} are allowed")


def encode(variables: Sequence[Variable]) -> bytes:
    """The variable block: the validated lines, then four NUL bytes."""
    validate(variables)
    return b"".join(v.line() for v in variables) + TERMINATOR


def parse_text(
    text: bytes, *, unique: bool = False, check_values: bool = True
) -> tuple[Variable, ...]:
    """Parse variable lines (the bytes before the terminating NUL).

    A final line without its newline is accepted (hand-written installs); any other
    deviation from §2 raises. Duplicates are kept in order when ``unique`` is false:
    the later line wins, as a forwarded stage-1 value does.
    """
    if b"\0" in text:
        raise BootObjectError("variable text contains a NUL byte")
    try:
        decoded = text.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BootObjectError(f"variable text is not UTF-8 (byte {exc.start})") from exc
    lines = decoded.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    out: list[Variable] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            raise BootObjectError(f"variable line {number} is blank")
        name, sep, value = line.partition("=")
        if not sep:
            raise BootObjectError(f"variable line {number} has no '=': {line[:70]!r}")
        out.append(Variable(name, value))
    validate(out, unique=unique, check_values=check_values)
    return tuple(out)


def read_block(data: bytes, offset: int = 0) -> tuple[tuple[Variable, ...], int]:
    """Parse the variable block at ``offset``; return the variables and the offset after it.

    The block ends at four NULs (consumed) or at the end of ``data``. A single NUL
    followed by anything but three more NULs is malformed.
    """
    if offset < 0 or offset > len(data):
        raise BootObjectError(f"variable block offset {offset} is outside the data")
    nul = data.find(b"\0", offset)
    if nul < 0:
        return parse_text(data[offset:]), len(data)
    variables = parse_text(data[offset:nul])
    tail = data[nul : nul + 4]
    if tail != TERMINATOR[: len(tail)]:
        raise BootObjectError(f"variable block at {offset} is not ended by four NUL bytes")
    return variables, nul + len(tail)


def as_dict(variables: Iterable[Variable]) -> dict[str, str]:
    """Name → value, later lines winning (stage-1 forwarding semantics)."""
    return {v.name: v.value for v in variables}


def parse_assignment(text: str) -> Variable:
    """``NAME=VALUE`` from a command line into a :class:`Variable` (validated later)."""
    name, sep, value = text.partition("=")
    if not sep:
        raise BootObjectError(f"--var {text!r} is not NAME=VALUE")
    return Variable(name, value)


def stage1_config(
    esp_partuuid: str,
    extra: Mapping[str, str] | Sequence[Variable] = (),
    *,
    public_key: bytes | None = None,
) -> tuple[Variable, ...]:
    """The stage-1 variables the installer writes for an OS whose ESP is ``esp_partuuid``.

    ``public_key`` (raw 32-byte Ed25519 key) adds ``chainload.key`` so stage 1 only boots a
    stage 2 signed by its private half. ``extra`` adds ``chosen.*``, ``display``,
    ``mitigations`` or ``tso``; the derived names may not be overridden there.
    """
    uuid = normalize_partuuid(esp_partuuid)
    out = [Variable(ESP_VAR, uuid), Variable("chainload", f"{uuid};{STAGE2_PATH}")]
    if public_key is not None:
        if len(public_key) != 32:
            raise BootObjectError(f"Ed25519 public key is {len(public_key)} bytes, not 32")
        out.append(Variable("chainload.key", "ed25519:" + public_key.hex()))
    items = (
        [Variable(k, v) for k, v in extra.items()] if isinstance(extra, Mapping) else list(extra)
    )
    for var in items:
        if var.name in (ESP_VAR, "chainload", "chainload.key", STAGE1_VERSION_VAR):
            raise BootObjectError(
                f"{var.name} is set by the installer and cannot be given as an extra variable"
            )
        out.append(var)
    validate(out)
    return tuple(out)
