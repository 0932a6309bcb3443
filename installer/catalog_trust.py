"""Catalog trust: the detached Ed25519 signature ``<catalog>.sig`` and pinned keys.

The signature file (Pippin's format, formats.md §10 "(Pippin) the catalog may carry a
detached Ed25519 signature") is three ASCII lines, LF-terminated, nothing else::

    pippin-catalog-signature 1
    key ed25519:<64 hex digits: the raw 32-byte public key>
    signature <128 hex digits: the 64-byte Ed25519 signature>

The signature covers ``b"pippin catalog signature v1\\n"`` followed by the catalog's bytes
exactly as served (the prefix keeps a key used for boot objects, formats.md §4, from
vouching for a catalog by accident). Key files are those of :mod:`installer.bootobj.sign`
(PEM, ``ed25519:<hex>``, ``ed25519-seed:<hex>``).

A key is *pinned* for a catalog when a :class:`Pin`'s URL prefix matches the catalog's
location (the longest match wins): Pippin's built-in pins (:data:`BUILTIN_PINS`, empty
until a published catalog is signed), ``PIPPIN_CATALOG_KEY`` (a key, or a key file, pinned
for whatever catalog the run uses), and the demo site's own key for the demo server.
Before anything in the catalog is used:

- key pinned: the signature must exist, name that key and verify; otherwise refuse;
- no pin, signature present: it must verify with the key it names (integrity, not
  authorship; a one-line notice names the key so it can be pinned); otherwise refuse;
- no pin, no signature: use it, with a one-line notice.

A malformed signature file is always a refusal. So is a signature that cannot be fetched
for another reason than "not there" (HTTP 404/410, or no such file): a server that fails
on the signature must not turn a signed catalog into an unsigned one.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import requests
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from installer.bootobj import sign
from installer.errors import BootObjectError, CatalogError
from installer.net.http import request_error

log = logging.getLogger(__name__)

SIG_SUFFIX = ".sig"
HEADER = "pippin-catalog-signature 1"
CONTEXT = b"pippin catalog signature v1\n"
MAX_SIG_BYTES = 4096
_KEY_RE = re.compile(r"key ed25519:(?P<hex>[0-9a-fA-F]{64})")
_SIG_RE = re.compile(r"signature (?P<hex>[0-9a-fA-F]{128})")


@dataclass(frozen=True, slots=True)
class Pin:
    """``public_key`` (raw 32 bytes) must sign every catalog whose location starts with
    ``prefix`` ("" pins it for any catalog)."""

    prefix: str
    public_key: bytes


#: Keys Pippin trusts out of the box, by catalog URL prefix (none published yet).
BUILTIN_PINS: tuple[Pin, ...] = ()


@dataclass(frozen=True, slots=True)
class CatalogSignature:
    public_key: bytes
    signature: bytes

    @property
    def key_id(self) -> str:
        return key_id(self.public_key)


class Trust(StrEnum):
    PINNED = "signed by the pinned key"
    SIGNED = "signed by a key that is not pinned"
    UNSIGNED = "unsigned"


@dataclass(frozen=True, slots=True)
class Verdict:
    trust: Trust
    message: str  # one line: what was checked


def key_id(public_key: bytes) -> str:
    """The first 16 hex digits of SHA-256(public key), as ``bootobj`` shows key ids."""
    return sign.key_id(public_key).hex()[:16]


def parse_signature(data: bytes, where: str) -> CatalogSignature:
    """The three-line signature file; :class:`CatalogError` naming what is wrong."""
    def bad(why: str) -> CatalogError:
        return CatalogError(f"catalog signature {where} is malformed: {why}")

    if len(data) > MAX_SIG_BYTES:
        raise bad(f"{len(data)} bytes (a signature file is under {MAX_SIG_BYTES})")
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise bad("not ASCII text") from None
    if not text.endswith("\n"):
        raise bad("it does not end with a newline (cut short?)")
    lines = text[:-1].split("\n")
    if not lines or lines[0] != HEADER:
        raise bad(f"the first line is not {HEADER!r}")
    if len(lines) != 3:
        raise bad(f"{len(lines)} lines, not 3 (header, key, signature)")
    k = _KEY_RE.fullmatch(lines[1])
    if k is None:
        raise bad("line 2 is not 'key ed25519:<64 hex digits>'")
    s = _SIG_RE.fullmatch(lines[2])
    if s is None:
        raise bad("line 3 is not 'signature <128 hex digits>'")
    return CatalogSignature(bytes.fromhex(k["hex"]), bytes.fromhex(s["hex"]))


def render_signature(sig: CatalogSignature) -> bytes:
    return (f"{HEADER}\nkey ed25519:{sig.public_key.hex()}\n"
            f"signature {sig.signature.hex()}\n").encode()


def sign_catalog(catalog: bytes, private_key: Ed25519PrivateKey) -> bytes:
    """The ``.sig`` file for ``catalog``."""
    return render_signature(CatalogSignature(sign.public_bytes(private_key.public_key()),
                                             private_key.sign(CONTEXT + catalog)))


def pinned_key(ref: str, pins: Sequence[Pin]) -> Pin | None:
    """The pin with the longest prefix of ``ref``."""
    hits = [p for p in pins if ref.startswith(p.prefix)]
    return max(hits, key=lambda p: len(p.prefix)) if hits else None


def check_catalog(ref: str, catalog: bytes, sig_file: bytes | None,
                  pins: Sequence[Pin]) -> Verdict:
    """Decide whether ``catalog`` (from ``ref``) may be used; refusals raise CatalogError."""
    where = ref + SIG_SUFFIX
    pin = pinned_key(ref, pins)
    if sig_file is None:
        if pin is not None:
            raise CatalogError(f"catalog {ref} has no signature ({where}) but key "
                               f"{key_id(pin.public_key)} is pinned for it; not using it")
        return Verdict(Trust.UNSIGNED, f"catalog {ref} is unsigned (no {where}); using it "
                       "without a signature check")
    sig = parse_signature(sig_file, where)
    if pin is not None and sig.public_key != pin.public_key:
        raise CatalogError(f"catalog {ref} is signed by key {sig.key_id}, not by the key "
                           f"pinned for it ({key_id(pin.public_key)}); not using it")
    try:
        Ed25519PublicKey.from_public_bytes(sig.public_key).verify(sig.signature,
                                                                 CONTEXT + catalog)
    except InvalidSignature:
        raise CatalogError(f"catalog {ref} does not match its signature {where} (key "
                           f"{sig.key_id}): altered or truncated; not using it") from None
    if pin is not None:
        return Verdict(Trust.PINNED, f"catalog {ref}: signature by pinned key {sig.key_id} "
                       "verified")
    return Verdict(Trust.SIGNED, f"catalog {ref} is signed by key {sig.key_id}, which is not "
                   "pinned: checked for damage, not for who signed it (pin it with "
                   f"PIPPIN_CATALOG_KEY=ed25519:{sig.public_key.hex()})")


def pins_from_env(env: Mapping[str, str]) -> tuple[Pin, ...]:
    """:data:`BUILTIN_PINS` plus ``PIPPIN_CATALOG_KEY`` (``ed25519:<hex>`` or a key file),
    pinned for any catalog."""
    value = env.get("PIPPIN_CATALOG_KEY", "").strip()
    if not value:
        return BUILTIN_PINS
    m = re.fullmatch(r"ed25519:([0-9a-fA-F]{64})", value)
    if m:
        return (*BUILTIN_PINS, Pin("", bytes.fromhex(m[1])))
    try:
        key = sign.load_public_key(Path(value))
    except BootObjectError as exc:
        raise CatalogError(f"PIPPIN_CATALOG_KEY: {exc.message}",
                           hint="give ed25519:<64 hex digits> or a public key file") from exc
    return (*BUILTIN_PINS, Pin("", key))


def fetch_signature(ref: str, session: requests.Session | None) -> bytes | None:
    """``<ref>.sig`` from a URL (``session``) or beside a file; None when there is none."""
    where = ref + SIG_SUFFIX
    if session is None:
        try:
            data = Path(where).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise CatalogError(f"cannot read catalog signature {where}: {exc.strerror}") \
                from exc
        return data
    try:
        resp = session.get(where, timeout=(10.0, 30.0), stream=True)
        with resp:
            if resp.status_code in (404, 410):
                return None
            if resp.status_code != 200:
                raise CatalogError(f"cannot fetch catalog signature {where}: HTTP "
                                   f"{resp.status_code}; not using the catalog")
            data = resp.raw.read(MAX_SIG_BYTES + 1, decode_content=True)
    except requests.RequestException as exc:
        raise request_error(where, exc) from exc
    return bytes(data)


def trusted(ref: str, catalog: bytes, session: requests.Session | None,
            pins: Sequence[Pin]) -> Verdict:
    """Fetch ``<ref>.sig`` and check the catalog; logs the verdict (a notice when it is
    not signed by a pinned key)."""
    verdict = check_catalog(ref, catalog, fetch_signature(ref, session), pins)
    if verdict.trust is Trust.PINNED:
        log.info("%s", verdict.message)
    else:
        log.warning("%s", verdict.message)
    return verdict
