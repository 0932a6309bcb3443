"""The restore image's BaseSystem on the Mac path: `hdiutil attach` read-only at a fresh
folder, usr/share/firmware copied into the raw dump, `hdiutil detach` (once more with -force
when busy), through scripts/mac-standin, whose hdiutil unpacks the demo's tar-shaped
BaseSystem and refuses anything else as hdiutil refuses an image it does not recognise."""

from __future__ import annotations

import io
import random
import subprocess
import sys
import tarfile
from pathlib import Path

import libarchive
import pytest

from installer.demo.restoreimage import make_image
from installer.demo.site import DEMO_LINUX, UEFI_ONLY, image_file_name
from installer.platform import hdiutil
from installer.platform.base import Result, Runner
from installer.platform.simmac import SimMac
from installer.platform.simstate import sidecar
from installer.sizes import GB
from tests.support import macstandin
from tests.support.installfix import new_sim
from tests.support.macstandin import ROOT, STAGE1, argv_log, esp_files, gpt, pippin_mac, pippin_sim

mac_xdg = macstandin.mac_xdg
pytestmark = pytest.mark.timeout(600)

ATTACH_FLAGS = ["-nobrowse", "-readonly", "-noverify", "-mountpoint"]


def install_args(*extra: str) -> list[str]:
    return ["install", "--os", DEMO_LINUX, "--stage1", str(STAGE1), "--admin-user", "alice",
            "--yes", *extra]


def hdiutil_argv(sim: Path) -> list[list[str]]:
    return [a for a in argv_log(sim) if a[0] == "hdiutil"]


def standin(sim: Path, *cmd: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([str(ROOT / "scripts" / "mac-standin"), "--sim", str(sim), "--",
                           *cmd], capture_output=True, timeout=120, cwd=ROOT,
                          stdin=subprocess.DEVNULL)


def cpio_members(data: bytes) -> list[str]:
    with libarchive.memory_reader(data) as archive:
        return [e.pathname.rstrip("/") for e in archive]


def tar_members(data: bytes) -> list[str]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        return tf.getnames()


# -- the parser and the stand-in's hdiutil ------------------------------------------------

def test_parse_attach_reads_the_recorded_shape():
    example = hdiutil.ATTACH_EXAMPLE.encode()
    assert hdiutil.parse_attach(example) == ("/dev/disk4", "/Volumes/macOS Base System")
    assert hdiutil.parse_attach(b"/dev/disk4          \tGUID_partition_scheme  \t\n") == (
        "/dev/disk4", None)
    assert hdiutil.parse_attach(b"") == (None, None)


@pytest.fixture
def small_sim(tmp_path):
    return SimMac.create(tmp_path / "mac.img", disk_size=64 * GB, macos_used=20 * GB).path


def make_dmg(path: Path) -> None:
    with tarfile.open(path, "w") as tf:
        for name, data in (("usr/share/firmware/wifi/a.txt", b"wifi\n"),
                           ("usr/share/firmware/bluetooth/b.bin", b"bt")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))


def test_standin_attach_detach_and_refusals(small_sim, tmp_path):
    dmg, mnt = tmp_path / "bs.dmg", tmp_path / "mnt"
    make_dmg(dmg)
    (tmp_path / "random.dmg").write_bytes(bytes(range(256)) * 64)
    mnt.mkdir()
    # the attach in-process (no launcher socket: the shim runs python -S, no site-packages)
    script = (f"PIPPIN_STANDIN_SOCK= hdiutil attach -nobrowse -readonly -noverify "
              f"-mountpoint {mnt} {dmg} && "
              f"cat {mnt}/usr/share/firmware/wifi/a.txt && "
              f"stat -c %a {mnt}/usr/share/firmware/wifi/a.txt {mnt}/usr && "
              f"hdiutil detach {mnt}; "
              f"hdiutil attach -readonly {tmp_path}/random.dmg; echo rc=$?; "
              f"hdiutil attach -readonly {tmp_path}/missing.dmg; echo rc=$?")
    r = standin(small_sim, "sh", "-c", script)
    assert r.returncode == 0, r.stderr
    out = r.stdout.decode()
    device, mount = hdiutil.parse_attach(r.stdout)
    assert mount == str(mnt)
    assert device is not None
    assert device.startswith("/dev/disk")
    assert "wifi\n444\n555\n" in out  # unpacked read-only
    assert f'"{device.removeprefix("/dev/")}" ejected.\n' in out
    assert out.endswith("rc=1\nrc=1\n")
    assert r.stderr.decode().splitlines() == [
        "hdiutil: attach failed - image not recognized",
        "hdiutil: attach failed - No such file or directory"]
    assert mnt.is_dir()
    assert not any(mnt.iterdir())
    assert hdiutil_argv(small_sim)[0] == ["hdiutil", "attach", *ATTACH_FLAGS, str(mnt),
                                          str(dmg)]


