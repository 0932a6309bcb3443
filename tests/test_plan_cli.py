"""`pippin plan`, `pippin sim …` and the answers file, through the real CLI entry point."""

from __future__ import annotations

import json
import plistlib

import pytest

from installer.answers import Answers, parse_answers, to_toml
from installer.cli import main
from installer.device import parse_facts_json, parse_ioreg, sim_facts
from installer.disk.plan import Space
from installer.errors import AnswersError, BackendError
from installer.platform.safety import hash_ranges
from installer.sizes import GB, GiB
from tests.conftest import require_tool

UEFI = "UEFI environment only (m1n1 + U-Boot + ESP)"


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("INSTALLER_DATA", raising=False)
    monkeypatch.delenv("REPO_BASE", raising=False)
    return tmp_path


@pytest.fixture(scope="module")
def sim_path(tmp_path_factory):
    require_tool("sgdisk")
    path = tmp_path_factory.mktemp("cli") / "mac.img"
    assert main(["sim", "create", str(path), "--device", "j313ap", "--disk-size", "64GiB",
                 "--macos-used", "20GB"]) == 0
    return path


def digest(path):
    """Content digest that reads only allocated extents (the image is 64 GiB, sparse)."""
    return hash_ranges(path, [(0, path.stat().st_size)])[0].digest + str(path.stat().st_mtime)


