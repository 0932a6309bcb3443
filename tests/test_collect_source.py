"""FirmwareSource.from_dir layouts and vendorfw.collect.collect (order, progress, golden)."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from pathlib import Path

import pytest

from tests.support.fwtree import make_macos_tree, make_raw_dump_dir, raw_dump_members
from vendorfw import collect as collect_mod
from vendorfw.collect import collect
from vendorfw.errors import ArchiveError, CollectError
from vendorfw.model import FirmwareFile, Problem
from vendorfw.package import plan_package, ustar_problem, write_package
from vendorfw.source import FirmwareSource


def _inputs(src: FirmwareSource) -> dict[str, object]:
    return {f.name: getattr(src, f.name) for f in dataclasses.fields(src) if f.name != "tree"}


def test_raw_dump_layout(tmp_path):
    make_raw_dump_dir(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [*raw_dump_members(), "kernelcache.release.mac13j"])
    src = FirmwareSource.from_dir(tmp_path)
    assert _inputs(src) == dict(
        firmware="firmware",
        fud_firmware="fud_firmware",
        camerad="appleh13camerad",
        factorydata="com.apple.factorydata",
        als_cal="apple/aop-als-cal.bin",
        kernelcache=tmp_path / "kernelcache.release.mac13j",
    )
    assert src.tree is not None
    assert src.tree.shown("appleh13camerad") == str(tmp_path / "appleh13camerad")


def test_macos_layout(tmp_path):
    make_macos_tree(tmp_path)
    src = FirmwareSource.from_dir(tmp_path)
    assert _inputs(src) == dict(
        firmware="usr/share/firmware",
        fud_firmware="fud_firmware",
        camerad="usr/sbin/appleh13camerad",
        factorydata="System/Library/Caches/com.apple.factorydata",
        als_cal="apple/aop-als-cal.bin",
        kernelcache=tmp_path / "kernelcache.release.mac13g",
    )


def test_missing_parts_are_none_and_alternatives_are_found(tmp_path):
    (tmp_path / "aop-als-cal.bin").write_bytes(b"c")
    (tmp_path / "appleh13camerad").mkdir()  # a directory is not the binary
    (tmp_path / "kernelcache.b").write_bytes(b"k")
    (tmp_path / "kernelcache.a").write_bytes(b"k")
    (tmp_path / "kernelcache.0").mkdir()
    src = FirmwareSource.from_dir(tmp_path)
    assert _inputs(src) == dict(firmware=None, fud_firmware=None, camerad=None,
                                factorydata=None, als_cal="aop-als-cal.bin",
                                kernelcache=tmp_path / "kernelcache.a")


def test_raw_dump_names_win_over_macos_names(tmp_path):
    (tmp_path / "firmware").mkdir()
    (tmp_path / "usr/share/firmware").mkdir(parents=True)
    assert FirmwareSource.from_dir(tmp_path).firmware == "firmware"


def test_empty_or_missing_source_is_an_error(tmp_path):
    with pytest.raises(CollectError, match="no firmware sources found"):
        FirmwareSource.from_dir(tmp_path)
    with pytest.raises(CollectError, match="is not a directory"):
        FirmwareSource.from_dir(tmp_path / "nope")


@pytest.mark.parametrize("maker", [make_raw_dump_dir, make_macos_tree])
def test_collect_golden_and_order(tmp_path, maker):
    expected = maker(tmp_path, seed=21)
    seen: list[str] = []
    files, problems = collect(FirmwareSource.from_dir(tmp_path), progress=seen.append)
    assert seen == ["wifi", "bluetooth", "multitouch", "isp", "als", "kernel"]
    got = {f.name: hashlib.sha256(f.read()).hexdigest() for f in files}
    assert got == expected.files
    assert {Path(p.path).relative_to(tmp_path).as_posix() for p in problems} == expected.problems
    # collector order, each collector sorted by name in byte order
    groups = [
        [n for n in (f.name for f in files) if n.startswith("brcm/brcmfmac")],
        [n for n in (f.name for f in files) if n.startswith("brcm/brcmbt")],
        [n for n in (f.name for f in files) if "mtfw-" in n],
        [n for n in (f.name for f in files) if n.startswith("apple/isp_")],
        [n for n in (f.name for f in files)
         if n.startswith(("apple/HmCA", "apple/aop-als"))],
        ["asmedia/asm2214a-apple.bin"],
    ]
    assert [f.name for f in files] == [n for g in groups for n in sorted(g, key=str.encode)]


def test_collect_of_an_empty_source():
    assert collect(FirmwareSource()) == ([], [])


def test_duplicate_names_across_collectors_are_an_internal_error(monkeypatch):
    def one(_source):
        return [FirmwareFile("apple/x.bin", data=b"1")], []

    monkeypatch.setattr(collect_mod, "COLLECTORS", (("a", one), ("b", one)))
    with pytest.raises(AssertionError, match="apple/x.bin"):
        collect(FirmwareSource())


def test_problems_are_logged(tmp_path, caplog):
    make_raw_dump_dir(tmp_path)
    with caplog.at_level(logging.INFO, logger="vendorfw.collect"):
        _files, problems = collect(FirmwareSource.from_dir(tmp_path))
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == len(problems)
    assert any("collected" in r.getMessage() for r in caplog.records)


def test_scale_reaches_benchmark_size(tmp_path):
    """Scale 11 is what the benchmark uses: about 1,000 files and 50 MB (issue 13's dump)."""
    expected = make_macos_tree(tmp_path, seed=0, scale=11)
    assert 1000 <= expected.source_files <= 1200
    assert 45_000_000 <= expected.source_bytes <= 60_000_000
    files, _ = collect(FirmwareSource.from_dir(tmp_path))
    assert len(files) == len(expected.files)


def test_links_leading_outside_the_source_are_reported(tmp_path):
    import os

    secret = tmp_path / "secret"
    secret.write_bytes(b"not firmware")
    root = tmp_path / "dump"
    wifi = root / "firmware/wifi/C-4378__s-B1"
    bt = root / "firmware/bluetooth"
    fd = root / "com.apple.factorydata"
    for d in (wifi, bt, fd):
        d.mkdir(parents=True)
    (wifi / "kyushu.trx").write_bytes(b"real")
    os.symlink("kyushu.trx", wifi / "honshu.trx")  # inside: fine
    os.symlink(secret, wifi / "shikoku.trx")
    os.symlink("../../../secret", bt / "BCM4378B1_1_PCIE_Shikoku_MUR.bin")
    os.symlink(secret, fd / "HmCA-1")
    os.symlink(root / "missing", fd / "HmCA-2")  # dangling: not a file, skipped silently
    files, problems = collect(FirmwareSource.from_dir(root))
    assert {f.name: f.read() for f in files} == {
        "brcm/brcmfmac4378b1-pcie.apple,honshu.bin": b"real",
        "brcm/brcmfmac4378b1-pcie.apple,kyushu.bin": b"real",
    }
    assert sorted(Path(p.path).name for p in problems) == [
        "BCM4378B1_1_PCIE_Shikoku_MUR.bin", "HmCA-1", "shikoku.trx"]
    assert all(p.reason.startswith("link leads outside") for p in problems)


def test_bug_one_backslash_name_aborted_the_whole_package(tmp_path):
    """A Wi-Fi or factory-data name with a backslash is skipped and reported; the rest is
    packaged (it used to fail the manifest check and the whole extract)."""
    w = tmp_path / "firmware/wifi/C-4378__s-B1"
    w.mkdir(parents=True)
    (w / "P-sh\\ik.txt").write_bytes(b"k=v\n")
    (w / "ok.trx").write_bytes(b"blob")
    fd = tmp_path / "com.apple.factorydata"
    fd.mkdir()
    (fd / "HmCA\\x").write_bytes(b"cal")
    files, problems = collect(FirmwareSource.from_dir(tmp_path))
    assert [f.name for f in files] == ["brcm/brcmfmac4378b1-pcie.apple,ok.bin"]
    assert sorted(Path(p.path).name for p in problems) == ["HmCA\\x", "P-sh\\ik.txt"]
    plan_package(files)  # the rest packages fine


def test_names_a_package_cannot_hold_are_problems_not_failures(monkeypatch):
    """The safety net in collect(): whatever a collector emits must pass check_name."""
    bad = FirmwareFile("brcm/a b.bin", data=b"x")
    good = FirmwareFile("brcm/ok.bin", data=b"y")
    monkeypatch.setattr(collect_mod, "COLLECTORS", (("wifi", lambda s: ([bad, good], [])),))
    files, problems = collect(FirmwareSource())
    assert files == [good]
    assert problems == [Problem("brcm/a b.bin", "output name 'brcm/a b.bin': whitespace, "
                                "control character or backslash in name")]


def test_bug_one_overlong_name_aborted_the_whole_package(tmp_path):
    """firmware.tar is ustar: a name it cannot hold is reported and skipped instead of
    failing the archive writer ("Pathname too long") for every file."""
    w = tmp_path / "firmware/wifi/C-4378__s-B1"
    w.mkdir(parents=True)
    (w / ("a" * 90 + ".trx")).write_bytes(b"long")
    (w / "ok.trx").write_bytes(b"blob")
    files, problems = collect(FirmwareSource.from_dir(tmp_path))
    assert [f.name for f in files] == ["brcm/brcmfmac4378b1-pcie.apple,ok.bin"]
    assert len(problems) == 1
    assert "path too long for firmware.tar" in problems[0].reason


@pytest.mark.parametrize(("name", "fits"), [
    ("a" * 100, True),
    ("a" * 101, False),
    ("p" * 99 + "/" + "n" * 100, True),  # the directory entry is "ppp…/" (100 bytes)
    ("p" * 100 + "/n", False),
    ("p" * 60 + "/" + "q" * 90 + "/" + "n" * 100, True),
    ("p" * 60 + "/" + "q" * 100 + "/" + "n", False),
    ("p" * 90 + "/" + "q" * 64 + "/" + "n" * 100, True),  # prefix of 155 bytes
    ("p" * 90 + "/" + "q" * 65 + "/" + "n" * 100, False),
    ("p" * 10 + "/" + "n" * 101, False),
    ("brcm/" + "n" * 100, True),
])
def test_ustar_limits(tmp_path, name, fits):
    """The rule agrees with libarchive's ustar writer."""
    assert (ustar_problem(name) is None) is fits
    plan = plan_package([FirmwareFile(name, data=b"x")])
    out = tmp_path / "t.tar"
    with open(out, "wb") as f:
        if fits:
            write_package(plan, None, f)
        else:
            with pytest.raises(ArchiveError, match="too long"):
                write_package(plan, None, f)
