"""Ed25519 signatures on stage-2 boot objects (formats.md §4) and signing-key files.

The signature payload is the last thing in ``boot.bin``::

    "m1n1_sig" | LE u32 total size (109, inclusive) | u8 algorithm (1 = Ed25519)
    | 32-byte key id = SHA-256(raw 32-byte public key) | 64-byte signature

The signature covers every byte of ``boot.bin`` before the payload. Key files are PEM
(PKCS#8 private / SubjectPublicKeyInfo public) or hex text: ``ed25519-seed:<64 hex>`` for a
private key, ``ed25519:<64 hex>`` for a public one; bare 64 hex digits are read as whichever
the caller asked for.
"""

from __future__ import annotations

import hashlib
import re
import struct
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from installer.errors import BootObjectError
from vendorfw.atomic import write_bytes

SIG_TAG = b"m1n1_sig"
ALG_ED25519 = 1
KEY_ID_SIZE = 32
SIG_BYTES = 64
_HEAD = struct.Struct("<8sIB")
SIG_PAYLOAD_SIZE = _HEAD.size + KEY_ID_SIZE + SIG_BYTES  # 109
_HEX_RE = re.compile(r"(?P<prefix>ed25519:|ed25519-seed:)?(?P<hex>[0-9a-fA-F]{64})")
SEED_PREFIX = "ed25519-seed:"


class KeyFormat(StrEnum):
    PEM = "pem"
    HEX = "hex"


@dataclass(frozen=True, slots=True)
class Signature:
    """A parsed signature payload at ``offset`` (the signed bytes are ``data[:offset]``)."""

    offset: int
    algorithm: int
    key_id: bytes
    signature: bytes


def public_bytes(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(public_key: bytes) -> bytes:
    """SHA-256 of the raw 32-byte public key."""
    if len(public_key) != 32:
        raise BootObjectError(f"Ed25519 public key is {len(public_key)} bytes, not 32")
    return hashlib.sha256(public_key).digest()


def find_signature(data: bytes) -> Signature | None:
    """The signature payload ending ``data``, None when unsigned; raises when malformed.

    Only a tag whose size field reaches exactly the end of ``data`` is a signature: the
    loaders carry the tag bytes in their code, so a tag elsewhere means nothing.
    """
    at = data.rfind(SIG_TAG)
    if at < 0:
        return None
    if len(data) - at < _HEAD.size:
        raise BootObjectError(f"signature payload at offset {at} is truncated")
    _tag, size, alg = _HEAD.unpack_from(data, at)
    if at + size != len(data):
        return None
    if alg != ALG_ED25519:
        raise BootObjectError(f"signature algorithm {alg} is unknown (1 = Ed25519)")
    if size != SIG_PAYLOAD_SIZE:
        raise BootObjectError(f"Ed25519 signature payload is {size} bytes, not {SIG_PAYLOAD_SIZE}")
    kid = data[at + _HEAD.size : at + _HEAD.size + KEY_ID_SIZE]
    sig = data[at + _HEAD.size + KEY_ID_SIZE : at + size]
    return Signature(at, alg, kid, sig)


def signature_payload(signed: bytes, private_key: Ed25519PrivateKey) -> bytes:
    """The payload to append to ``signed``."""
    kid = key_id(public_bytes(private_key.public_key()))
    sig = private_key.sign(signed)
    return _HEAD.pack(SIG_TAG, SIG_PAYLOAD_SIZE, ALG_ED25519) + kid + sig


def sign(data: bytes, private_key: Ed25519PrivateKey, *, replace: bool = False) -> bytes:
    """``data`` with a signature payload appended (an existing one replaced if asked)."""
    existing = find_signature(data)
    if existing is not None:
        if not replace:
            raise BootObjectError(
                "boot object is already signed", hint="pass --replace to sign it again"
            )
        data = data[: existing.offset]
    return data + signature_payload(data, private_key)


def verify(data: bytes, public_key: bytes) -> Signature:
    """Check that ``data`` ends with a valid signature by ``public_key`` (raw 32 bytes)."""
    found = find_signature(data)
    if found is None:
        raise BootObjectError("boot object is not signed (no m1n1_sig payload at its end)")
    want = key_id(public_key)
    if found.key_id != want:
        raise BootObjectError(
            f"signed by key {found.key_id.hex()[:16]}…, not by {want.hex()[:16]}…",
            hint="verify with the public key of the signing key",
        )
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(found.signature, data[: found.offset])
    except InvalidSignature as exc:
        raise BootObjectError("signature does not match the boot object (tampered?)") from exc
    return found


def strip_signature(data: bytes) -> bytes:
    found = find_signature(data)
    return data if found is None else data[: found.offset]


# -- key files ---------------------------------------------------------------------------


def generate_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def _read(path: Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise BootObjectError(f"cannot read key file {path}: {exc.strerror}") from exc


def _hex_key(raw: bytes) -> tuple[str, bytes] | None:
    """(prefix, 32 bytes) of a hex key file, None when it is not one."""
    try:
        text = raw.decode("ascii").strip()
    except UnicodeDecodeError:
        return None
    m = _HEX_RE.fullmatch(text)
    return (m["prefix"] or "", bytes.fromhex(m["hex"])) if m else None


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """An Ed25519 private key from PEM (PKCS#8, unencrypted) or a 64-hex-digit seed."""
    raw = _read(path)
    if raw.lstrip().startswith(b"-----BEGIN"):
        try:
            key = serialization.load_pem_private_key(raw, password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            raise BootObjectError(f"{path}: not an unencrypted PEM private key") from exc
        if not isinstance(key, Ed25519PrivateKey):
            raise BootObjectError(f"{path}: the PEM key is not an Ed25519 key")
        return key
    found = _hex_key(raw)
    if found is None or found[0] == "ed25519:":
        raise BootObjectError(f"{path}: not a PEM or hex Ed25519 private key")
    return Ed25519PrivateKey.from_private_bytes(found[1])


def load_public_key(path: Path) -> bytes:
    """Raw 32-byte public key from PEM (public or private), hex or ``ed25519:<hex>``."""
    raw = _read(path)
    if b"PRIVATE KEY-----" in raw or raw.lstrip().startswith(SEED_PREFIX.encode()):
        return public_bytes(load_private_key(path).public_key())
    if raw.lstrip().startswith(b"-----BEGIN"):
        try:
            key = serialization.load_pem_public_key(raw)
        except (ValueError, UnsupportedAlgorithm) as exc:
            raise BootObjectError(f"{path}: not a PEM public key") from exc
        if not isinstance(key, Ed25519PublicKey):
            raise BootObjectError(f"{path}: the PEM key is not an Ed25519 key")
        return public_bytes(key)
    found = _hex_key(raw)
    if found is None:
        raise BootObjectError(f"{path}: not a PEM or hex Ed25519 public key")
    return found[1]


def save_private_key(path: Path, key: Ed25519PrivateKey, fmt: KeyFormat = KeyFormat.PEM) -> None:
    """Write the private key (mode 0600), atomically."""
    if fmt is KeyFormat.PEM:
        data = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    else:
        seed = key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        data = (SEED_PREFIX + seed.hex() + "\n").encode()
    write_bytes(path, data, mode=0o600)


def save_public_key(path: Path, public_key: bytes, fmt: KeyFormat = KeyFormat.PEM) -> None:
    if fmt is KeyFormat.PEM:
        data = Ed25519PublicKey.from_public_bytes(public_key).public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    else:
        data = b"ed25519:" + public_key.hex().encode() + b"\n"
    write_bytes(path, data)
