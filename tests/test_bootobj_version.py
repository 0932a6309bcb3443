"""Version markers, semantic-version precedence and installed-variable read-back (§2, §4)."""

from __future__ import annotations

import pytest

from installer.bootobj import version
from installer.bootobj.vars import Variable
from installer.bootobj.version import LoaderKind, Stage, parse_version
from installer.errors import BootObjectError
from tests.support.bootobjgen import CODE, fake_m1n1, fake_stage

# semver.org §11 example chain, then our git-describe and leading-v forms.
ORDERED = [
    "1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta", "1.0.0-beta.2",
    "1.0.0-beta.11", "1.0.0-rc.1", "1.0.0", "v1.0.1", "1.0.1-3-gabcdef0", "1.0.1-12-g0123abc",
    "1.1", "1.10.0", "2.0.0",
]


def test_precedence_chain():
    versions = [parse_version(t) for t in ORDERED]
    for low, high in zip(versions, versions[1:], strict=False):
        assert low < high, (low, high)
        assert high > low
        assert not high <= low


@pytest.mark.parametrize(("a", "b"), [("1.0.0+build.1", "1.0.0+build.2"), ("v1.2", "1.2.0")])
def test_equal_precedence(a, b):
    assert parse_version(a).same_precedence(parse_version(b))
    assert parse_version(a) <= parse_version(b)
    assert parse_version(a) >= parse_version(b)


def test_describe_dirty_and_fields():
    v = parse_version("v1.4.11-12-gabcdef0-dirty")
    assert (v.major, v.minor, v.patch, v.pre, v.post) == (1, 4, 11, (), 12)
    assert str(v) == "v1.4.11-12-gabcdef0-dirty"
    assert parse_version("1.0.0-rc.1-2-gabcd").pre == ("rc", "1")


@pytest.mark.parametrize("bad", ["", "1", "x.y.z", "01.0.0", "1.0.0-", "1.0.0-a..b",
                                 "1.0.0-01", "1.0.0 beta"])
def test_bad_versions(bad):
    with pytest.raises(BootObjectError):
        parse_version(bad)


def test_read_pippin_version():
    v = version.read_version(fake_stage("1.2.3-rc.1", "stage2"))
    assert v is not None
    assert (v.kind, str(v.version), v.stage, v.offset) == (
        LoaderKind.PIPPIN, "1.2.3-rc.1", Stage.STAGE2, 0x40)


@pytest.mark.parametrize(("value", "stage"), [("stage1-0.2.0", "stage1"),
                                              ("stage2:0.2.0", "stage2"),
                                              ("0.2.0", "unknown")])
def test_kind_inside_the_version_value(value, stage):
    v = version.read_version(fake_stage(value, None))
    assert v is not None
    assert (str(v.version), v.stage) == ("0.2.0", stage)


def test_read_m1n1_version_and_pippin_preferred():
    v = version.read_version(fake_m1n1("v1.4.11-3-gdeadbee"))
    assert v is not None
    assert (v.kind, v.version.post, v.stage) == (LoaderKind.M1N1, 3, Stage.UNKNOWN)
    both = fake_stage(code=CODE + b"##m1n1_ver##v9.9.9\0")
    assert version.read_version(both).kind is LoaderKind.PIPPIN


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"xx##pippin_ver##" + b"1" * 80, "no NUL within 64 bytes"),
        (b"##pippin_ver##\0", "no printable version"),
        (b"##m1n1_ver##v1\x01\0", "no printable version"),
        (b"##pippin_ver##banana\0", "not a semantic version"),
        (b"##pippin_ver##1.0.0\0##pippin_stage##stage3\0", "unknown Pippin stage kind"),
    ],
)
def test_bad_markers(data, message):
    with pytest.raises(BootObjectError, match=message):
        version.read_version(data)


def test_no_marker():
    assert version.read_version(bytes(4096)) is None


def test_m1n1_installed_vars_after_stackbot():
    m = fake_m1n1()  # its code holds a STACKBOT too, followed by binary bytes
    text = b"chosen.asahi,efi-system-partition=abc\nchainload=x;m1n1/boot.bin\n"
    got = version.read_installed_vars(m + text + b"\0\0\0\0")
    assert got == (Variable("chosen.asahi,efi-system-partition", "abc"),
                   Variable("chainload", "x;m1n1/boot.bin"))
    # A value that itself contains STACKBOT does not move the start.
    tricky = m + b"chosen.x=STACKBOTchosen.y=1\n\0\0\0\0"
    assert version.read_installed_vars(tricky) == (Variable("chosen.x", "STACKBOTchosen.y=1"),)
    # Trailing non-NUL data (a wrapper): the first well-formed text still wins.
    assert version.read_installed_vars(m + b"tso=1\n\0\0\0\0\x01\x02") == (Variable("tso", "1"),)
    # Values are reported as written by the other tool, even where Pippin would refuse them.
    odd = m + b"chainload=ABC;m1n1/boot.bin\n\0\0\0\0"
    assert version.read_installed_vars(odd) == (Variable("chainload", "ABC;m1n1/boot.bin"),)


def test_pippin_installed_vars_read_back():
    stage1 = fake_stage(stage="stage1")
    assert version.read_installed_vars(stage1 + b"tso=1\n\0\0\0\0") == (Variable("tso", "1"),)
    assert version.read_installed_vars(stage1) == ()
    assert version.read_installed_vars(stage1 + b"a=1\n\0\0") == (Variable("a", "1"),)


def test_installed_vars_errors():
    with pytest.raises(BootObjectError, match="no STACKBOT"):
        version.read_installed_vars(bytes(100))
    with pytest.raises(BootObjectError, match="installed variables are malformed"):
        version.read_installed_vars(b"STACKBOTno equals here\n\0")
    with pytest.raises(BootObjectError, match="not ended by four NUL"):
        version.read_installed_vars(fake_stage(stage="stage1") + b"a=1\n\0x")


def test_pippin_marker_only_counts_in_the_header_area():
    # e.g. an m1n1 boot.bin whose uncompressed payload is a Pippin image
    data = fake_m1n1() + fake_stage("9.0.0")
    assert version.read_version(data).kind is LoaderKind.M1N1
    assert version.read_version(bytes(0x800) + fake_stage()) is None
