"""Install from a bundle (``pippin install --source OUT``, or ``INSTALLER_DATA`` in OUT).

:func:`open_bundle` reads ``bundle.json``, checks the catalog copy (size, SHA-256, then its
``.sig`` as any catalog) and offers only the entries the bundle holds, their packages
pointing at ``OUT/os/``. Before anything is planned or written, :meth:`BundleSource.check`
names in one line what the chosen install needs and the bundle lacks (the OS, its package,
the restore image, the Mac's device class) and checks the SHA-256 of the files it will use.
Nothing here touches the network: restore images are read from ``OUT/ipsw/`` as local zips.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from installer import catalog_trust
from installer.bundle.manifest import MANIFEST, BundleManifest
from installer.bundle.verify import check_file, load_manifest
from installer.catalog import Catalog, OsEntry, parse_catalog
from installer.catalog_trust import Pin
from installer.device import DeviceFacts
from installer.errors import BundleError
from installer.ipsw.remote import is_url, local_path

log = logging.getLogger(__name__)
IPSW_DIR = "ipsw"


def bundle_of(ref: str | None) -> Path | None:
    """The bundle directory when ``ref`` (a catalog path) lies in one, else None."""
    if not ref or is_url(ref):
        return None
    parent = local_path(ref).parent
    return parent if (parent / MANIFEST).is_file() else None


@dataclass(frozen=True, slots=True)
class BundleSource:
    root: Path
    manifest: BundleManifest
    catalog: Catalog
    catalog_ref: str
    raw: bytes = b""  # the catalog file's bytes (verified), for copy_installer_data

    @property
    def ipsw_base(self) -> str:
        return str(self.root / IPSW_DIR)

    def check(self, entry: OsEntry, facts: DeviceFacts, image: str) -> None:
        """Raise a one-line BundleError when this install needs what the bundle lacks."""
        m, name = self.manifest, entry.name.strip()
        if name not in {n.strip() for n in m.os}:
            raise BundleError(f"the bundle in {self.root} does not hold {name!r} "
                              f"(it holds {', '.join(repr(n) for n in m.os)})")
        used = []
        if entry.package:
            rel = self._rel(Path(entry.package))
            rec = m.file(rel) if rel else None
            if rec is None:
                raise BundleError(f"the bundle in {self.root} lacks the package of {name!r} "
                                  f"({entry.package})")
            used.append(rec)
        rel = self._rel(local_path(image)) if not is_url(image) else None
        img = next((i for i in m.images if i.path == rel), None)
        img_rec = m.file(img.path) if img is not None else None
        if img is None or img_rec is None:
            raise BundleError(f"the bundle in {self.root} lacks restore image {image}")
        if not any(d.device_class == facts.device_class.lower() for d in img.devices):
            have = ", ".join(sorted({d.device_class for d in img.devices}))
            raise BundleError(f"the bundle's restore image {img.version} holds no members for "
                              f"this Mac ({facts.device_class}; it has {have})",
                              hint=f"make the bundle with --device {facts.device_class}")
        used.append(img_rec)
        for rec in used:
            why = check_file(self.root, rec)
            if why:
                raise BundleError(f"bundle {self.root}: {why}; not installing from it",
                                  hint=f"`pippin bundle verify {self.root}` checks it all")

    def _rel(self, path: Path) -> str | None:
        try:
            return path.resolve().relative_to(self.root.resolve()).as_posix()
        except ValueError:
            return None


def open_bundle(root: Path, pins: Sequence[Pin] = ()) -> BundleSource:
    """The bundle at ``root`` with its catalog checked (see the module doc)."""
    root = root.resolve()
    if not root.is_dir():
        raise BundleError(f"bundle {root}: no such directory")
    m = load_manifest(root)
    rec = m.file(m.catalog)
    if rec is None:
        raise BundleError(f"bundle {root}: {MANIFEST} does not list its catalog {m.catalog}")
    why = check_file(root, rec)
    if why:
        raise BundleError(f"bundle {root}: {why}; not installing from it",
                          hint=f"`pippin bundle verify {root}` checks it all")
    path = root / m.catalog
    data = path.read_bytes()
    catalog_trust.trusted(str(path), data, None, pins)
    full = parse_catalog(data, str(root))
    wanted = {n.strip() for n in m.os}
    entries = []
    for e in full.entries:
        if e.name.strip() not in wanted:
            continue
        if e.package is not None:  # a URL package: the bundle's copy, found by origin
            got = m.by_origin(e.package)
            if got is not None:
                e = dataclasses.replace(e, package=str(root / got.path))
        entries.append(e)
    log.info("installing from the bundle in %s (%d entries)", root, len(entries))
    return BundleSource(root, m, Catalog(tuple(entries)), str(path), data)


def describe(root: Path) -> str:
    """One line for a chooser: where the bundle is and what it holds."""
    try:
        m = load_manifest(root)
    except BundleError as exc:
        return f"{root} ({exc.message})"
    return f"{root} ({', '.join(m.os)})"


def started_from(cwd: Path, source: Path | None) -> Path | None:
    """The bundle to offer: ``--source`` when given, else the working directory when it
    is one (the installer started from a USB stick)."""
    if source is not None:
        return source
    return cwd if (cwd / MANIFEST).is_file() else None
