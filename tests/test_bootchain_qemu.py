"""The boot chain booted for real: QEMU virt (EL2) runs stage 1 with appended variables,
stage 1 finds the ESP by PARTUUID on a virtio disk (GPT + FAT built by the real tools),
loads and checks m1n1/boot.bin, and stage 2 boots the Debian arm64 kernel with the busybox
initramfs, which prints /proc/device-tree/chosen. Negative boots must print one reason and
never start a kernel."""

from __future__ import annotations

import gzip
import struct

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from installer.bootobj import assemble, sign
from installer.bootobj import vars as bvars
from tests.support import bootchain as bc
from tests.support import qemu

pytestmark = pytest.mark.qemu

KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
OTHER_UUID = "0b0f4e5a-3f2d-4a51-9c3e-2d1f0e9a8b7c"
BOOTARGS = "console=ttyAMA0 panic=-1"


def pubkey() -> bytes:
    return sign.public_bytes(KEY.public_key())


def stage1_obj(partuuid: str = bc.ESP_UUID, *, key: bytes | None = None,
               extra: dict[str, str] | None = None) -> bytes:
    return assemble.assemble_stage1(bc.stage_bytes("stage1"),
                                    bvars.stage1_config(partuuid, extra or {}, public_key=key))


@pytest.fixture(scope="module")
def guest(tmp_path_factory):
    """The real boot object: stage 2 | virt DTB (marked) | other DTB | gzip(kernel) |
    tagged initramfs | variables."""
    k = qemu.kernel_assets()
    work = tmp_path_factory.mktemp("bootchain-guest")
    initrd = qemu.build_initramfs(work / "initrd.cpio", kernel=k, init=bc.CHOSEN_INIT).read_bytes()
    virt = qemu.virt_dtb(work, chosen={"pippin,dtb": "virt"}).read_bytes()
    other_path = qemu.virt_dtb(work / "..", chosen={"pippin,dtb": "other"})
    qemu.subprocess.run(["fdtput", "-t", "s", str(other_path), "/", "compatible", "apple,j274"],
                        check=True)
    other = other_path.read_bytes()
    boot = assemble.assemble_stage2(assemble.Stage2Parts(
        stage2=bc.stage_bytes("stage2"), dtbs=(virt, other), kernel=k.image.read_bytes(),
        initramfs=initrd,
        variables=(bvars.Variable("chosen.bootargs", BOOTARGS),
                   bvars.Variable("chosen.pippin,who", "stage2"))))
    return {"boot": boot, "initrd": initrd}


def assert_booted(boot: bc.Boot, initrd: bytes) -> dict[str, bytes]:
    ch = assert_booted_any_dtb(boot, initrd)
    assert ch["pippin,dtb"] == b"virt\0"  # the payload DTB matching linux,dummy-virt was used
    return ch


def assert_booted_any_dtb(boot: bc.Boot, initrd: bytes) -> dict[str, bytes]:
    assert not boot.timed_out, boot.console[-3000:]
    assert "GUEST-INIT-DONE" in boot.console, boot.console[-3000:]
    ch = bc.chosen(boot.console)
    assert ch["asahi,efi-system-partition"] == bc.ESP_UUID.encode() + b"\0"
    assert ch["asahi,m1n1-stage1-version"] == b"0.1.0\0"
    assert ch["asahi,m1n1-stage2-version"] == b"0.1.0\0"
    assert ch["bootargs"] == BOOTARGS.encode() + b"\0"
    assert ch["pippin,who"] == b"stage1\0"  # the forwarded stage-1 value wins
    start = struct.unpack(">Q", ch["linux,initrd-start"])[0]
    end = struct.unpack(">Q", ch["linux,initrd-end"])[0]
    assert end - start == len(initrd)
    return ch


def test_chain_boots_debian_kernel_512(tmp_path, guest):
    disk = bc.chain_disk(tmp_path / "disk.img", {"m1n1/boot.bin": guest["boot"]})
    boot = bc.boot_chain(tmp_path, stage1_obj(extra={"chosen.pippin,who": "stage1"}), disk)
    assert_booted(boot, guest["initrd"])
    assert "pippin stage2: kernel at" in boot.console


def test_chain_boots_signed_stage2_4096_byte_sectors(tmp_path, guest):
    signed = sign.sign(guest["boot"], KEY)
    disk = bc.chain_disk(tmp_path / "disk.img", {"m1n1/boot.bin": signed}, sector=4096)
    boot = bc.boot_chain(tmp_path, stage1_obj(key=pubkey(), extra={"chosen.pippin,who": "stage1"}),
                         disk, sector=4096)
    assert_booted(boot, guest["initrd"])
    assert "m1n1/boot.bin: signature good" in boot.console


