"""Bluetooth collector (formats.md §7): names, vendors, duplicates, missing patch tables."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.fwtree import BT_CORE, BT_PROBLEMS, make_raw_dump_dir
from vendorfw.collectors import bluetooth
from vendorfw.source import FirmwareSource


def _run(root: Path, names: dict[str, bytes]):
    bt = root / "bluetooth"
    bt.mkdir(parents=True, exist_ok=True)
    for name, data in names.items():
        (bt / name).write_bytes(data)
    files, problems = bluetooth.collect(FirmwareSource.of_paths(firmware=root))
    return {f.name: f.read() for f in files}, problems


def test_golden_tree(tmp_path):
    make_raw_dump_dir(tmp_path, seed=5)
    fw = tmp_path / "firmware"
    files, problems = bluetooth.collect(FirmwareSource.of_paths(firmware=fw))
    assert [f.name for f in files] == sorted(BT_CORE, key=str.encode)
    for f in files:
        assert f.content.path == fw / "bluetooth" / BT_CORE[f.name]  # passed through, not copied
    assert {str(Path(p.path).relative_to(fw)) for p in problems} == set(BT_PROBLEMS)


@pytest.mark.parametrize(("stem", "name"), [
    ("BCM4378B1_22.1.538.4006_PCIE_macOS_Shikoku_MUR", "brcm/brcmbt4378b1-apple,shikoku-m.bin"),
    ("BCM4378B1_22.1.538.4006_PCIE_Shikoku_USI", "brcm/brcmbt4378b1-apple,shikoku-u.bin"),
    ("BCM4387C2_19.3.395.4044_PCIE_macOS_Willamette_MauiES2_USI",
     "brcm/brcmbt4387c2-apple,maui-u.bin"),
    ("BCM4387C2_19.3.395.4044_PCIE_Willamette_Lanai_ES2_MUR",
     "brcm/brcmbt4387c2-apple,lanai-m.bin"),
    ("BCM4388B0_23.1.15.1001_PCIE_macOS_Tokara_GEN", "brcm/brcmbt4388b0-apple,tokara.bin"),
    ("bcm4377b3_21.1_PCIE_macOS_AmamiS_GEN", "brcm/brcmbt4377b3-apple,amami.bin"),
])
def test_names(stem, name):
    assert bluetooth.parse_name(stem).linux_name("bin") == name


@pytest.mark.parametrize(("stem", "message"), [
    ("BCM4378B1_22.1_PCIE_macOS_Kyushu", "found 0"),
    ("BCM4378B1_22.1_PCIE_macOS_Kyushu_MUR_GEN", "found 2"),
    ("BCM4378B1_22.1_PCIE_macOS_Kyushu_MURATA", "found 0"),  # whole parts only
    ("BCM437B1_22.1_PCIE_Kyushu_MUR", "not a BCM43xx"),
    ("BCM4378_22.1_PCIE_Kyushu_MUR", "not a BCM43xx"),
    ("BCM4378B1_22.1_macOS_Kyushu_MUR", "no PCIE"),
    ("BCM4378B1_22.1_PCIE_macOS", "no usable board"),
    ("BCM4378B1_22.1_PCIE_ES2_MUR", "no usable board"),
])
def test_unparsable_names(stem, message):
    with pytest.raises(ValueError, match=message):
        bluetooth.parse_name(stem)


def test_first_in_name_order_wins_and_dev_is_skipped(tmp_path):
    got, problems = _run(tmp_path, {
        "BCM4378B1_22.1.538.4006_PCIE_macOS_Shikoku_MUR.bin": b"new",
        "BCM4378B1_22.1.500.1000_PCIE_macOS_Shikoku_MUR.bin": b"old",
        "BCM4378B1_22.1.538.4006_PCIE_macOS_Shikoku_MUR.ptb": b"ptb-new",
        "BCM4378B1_22.1.100.1000_PCIE_macOS_Shikoku_MUR_DEV.bin": b"dev",
        "BCM4378B1_22.1.100.1000_PCIE_macOS_Shikoku_MUR_DEV.ptb": b"dev",
    })
    assert got == {"brcm/brcmbt4378b1-apple,shikoku-m.bin": b"old",
                   "brcm/brcmbt4378b1-apple,shikoku-m.ptb": b"ptb-new"}
    assert problems == []


def test_ptb_without_bin_is_dropped(tmp_path):
    got, problems = _run(tmp_path, {"BCM4387C2_19.3_PCIE_macOS_Lanai_MUR.ptb": b"p"})
    assert got == {}
    assert problems == []


def test_missing_ptb_warns_except_for_4388_tokara_and_amami(tmp_path):
    got, problems = _run(tmp_path, {
        "BCM4388B0_23.1_PCIE_macOS_Tokara_GEN.bin": b"t",
        "BCM4388B0_23.1_PCIE_macOS_AmamiES_GEN.bin": b"a",
        "BCM4388B0_23.1_PCIE_macOS_Kauai_GEN.bin": b"k",
        "BCM4387C2_19.3_PCIE_macOS_Tokara_USI.bin": b"t2",
    })
    assert sorted(got) == ["brcm/brcmbt4387c2-apple,tokara-u.bin",
                           "brcm/brcmbt4388b0-apple,amami.bin",
                           "brcm/brcmbt4388b0-apple,kauai.bin",
                           "brcm/brcmbt4388b0-apple,tokara.bin"]
    assert sorted(Path(p.path).name for p in problems) == [
        "BCM4387C2_19.3_PCIE_macOS_Tokara_USI.bin", "BCM4388B0_23.1_PCIE_macOS_Kauai_GEN.bin"]
    assert all(p.reason == "no matching .ptb patch table" for p in problems)


def test_missing_input_contributes_nothing(tmp_path):
    assert bluetooth.collect(FirmwareSource()) == ([], [])
    assert bluetooth.collect(FirmwareSource.of_paths(firmware=tmp_path)) == ([], [])
