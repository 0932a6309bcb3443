"""`pippin upgrade-stage1`: a new loader for an install keeping its variables, with
Pippin's object and an m1n1-format one (built by tests/support/bootobjgen.py), downgrades
refused unless allowed, bad images refused in one line, step 2 printed again."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from installer.bootobj import vars as bvars
from installer.stub import STAGE1_PATH
from tests.support import installfix
from tests.support.bootobjgen import fake_m1n1
from tests.support.installfix import PREBUILT
from tests.test_lifecycle_resume import clone
from tests.test_lifecycle_status import base, installed, pippin  # noqa: F401 (fixtures)

demo_cache = installfix.demo_cache
demo_site = installfix.demo_site

pytestmark = pytest.mark.timeout(600)
NAME = "Pippin demo Linux"


def stage1_of(tmp, sim):
    r = pippin(tmp, "status", "--json", "--target", f"sim:{sim}")
    assert r.returncode == 0, r.stderr
    (inst,) = json.loads(r.stdout)["installs"]
    return inst["stage1"]


def test_pippin_then_m1n1_then_downgrade(tmp_path, installed):  # noqa: F811
    sim = clone(installed, tmp_path / "s")
    old = stage1_of(tmp_path, sim)
    path = old["path"].replace(str(installed.parent), str(sim.parent))
    assert path.endswith(STAGE1_PATH)
    before = Path(path).read_bytes()

    r = pippin(tmp_path, "upgrade-stage1", NAME, "--target", f"sim:{sim}", "--yes")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"stage 1 of '{NAME}': pippin 0.1.0 -> pippin 0.1.0 (")
    assert "  note: same version 0.1.0: the object is rebuilt\n" in r.stdout
    assert "  bputil -nc -v " in r.stdout
    assert f"  kmutil configure-boot -c '/Volumes/{NAME}/{STAGE1_PATH}' --raw" in r.stdout
    assert Path(path).read_bytes() == before  # the same loader and variables: same bytes

    m1n1 = tmp_path / "m1n1.bin"
    m1n1.write_bytes(fake_m1n1("v1.4.11"))
    r = pippin(tmp_path, "upgrade-stage1", NAME, "--stage1", str(m1n1), "--target",
               f"sim:{sim}", "--dry-run")
    assert r.returncode == 0, r.stderr
    assert "pippin 0.1.0 -> m1n1 v1.4.11" in r.stdout
    assert "  note: loader changes from pippin to m1n1" in r.stdout
    assert Path(path).read_bytes() == before
    r = pippin(tmp_path, "upgrade-stage1", NAME, "--stage1", str(m1n1), "--target",
               f"sim:{sim}", "--yes")
    assert r.returncode == 0, r.stderr
    variables = [bvars.Variable(k, v) for k, v in old["variables"].items()]
    assert Path(path).read_bytes() == fake_m1n1("v1.4.11") + bvars.encode(variables)
    now = stage1_of(tmp_path, sim)
    assert (now["loader"], now["version"], now["variables"]) == (
        "m1n1", "v1.4.11", old["variables"])

    older = tmp_path / "old.bin"
    older.write_bytes(fake_m1n1("v1.3.0"))
    r = pippin(tmp_path, "upgrade-stage1", NAME, "--stage1", str(older), "--target",
               f"sim:{sim}", "--yes")
    assert r.returncode == 1
    assert r.stderr == (f"pippin: error: stage 1 v1.3.0 is older than the installed v1.4.11 on "
                        f"'{NAME}'\npippin: hint: pass --allow-downgrade to install it anyway\n")
    r = pippin(tmp_path, "upgrade-stage1", NAME, "--stage1", str(older), "--target",
               f"sim:{sim}", "--yes", "--allow-downgrade")
    assert r.returncode == 0, r.stderr
    assert stage1_of(tmp_path, sim)["version"] == "v1.3.0"

    r = pippin(tmp_path, "upgrade-stage1", NAME, "--stage1", str(PREBUILT / "stage1.bin"),
               "--target", f"sim:{sim}", "--yes")  # back to Pippin's: kinds differ
    assert r.returncode == 0, r.stderr
    assert Path(path).read_bytes() == before


@pytest.mark.parametrize(("data", "why"), [
    (b"\0" * 100, "new stage 1: "),
    (fake_m1n1("v1.4.11")[:-8], "new stage 1: an m1n1-format image ends with STACKBOT"),
])
def test_bad_stage1_is_refused_in_one_line(tmp_path, installed, data, why):  # noqa: F811
    bad = tmp_path / "bad.bin"
    bad.write_bytes(data)
    before = Path(stage1_of(tmp_path, installed)["path"]).read_bytes()
    r = pippin(tmp_path, "upgrade-stage1", NAME, "--stage1", str(bad), "--target",
               f"sim:{installed}", "--yes")
    assert r.returncode == 1
    assert r.stderr.startswith(f"pippin: error: {why}")
    assert "Traceback" not in r.stderr
    assert Path(stage1_of(tmp_path, installed)["path"]).read_bytes() == before


def test_unknown_install_is_one_line(tmp_path, installed):  # noqa: F811
    r = pippin(tmp_path, "upgrade-stage1", "Nope", "--target", f"sim:{installed}", "--yes")
    assert r.returncode == 1
    assert r.stderr == ("pippin: error: no install named 'Nope' on disk0 (installs: "
                        f"'{NAME}' (disk0s4))\n")
