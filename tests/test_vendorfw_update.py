"""`vendorfw update`: ESP discovery from the device tree, atomic rebuild of vendorfw/ from
asahi/all_firmware.tar.gz, --dry-run, --install-to, and a real FAT image via mtools."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import require_tool
from tests.support.fwtree import make_raw_dump_dir, raw_dump_members
from vendorfw import esp as espmod
from vendorfw import rawdump
from vendorfw.cli import main
from vendorfw.errors import EspError
from vendorfw.esp import EspLocator, find_esp
from vendorfw.readback import read_package, verify

UUID = "6a1f0e2c-3b4d-4c5e-9f60-718293a4b5c6"


def make_esp(root: Path, seed: int = 3) -> dict[str, str]:
    """An ESP directory with asahi/all_firmware.tar.gz + kernelcache and a stale vendorfw/.
    Returns the expected firmware name → SHA-256."""
    src = root.parent / f"{root.name}-src"
    summary = make_raw_dump_dir(src, seed=seed)
    asahi = root / "asahi"
    asahi.mkdir(parents=True)
    dump = root.parent / f"{root.name}-dump"
    dump.mkdir()
    for name in raw_dump_members():
        if (src / name).exists():
            os.rename(src / name, dump / name)
    for kc in src.glob("kernelcache*"):
        shutil.copy(kc, asahi / kc.name)
    rawdump.pack(dump, asahi / rawdump.RAWDUMP_NAME)
    (root / "vendorfw").mkdir()
    (root / "vendorfw" / "manifest.txt").write_text(
        f"FILE brcm/old.bin SHA256 {'0' * 64}\n"
    )
    (root / "vendorfw" / "firmware.cpio").write_bytes(b"stale")
    return summary.files


@pytest.fixture
def env(tmp_path, monkeypatch):
    """Logs under tmp_path (conftest puts the root log handlers back after each test)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path


def locator(tmp_path: Path, esp: Path, *, mounted: bool = True) -> list[str]:
    """Fake DT property, by-partuuid link and mountinfo naming ``esp``; CLI args for them."""
    dt = tmp_path / "dt" / "asahi,efi-system-partition"
    dt.parent.mkdir(exist_ok=True)
    dt.write_bytes(UUID.upper().encode() + b"\0")
    dev = tmp_path / "dev"
    dev.mkdir(exist_ok=True)
    (dev / "nvme0n1p4").write_bytes(b"")
    by = dev / "by-partuuid"
    by.mkdir(exist_ok=True)
    if not by.joinpath(UUID).is_symlink():
        os.symlink("../nvme0n1p4", by / UUID)
    mi = tmp_path / "mountinfo"
    esc = str(esp).replace(" ", "\\040")
    lines = ["22 1 259:2 / / rw,relatime shared:1 - ext4 /dev/nvme0n1p5 rw"]
    if mounted:
        lines.append(f"40 22 259:4 / {esc} rw,relatime shared:9 - vfat {dev}/nvme0n1p4 rw")
    mi.write_text("\n".join(lines) + "\n")
    return ["--dt-property", str(dt), "--by-partuuid", str(by), "--mountinfo", str(mi)]