def test_standin_detach_is_busy_while_a_process_is_inside_unless_forced(small_sim, tmp_path):
    dmg, mnt = tmp_path / "bs.dmg", tmp_path / "mnt"
    make_dmg(dmg)
    script = (f"hdiutil attach -readonly -mountpoint {mnt} {dmg} >/dev/null && "
              f"(cd {mnt}/usr && hdiutil detach {mnt}; echo rc=$?; "
              f"hdiutil detach {mnt} -force; echo rc=$?)")
    r = standin(small_sim, "sh", "-c", script)
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().splitlines()[0] == "rc=1"
    assert r.stdout.decode().splitlines()[-1] == "rc=0"
    assert r.stderr.decode().strip().startswith("hdiutil: couldn't unmount \"disk")
    assert r.stderr.decode().strip().endswith('" - Resource busy')
    assert not mnt.exists()  # the stand-in made it, the stand-in removed it
    assert b"still mounted" not in r.stderr


DROP_MOUNTPOINT = """
import sys
from pathlib import Path
from installer.platform import hdiutil
from installer.platform.base import SubprocessRunner

class IgnoresMountpoint(SubprocessRunner):
    # hdiutil not honouring -mountpoint: the same attach without it (the volume then goes
    # to /Volumes/<name>, as the real one does).
    def run(self, argv, *, stdin=None):
        argv = list(argv)
        if argv[:2] == ["hdiutil", "attach"]:
            i = argv.index("-mountpoint")
            del argv[i:i + 2]
        return super().run(argv, stdin=stdin)

root = Path(sys.argv[3])
with hdiutil.attached(IgnoresMountpoint(), Path(sys.argv[1]), Path(sys.argv[2]),
                      lambda p: root / p.lstrip("/")) as tree:
    print(tree)
    print((tree / "usr/share/firmware/wifi/a.txt").read_text(), end="")
"""


def test_the_reported_mount_point_is_used_when_mountpoint_is_not_honoured(small_sim, tmp_path):
    dmg = tmp_path / "BaseSystem.dmg"
    make_dmg(dmg)
    root = sidecar(small_sim) / "standin" / "root"
    r = standin(small_sim, "sh", "-c", f'exec "{sys.executable}" -c "$0" "$@"',
                DROP_MOUNTPOINT, str(dmg), str(tmp_path / "mnt"), str(root))
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode() == f"{root}/Volumes/BaseSystem\nwifi\n"
    assert hdiutil_argv(small_sim)[-1] == ["hdiutil", "detach", "/Volumes/BaseSystem"]
    assert not (root / "Volumes" / "BaseSystem").exists()


OTA_FIRMWARE = """
import sys
from pathlib import Path
from installer.firmware import build_firmware
from installer.ipsw import remote
from installer.ipsw.fetch import fetch_members
from installer.ipsw.member import DirectorySink
from installer.ipsw.select import Purpose, needed_members
from installer.platform.base import SubprocessRunner
from installer.platform.macos import MacBackend
from installer.targets.mac import MacTarget

image, work, root = (Path(a) for a in sys.argv[1:4])
archive = remote.open_archive(str(image))
needed = needed_members(archive, board_id=0x22, chip_id=0x8103, device_class="j274ap",
                        purpose=Purpose.FIRMWARE)
fetched = work / "ipsw"
fetched.mkdir()
fetch_members(archive, list(needed.members), DirectorySink(fetched))
runner = SubprocessRunner()
target = MacTarget(MacBackend(runner, root=root), runner, root)
fw = build_firmware(fetched, needed, work / "out", open_image=target.image_opener())
print(needed.basesystem)
print("warnings:", list(fw.warnings))
"""