def test_sim_inspect(env, sim_path, capsys):
    assert main(["sim", "inspect", str(sim_path)]) == 0
    out = capsys.readouterr().out
    assert "MacBook Air (M1, 2020) (j313ap, board 0x26, chip 0x8103" in out
    assert "Apple_APFS_ISC" in out
    assert "Macintosh HD [System]" in out
    assert main(["sim", "inspect", str(sim_path), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["device"]["board_id"] == 0x26
    assert [s["kind"] for s in doc["layout"]] == ["Apple_APFS_ISC", "Apple_APFS",
                                                   "Apple_APFS_Recovery"]
    assert doc["installs"] == []


def test_plan_from_answers_file_writes_nothing(env, sim_path, real_catalog, capsys):
    answers = env / "answers.toml"
    answers.write_text(
        f'target = "sim:{sim_path}"\n'
        f'catalog = "{real_catalog}"\n'
        'os = "Fedora Asahi Remix 44 Server"\nspace = "resize"\nresize_to = "min"\n'
        'size = "max"\nname = "Fedora"\nexpert = false\nadmin_user = "alice"\n')
    before = digest(sim_path), digest(sim_path.with_name("mac.img.d") / "state.json")
    assert main(["plan", "--answers", str(answers), "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert [o["op"] for o in plan["operations"]][:3] == [
        "ResizeContainer", "CreateStubContainer", "CreateStubVolumes"]
    assert plan["os_name"] == "Fedora"
    assert plan["operations"][0]["new_size"] == -(-(20 * GB + GB) // 2**20) * 2**20
    # options override the file
    assert main(["plan", "--answers", str(answers), "--size", "min", "--name", "F2"]) == 0
    text = capsys.readouterr().out
    assert "install 'F2' on disk0 (8.6 GB)" in text
    assert "1. resize APFS container disk0s2" in text
    assert (digest(sim_path), digest(sim_path.with_name("mac.img.d") / "state.json")) == before


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--os", "Nope"], "catalog entry 'Nope' not in the catalog"),
        (["--space", "free"], "largest free region is 0 B"),
        (["--space", "resize", "--resize-to", "10GB"], "macOS needs at least 21.0 GB"),
        (["--size", "lots"], "--size = 'lots': not a size"),
        (["--uninstall", "disk0s2"], "disk0s2 is not a stub install on disk0"),
        (["--space", "free", "--region", "7"], "no free region starts at byte 7 on disk0"),
    ],
)
def test_plan_refusals_are_one_line(env, sim_path, real_catalog, capsys, args, message):
    rc = main(["plan", "--target", f"sim:{sim_path}", "--catalog",
               str(real_catalog), "--os", UEFI, *args])
    err = capsys.readouterr().err
    assert rc == 1
    # the published catalog has no .sig: once read, one notice line; then the refusal
    lines = err.splitlines()
    if lines[0].startswith("WARNING: catalog "):
        assert "unsigned" in lines[0]
        lines = lines[1:]
    assert len(lines) == 1
    assert message in lines[0]
    assert "Traceback" not in err


def test_plan_without_a_sim_or_catalog(env, real_catalog, capsys):
    assert main(["plan", "--os", UEFI, "--catalog", str(real_catalog)]) == 1
    err = capsys.readouterr().err
    assert f"{env / 'cache' / 'pippin' / 'sim' / 'mac.img'}: no simulated Mac here" in err
    assert "pippin sim create" in err
    assert main(["plan", "--target", "sim:/nonexistent/x.img", "--os", UEFI]) == 1
    assert main(["plan", "--target", "disk0x"]) == 1
    assert "neither sim:PATH nor a macOS disk id" in capsys.readouterr().err


def test_sim_run_then_uninstall(env, sim_path, real_catalog, tmp_path, capsys):
    require_tool("mkfs.fat")
    img = tmp_path / "mac.img"
    assert main(["sim", "create", str(img), "--disk-size", "64GiB", "--macos-used", "20GB"]) \
        == 0
    pkg = tmp_path / "pkg"
    (pkg / "esp" / "m1n1").mkdir(parents=True)
    (pkg / "esp" / "m1n1" / "boot.bin").write_bytes(b"stage2")
    catalog = str(real_catalog)
    assert main(["sim", "run", str(img), "--catalog", catalog, "--os", UEFI, "--space",
                 "resize", "--package", str(pkg)]) == 0
    capsys.readouterr()
    assert main(["sim", "inspect", str(img), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    (inst,) = doc["installs"]
    assert inst["name"] == "UEFI boot"
    assert main(["sim", "run", str(img), "--uninstall", inst["stub"]]) == 0
    capsys.readouterr()
    assert main(["sim", "inspect", str(img), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["installs"] == []
    assert main(["sim", "resume", str(img)]) == 1
    assert "nothing to resume: the run" in capsys.readouterr().err


def test_bug_answers_with_control_characters_round_trip():
    """to_toml escaped only newlines: a tab-free control character made invalid TOML."""
    a = Answers(os="Entry\x01 with \\ and \t tab\x7f", name="N\x1b", catalog="a\\b")
    assert parse_answers(to_toml(a).encode(), "t") == a


def test_answers_roundtrip_and_errors():
    a = Answers(target="sim:/x y/m.img", catalog="c.json", os='Say "hi"', space=Space.RESIZE,
                resize_to="60%", size="50GB", name="L", expert=True, admin_user="alice")
    assert parse_answers(to_toml(a).encode(), "t") == a
    for text, message in [
        (b"colour = 1", "unknown key 'colour'"),
        (b"expert = 'yes'", "expert must be a bool"),
        (b'space = "shrink"', 'space = \'shrink\' must be "free" or "resize"'),
        (b'size = "120%"', "more than 100%"),
        (b'resize_to = "big"', "resize_to = 'big': not a size"),
        (b'target = "/dev/sda"', "neither sim:PATH"),
        (b"= broken", "invalid TOML"),
        (b"\xff", "not UTF-8"),
    ]:
        with pytest.raises(AnswersError, match=message):
            parse_answers(text, "answers.toml")


def test_device_facts():
    f = sim_facts("J314sAP")
    assert (f.board_id, f.chip_id, f.target_type) == (0x04, 0x6000, "J314s")
    assert parse_facts_json(json.dumps(f.to_json()).encode(), "x") == f
    with pytest.raises(BackendError, match="key board_id must be int"):
        parse_facts_json(json.dumps({**f.to_json(), "board_id": "4"}).encode(), "x")
    ioreg = plistlib.dumps({
        "IORegistryEntryName": "device-tree", "compatible": b"J274AP\0AppleARM\0",
        "target-type": b"J274\0", "model": b"Macmini9,1\0",
        "IORegistryEntryChildren": [{"IORegistryEntryName": "chosen",
                                     "board-id": b"\x22\0\0\0", "chip-id": b"\x03\x81\0\0",
                                     "firmware-version": b"iBoot-8422.141.2\0",
                                     "system-firmware-version": b"iBoot-10151.140.19\0"}]})
    d = parse_ioreg(ioreg, "13.5")
    assert (d.device_class, d.board_id, d.chip_id) == ("j274ap", 0x22, 0x8103)
    assert d.os_firmware == "iBoot-8422.141.2"
    assert d.system_firmware == "iBoot-10151.140.19"
    with pytest.raises(BackendError, match="no chosen node"):
        parse_ioreg(plistlib.dumps({"compatible": b"x"}))
    assert GiB  # sizes import used by the module's helpers


def test_default_sim_lives_in_the_cache_dir(env, real_catalog, capsys):
    assert main(["sim", "create"]) == 0
    img = env / "cache" / "pippin" / "sim" / "mac.img"
    assert img.is_file()
    assert img.stat().st_size == 512 * GB
    capsys.readouterr()
    assert main(["plan", "--catalog", str(real_catalog),
                 "--os", UEFI, "--space", "resize", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["disk"] == "disk0"
    assert plan["operations"][0]["op"] == "ResizeContainer"


def test_sim_run_dry_run_changes_nothing(env, sim_path, real_catalog, capsys):
    before = digest(sim_path), digest(sim_path.with_name("mac.img.d") / "state.json")
    assert main(["sim", "run", str(sim_path), "--dry-run", "--catalog",
                 str(real_catalog), "--os", UEFI,
                 "--space", "resize"]) == 0
    out = capsys.readouterr().out
    assert "1. resize APFS container disk0s2" in out
    assert out.rstrip().endswith("dry run: nothing changed")
    assert (digest(sim_path), digest(sim_path.with_name("mac.img.d") / "state.json")) == before
    assert not (sim_path.with_name("mac.img.d") / "journal.json").exists()


def test_help_texts_explain_the_options(capsys):
    assert main(["sim", "create", "--help"]) == 0
    out = capsys.readouterr().out
    assert "j274ap" in out
    assert "sparse" in out
    assert main(["plan", "--help"]) == 0
    assert "free: the largest free region" in " ".join(capsys.readouterr().out.split())


def test_sim_run_shows_progress(env, real_catalog, tmp_path, capsys):
    require_tool("mkfs.fat")
    img = tmp_path / "mac.img"
    assert main(["sim", "create", str(img), "--disk-size", "64GiB", "--macos-used", "20GB"]) \
        == 0
    pkg = tmp_path / "pkg"
    (pkg / "esp" / "m1n1").mkdir(parents=True)
    (pkg / "esp" / "m1n1" / "boot.bin").write_bytes(b"s" * 3000)
    capsys.readouterr()
    assert main(["sim", "run", str(img), "--progress", "--catalog",
                 str(real_catalog), "--os", UEFI,
                 "--space", "resize", "--package", str(pkg)]) == 0
    err = capsys.readouterr().err
    assert "[6/6] copy package directory esp/ into new:1" in err
    assert "[6/6] written: 2.9 KiB" in err, err
