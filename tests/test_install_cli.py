"""`pippin install` on the command line: no terminal and no --yes shows the plan and writes
nothing; --dry-run --json; --write-answers replays; --yes installs (nginx-served demo site)."""

from __future__ import annotations

import json

import pytest

from installer.answers import load_answers
from installer.cli import main
from installer.demo.site import CATALOG_NAME, DEMO_LINUX, UEFI_ONLY
from tests.support import installfix
from tests.support.installfix import image_digest, new_sim, partition_numbers

demo_cache = installfix.demo_cache
demo_site = installfix.demo_site
www = installfix.www

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def cli(tmp_path, www, monkeypatch, capsys):
    _root, srv = www
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("IPSW_BASE", srv.base_url)
    monkeypatch.delenv("INSTALLER_DATA", raising=False)
    sim = new_sim(tmp_path / "mac.img")

    def run(*args):
        rc = main(["install", "--catalog", srv.url(CATALOG_NAME), "--target", f"sim:{sim}",
                   *args])
        return rc, capsys.readouterr()

    return sim, run


def test_no_terminal_no_yes_shows_the_plan_and_writes_nothing(cli):
    sim, run = cli
    before = image_digest(sim)
    rc, out = run("--os", UEFI_ONLY)
    assert rc == 0
    assert f"install {UEFI_ONLY!r} on disk0" in out.out
    assert "resize APFS container disk0s2" in out.out  # no free space: auto picks resize
    assert "rerun with --yes" in out.err
    assert image_digest(sim) == before


def test_dry_run_json_and_write_answers(cli, tmp_path):
    sim, run = cli
    answers = tmp_path / "answers.toml"
    rc, out = run("--os", DEMO_LINUX, "--dry-run", "--json", "--size", "min",
                  "--write-answers", str(answers))
    assert rc == 0
    doc = json.loads(out.out)
    assert doc["dry_run"] is True
    assert doc["os"] == DEMO_LINUX
    assert doc["restore_image"].endswith("UniversalMac_13.5_22G74_Restore.ipsw")
    assert [o["op"] for o in doc["plan"]["operations"]][-1] == "WriteImage"
    a = load_answers(answers)
    assert (a.os, a.size, a.target) == (DEMO_LINUX, "min", f"sim:{sim}")
    rc2, out2 = run("--answers", str(answers), "--dry-run", "--json")
    assert rc2 == 0
    assert _without_uuids(json.loads(out2.out)["plan"]) == _without_uuids(doc["plan"])


def _without_uuids(doc):
    if isinstance(doc, dict):
        return {k: _without_uuids(v) for k, v in doc.items() if "uuid" not in k.lower()}
    if isinstance(doc, list):
        return [_without_uuids(v) for v in doc]
    return doc


def _uuids(doc):
    if isinstance(doc, dict):
        return {v for k, v in doc.items() if "uuid" in k.lower() and isinstance(v, str)} | {
            u for v in doc.values() for u in _uuids(v)}
    if isinstance(doc, list):
        return {u for v in doc for u in _uuids(v)}
    return set()


def test_bug_every_install_got_the_same_partuuids(cli):
    """Plans used a fixed GUID seed, so every simulated Mac's ESP had one PARTUUID."""
    _sim, run = cli
    seen = []
    for _ in range(2):
        rc, out = run("--os", UEFI_ONLY, "--dry-run", "--json")
        assert rc == 0, out.err
        seen.append(_uuids(json.loads(out.out)["plan"]))
    assert seen[0]
    assert seen[1]
    assert not seen[0] & seen[1]


def test_yes_installs(cli):
    sim, run = cli
    rc, out = run("--os", UEFI_ONLY, "--yes", "--json")
    assert rc == 0, out.err
    doc = json.loads(out.out)
    assert doc["dry_run"] is False
    assert doc["esp_partuuid"]
    assert "EFI" in partition_numbers(sim)