def test_an_ota_basesystem_is_decoded_then_attached(small_sim, tmp_path):
    """An OTA's BaseSystem is a BXDIFF50 patch: decoded first (as before), then the decoded
    image is what hdiutil attaches; its firmware lands in the raw dump."""
    img = make_image(tmp_path / "ota.zip", seed=2, ota=True, size=8 << 20, decoy_size=1 << 20)
    work = tmp_path / "work"
    work.mkdir()
    root = sidecar(small_sim) / "standin" / "root"
    r = standin(small_sim, "sh", "-c", f'exec "{sys.executable}" -c "$0" "$@"',
                OTA_FIRMWARE, str(img.path), str(work), str(root))
    assert r.returncode == 0, r.stderr.decode()[-3000:]
    member, warnings = r.stdout.decode().splitlines()
    assert member == "AssetData/payloadv2/basesystem_patches/arm64eBaseSystem.dmg"
    assert "BaseSystem" not in warnings
    hdi = hdiutil_argv(small_sim)
    assert [a[:2] for a in hdi] == [["hdiutil", "attach"], ["hdiutil", "detach"]]
    assert Path(hdi[0][-1]).name == "basesystem.dmg"  # the decoded image, not the patch
    with tarfile.open(work / "out" / "all_firmware.tar.gz") as tf:
        files = {m.name: tf.extractfile(m).read() for m in tf.getmembers()
                 if m.isfile() and m.name.startswith("firmware/")}
    assert files == {"firmware/" + f.removeprefix("usr/share/firmware/"): data
                     for f, data in img.firmware_files.items()}
    assert sorted(files) == \
        sorted("firmware/" + f.removeprefix("usr/share/firmware/") for f in img.firmware_files)


class _Failing(Runner):
    """hdiutil's exits as a Runner sees them (the detach retry's contract)."""

    def __init__(self, rcs: list[int]) -> None:
        self.rcs, self.calls = rcs, []

    def run(self, argv, *, stdin=None):
        self.calls.append(list(argv))
        rc = self.rcs.pop(0)
        return Result(tuple(argv), rc, b"", b"hdiutil: couldn't unmount \"disk9\" - "
                      b"Resource busy\n" if rc else b"")


def test_detach_retries_once_with_force_and_never_raises(caplog):
    r = _Failing([16, 16])
    assert hdiutil.detach(r, "/tmp/x") is False
    assert r.calls == [["hdiutil", "detach", "/tmp/x"], ["hdiutil", "detach", "/tmp/x",
                                                         "-force"]]
    assert "retrying with -force" in caplog.text
    assert "Resource busy" in caplog.text
    assert hdiutil.detach(_Failing([0]), "/tmp/x") is True


# -- installs and refresh-firmware through the stand-in ------------------------------------

@pytest.fixture(scope="module")
def mac_install(tmp_path_factory, mac_xdg):
    d = tmp_path_factory.mktemp("mac")
    sim = new_sim(d / "mac.img")
    r = pippin_mac(sim, mac_xdg, *install_args())
    assert r.returncode == 0, r.stderr[-3000:]
    return sim, r, esp_files(sim, d / "esp")


def test_mac_install_ships_wifi_and_bluetooth_firmware(tmp_path, mac_xdg, mac_install):
    sim, r, files = mac_install
    names = tar_members(files["asahi/all_firmware.tar.gz"])
    assert any(n.startswith("firmware/wifi/C-4378__s-B1/") for n in names), names
    assert any(n.startswith("firmware/bluetooth/BCM4378B1_") for n in names), names
    assert any(n.startswith("fud_firmware/") for n in names)
    brcm = [n for n in cpio_members(files["vendorfw/firmware.cpio"])
            if n.startswith("vendorfw/brcm/")]
    assert "vendorfw/brcm/brcmfmac4378b1-pcie.apple,shikoku.bin" in brcm, brcm
    assert "vendorfw/brcm/brcmbt4378b1-apple,shikoku-m.bin" in brcm, brcm
    assert b"FILE brcm/brcmbt4378b1-apple,shikoku-m.ptb SHA256 " in files[
        "vendorfw/manifest.txt"]
    assert "Wi-Fi and Bluetooth firmware are missing" not in r.stderr
    # attached read-only at a fresh folder, then detached, before any disk change
    log = argv_log(sim)
    hdi = [i for i, a in enumerate(log) if a[0] == "hdiutil"]
    attach, detach = log[hdi[0]], log[hdi[1]]
    assert len(hdi) == 2
    assert attach[:6] == ["hdiutil", "attach", *ATTACH_FLAGS]
    assert attach[-1].endswith(".dmg")
    assert Path(attach[-2]).name == "basesystem"
    assert detach == ["hdiutil", "detach", attach[-2]]
    first_write = next(i for i, a in enumerate(log) if a[:2] == ["diskutil", "apfs"]
                       and a[2] == "resizeContainer" and "limits" not in a)
    assert hdi[1] < first_write
    assert not Path(attach[-2]).exists()  # the temporary mount point went with the work dir
    # the sim path (libarchive) builds the same vendorfw/ from the same restore image
    other = new_sim(tmp_path / "sim.img")
    r2 = pippin_sim(mac_xdg, *install_args("--target", f"sim:{other}"))
    assert r2.returncode == 0, r2.stderr[-3000:]
    theirs = esp_files(other, tmp_path / "esp-sim")
    assert theirs["vendorfw/manifest.txt"] == files["vendorfw/manifest.txt"]
    assert tar_members(theirs["asahi/all_firmware.tar.gz"]) == names


