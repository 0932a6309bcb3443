"""Stage-1/stage-2 variable text (formats.md §2): golden bytes, round trips, every refusal."""

from __future__ import annotations

import logging

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from installer.bootobj import vars as bvars
from installer.bootobj.vars import Variable
from installer.errors import BootObjectError

UUID = "3c5a0b1e-9d2f-4e6a-8b7c-0123456789ab"


def test_stage1_config_golden_bytes():
    # Written by hand from §2: ESP property, chainload to m1n1/boot.bin, key, extras, 4 NULs.
    key = bytes(range(32))
    got = bvars.encode(
        bvars.stage1_config(
            UUID.upper(),
            {"chosen.bootargs": "quiet", "display": "1920x1080@60,retina", "tso": "1"},
            public_key=key,
        )
    )
    want = (
        b"chosen.asahi,efi-system-partition=3c5a0b1e-9d2f-4e6a-8b7c-0123456789ab\n"
        b"chainload=3c5a0b1e-9d2f-4e6a-8b7c-0123456789ab;m1n1/boot.bin\n"
        b"chainload.key=ed25519:000102030405060708090a0b0c0d0e0f"
        b"101112131415161718191a1b1c1d1e1f\n"
        b"chosen.bootargs=quiet\n"
        b"display=1920x1080@60,retina\n"
        b"tso=1\n"
        b"\x00\x00\x00\x00"
    )
    assert got == want


def test_minimal_stage1_config():
    assert bvars.encode(bvars.stage1_config(UUID)) == (
        f"chosen.asahi,efi-system-partition={UUID}\nchainload={UUID};m1n1/boot.bin\n".encode()
        + b"\0\0\0\0"
    )


def test_empty_block_is_just_the_terminator():
    assert bvars.encode([]) == b"\0\0\0\0"
    assert bvars.read_block(b"\0\0\0\0") == ((), 4)


def test_round_trip_and_offsets():
    variables = bvars.stage1_config(UUID, {"mitigations": "spectre,ssbd"})
    blob = b"IMAGE" + bvars.encode(variables) + b"m1n1_sig..."
    got, end = bvars.read_block(blob, 5)
    assert got == variables
    assert blob[end:] == b"m1n1_sig..."


_name_chars = st.sampled_from("abcxyzABC0189,._+?-")
_names = st.text(_name_chars, min_size=1, max_size=64)
_values = st.text(
    st.characters(blacklist_characters="\0\n\r", blacklist_categories=("Cs",)), max_size=200
)


@settings(max_examples=150, deadline=None, database=None)
@given(st.lists(st.tuples(_names, _values), max_size=20, unique_by=lambda t: t[0]))
def test_round_trip_property(pairs):
    variables = [Variable("x" + n, v) for n, v in pairs if len(("x" + n).encode()) <= 64]
    variables = [v for v in variables if v.name not in bvars.KNOWN_NAMES]
    try:
        blob = bvars.encode(variables)
    except BootObjectError:
        return  # a value over 1024 UTF-8 bytes; covered by its own test
    assert bvars.read_block(blob) == (tuple(variables), len(blob))


def test_limits_are_inclusive():
    ok = [Variable("n" * 64, "v" * 1024)] + [Variable(f"chosen.p{i}", "x") for i in range(16)]
    bvars.validate(ok)


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ([Variable("n" * 65, "v")], "name longer than 64 bytes"),
        ([Variable("n", "v" * 1025)], "longer than 1024 bytes"),
        ([Variable("n", "é" * 513)], "longer than 1024 bytes"),
        ([Variable(f"chosen.p{i}", "x") for i in range(17)], "17 chosen.* variables"),
        ([Variable("", "v")], "empty name"),
        ([Variable("#comment", "v")], "bad variable name"),
        ([Variable("a b", "v")], "bad variable name"),
        ([Variable("a=b", "v")], "bad variable name"),
        ([Variable("chosen.", "v")], "names no property"),
        ([Variable("n", "a\0b")], "contains a NUL byte"),
        ([Variable("n", "a\nb=c")], "contains a newline"),
        ([Variable("n", "a\r")], "carriage return"),
        ([Variable("n", "1"), Variable("n", "2")], "set twice"),
        ([Variable("chainload", UUID.upper() + ";m1n1/boot.bin")], "bad PARTUUID"),
        ([Variable("chainload", UUID)], "not <PARTUUID>;<path>"),
        ([Variable("chainload", UUID + ";")], "not <PARTUUID>;<path>"),
        ([Variable("chosen.asahi,efi-system-partition", "esp")], "bad PARTUUID"),
        ([Variable("chainload.key", "ed25519:" + "AB" * 32)], "chainload.key must be"),
        ([Variable("chainload.key", "rsa:" + "ab" * 32)], "chainload.key must be"),
        ([Variable("display", "big")], "display="),
        ([Variable("display", "0x0")], "display="),
        ([Variable("mitigations", "a,,b")], "comma-separated"),
        ([Variable("tso", "0")], "tso="),
    ],
)
def test_refusals(variables, message):
    with pytest.raises(BootObjectError, match=message):
        bvars.encode(variables)


