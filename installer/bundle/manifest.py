"""``bundle.json``: what an offline bundle holds, every file's size, SHA-256 and origin.

Layout of a bundle directory (a folder or the root of a USB stick)::

    bundle.json                 this manifest (written last: its presence = complete)
    installer_data.json[.sig]   the catalog as served (bytes unchanged, so .sig verifies)
    os/<package>.zip            the chosen entries' packages
    ipsw/<image file name>      per restore image a thin zip (installer.bundle.thinzip)
    install, pippin-*.tar.gz, latest   with --with-installer (the release bundle)

The JSON (``"format": 1``)::

    {"format": 1, "pippin": "0.1.0", "catalog": "installer_data.json",
     "catalog_origin": "<URL or path>", "os": ["<entry name>", …],
     "images": [{"path": "ipsw/…", "version": "13.5", "origin": "<URL>",
                 "devices": [{"device_class": "j314sap", "board_id": 4, "chip_id": 24576}],
                 "members": ["BuildManifest.plist", …]}],
     "files": [{"path": "…", "size": N, "sha256": "<hex>", "origin": "<URL, path or
                'pippin'>"}]}

``parse_manifest`` is the only place that sees the dicts; its errors name the key.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from installer.errors import BundleError

MANIFEST = "bundle.json"
PROGRESS = ".bundle-progress.json"  # finished files of an unfinished create
FORMAT = 1


@dataclass(frozen=True, slots=True)
class FileRecord:
    path: str  # relative, POSIX
    size: int
    sha256: str
    origin: str


@dataclass(frozen=True, slots=True)
class Device:
    device_class: str
    board_id: int
    chip_id: int


@dataclass(frozen=True, slots=True)
class ImageRecord:
    path: str
    version: str
    origin: str
    devices: tuple[Device, ...]
    members: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class BundleManifest:
    pippin: str
    catalog: str
    catalog_origin: str
    os: tuple[str, ...]
    images: tuple[ImageRecord, ...]
    files: tuple[FileRecord, ...]

    def file(self, path: str) -> FileRecord | None:
        return next((f for f in self.files if f.path == path), None)

    def by_origin(self, origin: str) -> FileRecord | None:
        return next((f for f in self.files if f.origin == origin), None)

    def to_json(self) -> bytes:
        doc = {
            "format": FORMAT, "pippin": self.pippin, "catalog": self.catalog,
            "catalog_origin": self.catalog_origin, "os": list(self.os),
            "images": [{"path": i.path, "version": i.version, "origin": i.origin,
                        "devices": [{"device_class": d.device_class, "board_id": d.board_id,
                                     "chip_id": d.chip_id} for d in i.devices],
                        "members": list(i.members)} for i in self.images],
            "files": [file_dict(f) for f in sorted(self.files, key=lambda f: f.path)],
        }
        return json.dumps(doc, indent=1).encode() + b"\n"


def file_dict(f: FileRecord) -> dict[str, Any]:
    return {"path": f.path, "size": f.size, "sha256": f.sha256, "origin": f.origin}


def check_path(path: str, where: str) -> str:
    """A bundle-relative path that stays inside the bundle."""
    p = PurePosixPath(path)
    if (not path or p.is_absolute() or "\\" in path or "\x00" in path
            or any(part in ("..", ".", "") for part in path.split("/"))):
        raise BundleError(f"{MANIFEST}: {where} {path!r} is not a path inside the bundle")
    return path


def _get(d: Any, key: str, typ: type, where: str) -> Any:
    if not isinstance(d, dict) or key not in d:
        raise BundleError(f"{MANIFEST}: {where}.{key} is missing")
    v = d[key]
    if not isinstance(v, typ) or (typ is int and isinstance(v, bool)):
        raise BundleError(f"{MANIFEST}: {where}.{key} must be {typ.__name__}")
    return v


def parse_file(d: Any, where: str) -> FileRecord:
    sha = _get(d, "sha256", str, where)
    if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
        raise BundleError(f"{MANIFEST}: {where}.sha256 is not 64 lower-case hex digits")
    size = _get(d, "size", int, where)
    if size < 0:
        raise BundleError(f"{MANIFEST}: {where}.size is negative")
    return FileRecord(check_path(_get(d, "path", str, where), f"{where}.path"), size, sha,
                      _get(d, "origin", str, where))


def _strs(d: Any, key: str, where: str) -> tuple[str, ...]:
    v = _get(d, key, list, where)
    if not all(isinstance(x, str) for x in v):
        raise BundleError(f"{MANIFEST}: {where}.{key} must be a list of strings")
    return tuple(v)


def parse_manifest(data: bytes) -> BundleManifest:
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{MANIFEST} is not valid JSON: {exc}") from exc
    fmt = _get(doc, "format", int, "")
    if fmt != FORMAT:
        raise BundleError(f"{MANIFEST}: format {fmt} is not supported (this Pippin reads "
                          f"{FORMAT})", hint="use the Pippin version that made the bundle")
    images = []
    for i, im in enumerate(_get(doc, "images", list, "")):
        w = f"images[{i}]"
        devs = tuple(Device(_get(d, "device_class", str, f"{w}.devices[{j}]"),
                            _get(d, "board_id", int, f"{w}.devices[{j}]"),
                            _get(d, "chip_id", int, f"{w}.devices[{j}]"))
                     for j, d in enumerate(_get(im, "devices", list, w)))
        images.append(ImageRecord(check_path(_get(im, "path", str, w), f"{w}.path"),
                                  _get(im, "version", str, w), _get(im, "origin", str, w),
                                  devs, _strs(im, "members", w)))
    files = tuple(parse_file(f, f"files[{i}]")
                  for i, f in enumerate(_get(doc, "files", list, "")))
    return BundleManifest(_get(doc, "pippin", str, ""),
                          check_path(_get(doc, "catalog", str, ""), "catalog"),
                          _get(doc, "catalog_origin", str, ""), _strs(doc, "os", ""),
                          tuple(images), files)
