"""boot.bin and stage-1 assembly (formats.md §2, §3): golden layouts, validation, read-back."""

from __future__ import annotations

import gzip
import lzma
import struct
import subprocess
import zlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from installer.bootobj import assemble, scan, sign, version
from installer.bootobj import vars as bvars
from installer.bootobj.assemble import Compression, InitramfsMode, Stage2Parts
from installer.bootobj.vars import Variable
from installer.errors import BootObjectError
from tests.support.bootobjgen import dtb, fake_kernel, fake_m1n1, fake_stage, newc_cpio

UUID = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"


@pytest.fixture(scope="module")
def dtbs():
    return dtb("linux,dummy-virt"), dtb("apple,j274", "Apple MacBook Pro (13-inch, M1, 2020)")


@pytest.fixture(scope="module")
def cpio(tmp_path_factory):
    return newc_cpio(tmp_path_factory.mktemp("cpio"), {"init": b"#!/bin/sh\necho hi\n"})


def test_golden_layout(dtbs, cpio):
    stage2, kernel = fake_stage(), fake_kernel()
    got = assemble.assemble_stage2(Stage2Parts(
        stage2=stage2, dtbs=dtbs, kernel=kernel, initramfs=cpio,
        variables=(Variable("chosen.bootargs", "console=ttyAMA0"),),
    ))
    # §3 by hand: stage2 | dtb | dtb | gzip(Image) | m1n1_initramfs + LE u32 | vars | 4 NULs.
    gz = assemble.gzip_member(kernel)
    assert gz[:10] == b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"  # no name, mtime 0
    assert gz[-8:] == struct.pack("<II", zlib.crc32(kernel), len(kernel))
    assert gzip.decompress(gz) == kernel
    want = (
        stage2 + dtbs[0] + dtbs[1] + gz
        + b"m1n1_initramfs" + struct.pack("<I", len(cpio)) + cpio
        + b"chosen.bootargs=console=ttyAMA0\n" + b"\0\0\0\0"
    )
    assert got == want


def test_minimal_boot_bin_is_the_stage2_alone():
    # No variables, no terminator: stage 1's forwarded lines must follow the payloads directly.
    assert assemble.assemble_stage2(Stage2Parts(fake_stage())) == fake_stage()


def test_deterministic(dtbs, cpio):
    parts = Stage2Parts(fake_stage(), dtbs, fake_kernel(), initramfs=cpio,
                        initramfs_mode=InitramfsMode.GZIP)
    assert assemble.assemble_stage2(parts) == assemble.assemble_stage2(parts)


def test_read_back_every_payload(dtbs, cpio):
    data = assemble.assemble_stage2(Stage2Parts(
        fake_stage(), dtbs, fake_kernel(), Compression.XZ, cpio, InitramfsMode.GZIP,
        (Variable("chosen.a", "1"), Variable("display", "auto")),
    ), sign.generate_key())
    start = scan.payload_start(data)
    assert start == len(fake_stage())
    got = scan.scan(data, start)
    assert [p.kind for p in got] == ["fdt", "fdt", "xz", "gzip", "variables", "signature"]
    assert got[0].detail == "compatible linux,dummy-virt"
    assert got[1].detail == "compatible apple,j274"
    assert [(i.kind, i.size) for i in got[2].inner] == [("image", 4096)]
    assert [(i.kind, i.size) for i in got[3].inner] == [("initramfs", len(cpio))]
    assert got[4].variables == (Variable("chosen.a", "1"), Variable("display", "auto"))
    assert got[5].offset + got[5].size == len(data)
    offsets = [p.offset for p in got]
    assert offsets == sorted(offsets)
    assert offsets[0] == start


def test_kernel_given_compressed_is_recompressed_deterministically():
    k = fake_kernel()
    for given in (gzip.compress(k, mtime=1234), lzma.compress(k, format=lzma.FORMAT_XZ)):
        data = assemble.assemble_stage2(Stage2Parts(fake_stage(), kernel=given))
        assert data == fake_stage() + assemble.gzip_member(k)


def test_uncompressed_kernel_is_last():
    k = fake_kernel()
    data = assemble.assemble_stage2(Stage2Parts(fake_stage(), kernel=k,
                                                compression=Compression.NONE))
    pad = assemble.KERNEL_ALIGN - len(fake_stage())
    assert data == fake_stage() + assemble.filler_fdt(pad) + k
    assert data.index(k) == assemble.KERNEL_ALIGN  # stage 2 boots it in place
    assert [p.kind for p in scan.scan(data, scan.payload_start(data))] == ["fdt", "image"]


