"""``pippin catalog sign|verify``: make and check the detached signature of a catalog.

For whoever publishes an ``installer_data.json``: ``sign`` writes ``<catalog>.sig``
(:mod:`installer.catalog_trust`) with an Ed25519 key file (``pippin bootobj keygen``
makes one; PEM or hex); ``verify`` checks a local catalog the way ``pippin install`` does.
"""

from __future__ import annotations

from pathlib import Path

import click

from installer import catalog_trust as ct
from installer.bootobj import sign
from installer.catalog import parse_catalog
from installer.errors import CatalogError
from vendorfw.atomic import write_bytes


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise CatalogError(f"cannot read catalog {path}: {exc.strerror}") from exc


@click.group("catalog")
def catalog() -> None:
    """Sign and verify installer_data.json catalogs (detached Ed25519 .sig files)."""


@catalog.command("sign")
@click.option("--key", "key_file", required=True, type=click.Path(path_type=Path,
              dir_okay=False), help="Ed25519 private key file (PEM or ed25519-seed:<hex>).")
@click.argument("catalog_file", type=click.Path(path_type=Path, dir_okay=False))
def sign_cmd(key_file: Path, catalog_file: Path) -> int:
    """Write CATALOG_FILE.sig. The catalog must parse: a broken one is not signed."""
    data = _read(catalog_file)
    parse_catalog(data, "https://invalid.example")
    key = sign.load_private_key(key_file)
    out = Path(str(catalog_file) + ct.SIG_SUFFIX)
    write_bytes(out, ct.sign_catalog(data, key))
    public = sign.public_bytes(key.public_key())
    click.echo(f"{out}: signed by key {ct.key_id(public)} "
               f"(pin it with PIPPIN_CATALOG_KEY=ed25519:{public.hex()})")
    return 0


@catalog.command("verify")
@click.option("--key", "key_file", type=click.Path(path_type=Path, dir_okay=False),
              help="Public key the catalog must be signed by (default: any, reported).")
@click.argument("catalog_file", type=click.Path(path_type=Path, dir_okay=False))
def verify_cmd(key_file: Path | None, catalog_file: Path) -> int:
    """Check CATALOG_FILE against CATALOG_FILE.sig; exit 1 with one line when it fails."""
    data = _read(catalog_file)
    pins = (ct.Pin("", sign.load_public_key(key_file)),) if key_file else ()
    verdict = ct.check_catalog(str(catalog_file), data,
                               ct.fetch_signature(str(catalog_file), None), pins)
    click.echo(verdict.message)
    return 0 if verdict.trust is not ct.Trust.UNSIGNED else 1