def test_uppercase_partuuid_hint():
    with pytest.raises(BootObjectError) as exc:
        bvars.validate([Variable("chainload", UUID.upper() + ";m1n1/boot.bin")])
    assert exc.value.hint == "PARTUUIDs are written lowercase"


@pytest.mark.parametrize("name", ["chainload", "chainload.key",
                                  "chosen.asahi,efi-system-partition",
                                  "chosen.asahi,m1n1-stage1-version"])
def test_stage1_config_refuses_overriding_derived_names(name):
    with pytest.raises(BootObjectError, match="set by the installer"):
        bvars.stage1_config(UUID, {name: "x"})


@pytest.mark.parametrize("bad", ["", "3c5a0b1e9d2f4e6a8b7c0123456789ab", "{" + UUID + "}",
                                 UUID[:-1] + "g"])
def test_stage1_config_refuses_bad_partuuid(bad):
    with pytest.raises(BootObjectError, match="not a PARTUUID"):
        bvars.stage1_config(bad)


def test_stage1_config_refuses_bad_key_length():
    with pytest.raises(BootObjectError, match="33 bytes"):
        bvars.stage1_config(UUID, public_key=bytes(33))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b"a=1\n\nb=2\n", "line 2 is blank"),
        (b"a=1\n   \n", "line 2 is blank"),
        (b"a=1\nnoequals\n", "line 2 has no '='"),
        (b"# comment\na=1\n", "line 1 has no '='"),
        (b"#a=1\n", "bad variable name"),
        (b"a=\xff\xfe\n", "not UTF-8"),
        (b"a=1\r\n", "carriage return"),
        (b"\n", "line 1 is blank"),
    ],
)
def test_parse_refusals(text, message):
    with pytest.raises(BootObjectError, match=message):
        bvars.parse_text(text)


def test_parse_accepts_last_line_without_newline_and_keeps_duplicates_in_order():
    got = bvars.parse_text(b"chosen.x=1\nchosen.x=2")
    assert got == (Variable("chosen.x", "1"), Variable("chosen.x", "2"))
    assert bvars.as_dict(got) == {"chosen.x": "2"}  # the forwarded (later) value wins


def test_parse_value_may_contain_equals():
    assert bvars.parse_text(b"chosen.bootargs=root=/dev/vda rw\n") == (
        Variable("chosen.bootargs", "root=/dev/vda rw"),
    )


@pytest.mark.parametrize("blob", [b"a=1\n\0x", b"a=1\n\0\0\0x", b"a=1\n\0\0\x01\0"])
def test_read_block_needs_four_nuls(blob):
    with pytest.raises(BootObjectError, match="four NUL"):
        bvars.read_block(blob)


def test_read_block_accepts_end_of_data_and_short_terminator():
    assert bvars.read_block(b"a=1\n")[0] == (Variable("a", "1"),)
    assert bvars.read_block(b"a=1\n\0\0") == ((Variable("a", "1"),), 6)


def test_read_block_offset_outside():
    with pytest.raises(BootObjectError, match="outside"):
        bvars.read_block(b"abc", 9)


def test_parse_assignment():
    assert bvars.parse_assignment("chosen.bootargs=a=b") == Variable("chosen.bootargs", "a=b")
    with pytest.raises(BootObjectError, match="NAME=VALUE"):
        bvars.parse_assignment("novalue")


def test_unknown_name_is_accepted_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING):
        bvars.encode([Variable("frobnicate", "1")])
    assert "frobnicate is not one stage 1 or stage 2 knows" in caplog.text