def run(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_find_esp_from_device_tree(env):
    esp = env / "boot efi"  # a space: mountinfo escapes it as \040
    esp.mkdir()
    args = locator(env, esp)
    loc = EspLocator(Path(args[1]), Path(args[3]), Path(args[5]))
    assert find_esp(loc) == esp


@pytest.mark.parametrize("broken", ["no-dt", "bad-uuid", "no-partition", "not-mounted"])
def test_find_esp_errors(env, broken):
    esp = env / "esp"
    esp.mkdir()
    args = locator(env, esp, mounted=broken != "not-mounted")
    loc = EspLocator(Path(args[1]), Path(args[3]), Path(args[5]))
    if broken == "no-dt":
        loc.dt_property.unlink()
    elif broken == "bad-uuid":
        loc.dt_property.write_bytes(b"../../etc\0")
    elif broken == "no-partition":
        (loc.by_partuuid / UUID).unlink()
    want = {"no-dt": "does not exist", "bad-uuid": "not a partition UUID",
            "no-partition": "no partition with PARTUUID", "not-mounted": "is not mounted"}
    with pytest.raises(EspError, match=want[broken]):
        find_esp(loc)


def test_update_end_to_end(env, capsys):
    esp = env / "esp"
    expected = make_esp(esp)
    rc, out, err = run(capsys, "update", *locator(env, esp), "--json", "--no-progress")
    assert rc == 0, err
    report = json.loads(out)
    assert report["diff"]["removed"] == ["brcm/old.bin"]
    assert sorted(report["diff"]["added"]) == sorted(expected)
    pkg = read_package(esp / "vendorfw" / "firmware.cpio")
    assert verify(pkg) == []
    assert pkg.files() == expected
    assert read_package(esp / "vendorfw" / "firmware.tar").files() == expected
    uboot = esp / "vendorfw/u-boot/asmedia/asm2214a-apple.bin"
    assert hashlib.sha256(uboot.read_bytes()).hexdigest() == expected["asmedia/asm2214a-apple.bin"]
    assert sorted(os.listdir(esp)) == ["asahi", "vendorfw"]  # no temp dirs left behind
    # the real unpacker sees the same files
    dest = env / "unpacked"
    dest.mkdir()
    with open(esp / "vendorfw" / "firmware.cpio", "rb") as f:
        subprocess.run([require_tool("cpio"), "-id", "--quiet"], stdin=f, cwd=dest, check=True)
    got = {p.relative_to(dest / "vendorfw").as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
           for p in (dest / "vendorfw").rglob("*") if p.is_file()}
    got.pop(".vendorfw.manifest")
    assert got == expected
    # a second run changes nothing
    rc, out, _ = run(capsys, "update", "--esp", str(esp))
    assert rc == 0
    assert out.splitlines()[-1].endswith(
        f"{len(expected)} files (0 added, 0 removed, 0 changed, {len(expected)} unchanged)"
    )


def test_dry_run_writes_nothing(env, capsys):
    esp = env / "esp"
    make_esp(esp)
    before = {p: p.read_bytes() for p in (esp / "vendorfw").iterdir()}
    rc, out, _ = run(capsys, "update", "--esp", str(esp), "--dry-run",
                     "--install-to", str(env / "fw"))
    assert rc == 0
    assert "- brcm/old.bin" in out.splitlines()
    assert "+ asmedia/asm2214a-apple.bin" in out.splitlines()
    assert "would replace" in out
    assert {p: p.read_bytes() for p in (esp / "vendorfw").iterdir()} == before
    assert not (env / "fw").exists()
    assert sorted(os.listdir(esp)) == ["asahi", "vendorfw"]


def test_install_to_directory(env, capsys):
    esp = env / "esp"
    expected = make_esp(esp)
    dest = env / "lib/firmware/vendor"
    dest.mkdir(parents=True)
    (dest / "stale.bin").write_text("old")
    rc, _, err = run(capsys, "update", "--esp", str(esp), "--install-to", str(dest))
    assert rc == 1  # not ours (no .vendorfw.manifest): never wiped
    assert "is not empty and holds no .vendorfw.manifest" in err
    assert os.listdir(dest) == ["stale.bin"]
    (dest / ".vendorfw.manifest").write_text("FILE stale.bin SHA256 " + "0" * 64 + "\n")
    rc, _, err = run(capsys, "update", "--esp", str(esp), "--install-to", str(dest))
    assert rc == 0, err
    got = {}
    inodes: dict[int, int] = {}
    for p in dest.rglob("*"):
        if p.is_file():
            got[p.relative_to(dest).as_posix()] = hashlib.sha256(p.read_bytes()).hexdigest()
            inodes[p.stat().st_ino] = inodes.get(p.stat().st_ino, 0) + 1
    manifest = (dest / ".vendorfw.manifest").read_text()
    got.pop(".vendorfw.manifest")
    assert got == expected
    assert manifest == (esp / "vendorfw" / "manifest.txt").read_text()
    assert manifest.count("\nLINK ") + manifest.startswith("LINK ") == sum(
        n - 1 for n in inodes.values()
    )


def test_install_to_mount_point_swaps_entries(env, monkeypatch, capsys):
    esp = env / "esp"
    expected = make_esp(esp)
    dest = env / "tmpfs"
    dest.mkdir()
    (dest / "stale.bin").write_text("old")
    (dest / ".vendorfw.manifest").write_text("")
    real_ismount = os.path.ismount
    monkeypatch.setattr(espmod.os.path, "ismount", lambda p: Path(p) == dest or real_ismount(p))
    rc, _, err = run(capsys, "update", "--esp", str(esp), "--install-to", str(dest))
    assert rc == 0, err
    names = {p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file()}
    assert names == set(expected) | {".vendorfw.manifest"}
    assert not any(n.startswith(".vendorfw.") and n != ".vendorfw.manifest"
                   for n in os.listdir(dest))


def test_corrupt_dump_keeps_old_vendorfw(env, capsys):
    esp = env / "esp"
    make_esp(esp)
    dump = esp / "asahi" / rawdump.RAWDUMP_NAME
    data = dump.read_bytes()
    dump.write_bytes(data[: len(data) // 2])
    before = {p.name: p.read_bytes() for p in (esp / "vendorfw").iterdir()}
    rc, _, err = run(capsys, "update", "--esp", str(esp), "--tmpdir", str(env))
    assert rc == 1
    assert len(err.strip().splitlines()) == 1
    assert err.startswith("vendorfw: error: ")
    assert str(dump) in err
    assert {p.name: p.read_bytes() for p in (esp / "vendorfw").iterdir()} == before
    assert sorted(os.listdir(esp)) == ["asahi", "vendorfw"]
    assert not [n for n in os.listdir(env) if n.startswith("vendorfw-dump-")]


def test_missing_dump_is_one_line_error(env, capsys):
    esp = env / "esp"
    esp.mkdir()
    rc, _, err = run(capsys, "update", "--esp", str(esp))
    assert rc == 1
    assert "all_firmware.tar.gz is missing" in err
    assert "hint:" in err


def mtools(*argv: str) -> str:
    tool = require_tool(argv[0])
    env = dict(os.environ, MTOOLS_SKIP_CHECK="1")
    return subprocess.run([tool, *argv[1:]], check=True, capture_output=True, text=True,
                          env=env).stdout


def test_update_on_fat_image_via_mtools(env, capsys):
    """The ESP lives in a real FAT32 image: copy it out with mcopy, update the copy, and
    write vendorfw/ back (new tree first, then swap names with mren, then delete the old)."""
    staging = env / "staging"
    expected = make_esp(staging)
    img = env / "esp.img"
    mtools("mkfs.fat", "-F", "32", "-n", "EFI", "-C", str(img), str(96 * 1024))
    mtools("mcopy", "-s", "-i", str(img), str(staging / "asahi"), str(staging / "vendorfw"),
           "::/")
    work = env / "work"
    mtools("mcopy", "-s", "-n", "-i", str(img), "::/", str(work))
    rc, _, err = run(capsys, "update", "--esp", str(work))
    assert rc == 0, err
    mtools("mcopy", "-s", "-i", str(img), str(work / "vendorfw"), "::/vendorfw.new")
    mtools("mren", "-i", str(img), "::/vendorfw", "::/vendorfw.old")
    mtools("mren", "-i", str(img), "::/vendorfw.new", "::/vendorfw")
    mtools("mdeltree", "-i", str(img), "::/vendorfw.old")
    listing = mtools("mdir", "-b", "-i", str(img), "::/vendorfw")
    assert {Path(x).name for x in listing.split()} >= {"firmware.cpio", "firmware.tar",
                                                         "manifest.txt", "u-boot"}
    back = env / "back"
    back.mkdir()
    mtools("mcopy", "-i", str(img), "::/vendorfw/firmware.cpio", str(back / "firmware.cpio"))
    pkg = read_package(back / "firmware.cpio")
    assert verify(pkg) == []
    assert pkg.files() == expected
    assert (back / "firmware.cpio").read_bytes() == (work / "vendorfw/firmware.cpio").read_bytes()
    fsck = subprocess.run([require_tool("fsck.fat"), "-n", str(img)], capture_output=True,
                          text=True, check=False)
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr


def test_recovers_from_a_killed_update(env, capsys):
    """State after a kill between atomic_dir's two renames: vendorfw/ missing, the old tree
    parked in .vendorfw.old-*, a (maybe partial) .vendorfw.new-* beside it."""
    esp = env / "esp"
    expected = make_esp(esp)
    parked = esp / ".vendorfw.old-x1"
    parked.mkdir()
    os.rename(esp / "vendorfw", parked / "vendorfw")
    (esp / ".vendorfw.new-y2").mkdir()
    (esp / ".vendorfw.new-y2" / "firmware.cpio").write_bytes(b"half")
    rc, out, err = run(capsys, "update", "--esp", str(esp), "--json")
    assert rc == 0, err
    assert "restoring" in err
    assert json.loads(out)["diff"]["removed"] == ["brcm/old.bin"]  # diffed against the old
    assert sorted(os.listdir(esp)) == ["asahi", "vendorfw"]
    assert read_package(esp / "vendorfw").files() == expected


def test_bug_install_to_a_file_deleted_it(env, capsys):
    """--install-to naming a file used to move the file aside and delete it."""
    esp = env / "esp"
    make_esp(esp)
    victim = env / "important.conf"
    victim.write_text("keep me")
    before = {p.name: p.read_bytes() for p in (esp / "vendorfw").iterdir()}
    rc, _, err = run(capsys, "update", "--esp", str(esp), "--install-to", str(victim))
    assert rc == 1
    assert "exists and is not a directory" in err
    assert victim.read_text() == "keep me"
    # refused before the ESP was touched
    assert {p.name: p.read_bytes() for p in (esp / "vendorfw").iterdir()} == before


def test_bug_refused_install_to_still_replaced_the_esp_package(env, capsys):
    """A foreign --install-to directory is refused before vendorfw/ on the ESP changes."""
    esp = env / "esp"
    make_esp(esp)
    dest = env / "fw"
    dest.mkdir()
    (dest / "mine.bin").write_text("x")
    before = {p.name: p.read_bytes() for p in (esp / "vendorfw").iterdir()}
    rc, _, err = run(capsys, "update", "--esp", str(esp), "--install-to", str(dest))
    assert rc == 1
    assert "holds no .vendorfw.manifest" in err
    assert {p.name: p.read_bytes() for p in (esp / "vendorfw").iterdir()} == before
    assert os.listdir(dest) == ["mine.bin"]


def test_bug_update_deleted_foreign_files_in_esp_vendorfw(env, capsys):
    """Files that are not part of a vendorfw package are never swapped away and deleted."""
    esp = env / "esp"
    make_esp(esp)
    (esp / "vendorfw" / "notes.txt").write_text("mine")
    rc, _, err = run(capsys, "update", "--esp", str(esp))
    assert rc == 1
    assert "holds other files (notes.txt)" in err
    assert "hint: move those files elsewhere" in err
    assert (esp / "vendorfw" / "notes.txt").read_text() == "mine"
    assert sorted(os.listdir(esp)) == ["asahi", "vendorfw"]


def test_bug_empty_dump_wiped_the_firmware(env, capsys):
    """A raw dump that yields no firmware must not replace a package that has some."""
    esp = env / "esp"
    make_esp(esp)
    rc, _, err = run(capsys, "update", "--esp", str(esp))
    assert rc == 0, err
    before = {p.name: p.read_bytes() for p in (esp / "vendorfw").iterdir() if p.is_file()}
    empty = env / "empty-dump"
    (empty / "firmware" / "wifi").mkdir(parents=True)
    rawdump.pack(empty, esp / "asahi" / rawdump.RAWDUMP_NAME)
    for kc in (esp / "asahi").glob("kernelcache*"):
        kc.unlink()
    for dry in ([], ["--dry-run"]):
        rc, _, err = run(capsys, "update", "--esp", str(esp), *dry)
        assert rc == 1
        assert "no kernelcache" in err
        assert "yields no firmware; keeping" in err
        assert {p.name: p.read_bytes() for p in (esp / "vendorfw").iterdir()
                if p.is_file()} == before
