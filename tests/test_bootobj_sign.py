"""Signature payloads (formats.md §4): golden bytes from RFC 8032 vectors, tampering, keys."""

from __future__ import annotations

import hashlib
import os
import struct

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from installer.bootobj import sign
from installer.errors import BootObjectError
from tests.support.bootobjgen import fake_stage

# RFC 8032 §7.1, TEST 1 (empty message) and TEST 2 (one byte 0x72).
RFC_1 = (
    "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
    "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
    b"",
    "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
    "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
)
RFC_2 = (
    "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
    "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
    b"\x72",
    "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da"
    "085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
)


def _key(seed_hex: str) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(bytes.fromhex(seed_hex))


@pytest.mark.parametrize("vector", [RFC_1, RFC_2])
def test_golden_payload(vector):
    seed, pub, msg, sig = vector
    # §4 by hand: tag, LE u32 109, alg 1, SHA-256(raw public key), 64-byte signature.
    want = (
        b"m1n1_sig" + b"\x6d\x00\x00\x00" + b"\x01"
        + hashlib.sha256(bytes.fromhex(pub)).digest() + bytes.fromhex(sig)
    )
    assert len(want) == 109
    assert sign.sign(msg, _key(seed)) == msg + want
    assert sign.verify(msg + want, bytes.fromhex(pub)).offset == len(msg)


@pytest.fixture(scope="module")
def key():
    return _key(RFC_2[0])


@pytest.fixture(scope="module")
def pub(key):
    return sign.public_bytes(key.public_key())


@pytest.fixture(scope="module")
def signed(key):
    return sign.sign(fake_stage() + b"chosen.x=1\n\0\0\0\0", key)


def test_unsigned_object_with_tag_bytes_in_its_code_is_unsigned():
    data = fake_stage()
    assert b"m1n1_sig" in data
    assert sign.find_signature(data) is None
    with pytest.raises(BootObjectError, match="not signed"):
        sign.verify(data, bytes(32))


def test_every_byte_is_covered(signed, pub):
    # Flip one bit at positions across the signed part, the key id and the signature.
    for pos in [0, 0x38, 0x800, len(signed) - 110, len(signed) - 60, len(signed) - 1]:
        bad = bytearray(signed)
        bad[pos] ^= 0x01
        with pytest.raises(BootObjectError, match="does not match|signed by key"):
            sign.verify(bytes(bad), pub)


def test_appended_bytes_break_the_signature(signed, pub):
    with pytest.raises(BootObjectError, match="not signed"):
        sign.verify(signed + b"x", pub)


def test_wrong_key(signed):
    other = sign.public_bytes(_key(RFC_1[0]).public_key())
    signer = hashlib.sha256(bytes.fromhex(RFC_2[1])).hexdigest()[:16]
    with pytest.raises(BootObjectError, match=f"signed by key {signer}…, not by") as exc:
        sign.verify(signed, other)
    assert exc.value.hint


def test_wrong_key_with_forged_key_id(signed):
    # The key id names the other key, but the signature is still the first key's.
    other = sign.public_bytes(_key(RFC_1[0]).public_key())
    forged = signed[:-96] + hashlib.sha256(other).digest() + signed[-64:]
    with pytest.raises(BootObjectError, match="does not match"):
        sign.verify(forged, other)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d[:-109] + d[-109:-101] + struct.pack("<I", 109) + b"\x02" + d[-96:],
         "algorithm 2 is unknown"),
        (lambda d: d + b"m1n1_sig" + struct.pack("<I", 13) + b"\x01", "is 13 bytes, not 109"),
        (lambda d: d + b"m1n1_sig\x01", "truncated"),
    ],
)
def test_malformed_payloads(signed, pub, mutate, message):
    with pytest.raises(BootObjectError, match=message):
        sign.verify(mutate(signed), pub)


def test_truncated_signature_is_not_a_signature(signed, pub):
    with pytest.raises(BootObjectError, match="not signed"):
        sign.verify(signed[:-1], pub)


def test_double_sign_refused_and_replace(signed, key, pub):
    with pytest.raises(BootObjectError, match="already signed"):
        sign.sign(signed, key)
    other = _key(RFC_1[0])
    resigned = sign.sign(signed, other, replace=True)
    assert len(resigned) == len(signed)
    sign.verify(resigned, sign.public_bytes(other.public_key()))
    assert sign.strip_signature(resigned) == signed[:-109]


# -- key files ---------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", list(sign.KeyFormat))
def test_key_files_round_trip(tmp_path, fmt, key, pub):
    sign.save_private_key(tmp_path / "k", key, fmt)
    sign.save_public_key(tmp_path / "k.pub", pub, fmt)
    assert (tmp_path / "k").stat().st_mode & 0o777 == 0o600
    loaded = sign.load_private_key(tmp_path / "k")
    assert sign.public_bytes(loaded.public_key()) == pub
    assert sign.load_public_key(tmp_path / "k.pub") == pub
    assert sign.load_public_key(tmp_path / "k") == pub  # public half of a private key file


def test_hex_formats(tmp_path, pub):
    (tmp_path / "seed").write_text(RFC_2[0].upper() + "\n")
    assert sign.public_bytes(sign.load_private_key(tmp_path / "seed").public_key()) == pub
    (tmp_path / "pub").write_text(f"ed25519:{RFC_2[1]}")
    assert sign.load_public_key(tmp_path / "pub") == pub
    with pytest.raises(BootObjectError, match="not a PEM or hex Ed25519 private"):
        sign.load_private_key(tmp_path / "pub")  # a public key is never taken as a seed
    sign.save_private_key(tmp_path / "k", _key(RFC_2[0]), sign.KeyFormat.HEX)
    assert (tmp_path / "k").read_text() == f"ed25519-seed:{RFC_2[0]}\n"


def test_pem_is_standard(tmp_path, key):
    sign.save_private_key(tmp_path / "k.pem", key)
    text = (tmp_path / "k.pem").read_bytes()
    assert text.startswith(b"-----BEGIN PRIVATE KEY-----")
    again = serialization.load_pem_private_key(text, None)
    assert isinstance(again, Ed25519PrivateKey)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "not a PEM or hex"),
        (b"abcd", "not a PEM or hex"),
        (b"\xff\xfe" * 40, "not a PEM or hex"),
        (b"-----BEGIN PRIVATE KEY-----\ngarbage\n-----END PRIVATE KEY-----\n", "not an unen"),
    ],
)
def test_bad_private_key_files(tmp_path, content, message):
    (tmp_path / "k").write_bytes(content)
    with pytest.raises(BootObjectError, match=message):
        sign.load_private_key(tmp_path / "k")


def test_non_ed25519_and_encrypted_keys_refused(tmp_path, key):
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    (tmp_path / "rsa").write_bytes(rsa_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    with pytest.raises(BootObjectError, match="not an Ed25519 key"):
        sign.load_private_key(tmp_path / "rsa")
    (tmp_path / "rsa.pub").write_bytes(rsa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    with pytest.raises(BootObjectError, match="not an Ed25519 key"):
        sign.load_public_key(tmp_path / "rsa.pub")
    (tmp_path / "enc").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pw")))
    with pytest.raises(BootObjectError, match="not an unencrypted PEM"):
        sign.load_private_key(tmp_path / "enc")


def test_missing_key_file(tmp_path):
    with pytest.raises(BootObjectError, match="cannot read key file"):
        sign.load_public_key(tmp_path / "nope")


def test_random_keys_round_trip():
    data = os.urandom(1000)
    k = sign.generate_key()
    sign.verify(sign.sign(data, k), sign.public_bytes(k.public_key()))
