"""The OS catalog, ``installer_data.json`` (formats.md §10), as frozen values.

``parse_catalog`` is the only place that sees the JSON dicts; every error names the entry
and the key. Package names that are not URLs resolve under ``$REPO_BASE/os/``.
"""

from __future__ import annotations

import json
import urllib.parse
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from installer.errors import CatalogError
from installer.sizes import MiB, align_up, parse_size

#: formats.md §1: 2.5 GB rounded down to 1 MiB.
STUB_SIZE = 2_499_805_184


class PartitionType(StrEnum):
    EFI = "EFI"
    LINUX = "Linux"


@dataclass(frozen=True, slots=True)
class CatalogPartition:
    name: str
    type: PartitionType
    size: int
    expand: bool = False
    format: str | None = None
    volume_id: int | None = None
    image: str | None = None
    source: str | None = None
    copy_firmware: bool = False
    copy_installer_data: bool = False
    sha256: str | None = None

    @property
    def aligned_size(self) -> int:
        """Catalog sizes round up to 1 MiB (formats.md §1)."""
        return align_up(self.size, MiB)


@dataclass(frozen=True, slots=True)
class OsEntry:
    name: str
    default_os_name: str
    boot_object: str | None
    next_object: str | None
    package: str | None
    icon: str | None
    supported_fw: tuple[str, ...]
    extras: tuple[str, ...]
    expert: bool
    external_boot: bool
    partitions: tuple[CatalogPartition, ...]
    sha256: str | None = None

    @property
    def min_size(self) -> int:
        """Stub container plus every partition at its catalog size (aligned up)."""
        return STUB_SIZE + sum(p.aligned_size for p in self.partitions)

    @property
    def expandable(self) -> bool:
        return any(p.expand for p in self.partitions)

    @property
    def recommended_size(self) -> int:
        """formats.md §1: an entry with an ``expand`` partition recommends 2× its minimum."""
        return 2 * self.min_size if self.expandable else self.min_size


@dataclass(frozen=True, slots=True)
class Catalog:
    entries: tuple[OsEntry, ...]

    def find(self, name: str) -> OsEntry:
        """Exact name first, then ignoring surrounding blanks (real catalogs have some)."""
        for e in self.entries:
            if e.name == name:
                return e
        for e in self.entries:
            if e.name.strip() == name.strip():
                return e
        known = ", ".join(repr(e.name.strip()) for e in self.entries)
        raise CatalogError(f"catalog entry {name!r} not in the catalog (known: {known})")


def _where(entry: str, key: str) -> str:
    return f"os_list[{entry}].{key}"


def _get(d: dict[str, Any], key: str, typ: type, where: str, *, default: Any = None,
         required: bool = False) -> Any:
    if key not in d:
        if required:
            raise CatalogError(f"catalog: {where}.{key} is missing")
        return default
    value = d[key]
    if typ is int and isinstance(value, bool):
        raise CatalogError(f"catalog: {where}.{key} must be an integer, not {value!r}")
    if not isinstance(value, typ):
        raise CatalogError(
            f"catalog: {where}.{key} must be {typ.__name__}, not {type(value).__name__}"
        )
    return value


def _str_list(d: dict[str, Any], key: str, where: str) -> tuple[str, ...]:
    value = d.get(key, [])
    # Real catalogs write an empty ``extras`` as ``{}``.
    if value == {}:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise CatalogError(f"catalog: {where}.{key} must be a list of strings")
    return tuple(value)


def _parse_partition(p: Any, where: str) -> CatalogPartition:
    if not isinstance(p, dict):
        raise CatalogError(f"catalog: {where} must be an object")
    type_s = _get(p, "type", str, where, required=True)
    try:
        ptype = PartitionType(type_s)
    except ValueError:
        raise CatalogError(f"catalog: {where}.type {type_s!r} is not EFI or Linux") from None
    size_s = _get(p, "size", str, where, required=True)
    try:
        size = parse_size(size_s)
    except ValueError as exc:
        raise CatalogError(f"catalog: {where}.size: {exc}") from None
    if size <= 0:
        raise CatalogError(f"catalog: {where}.size must be positive, not {size_s!r}")
    vid_s = _get(p, "volume_id", str, where)
    volume_id: int | None = None
    if vid_s is not None:
        try:
            volume_id = int(vid_s, 16)
        except ValueError:
            raise CatalogError(f"catalog: {where}.volume_id {vid_s!r} is not hex") from None
        if not 0 <= volume_id <= 0xFFFFFFFF:
            raise CatalogError(f"catalog: {where}.volume_id {vid_s!r} exceeds 32 bits")
    fmt = _get(p, "format", str, where)
    if fmt is not None and fmt != "fat":
        raise CatalogError(f"catalog: {where}.format {fmt!r} is not supported (only fat)")
    return CatalogPartition(
        name=_get(p, "name", str, where, required=True),
        type=ptype,
        size=size,
        expand=_get(p, "expand", bool, where, default=False),
        format=fmt,
        volume_id=volume_id,
        image=_get(p, "image", str, where),
        source=_get(p, "source", str, where),
        copy_firmware=_get(p, "copy_firmware", bool, where, default=False),
        copy_installer_data=_get(p, "copy_installer_data", bool, where, default=False),
        sha256=_get(p, "sha256", str, where),
    )


def resolve_package(package: str, repo_base: str) -> str:
    """A bare name resolves to ``$REPO_BASE/os/<name>``; URLs and absolute paths stay."""
    if urllib.parse.urlsplit(package).scheme or package.startswith("/"):
        return package
    return repo_base.rstrip("/") + "/os/" + package


def _parse_entry(e: Any, idx: int, repo_base: str) -> OsEntry:
    if not isinstance(e, dict):
        raise CatalogError(f"catalog: os_list[{idx}] must be an object")
    name = _get(e, "name", str, f"os_list[{idx}]", required=True)
    where = f"os_list[{name.strip()!r}]"
    parts_raw = _get(e, "partitions", list, where, default=[])
    parts = tuple(
        _parse_partition(p, f"{where}.partitions[{i}]") for i, p in enumerate(parts_raw)
    )
    if sum(p.expand for p in parts) > 1:
        raise CatalogError(f"catalog: {where}.partitions has more than one expand partition")
    package = _get(e, "package", str, where)
    return OsEntry(
        name=name,
        default_os_name=_get(e, "default_os_name", str, where, default=name.strip()),
        boot_object=_get(e, "boot_object", str, where),
        next_object=_get(e, "next_object", str, where),
        package=resolve_package(package, repo_base) if package else None,
        icon=_get(e, "icon", str, where),
        supported_fw=_str_list(e, "supported_fw", where),
        extras=_str_list(e, "extras", where),
        expert=_get(e, "expert", bool, where, default=False),
        external_boot=_get(e, "external_boot", bool, where, default=False),
        partitions=parts,
        sha256=_get(e, "sha256", str, where),
    )


def parse_catalog(data: bytes, repo_base: str) -> Catalog:
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CatalogError(f"catalog is not valid JSON: {exc}") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("os_list"), list):
        raise CatalogError("catalog: top-level key os_list (a list) is missing")
    entries = tuple(_parse_entry(e, i, repo_base) for i, e in enumerate(doc["os_list"]))
    return Catalog(entries)


def load_catalog(path: Path, repo_base: str) -> Catalog:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise CatalogError(f"cannot read catalog {path}: {exc.strerror}") from exc
    return parse_catalog(data, repo_base)