def test_uncompressed_kernel_goes_last_after_initramfs_and_variables(dtbs):
    """A raw kernel (fastest boot: no inflate) with an initramfs and variables used to be
    refused; they now go before it, the lines without the NULs that would end the scan."""
    k = fake_kernel()
    v = (Variable("chosen.bootargs", "quiet"), Variable("chosen.x", "y"))
    data = assemble.assemble_stage2(Stage2Parts(fake_stage(), dtbs=dtbs[:1], kernel=k,
                                                compression=Compression.NONE,
                                                initramfs=b"070701" + bytes(10), variables=v))
    tagged = scan.INITRAMFS_TAG + struct.pack("<I", 16) + b"070701" + bytes(10)
    lines = b"chosen.bootargs=quiet\nchosen.x=y\n"
    head = fake_stage() + dtbs[0] + tagged
    filler = assemble.filler_fdt(assemble.KERNEL_ALIGN - len(head) - len(lines))
    assert data == head + filler + lines + k
    found = scan.scan(data, scan.payload_start(data))
    assert [p.kind for p in found] == ["fdt", "initramfs", "fdt", "variables", "image"]
    assert found[2].detail == "compatible ?"  # the filler matches no machine
    assert found[3].variables == v
    assert found[4].offset == assemble.KERNEL_ALIGN
    assert found[4].size == len(k)
    key = Ed25519PrivateKey.from_private_bytes(bytes(32))
    signed = assemble.assemble_stage2(Stage2Parts(fake_stage(), kernel=k,
                                                  compression=Compression.NONE, variables=v),
                                      key)
    kinds = [p.kind for p in scan.scan(signed, scan.payload_start(signed))]
    assert kinds == ["fdt", "variables", "image", "signature"]


@pytest.mark.parametrize("offset", [0, 8, 2 * 1024 * 1024 - 72, 2 * 1024 * 1024 - 71,
                                    2 * 1024 * 1024 - 1, 2 * 1024 * 1024 + 5])
def test_kernel_padding_reaches_a_2mib_boundary(offset):
    pad = assemble._pad_to_kernel_align(offset)
    assert (offset + len(pad)) % assemble.KERNEL_ALIGN == 0
    if pad:
        assert len(pad) >= 72
        assert scan.fdt_totalsize(pad) == len(pad)
        assert scan.fdt_root_compatible(pad) == ()


def test_scan_refuses_lines_before_a_non_image():
    data = fake_stage() + b"chosen.a=b\n" + b"\x01" * 80
    with pytest.raises(BootObjectError):
        scan.scan(data, scan.payload_start(data))


def test_tagged_initramfs_keeps_foreign_compression(tmp_path, cpio):
    zst = subprocess.run(["zstd", "-q", "-c"], input=cpio, capture_output=True,
                         check=True).stdout
    data = assemble.assemble_stage2(Stage2Parts(fake_stage(), kernel=fake_kernel(),
                                                initramfs=zst))
    assert data.endswith(b"m1n1_initramfs" + struct.pack("<I", len(zst)) + zst)


def test_gzip_initramfs_from_gzip_input(cpio):
    data = assemble.assemble_stage2(Stage2Parts(
        fake_stage(), kernel=fake_kernel(), initramfs=gzip.compress(cpio),
        initramfs_mode=InitramfsMode.GZIP))
    assert data.endswith(assemble.gzip_member(cpio))


@pytest.mark.parametrize(
    ("parts", "message"),
    [
        (dict(stage2=b"short"), "too short for an arm64 Image header"),
        (dict(stage2=bytes(4096)), "not an arm64 Image"),
        (dict(stage2=fake_stage() + b"extra"), "5 bytes after the image"),
        (dict(stage2=fake_stage()[:-1]), "image_size .* does not fit"),
        (dict(stage2=bytes(fake_stage()).replace(b"##pippin_ver##", b"##nothing_##_")),
         "no ##pippin_ver## or ##m1n1_ver##"),
        (dict(kernel=b"\x1f\x8bnot gzip at all"), "kernel: corrupt gzip"),
        (dict(kernel=lzma.compress(b"x" * 100, format=lzma.FORMAT_XZ)), "kernel: not an arm64"),
        (dict(kernel=b"MZ" + bytes(200)), "kernel: not an arm64 Image"),
        (dict(initramfs=b"070701"), "needs a kernel"),
        (dict(kernel=fake_kernel(), initramfs=b""), "initramfs is empty"),
        (dict(kernel=fake_kernel(), initramfs=b"hello world"), "not a newc cpio"),
        (dict(kernel=fake_kernel(), initramfs=b"\x28\xb5\x2f\xfd....",
              initramfs_mode=InitramfsMode.GZIP), "--initramfs-mode gzip needs"),
        (dict(variables=(Variable("chosen.x", "a\nb"),)), "contains a newline"),
        (dict(variables=tuple(Variable(f"chosen.v{i}", "1") for i in range(17))),
         "17 chosen"),
    ],
)
def test_refusals(parts, message):
    full = {"stage2": fake_stage(), **parts}
    with pytest.raises(BootObjectError, match=message):
        assemble.assemble_stage2(Stage2Parts(**full))


