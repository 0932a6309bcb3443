"""The real loaders from bootchain/prebuilt/ go through the Python side unchanged."""

from __future__ import annotations

from pathlib import Path

import pytest

from installer.bootobj import assemble, espupdate, scan, sign, version
from installer.bootobj import vars as bvars
from installer.bootobj.assemble import Stage2Parts
from installer.errors import BootObjectError
from tests.support.bootobjgen import dtb, fake_kernel

PREBUILT = Path(__file__).resolve().parent.parent / "bootchain" / "prebuilt"
UUID = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"


@pytest.fixture(scope="module", params=["stage1", "stage2"])
def stage(request) -> tuple[str, bytes]:
    return request.param, (PREBUILT / f"{request.param}.bin").read_bytes()


def test_markers_and_image_size(stage):
    kind, data = stage
    v = version.read_version(data)
    assert v is not None
    assert (v.kind, v.stage) == ("pippin", kind)
    assert v.offset < 0x800  # in the header area, before the entry
    assert version.pippin_image_end(data) == len(data)
    assert scan.is_image(data)


def test_real_stage1_config_round_trip():
    image = (PREBUILT / "stage1.bin").read_bytes()
    config = bvars.stage1_config(UUID, {"chosen.bootargs": "quiet"}, public_key=bytes(32))
    obj = assemble.assemble_stage1(image, config)
    assert version.read_installed_vars(obj) == config
    with pytest.raises(BootObjectError, match="stage-1 object"):
        espupdate.inspect(obj, "stage-1 object")


def test_real_stage2_boot_bin_round_trip(tmp_path):
    image = (PREBUILT / "stage2.bin").read_bytes()
    key = sign.generate_key()
    data = assemble.assemble_stage2(
        Stage2Parts(image, (dtb(),), fake_kernel(), variables=(bvars.Variable("chosen.a", "1"),)),
        key,
    )
    assert scan.payload_start(data) == len(image)
    kinds = [p.kind for p in scan.scan(data, len(image))]
    assert kinds == ["fdt", "gzip", "variables", "signature"]
    esp = tmp_path / "esp"
    esp.mkdir()
    res = espupdate.update_esp(esp, data, public_key=sign.public_bytes(key.public_key()))
    assert str(res.installed.version) == str(version.read_version(image).version)
