"""``pippin bundle verify``: every file of a bundle against ``bundle.json``.

Checks, each failure one line: the manifest parses; every listed file exists with its size
and SHA-256; the catalog copy's signature (``.sig``) verifies when there is one; every thin
zip opens as a zip, lists exactly its recorded members and each decodes to its CRC-32.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from installer import catalog_trust
from installer.bundle.manifest import MANIFEST, BundleManifest, FileRecord, parse_manifest
from installer.errors import BundleError, PippinError
from installer.ipsw.fetch import fetch_members
from installer.ipsw.remote import open_archive

log = logging.getLogger(__name__)
CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class VerifyResult:
    files: int
    bytes: int
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


def sha256_file(path: Path, progress: Callable[[int], None] | None = None) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
            if progress:
                progress(len(chunk))
    return h.hexdigest()


def load_manifest(root: Path) -> BundleManifest:
    path = root / MANIFEST
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise BundleError(f"{root} is not a Pippin bundle (no {MANIFEST})",
                          hint="make one with `pippin bundle create`; an interrupted create "
                          "continues when run again") from None
    except OSError as exc:
        raise BundleError(f"cannot read {path}: {exc.strerror}") from exc
    return parse_manifest(data)


def check_file(root: Path, rec: FileRecord,
               progress: Callable[[int], None] | None = None) -> str | None:
    """The problem with one listed file, or None."""
    path = root / rec.path
    try:
        size = path.stat().st_size
        if size != rec.size:
            return f"{rec.path}: {size} bytes, {MANIFEST} says {rec.size} (damaged or truncated)"
        if sha256_file(path, progress) != rec.sha256:
            return f"{rec.path}: SHA-256 differs from {MANIFEST} (damaged)"
    except FileNotFoundError:
        return f"{rec.path}: missing"
    except OSError as exc:
        return f"{rec.path}: cannot read: {exc.strerror}"
    return None


class DiscardSink:
    """A member sink that keeps nothing: decoding checks each member's size and CRC-32."""

    def write_member(self, member: object, chunks: Iterable[bytes]) -> None:
        for _ in chunks:
            pass


def check_thin_zip(root: Path, path: str, members: tuple[str, ...]) -> str | None:
    try:
        arc = open_archive(str(root / path))
        have = set(arc.names())
        if have != set(members):
            extra, missing = sorted(have - set(members)), sorted(set(members) - have)
            return (f"{path}: members differ from {MANIFEST} (missing {missing[:3]}, "
                    f"unlisted {extra[:3]})")
        fetch_members(arc, list(members), DiscardSink())
    except PippinError as exc:
        return f"{path}: {exc.message}"
    return None


def verify_bundle(root: Path, progress: Callable[[int], None] | None = None) -> VerifyResult:
    m = load_manifest(root)
    checked = [(r.path, check_file(root, r, progress)) for r in m.files]
    problems = [why for _, why in checked if why is not None]
    damaged = {path for path, why in checked if why is not None}
    listed = {f.path for f in m.files}
    if m.catalog not in listed:
        problems.append(f"{m.catalog}: the catalog is not listed in {MANIFEST}")
    else:
        try:
            data = (root / m.catalog).read_bytes()
            sig = catalog_trust.fetch_signature(str(root / m.catalog), None)
            catalog_trust.check_catalog(m.catalog, data, sig, ())
        except PippinError as exc:
            problems.append(exc.message)
        except OSError as exc:
            problems.append(f"{m.catalog}: cannot read: {exc.strerror}")
    for im in m.images:
        if im.path not in listed:
            problems.append(f"{im.path}: restore image not listed in files")
        elif im.path not in damaged:  # a damaged file is reported once, above
            why = check_thin_zip(root, im.path, im.members)
            if why:
                problems.append(why)
    total = sum(f.size for f in m.files)
    log.info("verified %s: %d files, %d bytes, %d problems", root, len(m.files), total,
             len(problems))
    return VerifyResult(len(m.files), total, tuple(problems))