# --- negative boots: small boot objects, the loaders must stop before any kernel ---------

def fake_kernel_gz() -> bytes:
    image = bytearray(8192)
    struct.pack_into("<Q", image, 16, 16384)
    image[0x38:0x3C] = b"ARM\x64"
    return gzip.compress(bytes(image), mtime=0)


def small_boot() -> bytes:
    return bc.stage_bytes("stage2") + bvars.encode([bvars.Variable("chosen.x", "y")])


def tampered(data: bytes) -> bytes:
    b = bytearray(data)
    b[0x900] ^= 0x01
    return bytes(b)


NEGATIVE = {
    "wrong-partuuid": (
        lambda: stage1_obj(OTHER_UUID), {"m1n1/boot.bin": small_boot()},
        f"partition {OTHER_UUID} not found"),
    "missing-file": (
        lambda: stage1_obj(), {"m1n1/other.bin": small_boot()},
        "file m1n1/boot.bin not found"),
    "tampered-signed-stage2": (
        lambda: stage1_obj(key=pubkey()),
        {"m1n1/boot.bin": tampered(sign.sign(small_boot(), KEY))},
        "is not validly signed (BadSignature)"),
    "unsigned-stage2-with-key": (
        lambda: stage1_obj(key=pubkey()), {"m1n1/boot.bin": small_boot()},
        "is not validly signed (Unsigned)"),
    "truncated-stage2-image": (
        lambda: stage1_obj(), {"m1n1/boot.bin": bc.stage_bytes("stage2")[:40000]},
        "m1n1/boot.bin is truncated"),
    "truncated-gzip-kernel": (
        lambda: stage1_obj(),
        {"m1n1/boot.bin": bc.stage_bytes("stage2") + fake_kernel_gz()[:-6]},
        "gzip payload at +0: BadChecksum"),
    "truncated-initramfs": (
        lambda: stage1_obj(),
        {"m1n1/boot.bin": bc.stage_bytes("stage2") + fake_kernel_gz()
         + b"m1n1_initramfs" + struct.pack("<I", 1 << 20) + bytes(100)},
        "TruncatedPayload"),
    "no-kernel": (
        lambda: stage1_obj(), {"m1n1/boot.bin": small_boot()},
        "no kernel payload found"),
}


@pytest.mark.parametrize("case", sorted(NEGATIVE))
def test_negative_boot_prints_reason_and_stops(tmp_path, case):
    make_s1, files, reason = NEGATIVE[case]
    disk = bc.chain_disk(tmp_path / "disk.img", files)
    boot = bc.boot_chain(tmp_path, make_s1(), disk, timeout=60)
    assert not boot.timed_out, boot.console
    assert boot.refused is not None, boot.console
    assert reason in boot.refused, boot.console
    assert not boot.kernel_started


def test_corrupt_fat_is_refused(tmp_path):
    disk = bc.chain_disk(tmp_path / "disk.img", {"m1n1/boot.bin": small_boot()})
    with open(disk, "r+b") as f:  # the ESP starts at 1 MiB: break its boot-sector signature
        f.seek(bc.diskimg.MiB + 510)
        f.write(b"\0\0")
    boot = bc.boot_chain(tmp_path, stage1_obj(), disk, timeout=60)
    assert boot.refused is not None, boot.console
    assert "no FAT filesystem: NotFat" in boot.refused, boot.console
    assert not boot.kernel_started


def test_bad_signature_falls_back_to_signed_boot_bin_old(tmp_path):
    old = sign.sign(small_boot(), KEY)
    disk = bc.chain_disk(tmp_path / "disk.img", {"m1n1/boot.bin": tampered(old),
                                                 "m1n1/boot.bin.old": old})
    boot = bc.boot_chain(tmp_path, stage1_obj(key=pubkey()), disk, timeout=60)
    assert "falling back to m1n1/boot.bin.old (signature good)" in boot.console, boot.console
    assert "pippin stage2 0.1.0" in boot.console  # the old stage 2 ran
    assert not boot.kernel_started


