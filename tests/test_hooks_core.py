"""initramfs-hooks/common/vendorfw-load on the host, under dash and busybox sh, against a
fake root (tests/support/fakeroot.py): every branch of formats.md §9, hostile inputs, and
the rule that the hook never fails the boot."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from tests.support import hookenv
from tests.support.fakeroot import FakeRoot

UUID = hookenv.ESP_UUID
FILES = hookenv.sample_files()
CPIO = hookenv.firmware_cpio(FILES)
MANIFEST = hookenv.manifest_text(FILES).encode()


@pytest.fixture(scope="session")
def disk_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("disks")


@pytest.fixture(params=["dash", "busybox"])
def fr(request, tmp_path, disk_cache):
    r = FakeRoot(tmp_path, request.param, disk_cache)
    r.set_property(UUID.encode() + b"\0")
    yield r
    r.cleanup_mounts()


def assert_loaded(fr: FakeRoot) -> None:
    got = fr.tree(fr.root / "vendorfw")
    assert got == {**FILES, ".vendorfw.manifest": MANIFEST}
    link = fr.root / "lib" / "firmware" / "vendor"
    assert os.readlink(link) == "/vendorfw"
    # the temp dir and the mount point are gone, the ESP was mounted read-only, then unmounted
    assert sorted(p.name for p in (fr.root / "run").iterdir()) == []
    assert fr.lines("mount")
    assert all("-o ro" in m for m in fr.lines("mount"))
    assert len(fr.lines("umount")) == len(fr.lines("mount"))


def assert_not_loaded(fr: FakeRoot, res, message: str) -> None:
    assert res.rc == 0, res.log
    assert message in res.log
    assert not (fr.root / "vendorfw").exists()
    assert not (fr.root / "lib").exists()
    leftovers = list((fr.root / "run").iterdir())
    assert leftovers == [], leftovers


# ---- the ESP path and the three ways to resolve a PARTUUID ------------------------------

@pytest.mark.parametrize("sector", [512, 4096])
def test_esp_path_gpt_scan(fr, sector):
    fr.add_disk({"vendorfw/firmware.cpio": CPIO}, sector=sector)
    res = fr.run("early")
    assert res.rc == 0
    assert_loaded(fr)
    assert f"<6>pippin: loaded 5 firmware files from ESP {UUID}\n" in res.kmsg
    assert res.stderr == ""
    assert fr.lines("mount")[0].endswith(f"{fr.root}/dev/vda2 {fr.root}/run/.system-efi")
    # storage and vfat drivers, then the NLS tables, before the disk is looked for
    assert fr.lines("modprobe") == ["virtio_blk", "vfat", "nls_cp437", "nls_ascii", "nls_utf8"]


def test_by_partuuid_link_wins(fr):
    fr.add_disk({"vendorfw/firmware.cpio": CPIO})
    byp = fr.root / "dev" / "disk" / "by-partuuid"
    byp.mkdir(parents=True)
    (byp / UUID).symlink_to("../../vda2")
    # no sysfs: only the udev link can resolve it
    subprocess.run(["rm", "-rf", str(fr.root / "sys")], check=True)
    res = fr.run("early")
    assert_loaded(fr)
    assert f"{byp}/{UUID} " in fr.lines("mount")[0], res.log


def test_blkid_is_used_when_present(fr):
    fr.add_disk({"vendorfw/firmware.cpio": CPIO})
    subprocess.run(["rm", "-rf", str(fr.root / "sys")], check=True)
    blkid = fr.shims / "blkid"
    blkid.write_text('#!/bin/sh\nprintf "%s\\n" "$*" >>"$SHIM_LOG/blkid.log"\n'
                     f'[ "$*" = "-l -o device -t PARTUUID={UUID}" ] && echo /dev/vda2\n')
    blkid.chmod(0o755)
    fr.shimmed.append("blkid")
    res = fr.run("early")
    assert_loaded(fr)
    assert fr.lines("blkid") == [f"-l -o device -t PARTUUID={UUID}"], res.log


def test_busybox_blkid_answer_is_not_trusted(fr):
    """busybox blkid ignores -t and lists every device: fall back to the GPT scan."""
    fr.add_disk({"vendorfw/firmware.cpio": CPIO})
    blkid = fr.shims / "blkid"
    blkid.write_text('#!/bin/sh\necho \'/dev/vda1: UUID="x"\'\n')
    blkid.chmod(0o755)
    fr.shimmed.append("blkid")
    fr.run("early")
    assert_loaded(fr)
    assert fr.lines("mount")[0].endswith(f"{fr.root}/dev/vda2 {fr.root}/run/.system-efi")


def test_uppercase_property_and_second_disk(fr):
    """Another disk without the ESP comes first; the property is uppercase."""
    other = "11111111-2222-3333-4444-555555555555"
    fr.add_disk({}, name="vda", partuuid=other)
    fr.add_disk({"vendorfw/firmware.cpio": CPIO}, name="vdb", sector=4096)
    fr.set_property(UUID.upper().encode() + b"\0")
    fr.run("early")
    assert_loaded(fr)
    assert fr.lines("mount")[0].endswith(f"{fr.root}/dev/vdb2 {fr.root}/run/.system-efi")


def test_kernel_argument_overrides_the_device_tree(fr):
    other = "11111111-2222-3333-4444-555555555555"
    fr.add_disk({"vendorfw/firmware.cpio": CPIO}, partuuid=other)
    fr.set_cmdline(f"root=/dev/vda3 vendorfw.esp={other} quiet")
    fr.run("early")
    assert_loaded(fr)


def test_vendorfw_0_disables(fr):
    fr.add_disk({"vendorfw/firmware.cpio": CPIO})
    fr.set_cmdline("quiet vendorfw=0")
    res = fr.run("early")
    assert_not_loaded(fr, res, "disabled by vendorfw=0")
    assert fr.lines("modprobe") == []


# ---- fast path ---------------------------------------------------------------------------

def test_fast_path_skips_the_esp(fr):
    fw = fr.root / "vendorfw"
    fw.mkdir()
    (fw / "x.bin").write_bytes(b"from the bootloader")
    (fw / ".vendorfw.manifest").write_text("FILE x.bin SHA256 " + "0" * 64 + "\n")
    fr.set_property(None)
    res = fr.run("early")
    assert res.rc == 0
    assert "firmware loaded by the bootloader (1 files)" in res.kmsg
    assert os.readlink(fr.root / "lib" / "firmware" / "vendor") == "/vendorfw"
    assert fr.lines("mount") == []
    assert fr.lines("modprobe") == []


# ---- failures: logged, boot goes on ------------------------------------------------------

def test_property_missing(fr):
    fr.set_property(None)
    res = fr.run("early")
    assert_not_loaded(fr, res, "asahi,efi-system-partition: firmware will not be loaded")
    assert res.kmsg.startswith("<3>pippin: ")


@pytest.mark.parametrize("value", [
    b"not-a-guid\0",
    b"\0",
    b"00000000-0000-0000-0000-000000000000\0",
    b"3f2a1c4e-5b6d-4e7f-8a9b-0c1d2e3f4a5b; rm -rf /\0",
    b"3f2a1c4e-5b6d-4e7f-8a9b-0c1d2e3f4a5b\n/etc\0",
])
def test_property_malformed(fr, value):
    fr.add_disk({"vendorfw/firmware.cpio": CPIO})
    fr.set_property(value)
    res = fr.run("early")
    assert_not_loaded(fr, res, "is not a GUID: firmware will not be loaded")


def test_disk_never_appears_bounded_wait(fr):
    res = fr.run("early", env={"VENDORFW_WAIT": "2"})
    assert_not_loaded(fr, res, f"ESP {UUID} did not appear within 2s")
    assert fr.lines("sleep") == ["0.1"] * 20


def test_bug_slow_lookups_stretched_the_bounded_wait(fr):
    """bug: the wait counted 0.1 s polls, so time spent between polls (a GPT scan of every
    disk) made it last longer than VENDORFW_WAIT. Here each poll costs 0.5 s of guest time:
    the wait stops at the deadline (4 polls), not after 20."""
    (fr.root / "proc" / "uptime").write_text("100.00 50.00\n")
    res = fr.run("early", env={"VENDORFW_WAIT": "2", "SHIM_UPTIME_STEP": "0.5"})
    assert_not_loaded(fr, res, f"ESP {UUID} did not appear within 2s")
    assert len(fr.lines("sleep")) == 4


def test_image_config_file_is_read(fr):
    """/etc/pippin/vendorfw.conf in the image sets the variables (here: the wait)."""
    (fr.root / "etc" / "pippin").mkdir(parents=True)
    (fr.root / "etc" / "pippin" / "vendorfw.conf").write_text("VENDORFW_WAIT=3\n")
    res = fr.run("early")
    assert_not_loaded(fr, res, "did not appear within 3s")
    assert len(fr.lines("sleep")) == 30


@pytest.mark.parametrize("wait", ["1.5", "5s", "-1", "99999999999999999999"])
def test_bug_non_integer_wait_killed_the_core(fr, wait):
    """bug: shell arithmetic on VENDORFW_WAIT=1.5 aborted the script (rc 2, no pippin line)."""
    res = fr.run("early", env={"VENDORFW_WAIT": wait})
    assert_not_loaded(fr, res, f"VENDORFW_WAIT='{wait}' is not a whole number: using 5")
    assert "did not appear within 5s" in res.kmsg
    assert len(fr.lines("sleep")) == 50


def test_wait_with_leading_zeros_is_decimal(fr):
    res = fr.run("early", env={"VENDORFW_WAIT": "08"})
    assert_not_loaded(fr, res, "did not appear within 8s")
    assert len(fr.lines("sleep")) == 80


@pytest.mark.parametrize("max_mb", ["1.5", "256MB"])
def test_bug_non_integer_max_mb_left_the_esp_mounted(fr, max_mb):
    """bug: VENDORFW_MAX_MB=1.5 aborted the script while the ESP was mounted."""
    fr.add_disk({"vendorfw/firmware.cpio": CPIO})
    res = fr.run("early", env={"VENDORFW_MAX_MB": max_mb})
    assert res.rc == 0
    assert f"VENDORFW_MAX_MB='{max_mb}' is not a whole number: using 256" in res.kmsg
    assert_loaded(fr)


def test_bug_broken_config_file_killed_the_core(fr):
    """bug: a syntax error in /etc/pippin/vendorfw.conf aborted the script (rc 2, a bare
    shell message); now it is ignored with one line and the defaults apply."""
    fr.add_disk({"vendorfw/firmware.cpio": CPIO})
    conf = fr.root / "etc" / "pippin" / "vendorfw.conf"
    conf.parent.mkdir(parents=True)
    conf.write_text("VENDORFW_MODULES=(virtio_blk vfat)\n")
    res = fr.run("early")
    assert res.rc == 0, res.log
    assert res.stderr == ""
    assert f"<3>pippin: {conf} is not valid sh: ignored" in res.kmsg
    assert_loaded(fr)


def test_disk_appears_while_waiting(fr):
    fr.add_disk({"vendorfw/firmware.cpio": CPIO}, now=False)
    fr.env["SHIM_DISK_AFTER_SLEEPS"] = "3"
    res = fr.run("early")
    assert_loaded(fr)
    assert len(fr.lines("sleep")) == 3, res.log


def test_disk_appears_when_its_driver_loads(fr):
    fr.add_disk({"vendorfw/firmware.cpio": CPIO}, now=False)
    fr.env["SHIM_DISK_MODULE"] = "virtio_blk"
    fr.run("early")
    assert_loaded(fr)
    assert fr.lines("sleep") == []


def test_missing_driver_is_only_noted(fr):
    fr.add_disk({"vendorfw/firmware.cpio": CPIO})
    res = fr.run("early", env={"VENDORFW_MODULES": "apple-mailbox nvme-apple vfat"})
    assert_loaded(fr)
    assert "module apple-mailbox not loaded (built in or absent)" in res.kmsg


def test_no_modprobe_at_all(tmp_path, disk_cache):
    fr = FakeRoot(tmp_path, "dash", disk_cache)  # busybox always has its modprobe applet
    fr.set_property(UUID.encode() + b"\0")
    fr.add_disk({"vendorfw/firmware.cpio": CPIO})
    fr.shimmed.remove("modprobe")
    res = fr.run("early")
    assert_loaded(fr)
    assert "no modprobe: relying on built-in drivers" in res.kmsg


def test_bug_unwritable_run_printed_a_second_line(fr):
    """bug: a failed mkdir printed its own message besides the pippin line."""
    fr.add_disk({"vendorfw/firmware.cpio": CPIO})
    (fr.root / "run").rmdir()
    (fr.root / "run").write_text("")  # mkdir -p run/.system-efi fails: not a directory
    res = fr.run("early")
    assert res.rc == 0
    assert res.stderr == ""
    assert res.kmsg.splitlines()[-1] == f"<3>pippin: cannot create {fr.root}/run/.system-efi"
    assert fr.lines("mount") == []
    assert not (fr.root / "vendorfw").exists()


def test_esp_is_not_fat(fr):
    fr.add_disk({}, esp_fat=False)
    res = fr.run("early")
    assert_not_loaded(fr, res, "cannot mount ESP")


def test_cpio_missing(fr):
    fr.add_disk({"vendorfw/manifest.txt": MANIFEST})
    res = fr.run("early")
    assert_not_loaded(fr, res, f"no vendorfw/firmware.cpio on ESP {UUID}")
    assert len(fr.lines("umount")) == 1


def _newc(entries: list[tuple[str, int, bytes]]) -> bytes:
    """A hand-made newc archive (name, mode, data) for hostile members vendorfw won't write."""
    out = bytearray()
    for ino, (name, mode, data) in enumerate([*entries, ("TRAILER!!!", 0, b"")], 1):
        nb = name.encode() + b"\0"
        hdr = "070701" + "".join(f"{v:08X}" for v in (
            ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(nb), 0))
        out += hdr.encode() + nb
        out += b"\0" * (-len(out) % 4)
        out += data
        out += b"\0" * (-len(out) % 4)
    return bytes(out)


