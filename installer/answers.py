"""The answers file (DESIGN.md): every install decision as TOML, parsed into ``Answers``.

``pippin install --answers FILE --yes`` and ``pippin plan --answers FILE`` read it; command
line options override it; the TUI writes the same file (:func:`to_toml`). Errors name the
bad key.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from installer.disk.plan import Space
from installer.errors import AnswersError
from installer.sizes import parse_size

_CHOICE_RE = re.compile(r"^\s*(min|max|[0-9]+(\.[0-9]+)?\s*%)\s*$", re.IGNORECASE)
_DISK_RE = re.compile(r"^disk[0-9]+$")


@dataclass(frozen=True, slots=True)
class Answers:
    target: str | None = None  # "sim:/path/mac.img" or a macOS disk id ("disk0")
    catalog: str | None = None
    os: str | None = None
    space: Space = Space.FREE
    resize_to: str = "min"
    size: str = "max"
    name: str | None = None
    expert: bool = False
    admin_user: str | None = None
    stage1: str | None = None  # an m1n1-format stage-1 image (needed on a real Mac)

    def override(self, **values: Any) -> Answers:
        """Command-line values win; ``None`` means "not given"."""
        given = {k: v for k, v in values.items() if v is not None}
        return replace(self, **given) if given else self


def check_choice(key: str, value: str) -> str:
    """``min``/``max``/``NN%``/a size string; raises AnswersError naming ``key``."""
    if _CHOICE_RE.match(value):
        if value.strip().endswith("%") and float(value.strip()[:-1]) > 100:
            raise AnswersError(f"answers: {key} = {value!r} is more than 100%")
        return value.strip()
    try:
        parse_size(value)
    except ValueError as exc:
        raise AnswersError(f"answers: {key} = {value!r}: {exc}") from None
    return value.strip()


def check_target(value: str) -> str:
    if value.startswith("sim:") and len(value) > 4:
        return value
    if _DISK_RE.match(value):
        return value
    raise AnswersError(
        f"answers: target = {value!r} is neither sim:PATH nor a macOS disk id like disk0"
    )


def parse_answers(data: bytes, source: str) -> Answers:
    try:
        doc = tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise AnswersError(f"{source}: not UTF-8 text") from exc
    except tomllib.TOMLDecodeError as exc:
        raise AnswersError(f"{source}: invalid TOML: {exc}") from exc
    known = {f.name for f in fields(Answers)}
    for key in doc:
        if key not in known:
            raise AnswersError(f"{source}: unknown key {key!r} (known: {', '.join(sorted(known))})")
    values: dict[str, Any] = {}
    for key, value in doc.items():
        want: type = bool if key == "expert" else str
        if not isinstance(value, want):
            raise AnswersError(f"{source}: {key} must be a {want.__name__}, not {value!r}")
        values[key] = value
    if "space" in values:
        try:
            values["space"] = Space(values["space"])
        except ValueError:
            raise AnswersError(
                f"{source}: space = {values['space']!r} must be \"free\" or \"resize\""
            ) from None
    for key in ("resize_to", "size"):
        if key in values:
            values[key] = check_choice(key, values[key])
    if "target" in values:
        values["target"] = check_target(values["target"])
    return Answers(**values)


def load_answers(path: Path) -> Answers:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise AnswersError(f"cannot read answers file {path}: {exc.strerror}") from exc
    return parse_answers(data, str(path))


def _toml_str(s: str) -> str:
    """A TOML basic string: quotes, backslashes and every control character escaped."""
    out = []
    for c in s:
        if c in '"\\':
            out.append("\\" + c)
        elif ord(c) < 0x20 or ord(c) == 0x7F:
            out.append(f"\\u{ord(c):04X}")
        else:
            out.append(c)
    return '"' + "".join(out) + '"'


def to_toml(a: Answers) -> str:
    """The answers as a TOML file that :func:`parse_answers` reads back unchanged."""
    lines = []
    for f in fields(Answers):
        v = getattr(a, f.name)
        if v is None:
            continue
        lines.append(f"{f.name:<10} = " + ("true" if v is True else "false" if v is False
                                           else _toml_str(str(v))))
    return "\n".join(lines) + "\n"
