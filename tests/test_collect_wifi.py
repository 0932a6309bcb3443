"""Wi-Fi collector: naming, NVRAM cleanup and pruning (formats.md §7), golden by hand."""

from __future__ import annotations

import hashlib
from pathlib import Path, PurePosixPath

import pytest

from tests.support.fwtree import WIFI_CORE, WIFI_PROBLEMS, make_macos_tree, make_raw_dump_dir
from vendorfw.collectors import wifi
from vendorfw.source import FirmwareSource


def _collect(fw: Path):
    files, problems = wifi.collect(FirmwareSource.of_paths(firmware=fw))
    return {f.name: f.read() for f in files}, [f.name for f in files], problems


def _write(root: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        p = root / "wifi" / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return root


def test_golden_names_and_bytes_raw_dump(tmp_path):
    expected = make_raw_dump_dir(tmp_path, seed=3)
    got, order, problems = _collect(tmp_path / "firmware")
    assert sorted(got) == sorted(WIFI_CORE)
    assert order == sorted(order, key=str.encode)
    for name, data in got.items():
        assert hashlib.sha256(data).hexdigest() == expected.files[name], name
    assert {str(Path(p.path).relative_to(tmp_path / "firmware")) for p in problems} == set(
        WIFI_PROBLEMS
    )


def test_explicit_pruning_outcomes(tmp_path):
    """The same rules, spelled out as literal names for the tricky boards."""
    make_macos_tree(tmp_path, seed=1)
    got, _order, _ = _collect(tmp_path / "usr/share/firmware")
    pre = "brcm/brcmfmac4378b1-pcie.apple,"
    kyushu = sorted(n for n in got if n.startswith(pre + "kyushu") and n.endswith(".txt"))
    assert kyushu == [pre + "kyushu-RASP-m-7.9-X0.txt", pre + "kyushu-RASP-m-7.9-X2.txt",
                      pre + "kyushu-RASP-u.txt"]
    shikoku = sorted(n for n in got if n.startswith(pre + "shikoku"))
    assert shikoku == [pre + "shikoku.bin", pre + "shikoku.clm_blob", pre + "shikoku.txcap_blob",
                       pre + "shikoku.txt"]
    assert [n for n in got if "honshu" in n] == [pre + "honshu.bin", pre + "honshu.txt"]
    # identical variants are one content; the two kyushu antennas differ
    assert got[pre + "kyushu-RASP-u.txt"] == got[pre + "kyushu-RASP-m-7.9-X0.txt"]
    assert got[pre + "kyushu-RASP-m-7.9-X0.txt"] != got[pre + "kyushu-RASP-m-7.9-X2.txt"]


def test_pippin_rule_b_keeps_differing_antenna_under_equal_version(tmp_path):
    """The reference tool drops -5.0-X1 because 5.0 equals its parent; Pippin keeps it."""
    same, other = b"a=1\n", b"a=2\n"
    _write(tmp_path, {
        "C-4378__s-B1/P-hokkaido_M-RASP_V-u.txt": same,
        "C-4378__s-B1/P-hokkaido_M-RASP_V-u__m-5.0.txt": same,
        "C-4378__s-B1/P-hokkaido-X1_M-RASP_V-u__m-5.0.txt": other,
    })
    got, order, problems = _collect(tmp_path)
    pre = "brcm/brcmfmac4378b1-pcie.apple,hokkaido"
    assert order == [f"{pre}-RASP-u-5.0-X1.txt", f"{pre}-RASP-u-5.0.txt", f"{pre}-RASP-u.txt",
                     f"{pre}-RASP.txt", f"{pre}.txt"]
    assert got[f"{pre}-RASP-u-5.0-X1.txt"] == other
    assert got[f"{pre}.txt"] == same
    assert problems == []


def test_rule_b_prunes_when_nothing_below_differs(tmp_path):
    same = b"x=1\n"
    _write(tmp_path, {
        "C-4387__s-C2/P-maui_M-HRPN_V-u.txt": same,
        "C-4387__s-C2/P-maui-X0_M-HRPN_V-u__m-7.5.txt": same,
        "C-4387__s-C2/P-maui-X1_M-HRPN_V-u__m-7.5.txt": b"\n x =1\n\n",  # equal after cleanup
    })
    _got, order, _ = _collect(tmp_path)
    assert order == ["brcm/brcmfmac4387c2-pcie.apple,maui.txt"]


def test_rule_a_needs_identical_subtrees(tmp_path):
    """Two modules with equal own files but different children are not identical."""
    _write(tmp_path, {
        "C-4378__s-B1/P-kyushu_M-RASP.txt": b"a=1\n",
        "C-4378__s-B1/P-kyushu_M-HRPN.txt": b"a=1\n",
        "C-4378__s-B1/P-kyushu-X0_M-HRPN_V-m.txt": b"a=2\n",
    })
    _got, order, _ = _collect(tmp_path)
    pre = "brcm/brcmfmac4378b1-pcie.apple,kyushu"
    # the lone X0 under vendor m collapses to the vendor; HRPN keeps it (it differs)
    assert order == [f"{pre}-HRPN-m.txt", f"{pre}-HRPN.txt", f"{pre}-RASP.txt"]


@pytest.mark.parametrize(("rel", "name"), [
    ("C-4378__s-B1/P-shikoku-X3_M-RASP_V-u__m-6.11.txt",
     "brcm/brcmfmac4378b1-pcie.apple,shikoku-RASP-u-6.11-X3.txt"),
    ("C-4378__s-B1/shikoku.trx", "brcm/brcmfmac4378b1-pcie.apple,shikoku.bin"),
    ("C-4387__s-C2/maui.clmb", "brcm/brcmfmac4387c2-pcie.apple,maui.clm_blob"),
    ("C-4387__s-C2/maui.txcb", "brcm/brcmfmac4387c2-pcie.apple,maui.txcap_blob"),
    ("C-4388__s-B0/tokara.sig", "brcm/brcmfmac4388b0-pcie.apple,tokara.sig"),
    ("C-4377__s-B3/P-tokara_A-X5_m-1.0.txt", "brcm/brcmfmac4377b3-pcie.apple,tokara-1.0-X5.txt"),
])
def test_names_from_spec(rel, name):
    rel_path = PurePosixPath(rel)
    dims = wifi.parse_dimensions(rel_path)
    assert wifi.linux_name(rel_path.suffix, dims) == name


@pytest.mark.parametrize(("rel", "message"), [
    ("C-4378__s-B1/P-shikoku_Q-RASP.txt", "unknown dimension key 'Q'"),
    ("C-4378__s-B1/P-shikoku_MRASP.txt", "not key-value"),
    ("C-4378/shikoku.trx", "no revision"),
    ("s-B1/shikoku.trx", "no chip"),
    ("C-4378__s-B1/M-RASP.txt", "no platform"),
    ("C-4378__s-B1/P-shikoku-X1_A-X2.txt", "given twice"),
    ("C-4378__s-B1/P-shi koku.txt", "not plain ASCII"),
    ("C-4378__s-B1/P-shikoku_M-.txt", "not key-value"),
])
def test_bad_names_are_reported(tmp_path, rel, message):
    _write(tmp_path, {rel: b"k=v\n", "C-4378__s-B1/kyushu.trx": b"ok"})
    got, _order, problems = _collect(tmp_path)
    assert list(got) == ["brcm/brcmfmac4378b1-pcie.apple,kyushu.bin"]
    assert len(problems) == 1
    assert problems[0].path == str(tmp_path / "wifi" / rel)
    assert message in problems[0].reason


def test_nvram_cleanup_is_exact():
    raw = b" k = v \n\n   \nfoo=bar=baz\r\n\tnovalue \nlast=1"
    assert wifi.clean_nvram(raw) == b"k= v \nfoo=bar=baz\r\nnovalue\nlast=1\n"


def test_skips_excluded_dirs_gen_and_other_extensions(tmp_path):
    _write(tmp_path, {
        "perf/C-4378__s-B1/shikoku.trx": b"1",
        "C-4378__s-B1/assert/shikoku.trx": b"2",
        "C-4388__s-C2/tokara.trx": b"3",
        "C-4378__s-B1/shikoku_gen.trx": b"4",
        "C-4378__s-B1/shikoku.bin": b"5",
        "C-4378__s-B1/shikoku.trx": b"6",
    })
    got, _order, problems = _collect(tmp_path)
    assert got == {"brcm/brcmfmac4378b1-pcie.apple,shikoku.bin": b"6"}
    assert problems == []


def test_two_sources_for_one_name_reports_the_second(tmp_path):
    _write(tmp_path, {"C-4378__s-B1/shikoku.trx": b"first", "C-4378_s-B1/shikoku.trx": b"x"})
    got, _order, problems = _collect(tmp_path)
    assert got == {"brcm/brcmfmac4378b1-pcie.apple,shikoku.bin": b"first"}  # "__" < "_s"
    assert [p.path for p in problems] == [str(tmp_path / "wifi/C-4378_s-B1/shikoku.trx")]
    assert "same Linux name" in problems[0].reason


def test_passthrough_files_are_not_held_in_memory(tmp_path):
    make_raw_dump_dir(tmp_path)
    files, _ = wifi.collect(FirmwareSource.of_paths(firmware=tmp_path / "firmware"))
    for f in files:
        assert (f.data is None) == (not f.name.endswith(".txt")), f.name


def test_missing_input_contributes_nothing(tmp_path):
    assert wifi.collect(FirmwareSource()) == ([], [])
    assert wifi.collect(FirmwareSource.of_paths(firmware=tmp_path)) == ([], [])


def test_scaled_tree_matches_generated_expectations(tmp_path):
    expected = make_macos_tree(tmp_path, seed=7, scale=2)
    files, _ = wifi.collect(FirmwareSource.of_paths(firmware=tmp_path / "usr/share/firmware"))
    want = {n: h for n, h in expected.files.items() if n.startswith("brcm/brcmfmac")}
    assert len(want) == len(WIFI_CORE) + 20 * 5
    assert {f.name: hashlib.sha256(f.read()).hexdigest() for f in files} == want


def _lookup(out: dict[str, bytes], board: str, dims: list[str]) -> bytes | None:
    """The kernel's view: try the most specific name, then drop trailing dimensions."""
    pre = "brcm/brcmfmac4378b1-pcie.apple,"
    for n in range(len(dims), -1, -1):
        name = pre + "-".join([board, *dims[:n]]) + ".txt"
        if name in out:
            return out[name]
    return None


@pytest.mark.parametrize("seed", range(40))
def test_pruning_never_changes_what_the_kernel_loads(tmp_path, seed):
    """Invariant of rules (a) and (Pippin) (b): every source NVRAM is still what the
    most-to-least-specific lookup of its own name finds after pruning."""
    import random

    rng = random.Random(seed)
    values = {"M": ["RASP", "HRPN"], "V": ["m", "u"], "m": ["1.0", "2.0"], "A": ["X0", "X1"]}
    sources: dict[tuple[str, ...], bytes] = {}
    for _ in range(rng.randrange(1, 14)):
        board = rng.choice(["kyushu", "maui"])
        dims = [rng.choice(values[k]) for k in "MVmA"][: rng.randrange(5)]
        sources[(board, *dims)] = f"k={rng.randrange(3)}\n".encode()
    files = {}
    for (board, *dims), data in sources.items():
        parts = [f"P-{board}"] + [f"{k}-{v}" for k, v in zip("MVmA", dims, strict=False)]
        files[f"C-4378__s-B1/{'_'.join(parts)}.txt"] = data
    _write(tmp_path, files)
    out, _order, problems = _collect(tmp_path)
    assert problems == []
    for (board, *dims), data in sources.items():
        assert _lookup(out, board, dims) == data, (board, dims)
    assert len(out) <= 5 * len(sources)  # pruning never invents more than a file's chain
