"""The QEMU harness itself: a real Debian arm64 kernel boots our busybox initramfs, loads
virtio/vfat modules, and reads a GPT/FAT disk built with the real tools."""

from __future__ import annotations

import pytest

from tests.support import diskimg, qemu

pytestmark = pytest.mark.qemu


@pytest.mark.parametrize("sector", [512, 4096])
def test_kernel_reads_fat_esp_on_gpt(tmp_path, sector):
    k = qemu.kernel_assets()
    esp = diskimg.Part("EFI", 300 * diskimg.MiB if sector == 4096 else 64 * diskimg.MiB,
                       files={"vendorfw/hello.txt": b"hi from the ESP\n"},
                       fat=32 if sector == 512 else 16)
    disk = tmp_path / "disk.img"
    diskimg.make_gpt_disk(disk, [esp], sector_size=sector)
    init = qemu.INIT_PRELUDE + """
sleep 1
cat /sys/class/block/vda1/uevent
mount -t vfat -o ro /dev/vda1 /mnt && cat /mnt/vendorfw/hello.txt
cat /sys/block/vda/queue/logical_block_size | sed 's/^/LBS=/'
poweroff -f
"""
    initrd = qemu.build_initramfs(
        tmp_path / "initrd.cpio", kernel=k, init=init,
        modules=["virtio_mmio", "virtio_blk", "vfat", "nls_cp437", "nls_ascii", "nls_utf8"])
    res = qemu.run_qemu(kernel=k.image, initrd=initrd, disks=[(disk, sector)], timeout=240)
    assert not res.timed_out, res.console[-3000:]
    assert "hi from the ESP" in res.console, res.console[-3000:]
    assert f"LBS={sector}" in res.console
    assert "PARTNAME=EFI" in res.console  # uevent has the GPT name but no PARTUUID
