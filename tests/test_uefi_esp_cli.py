"""`vendorfw esp [--json]`: which ESP belongs to the running OS (PARTUUID from /chosen, the
device node, where it is mounted), what a distro installer booted from USB needs to choose
where its bootloader goes. Fake /proc paths, as the update tests use."""

from __future__ import annotations

import json

import pytest

from tests.test_vendorfw_update import UUID, locator, run


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path


def test_mounted_esp(env, capsys):
    esp = env / "boot efi"
    esp.mkdir()
    rc, out, err = run(capsys, "esp", *locator(env, esp))
    assert rc == 0, err
    assert out == f"ESP {UUID}: {env}/dev/nvme0n1p4, mounted at {esp}\n"
    rc, out, _ = run(capsys, "esp", *locator(env, esp), "--json")
    assert rc == 0
    assert json.loads(out) == {"partuuid": UUID, "device": f"{env}/dev/nvme0n1p4",
                               "mountpoint": str(esp)}


def test_unmounted_esp_is_reported_not_an_error(env, capsys):
    rc, out, _ = run(capsys, "esp", *locator(env, env / "esp", mounted=False), "--json")
    assert rc == 0
    assert json.loads(out)["mountpoint"] is None
    rc, out, _ = run(capsys, "esp", *locator(env, env / "esp", mounted=False))
    assert out.endswith(", not mounted\n")


@pytest.mark.parametrize(("broken", "message"), [
    ("no-dt", "does not exist: this system was not booted by a loader that names its ESP"),
    ("no-partition", f"no partition with PARTUUID {UUID}"),
])
def test_errors_are_one_line(env, capsys, broken, message):
    args = locator(env, env / "esp")
    if broken == "no-dt":
        (env / "dt" / "asahi,efi-system-partition").unlink()
    else:
        (env / "dev" / "by-partuuid" / UUID).unlink()
    rc, out, err = run(capsys, "esp", *args)
    assert rc == 1
    assert out == ""
    assert message in err.splitlines()[0]
    assert len(err.splitlines()) <= 2  # the error, and its hint