def test_refuses_signed_stage2():
    signed = sign.sign(fake_stage(), sign.generate_key())
    with pytest.raises(BootObjectError):
        assemble.assemble_stage2(Stage2Parts(signed))


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: b"\xd0\x0d\xfe\xef" + d[4:], "no d00dfeed magic"),
        (lambda d: d[:-1], "does not fit"),
        (lambda d: d + b"\0" * 8, "differs from the file size"),
        (lambda d: d[:20], "header truncated"),
        (lambda d: d[:20] + struct.pack(">I", 15) + d[24:], "unsupported version 15"),
        (lambda d: d[:8] + struct.pack(">I", 10_000) + d[12:], "structure block lies outside"),
    ],
)
def test_bad_dtb(dtbs, mutate, message):
    with pytest.raises(BootObjectError, match=f"device tree #2: .*{message}"):
        assemble.assemble_stage2(Stage2Parts(fake_stage(), (dtbs[0], mutate(dtbs[0]))))


def test_m1n1_as_stage2_reads_back(dtbs):
    data = assemble.assemble_stage2(Stage2Parts(fake_m1n1(), dtbs[:1], fake_kernel()))
    assert scan.payload_start(data) == len(fake_m1n1())
    assert [p.kind for p in scan.scan(data, len(fake_m1n1()))] == ["fdt", "gzip"]


# -- stage 1 ---------------------------------------------------------------------------


def test_stage1_object_and_installed_vars_read_back():
    config = bvars.stage1_config(UUID, {"chosen.x": "y"}, public_key=bytes(32))
    data = assemble.assemble_stage1(fake_stage(stage="stage1"), config)
    assert data == fake_stage(stage="stage1") + b"".join(v.line() for v in config) + b"\0" * 4
    assert version.read_installed_vars(data) == config
    assert version.read_version(data).stage == "stage1"


def test_stage1_needs_chainload():
    with pytest.raises(BootObjectError, match="lack chainload"):
        assemble.assemble_stage1(fake_stage(stage="stage1"), [Variable("chosen.x", "1")])


def test_real_kernel_round_trip(test_assets, cpio, dtbs):
    """The Debian arm64 kernel of the QEMU tests goes in and reads back with its size."""
    image = (test_assets / "Image").read_bytes()
    data = assemble.assemble_stage2(Stage2Parts(fake_stage(), dtbs[:1], image, initramfs=cpio))
    got = scan.scan(data, scan.payload_start(data))
    assert [p.kind for p in got] == ["fdt", "gzip", "initramfs"]
    assert got[1].inner[0].kind == "image"
    assert got[1].inner[0].size == len(image)
    assert len(data) < len(image) // 2


def test_debian_qemu_u_boot_has_no_image_header(u_boot):
    """Debian's u-boot-qemu u-boot.bin is a raw flash image, not an arm64 Image: §3's scanner
    could not recognise it, so it is refused with the hint to use a header-carrying build."""
    with pytest.raises(BootObjectError, match="not an arm64 Image") as exc:
        assemble.assemble_stage2(Stage2Parts(fake_stage(), kernel=u_boot))
    assert "u-boot-nodtb.bin" in exc.value.hint
    assert "--firmware" in exc.value.hint


def test_gzip_level_defaults_to_6_and_is_checked():
    """Level 9 took ~6.6 s for a 33 MB kernel for 0.2% less; the default is now zlib's 6."""
    k = fake_kernel() + bytes(range(256)) * 64
    assert assemble.GZIP_LEVEL == 6
    default = assemble.assemble_stage2(Stage2Parts(fake_stage(), kernel=k))
    assert default == fake_stage() + assemble.gzip_member(k, 6)
    for level, xfl in ((1, 4), (6, 0), (9, 2)):
        gz = assemble.gzip_member(k, level)
        assert gz[8] == xfl
        assert gzip.decompress(gz) == k
    nine = assemble.assemble_stage2(Stage2Parts(fake_stage(), kernel=k, gzip_level=9))
    assert nine == fake_stage() + assemble.gzip_member(k, 9)
    with pytest.raises(BootObjectError, match="gzip level 0"):
        assemble.assemble_stage2(Stage2Parts(fake_stage(), kernel=k, gzip_level=0))
