"""Small generated inputs for the boot-object tests: fake loader images, kernels, DTBs, cpio.

The fake Pippin stage follows bootchain/src/link.ld: arm64 Image header (branch to 0x800,
``image_size`` = file size, ``ARM\\x64`` at 0x38), version markers right after the header,
code from 0x800, last bytes ``PIPE``. Its "code" holds the tag strings the real loaders carry
(``m1n1_sig``, ``m1n1_initramfs``, ``STACKBOT``, FDT magic) so readers must not trip on them.
"""

from __future__ import annotations

import struct
import subprocess
from pathlib import Path

B_TO_0X800 = struct.pack("<I", 0x14000000 | (0x800 // 4))  # b +0x800
#: Debian's u-boot-qemu build for QEMU virt: a raw flash image, no arm64 Image header (the
#: ``u_boot`` fixture in tests/conftest.py reads it).
U_BOOT = Path("/usr/lib/u-boot/qemu_arm64/u-boot.bin")
CODE = b"\x1f\x20\x03\xd5" * 8 + b"m1n1_sig\x00\x00\x10\x00m1n1_initramfsSTACKBOT\xd0\x0d\xfe\xed"


def image_header(image_size: int) -> bytearray:
    head = bytearray(0x40)
    head[0:4] = B_TO_0X800
    struct.pack_into("<QQ", head, 0x10, image_size, 0xA)
    head[0x38:0x3C] = b"ARM\x64"
    return head


def fake_stage(version: str = "0.1.0", stage: str | None = "stage2", code: bytes = CODE) -> bytes:
    marker = b"##pippin_ver##" + version.encode() + b"\0"
    if stage is not None:
        marker += b"##pippin_stage##" + stage.encode() + b"\0"
    body = bytearray(0x800)
    body[0x40 : 0x40 + len(marker)] = marker
    body += code + b"PIPE"
    body[0:0x40] = image_header(len(body))
    return bytes(body)


def fake_m1n1(tag: str = "v1.4.11", code: bytes = CODE) -> bytes:
    body = bytearray(0x800)
    marker = b"##m1n1_ver##" + tag.encode() + b"\0"
    body[0x40 : 0x40 + len(marker)] = marker
    body += code + b"STACKBOT"
    body[0:0x40] = image_header(0x10000)  # m1n1's image_size includes bss: not the file size
    return bytes(body)


def fake_kernel(size: int = 4096, seed: int = 1) -> bytes:
    """An arm64 Image header followed by deterministic filler."""
    head = image_header(size * 2)
    filler = bytes((i * 131 + seed) & 0xFF for i in range(size - len(head)))
    return bytes(head) + filler


def dtb(compatible: str = "linux,dummy-virt", model: str = "test") -> bytes:
    """A real FDT compiled by dtc."""
    src = f'/dts-v1/;\n/ {{\n\tcompatible = "{compatible}";\n\tmodel = "{model}";\n' \
        '\tchosen { };\n};\n'
    return subprocess.run(
        ["dtc", "-I", "dts", "-O", "dtb", "-o", "-", "-"],
        input=src.encode(), capture_output=True, check=True,
    ).stdout


def newc_cpio(tmp: Path, files: dict[str, bytes]) -> bytes:
    """A newc cpio archive made by GNU cpio from ``files`` (name → content)."""
    root = tmp / "cpio-root"
    root.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        (root / name).write_bytes(content)
    names = "".join(f"{n}\n" for n in sorted(files))
    return subprocess.run(
        ["cpio", "-o", "-H", "newc", "--quiet", "--reproducible"],
        input=names.encode(), cwd=root, capture_output=True, check=True,
    ).stdout