def test_stage2_alone_boots_xz_kernel_from_xz_tool(tmp_path, guest):
    """No stage 1: stage 2 finds where its payloads end by itself, keeps QEMU's FDT (no DTB
    payload), accepts the missing stage-1 version, and boots a kernel compressed by plain
    `xz -T1 -1` (CRC64, 1 MiB dictionary, one 33 MB block) with an xz initramfs. Bug: every
    such kernel was refused with "xz payload at +0: CorruptStream" (finding the end ran
    std's decoder, which buffers the whole block, in a heap of a few MiB)."""
    import lzma

    k = qemu.kernel_assets()
    kernel_xz = qemu.subprocess.run(["xz", "-T1", "-1", "-c", str(k.image)], capture_output=True,
                                    check=True, timeout=300).stdout
    boot = (bc.stage_bytes("stage2") + kernel_xz
            + lzma.compress(guest["initrd"], format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC32)
            + bvars.encode([bvars.Variable("chosen.bootargs", BOOTARGS)]))
    path = tmp_path / "boot.bin"
    path.write_bytes(boot)
    r = qemu.run_qemu(kernel=path, timeout=180, append="ignored")
    assert not r.timed_out, r.console[-3000:]
    assert "GUEST-INIT-DONE" in r.console, r.console[-3000:]
    ch = bc.chosen(r.console)
    assert ch["asahi,m1n1-stage2-version"] == b"0.1.0\0"
    assert "asahi,m1n1-stage1-version" not in ch
    assert ch["bootargs"] == BOOTARGS.encode() + b"\0"
    start = struct.unpack(">Q", ch["linux,initrd-start"])[0]
    end = struct.unpack(">Q", ch["linux,initrd-end"])[0]
    assert end - start == len(guest["initrd"])  # inflated: the cpio itself
    assert "(passed in)" in r.console


def test_stage2_alone_boots_raw_kernel_given_last(tmp_path, guest):
    """An uncompressed kernel as the last payload (formats.md §3): stage 2 copies it to a
    2 MiB boundary; the tagged initramfs stays in place."""
    k = qemu.kernel_assets()
    initrd = guest["initrd"]
    boot = (bc.stage_bytes("stage2") + b"m1n1_initramfs" + struct.pack("<I", len(initrd))
            + initrd + f"chosen.bootargs={BOOTARGS}\n".encode() + k.image.read_bytes())
    path = tmp_path / "boot.bin"
    path.write_bytes(boot)
    r = qemu.run_qemu(kernel=path, timeout=180, append="ignored")
    assert "GUEST-INIT-DONE" in r.console, r.console[-3000:]
    ch = bc.chosen(r.console)
    assert ch["bootargs"] == BOOTARGS.encode() + b"\0"
    start = struct.unpack(">Q", ch["linux,initrd-start"])[0]
    assert struct.unpack(">Q", ch["linux,initrd-end"])[0] - start == len(initrd)


@pytest.mark.parametrize("mode", [
    assemble.InitramfsMode.TAG,
    pytest.param(assemble.InitramfsMode.GZIP, id="bug-gzip-initramfs-under-kernel-bss"),
])
def test_chain_boots_raw_kernel_last_and_keeps_forwarded_variables(tmp_path, guest, mode):
    """boot.bin with an uncompressed kernel (assembled last, after initramfs and variable
    lines) through stage 1. Bug: stage 2 took everything after the raw kernel's start as
    kernel, so stage 1's forwarded lines (asahi,efi-system-partition, the stage-1 version)
    never reached /chosen; stage 1 now hands over where the file ends (x3).
    Bug (gzip initramfs): stage 2 inflated it just past the file end, under the in-place
    kernel's bss, which the kernel clears ("Initramfs unpacking failed"); it is now moved
    above the kernel's image_size."""
    k = qemu.kernel_assets()
    boot = assemble.assemble_stage2(assemble.Stage2Parts(
        stage2=bc.stage_bytes("stage2"), kernel=k.image.read_bytes(),
        compression=assemble.Compression.NONE, initramfs=guest["initrd"], initramfs_mode=mode,
        variables=(bvars.Variable("chosen.bootargs", BOOTARGS),
                   bvars.Variable("chosen.pippin,who", "stage2"))))
    disk = bc.chain_disk(tmp_path / "disk.img", {"m1n1/boot.bin": boot})
    boot_run = bc.boot_chain(tmp_path, stage1_obj(extra={"chosen.pippin,who": "stage1"}), disk)
    ch = assert_booted_any_dtb(boot_run, guest["initrd"])
    assert "(passed in)" in boot_run.console
    assert ch["pippin,who"] == b"stage1\0"
    # Padded to a 2 MiB offset, the kernel is booted where stage 1 loaded it (no copy).
    import re

    loaded = int(re.search(r"loaded m1n1/boot.bin \(\d+ bytes\) at ([0-9a-f]+)",
                           boot_run.console).group(1), 16)
    kernel_at = int(re.search(r"kernel at ([0-9a-f]+)", boot_run.console).group(1), 16)
    assert kernel_at == loaded + boot.index(k.image.read_bytes()[:4096])
