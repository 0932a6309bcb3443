"""End-to-end installs of the demo catalog onto a simulated Mac (served over loopback HTTP),
checked with the tools a user would use: sgdisk, mdir/mtype, vendorfw verify."""

from __future__ import annotations

import hashlib
import json
import plistlib
import subprocess
import sys
import zipfile

import pytest

from installer.bootobj import layout
from installer.bootobj import vars as bvars
from installer.bootobj.version import read_version
from installer.demo.site import DEMO_LINUX, UEFI_ONLY
from installer.platform.sim import SimBackend
from installer.platform.simstate import SimState
from installer.stub import STAGE1_PATH
from tests.support import installfix
from tests.support.installfix import (
    image_digest,
    mdir,
    mtype,
    new_sim,
    partition_numbers,
    partition_start,
    partuuid,
    run_install,
)

# fixtures
demo_cache = installfix.demo_cache
demo_site = installfix.demo_site
session = installfix.session

pytestmark = pytest.mark.timeout(300)


def _stage1_vars(data: bytes) -> dict[str, str]:
    start = data.rindex(b"chosen.asahi,efi-system-partition=")
    variables, _ = bvars.read_block(data, start)
    return bvars.as_dict(variables)


def test_uefi_only_install(tmp_path, demo_cache, session):
    sim = new_sim(tmp_path / "mac.img")
    res = run_install(demo_cache, session, sim, UEFI_ONLY)
    parts = partition_numbers(sim)
    assert set(parts) == {"iBootSystemContainer", "Container", "RecoveryOSContainer",
                          UEFI_ONLY, "EFI"}
    esp_uuid = partuuid(sim, parts["EFI"])
    assert res.esp_partuuid == esp_uuid
    off = partition_start(sim, parts["EFI"])
    listing = mdir(sim, off, "asahi")
    for name in ("all_firmware.tar.gz", "kernelcache.release.j314", "stub_info.json",
                 "BuildManifest.plist", "SystemVersion.plist", "installer.log"):
        assert name in listing, listing
    # stage 2 on the ESP, with its version
    boot = mtype(sim, off, "m1n1/boot.bin")
    v = read_version(boot)
    assert v is not None
    assert str(v.version) == "0.1.0"
    # stub_info.json (formats.md §5)
    info = json.loads(mtype(sim, off, "asahi/stub_info.json"))
    assert info["manifest_info"] == {"build_number": "22G90", "variant": "macOS Customer",
                                     "device_class": "j314sap", "board_id": 4,
                                     "chip_id": 0x6000}
    assert info["system_version"] == "13.5"
    assert info["vgid"]
    assert res.vgid == info["vgid"]  # what the done screen hands to bputil in step 2
    # vendorfw/firmware.cpio passes `vendorfw verify` against its manifest
    fw = tmp_path / "fw"
    fw.mkdir()
    for name in ("firmware.cpio", "manifest.txt"):
        (fw / name).write_bytes(mtype(sim, off, f"vendorfw/{name}"))
    r = subprocess.run([sys.executable, "-m", "vendorfw.cli", "verify", str(fw / "firmware.cpio")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    cpio = (fw / "firmware.cpio").read_bytes()
    for member in (b"vendorfw/brcm/brcmfmac4378b1-pcie.apple,shikoku.bin",
                   b"vendorfw/brcm/brcmfmac4378b1-pcie.apple,shikoku.clm_blob",
                   b"vendorfw/asmedia/asm2214a-apple.bin", b"vendorfw/apple/tpmtfw-j314s.bin"):
        assert member in cpio
    # stage-1 object: vars name the ESP's real PARTUUID (sgdisk -i) and chain to boot.bin
    stage1 = res.stage1_path.read_bytes()
    assert str(res.stage1_path).endswith(STAGE1_PATH)
    want = _stage1_vars(stage1)
    assert want["chosen.asahi,efi-system-partition"] == esp_uuid
    assert want["chainload"] == f"{esp_uuid};m1n1/boot.bin"
    assert hashlib.sha256(stage1).hexdigest() == res.stage1_sha256


def test_stub_volumes_hold_the_restore_files(tmp_path, demo_cache, session):
    sim = new_sim(tmp_path / "mac.img")
    run_install(demo_cache, session, sim, UEFI_ONLY)
    state = SimState(sim)
    stub_uuid = partuuid(sim, partition_numbers(sim)[UEFI_ONLY]).upper()
    vols = {v.name: v for v in state.containers[stub_uuid].volumes}
    system = state.volume_dir(stub_uuid, UEFI_ONLY)
    model = SimBackend(sim).read_model()
    stub = next(q for q in model.disks[0].partitions if q.uuid.upper() == stub_uuid)
    vgid = stub.container.volume_group
    assert vgid
    sv = plistlib.loads((system / "System/Library/CoreServices/SystemVersion.plist")
                        .read_bytes())
    assert sv["ProductUserVisibleVersion"] == "13.5 (stub)"
    assert not (system / "Library").exists()  # still recognised as a stub
    restore = state.volume_dir(stub_uuid, "Preboot") / vgid / "restore"
    bm = plistlib.loads((restore / "BuildManifest.plist").read_bytes())
    assert [i["Info"]["DeviceClass"] for i in bm["BuildIdentities"]] == ["j314sap"]
    assert (restore / "Bootability.trustcache").is_file()
    assert (restore / "Bootability" / "Info.plist").is_file()
    assert (restore / "kernelcache.release.j314").is_file()
    assert not (restore / "090-27493-003.dmg").exists()  # the OS image is never fetched
    dmg = state.volume_dir(stub_uuid, "Recovery") / vgid / \
        "usr/standalone/firmware/arm64eBaseSystem.dmg"
    assert dmg.stat().st_size > 1 << 20
    assert vols[UEFI_ONLY].used > 0
    out = subprocess.run([sys.executable, "-m", "installer.cli", "sim", "inspect", "--json",
                          str(sim)], capture_output=True, text=True, check=True).stdout
    installs = json.loads(out)["installs"]
    assert [i["name"] for i in installs] == [UEFI_ONLY]


def test_demo_linux_install_writes_image_and_boot_object(tmp_path, demo_cache, demo_site,
                                                         session):
    sim = new_sim(tmp_path / "mac.img")
    res = run_install(demo_cache, session, sim, DEMO_LINUX)
    parts = partition_numbers(sim)
    assert {"EFI", "Root", DEMO_LINUX} <= set(parts)
    with zipfile.ZipFile(demo_site.root / "os" / "pippin-demo-linux.zip") as zf:
        root_img = zf.read("root.img")
        boot_bin = zf.read("esp/m1n1/boot.bin")
    start = partition_start(sim, parts["Root"])
    with sim.open("rb") as f:
        f.seek(start)
        assert f.read(len(root_img)) == root_img
    esp = partition_start(sim, parts["EFI"])
    # the package's gzip kernel is stored raw: the 500 MB ESP has room (issue 13)
    assert mtype(sim, esp, "m1n1/boot.bin") == layout.raw_layout(boot_bin)
    assert res.kernel_layout.startswith("raw (")
    assert res.bytes_downloaded > len(boot_bin)
    assert set(res.seconds) >= {"plan", "package", "restore image", "firmware", "disk",
                                "stub", "esp"}


def test_dry_run_writes_nothing(tmp_path, demo_cache, session):
    sim = new_sim(tmp_path / "mac.img")
    before = image_digest(sim)
    state = (sim.parent / "mac.img.d" / "state.json").read_bytes()
    res = run_install(demo_cache, session, sim, DEMO_LINUX, dry_run=True)
    assert res.dry_run
    assert res.esp_partuuid == ""
    assert [type(op).__name__ for op in res.plan.ops][:2] == ["ResizeContainer",
                                                             "CreateStubContainer"]
    assert image_digest(sim) == before
    assert (sim.parent / "mac.img.d" / "state.json").read_bytes() == state
    assert not (sim.parent / "mac.img.d" / "journal.json").exists()
