"""Which stage 1 an install registers (installer.bootobj.stage1src): Pippin's prebuilt one
on the simulated Mac, a given m1n1-format image anywhere, a refusal on a Mac without one;
and the answers file carries the path (`stage1 = "…"`)."""

from __future__ import annotations

import pytest

from installer.answers import Answers, parse_answers, to_toml
from installer.bootobj import assemble
from installer.bootobj import vars as bvars
from installer.bootobj.stage1src import check_stage1, resolve_stage1
from installer.errors import BootObjectError
from tests.support.bootobjgen import fake_m1n1, fake_stage
from tests.support.installfix import PREBUILT


def resolve(real_mac, given=None):
    return resolve_stage1(boot_object="m1n1.bin", entry_name="X", real_mac=real_mac,
                          given=given, prebuilt=PREBUILT)


def test_sim_takes_pippins_prebuilt_stage1():
    img = resolve(False)
    assert img.data == (PREBUILT / "stage1.bin").read_bytes()
    assert img.source == "pippin prebuilt"
    assert img.version.startswith("pippin ")


def test_a_given_m1n1_image_is_used_on_a_mac_and_on_the_sim(tmp_path):
    m1n1 = tmp_path / "m1n1.bin"
    m1n1.write_bytes(fake_m1n1("v1.4.11"))
    for real_mac in (True, False):
        img = resolve(real_mac, m1n1)
        assert img.data == m1n1.read_bytes()
        assert img.version == "m1n1 v1.4.11"
    # the installer appends the variables as always (formats.md §2)
    obj = assemble.assemble_stage1(img.data, bvars.stage1_config("1234abcd-0000-4000-8000-"
                                                                 "000000000001"))
    assert obj.startswith(img.data)
    assert b"chainload=1234abcd-0000-4000-8000-000000000001;m1n1/boot.bin\n" in obj


def test_a_mac_without_a_stage1_is_refused_with_a_hint():
    with pytest.raises(BootObjectError) as e:
        resolve(True)
    assert e.value.message == ("'X' needs an m1n1-format stage 1 (m1n1.bin) on a real Mac; "
                               "Pippin's own stage 1 has no Apple platform yet")
    assert "--stage1 PATH" in (e.value.hint or "")


def test_tethered_stage1_has_no_variables_and_refuses_chainload():
    data = fake_m1n1()
    assert assemble.assemble_stage1(data, (), tethered=True) == data + b"\0\0\0\0"
    with pytest.raises(BootObjectError, match="takes no chainload"):
        assemble.assemble_stage1(data, bvars.stage1_config("1234abcd-0000-4000-8000-"
                                                           "000000000001"), tethered=True)
    with pytest.raises(BootObjectError, match="lack chainload"):
        assemble.assemble_stage1(data, ())


@pytest.mark.parametrize(("data", "why"), [
    (b"", "0 bytes is not a loader image"),
    (b"\0" * (65 << 20), "is not a loader image"),
    (fake_stage("0.1.0", "stage2"), "Pippin's stage 2"),
])
def test_check_stage1_refusals(data, why):
    with pytest.raises(BootObjectError, match=why):
        check_stage1(data, "f")


def test_answers_file_carries_the_stage1_path():
    a = parse_answers(b'target = "disk0"\nstage1 = "/Users/a/m1n1.bin"\n', "answers.toml")
    assert a.stage1 == "/Users/a/m1n1.bin"
    assert parse_answers(to_toml(a).encode(), "again") == a
    assert Answers().stage1 is None
