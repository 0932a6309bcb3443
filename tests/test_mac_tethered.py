"""The live catalog's tethered entry ("Tethered boot (m1n1, for development)": no
partitions) installed in expert mode through the macOS stand-in: a stub container only,
whose stage-1 object carries no variables at all (no chainload=: the loader waits for a
development host), blessed; no ESP, no firmware, no package."""

from __future__ import annotations

import json

import pytest

from installer.platform.simstate import SimState
from installer.stub import STAGE1_PATH
from tests.support import macstandin
from tests.support.installfix import new_sim
from tests.support.macstandin import APFS_GUID, STAGE1, argv_log, gpt, pippin_mac, writes

mac_xdg = macstandin.mac_xdg
pytestmark = pytest.mark.timeout(600)
NAME = "Tethered boot (m1n1, for development)"


def test_tethered_install_is_a_stub_with_a_variable_free_stage1(tmp_path, mac_xdg,
                                                                  real_catalog):
    # The live catalog's entry, as it is (tests/fixtures/catalog/SOURCE.md).
    entry = next(e for e in json.loads(real_catalog.read_bytes())["os_list"]
                 if e["name"] == NAME)
    assert entry["partitions"] == []
    catalog = tmp_path / "installer_data.json"
    catalog.write_text(json.dumps({"os_list": [entry]}))
    sim = new_sim(tmp_path / "mac.img")
    before = gpt(sim)
    www = mac_xdg / "pippin" / "demo" / "www"  # the demo restore image, as a local mirror
    args = ("install", "--catalog", str(catalog), "--os", NAME, "--stage1", str(STAGE1),
            "--admin-user", "alice", "--yes")
    r = pippin_mac(sim, mac_xdg, *args, env={"IPSW_BASE": str(www)})
    assert r.returncode == 1  # not in expert mode
    assert "is offered only in expert mode" in r.stderr
    assert gpt(sim) == before
    r = pippin_mac(sim, mac_xdg, *args, "--expert", env={"IPSW_BASE": str(www)})
    assert r.returncode == 0, r.stderr[-3000:]
    assert "tethered" in r.stdout
    entries = gpt(sim)
    assert [(e[1], e[4]) for e in entries[3:]] == [(APFS_GUID, "m1n1 proxy")]
    stub = entries[3][5]
    state = SimState(sim)
    boot = (state.volume_dir(stub, "m1n1 proxy") / STAGE1_PATH).read_bytes()
    assert boot == STAGE1.read_bytes() + b"\0\0\0\0"  # no variables, no chainload=
    preboot = state.volume_dir(stub, "Preboot")
    assert any(preboot.glob("*/restore/BuildManifest.plist"))
    assert state.boot == stub
    done = [a[:2] for a in writes(argv_log(sim))]
    assert ["newfs_msdos", "-F"] not in done
    assert ["bless", "--setBoot"] in done
    assert not any(a[:2] == ["diskutil", "mount"] and a[2].startswith("disk0s")
                   for a in writes(argv_log(sim)))  # no ESP was touched