BUSY_WRAPPER = """#!/bin/sh
# hdiutil as the stand-in's, but a plain detach runs from inside the mounted tree (its
# working directory there makes the unmount busy, as on a Mac); -force is not hindered.
if [ "$1" = detach ] && [ "$#" = 2 ]; then cd "$2" || exit 1; fi
exec "{real}" "$@"
"""


def test_refresh_firmware_attaches_too_and_a_busy_detach_is_forced(tmp_path, mac_xdg,
                                                                   mac_install):
    sim, _r, _files = mac_install
    before = len(argv_log(sim))
    wrap = tmp_path / "wrap"
    wrap.mkdir()
    real = sidecar(sim) / "standin" / "bin" / "hdiutil"
    (wrap / "hdiutil").write_text(BUSY_WRAPPER.format(real=real))
    (wrap / "hdiutil").chmod(0o755)
    argv = [str(ROOT / "scripts" / "mac-standin"), "--sim", str(sim), "--admin", "alice:pw",
            "--", "sh", "-c", f'PATH="{wrap}:$PATH" exec "$0" "$@"', sys.executable, "-m",
            "installer.cli", "refresh-firmware", DEMO_LINUX, "--target", "disk0", "--yes"]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=600, cwd=ROOT,
                       env=macstandin._env(mac_xdg, "pw", None), stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "0 added, 0 removed, 0 changed" in r.stdout
    assert "retrying with -force" in r.stderr  # logged (a warning)
    assert "still mounted" not in r.stderr
    hdi = [a for a in argv_log(sim)[before:] if a[0] == "hdiutil"]
    mp = hdi[0][-2]
    assert hdi == [hdi[0], ["hdiutil", "detach", mp], ["hdiutil", "detach", mp, "-force"]]
    assert hdi[0][:6] == ["hdiutil", "attach", *ATTACH_FLAGS]


def test_an_image_hdiutil_cannot_attach_refuses_before_the_disk_changes(tmp_path, mac_xdg):
    """A BaseSystem no disk-image reader recognises: on the Mac path one line naming the
    dmg and hdiutil's message, exit 1, the disk untouched (the firmware stage runs before
    the disk stage); the sim path (libarchive) goes on with a warning as before."""
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    make_image(mirror / image_file_name(), size=8 << 20, seed=7, decoy_size=1 << 20,
               basesystem=random.Random(5).randbytes(64 << 10))
    sim = new_sim(tmp_path / "mac.img")
    table = gpt(sim)
    r = pippin_mac(sim, mac_xdg, *install_args(), env={"IPSW_BASE": str(mirror)})
    assert r.returncode == 1, r.stderr[-3000:]
    lines = [x for x in r.stderr.splitlines() if x.startswith("pippin: error:")]
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("pippin: error: cannot attach the disk image ")
    assert lines[0].endswith(".dmg: hdiutil: attach failed - image not recognized"), lines
    assert gpt(sim) == table
    assert macstandin.writes(argv_log(sim)) == []
    assert [a[:2] for a in hdiutil_argv(sim)] == [["hdiutil", "attach"]]  # nothing to detach
    assert "still mounted" not in r.stderr
    other = new_sim(tmp_path / "sim.img")  # (UEFI only: the same firmware stage, less disk)
    r2 = pippin_sim(mac_xdg, "install", "--os", UEFI_ONLY, "--target", f"sim:{other}",
                    "--yes", env={"IPSW_BASE": str(mirror)})
    assert r2.returncode == 0, r2.stderr[-3000:]
    assert "Wi-Fi and Bluetooth firmware are missing" in r2.stderr