REG = 0o100644
HOSTILE = {
    "truncated": CPIO[: len(CPIO) // 2],
    "garbage": bytes(range(256)) * 64,
    "empty": b"",
    "absolute": _newc([("vendorfw", 0o40755, b""), ("/tmp/pippin-escape", REG, b"x"),
                       ("vendorfw/.vendorfw.manifest", REG, b"")]),
    "dotdot": _newc([("vendorfw", 0o40755, b""), ("vendorfw/../../escape", REG, b"x"),
                     ("vendorfw/.vendorfw.manifest", REG, b"")]),
    "outside": _newc([("etc", 0o40755, b""), ("etc/escape", REG, b"x")]),
    "symlink": _newc([("vendorfw", 0o40755, b""), ("vendorfw/evil", 0o120777, b"/etc"),
                      ("vendorfw/.vendorfw.manifest", REG, b"")]),
    # bug: the listing check let a symlink member through, and GNU cpio then wrote the next
    # member through it, outside the temp dir. The link leads from
    # <root>/run/.vendorfw-new.PID/vendorfw to <base>/escape.
    "bug-write-through-symlink": _newc([
        ("vendorfw", 0o40755, b""), ("vendorfw/l", 0o120777, b"../../../../escape"),
        ("vendorfw/l/pwned", REG, b"x"), ("vendorfw/.vendorfw.manifest", REG, b"")]),
    "device-node": _newc([("vendorfw", 0o40755, b""), ("vendorfw/null", 0o20666, b""),
                          ("vendorfw/.vendorfw.manifest", REG, b"")]),
    "no-manifest": _newc([("vendorfw", 0o40755, b""), ("vendorfw/a.bin", REG, b"a")]),
    "manifest-lies": _newc([("vendorfw", 0o40755, b""), ("vendorfw/a.bin", REG, b"a"),
                            ("vendorfw/.vendorfw.manifest", REG,
                             b"FILE a.bin SHA256 " + b"0" * 64 + b"\nFILE b.bin SHA256 "
                             + b"0" * 64 + b"\n")]),
    "manifest-no-newline": _newc([("vendorfw", 0o40755, b""), ("vendorfw/a.bin", REG, b"a"),
                                  ("vendorfw/.vendorfw.manifest", REG,
                                   b"FILE a.bin SHA256 " + b"0" * 64 + b"\nLINK b.bin a.bin")]),
    "manifest-names-a-file-outside": _newc([
        ("vendorfw", 0o40755, b""),
        ("vendorfw/.vendorfw.manifest", REG,
         b"FILE " + b"../" * 40 + b"etc/passwd SHA256 " + b"0" * 64 + b"\n")]),
    "manifest-junk": _newc([("vendorfw", 0o40755, b""),
                            ("vendorfw/.vendorfw.manifest", REG, b"rm -rf /\n")]),
}


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_corrupt_or_hostile_cpio(fr, kind):
    escape = fr.base / "escape"
    escape.mkdir()  # a symlink member points here: nothing may land inside
    fr.add_disk({"vendorfw/firmware.cpio": HOSTILE[kind]})
    res = fr.run("early")
    assert_not_loaded(fr, res, "firmware not loaded")
    assert list(escape.iterdir()) == []
    assert not os.path.exists("/tmp/pippin-escape")
    assert len(fr.lines("umount")) == 1


def test_oversized_cpio_is_not_unpacked(fr):
    fr.add_disk({"vendorfw/firmware.cpio": CPIO})
    res = fr.run("early", env={"VENDORFW_MAX_MB": "0"})
    assert_not_loaded(fr, res, "is larger than 0 MB: firmware not loaded")
    assert len(fr.lines("umount")) == 1


def test_vendorfw_cpio_passes_the_listing_check(fr):
    """The real writer's archive, a LINK included, unpacks with hard links intact."""
    fr.add_disk({"vendorfw/firmware.cpio": CPIO})
    fr.run("early")
    a = fr.root / "vendorfw" / "brcm" / "brcmbt4378b1-apple,shikoku-u.bin"
    b = fr.root / "vendorfw" / "brcm" / "brcmbt4378b1-apple,shikoku-m.bin"
    assert a.read_bytes() == b.read_bytes() == FILES["brcm/brcmbt4378b1-apple,shikoku-u.bin"]


# ---- GPT parsing against hostile tables ------------------------------------------------

def _poke(path, offset: int, data: bytes) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


@pytest.mark.parametrize(("offset", "data"), [
    (512, b"EFI PARX"),                       # bad signature
    (512 + 80, (10**6).to_bytes(4, "little")),  # absurd entry count
    (512 + 84, (100).to_bytes(4, "little")),    # entry size below 128
    (512 + 72, (2**40).to_bytes(8, "little")),  # entry array far beyond the disk
])
def test_gpt_header_rejected(fr, offset, data):
    fr.add_disk({"vendorfw/firmware.cpio": CPIO})
    _poke(fr.root / "dev" / "vda", offset, data)
    res = fr.run("early")
    assert_not_loaded(fr, res, "did not appear within 1s")


def test_gpt_entry_without_type_is_unused(fr):
    """An entry whose type GUID is zero is unused, whatever its unique GUID says."""
    fr.add_disk({"vendorfw/firmware.cpio": CPIO})
    _poke(fr.root / "dev" / "vda", 2 * 512 + 128, bytes(16))  # entry 2's type GUID
    res = fr.run("early")
    assert_not_loaded(fr, res, "did not appear within 1s")


# ---- logging ---------------------------------------------------------------------------

def test_log_goes_to_stderr_without_kmsg(fr):
    fr.set_property(None)
    res = fr.run("early", env={"VENDORFW_KMSG": str(fr.base / "nope" / "kmsg")})
    assert res.rc == 0
    assert res.stderr.startswith("<3>pippin: no ")
    assert res.stderr.count("\n") == 1


def test_usage(fr):
    res = fr.run("bogus")
    assert res.rc == 2
    assert "usage: vendorfw-load early | handoff NEWROOT" in res.kmsg


# ---- handoff -----------------------------------------------------------------------------

def test_handoff_mounts_a_tmpfs_with_everything(fr):
    fr.add_disk({"vendorfw/firmware.cpio": CPIO})
    fr.run("early")
    newroot = fr.base / "newroot"
    (newroot / "lib" / "firmware").mkdir(parents=True)
    res = fr.run("handoff", str(newroot))
    dest = newroot / "lib" / "firmware" / "vendor"
    assert res.rc == 0
    assert "firmware available at" in res.kmsg, res.log
    mounts = [ln.split() for ln in Path("/proc/mounts").read_text().splitlines()]
    fs = [m for m in mounts if m[1] == str(dest)]
    assert fs, fs
    assert fs[-1][2] == "tmpfs", fs
    assert "mode=755" in fs[-1][3]
    assert stat.S_IMODE(dest.stat().st_mode) == 0o755
    assert fr.tree(dest) == {**FILES, ".vendorfw.manifest": MANIFEST}


def test_handoff_without_firmware_does_nothing(fr):
    newroot = fr.base / "newroot"
    newroot.mkdir()
    res = fr.run("handoff", str(newroot))
    assert res.rc == 0
    assert "no /vendorfw to hand off" in res.kmsg
    assert list(newroot.iterdir()) == []


def test_handoff_readonly_root_is_logged(fr):
    (fr.root / "vendorfw").mkdir()
    newroot = fr.base / "newroot"
    newroot.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "ro", "ro", str(newroot)], check=True)
    res = fr.run("handoff", str(newroot))
    assert res.rc == 0
    assert "(read-only root?): firmware stays in the initramfs" in res.kmsg


def test_handoff_needs_newroot(fr):
    (fr.root / "vendorfw").mkdir()
    res = fr.run("handoff")
    assert res.rc == 0
    assert "handoff needs the new root" in res.kmsg
