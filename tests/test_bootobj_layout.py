"""Issue 13: the installer stores the kernel raw (booted in place) when the ESP has room for
three copies of that layout, and keeps the package's compressed kernel otherwise."""

from __future__ import annotations

import pytest

from installer.bootobj import assemble, layout, scan, sign
from installer.bootobj.assemble import Compression, InitramfsMode, Stage2Parts
from installer.bootobj.layout import Layout
from installer.bootobj.vars import Variable
from tests.support.bootobjgen import dtb, fake_kernel, fake_stage, newc_cpio

MB = 1_000_000


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    cpio = newc_cpio(tmp_path_factory.mktemp("cpio"), {"init": b"#!/bin/sh\n"})
    kernel = fake_kernel() + bytes(range(256)) * 4096  # 1 MiB of kernel
    return dict(stage2=fake_stage(), dtbs=(dtb("linux,dummy-virt"),), kernel=kernel,
                initramfs=cpio, initramfs_mode=InitramfsMode.GZIP,
                variables=(Variable("chosen.bootargs", "console=ttyAMA0"),))


@pytest.mark.parametrize("compression", [Compression.GZIP, Compression.XZ])
def test_raw_layout_is_what_bootobj_builds_with_compress_none(parts, compression):
    packaged = assemble.assemble_stage2(Stage2Parts(**parts, compression=compression))
    raw = layout.raw_layout(packaged)
    assert raw == assemble.assemble_stage2(Stage2Parts(**parts, compression=Compression.NONE))
    assert layout.kernel_layout(packaged) is Layout.COMPRESSED
    assert layout.kernel_layout(raw) is Layout.RAW
    kinds = [p.kind for p in scan.scan(raw, len(fake_stage()))]
    assert kinds == ["fdt", "gzip", "fdt", "variables", "image"]  # filler FDT before the lines
    assert raw.index(parts["kernel"]) % assemble.KERNEL_ALIGN == 0


def test_choose_raw_when_three_copies_fit(parts):
    packaged = assemble.assemble_stage2(Stage2Parts(**parts))
    raw_len = len(layout.raw_layout(packaged))
    fits = layout.choose(packaged, 3 * raw_len + 10 * MB, 10 * MB)
    assert fits.layout is Layout.RAW
    assert fits.data == layout.raw_layout(packaged)
    tight = layout.choose(packaged, 3 * raw_len + 10 * MB - 1, 10 * MB)
    assert tight.layout is Layout.COMPRESSED
    assert tight.data is packaged
    assert tight.reason.startswith(f"the ESP ({(3 * raw_len + 10 * MB - 1) / MB:.0f} MB) has "
                                   "no room for 3 copies")


def test_signed_or_kernel_less_objects_are_kept(parts):
    signed = assemble.assemble_stage2(Stage2Parts(**parts), sign.generate_key())
    c = layout.choose(signed, 10**12, 0)
    assert (c.layout, c.data) == (Layout.COMPRESSED, signed)
    assert "signed" in c.reason
    bare = layout.choose(fake_stage(), 10**12, 0)
    assert (bare.layout, bare.data) == (Layout.NO_KERNEL, fake_stage())
    already = assemble.assemble_stage2(Stage2Parts(**parts, compression=Compression.NONE))
    assert layout.choose(already, 10**12, 0).layout is Layout.RAW
    assert layout.raw_layout(already) is None


def test_choose_staged_rewrites_boot_bin_and_counts_the_other_files(tmp_path, parts):
    packaged = assemble.assemble_stage2(Stage2Parts(**parts))
    raw_len = len(layout.raw_layout(packaged))
    staging = tmp_path / "esp"
    (staging / "m1n1").mkdir(parents=True)
    (staging / "m1n1" / "boot.bin").write_bytes(packaged)
    (staging / "vendorfw").mkdir()
    (staging / "vendorfw" / "firmware.cpio").write_bytes(bytes(2 * MB))
    pkg = tmp_path / "pkg-esp"
    (pkg / "m1n1").mkdir(parents=True)
    (pkg / "m1n1" / "boot.bin").write_bytes(packaged)  # replaced, so not counted
    (pkg / "extra.bin").write_bytes(bytes(MB))
    small = layout.choose_staged(staging, pkg, 3 * raw_len + 3 * MB - 1)
    assert small.layout is Layout.COMPRESSED
    assert (staging / "m1n1" / "boot.bin").read_bytes() == packaged
    ok = layout.choose_staged(staging, pkg, 3 * raw_len + 3 * MB)
    assert ok.layout is Layout.RAW
    assert (staging / "m1n1" / "boot.bin").read_bytes() == ok.data
