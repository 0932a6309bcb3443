#!/usr/bin/env python3
"""Regenerate the crafted disk images in this folder (run from anywhere; needs mkfs.fat and
mtools). GPTs are written here byte by byte so the bad variants are exact; FAT images come
from the real tools. Everything is gzipped with mtime 0, so reruns give the same bytes."""

from __future__ import annotations

import gzip
import os
import struct
import subprocess
import tempfile
import uuid
import zlib
from pathlib import Path

HERE = Path(__file__).resolve().parent
ESP_UUID = "6a1f3b7e-2c4d-4e5f-8a9b-0c1d2e3f4a5b"
OTHER_UUID = "11111111-2222-3333-4444-555555555555"
ESP_TYPE = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
MiB = 1 << 20


def save(name: str, data: bytes) -> None:
    with open(HERE / name, "wb") as f, gzip.GzipFile(fileobj=f, mode="wb", mtime=0,
                                                    filename="") as gz:
        gz.write(data)


def gpt_disk(bs: int, size: int) -> bytearray:
    """GPT with two partitions: [OTHER at 0.5 MiB .. 1 MiB), [ESP at 1 MiB .. 2 MiB)."""
    blocks = size // bs
    disk = bytearray(size)
    entries = bytearray(128 * 128)
    parts = [(OTHER_UUID, MiB // 2 // bs, MiB // bs - 1), (ESP_UUID, MiB // bs, 2 * MiB // bs - 1)]
    for i, (u, first, last) in enumerate(parts):
        struct.pack_into("<16s16sQQQ", entries, i * 128, uuid.UUID(ESP_TYPE).bytes_le,
                         uuid.UUID(u).bytes_le, first, last, 0)
    ecrc = zlib.crc32(entries)
    elba_blocks = len(entries) // bs
    for my, alt, elba in ((1, blocks - 1, 2), (blocks - 1, 1, blocks - 1 - elba_blocks)):
        h = bytearray(struct.pack("<8sIIIIQQQQ16sQIII", b"EFI PART", 0x10000, 92, 0, 0, my, alt,
                                  2 + elba_blocks, blocks - 2 - elba_blocks,
                                  uuid.UUID(OTHER_UUID).bytes_le, elba, 128, 128, ecrc))
        struct.pack_into("<I", h, 16, zlib.crc32(h))
        disk[my * bs: my * bs + 92] = h
        disk[elba * bs: elba * bs + len(entries)] = entries
    return disk


def fat_image(bits: int, size: int, sector: int = 512, extra: tuple[str, ...] = ()) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        img = Path(tmp) / "fat.img"
        img.write_bytes(bytes(size))
        subprocess.run(["mkfs.fat", "-F", str(bits), "-S", str(sector), "-n", "PIPPIN",
                        "-i", "1234ABCD", "--invariant", *extra, str(img)], check=True,
                       capture_output=True)
        env = dict(os.environ, MTOOLS_SKIP_CHECK="1", SOURCE_DATE_EPOCH="0")
        files = {
            "m1n1/boot.bin": bytes(range(256)) * 40 + b"END",  # 10243 bytes, several clusters
            "m1n1/A Long File Name.txt": b"long name\n",
            "SHORT.TXT": b"short\n",
        }
        for d in ("m1n1",):
            subprocess.run(["mmd", "-i", str(img), "::/" + d], check=True, env=env)
        for name, data in files.items():
            src = Path(tmp) / "src"
            src.write_bytes(data)
            subprocess.run(["mcopy", "-i", str(img), "-m", str(src), "::/" + name], check=True,
                           env=env)
        return img.read_bytes()


def payloads() -> dict[str, bytes]:
    """A boot object's payload area with every kind, and broken variants."""
    import lzma
    dtb = (HERE / "virt.dtb").read_bytes()
    image = bytearray(4096)
    struct.pack_into("<Q", image, 16, 8192)  # image_size
    image[0x38:0x3C] = b"ARM\x64"
    gz = gzip.compress(bytes(image), mtime=0)
    cpio = b"070701" + b"0" * 104 + b"TRAILER!!!\0" + bytes(3)
    xz = lzma.compress(cpio, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC32)
    tagged = b"m1n1_initramfs" + struct.pack("<I", 512) + bytes(512)
    var = b"chosen.bootargs=console=ttyAMA0\n"
    sig = b"m1n1_sig" + struct.pack("<IB", 109, 1) + bytes(96)
    fwd = b"chosen.asahi,m1n1-stage1-version=0.1.0\n" + bytes(68) + b"garbage"
    ok = dtb + gz + xz + tagged + var + bytes(4) + sig + fwd
    return {
        "payloads-ok.bin": ok,
        "payloads-truncated-initramfs.bin":
            dtb + b"m1n1_initramfs" + struct.pack("<I", 4096) + bytes(100),
        "payloads-truncated-fdt.bin": dtb[:3000],
        "payloads-truncated-gzip.bin": dtb + gz[: len(gz) // 2],
        "payloads-unknown.bin": dtb + b"\x7fELF not a payload",
    }


def tiny_gpt() -> bytes:
    """A 40-block GPT with 16 entries (fuzz corpus seed: small enough to mutate)."""
    bs, blocks = 512, 40
    disk = bytearray(bs * blocks)
    entries = bytearray(16 * 128)
    struct.pack_into("<16s16sQQQ", entries, 0, uuid.UUID(ESP_TYPE).bytes_le,
                     uuid.UUID(ESP_UUID).bytes_le, 10, 30, 0)
    ecrc = zlib.crc32(entries)
    for my, alt, elba in ((1, blocks - 1, 2), (blocks - 1, 1, blocks - 5)):
        h = bytearray(struct.pack("<8sIIIIQQQQ16sQIII", b"EFI PART", 0x10000, 92, 0, 0, my, alt,
                                  6, blocks - 6, uuid.UUID(OTHER_UUID).bytes_le, elba, 16, 128,
                                  ecrc))
        struct.pack_into("<I", h, 16, zlib.crc32(h))
        disk[my * bs: my * bs + 92] = h
        disk[elba * bs: elba * bs + len(entries)] = entries
    return bytes(disk)


def tiny_fat() -> bytes:
    """A hand-made 48-sector FAT12 volume holding m1n1/boot.bin (fuzz corpus seed)."""
    bs = bytearray(512)
    bs[0:3] = b"\xeb\x3c\x90"
    struct.pack_into("<HBHBHHBHHHII", bs, 11, 512, 1, 1, 1, 16, 48, 0xF8, 1, 32, 2, 0, 0)
    bs[510:512] = b"\x55\xaa"
    fat = bytearray(512)
    fat[0:3] = b"\xf8\xff\xff"
    # cluster 2 = directory m1n1 (end), 3 -> 4 (end): boot.bin
    def set12(c: int, v: int) -> None:
        off = c + c // 2
        cur = fat[off] | fat[off + 1] << 8
        cur = (cur & 0x000F) | (v << 4) if c & 1 else (cur & 0xF000) | v
        fat[off], fat[off + 1] = cur & 0xFF, cur >> 8
    set12(2, 0xFFF)
    set12(3, 4)
    set12(4, 0xFFF)
    root = bytearray(512)
    root[0:32] = struct.pack("<11sB8xHHHHI", b"M1N1       ", 0x10, 0, 0, 0, 2, 0)
    sub = bytearray(512)
    sub[0:32] = struct.pack("<11sB8xHHHHI", b"BOOT    BIN", 0x20, 0, 0, 0, 3, 700)
    data = bytearray(512 * 45)
    data[0:512] = sub
    data[512:512 + 700] = bytes(range(256)) * 2 + bytes(188)
    return bytes(bs + fat + root + data)


def xz_plain(n: int = 160 * 1024) -> bytes:
    """Compressible bytes (8-byte words from a 16-word vocabulary, picked by an LCG) with
    a 4 KiB incompressible stretch, so LZMA2 writes both chunk kinds. src/core/xz.zig
    computes the same bytes."""
    words = [bytes([0x41 + w] * 4) + bytes([0x61 + w, w, 0x20, 0x0A]) for w in range(16)]
    x, out = 12345, bytearray()
    for i in range(n // 8):
        x = (x * 1103515245 + 12345) & 0x7FFFFFFF
        if 8192 <= i * 8 < 8192 + 4096:
            out += struct.pack("<Q", x * 0x9E3779B97F4A7C15 & (2**64 - 1))
        else:
            out += words[(x >> 16) & 15]
    return bytes(out)


def xz_streams() -> dict[str, bytes]:
    """The same bytes through the real xz tool: every check kind, one or several blocks."""
    plain = xz_plain()
    variants = {
        "xz-crc64.xz": ["-T1"],  # what `xz` writes by default
        "xz-crc32.xz": ["-T1", "-C", "crc32"],
        "xz-sha256.xz": ["-T1", "-C", "sha256"],
        "xz-none.xz": ["-T1", "-C", "none"],
        "xz-blocks.xz": ["-T2", "-C", "crc32", "--block-size=65536"],  # sizes in headers
    }
    return {name: subprocess.run(["xz", "-c", *args], input=plain, capture_output=True,
                                 check=True).stdout for name, args in variants.items()}


def gzip_streams() -> dict[str, bytes]:
    """gzip members of xz_plain() from zlib: levels 1/6/9 (dynamic codes), fixed codes,
    stored (level 0, a 20000-byte prefix), with the optional header fields."""
    plain = xz_plain()
    out = {}
    for name, level, strategy, data, flags, extra in (
        ("deflate-0.gz", 0, zlib.Z_DEFAULT_STRATEGY, plain[:20000], 0, b""),
        ("deflate-1.gz", 1, zlib.Z_DEFAULT_STRATEGY, plain, 0x08, b"plain.bin\0"),
        ("deflate-6.gz", 6, zlib.Z_DEFAULT_STRATEGY, plain, 0, b""),
        ("deflate-9.gz", 9, zlib.Z_DEFAULT_STRATEGY, plain, 0x16,
         b"\x04\x00PP\x00\x00" + b"a comment\0" + b"\x00\x00"),  # FEXTRA FCOMMENT FHCRC
        ("deflate-fixed.gz", 6, zlib.Z_FIXED, plain, 0, b""),
        ("deflate-small.gz", 6, zlib.Z_DEFAULT_STRATEGY, plain[:3000], 0, b""),
    ):
        z = zlib.compressobj(level, zlib.DEFLATED, -15, 9, strategy)
        body = z.compress(data) + z.flush()
        header = bytes([0x1F, 0x8B, 8, flags, 0, 0, 0, 0, 0, 0xFF])
        out[name] = header + extra + body + struct.pack("<II", zlib.crc32(data), len(data))
    return out


def main() -> None:
    for name, data in gzip_streams().items():
        (HERE / name).write_bytes(data)
    for name, data in xz_streams().items():
        (HERE / name).write_bytes(data)
    (HERE / "gpt-tiny.img").write_bytes(tiny_gpt())
    (HERE / "fat12-tiny.img").write_bytes(tiny_fat())
    for name, data in payloads().items():
        (HERE / name).write_bytes(data)
    save("gpt-512.img.gz", gpt_disk(512, 4 * MiB))
    save("gpt-4096.img.gz", gpt_disk(4096, 4 * MiB))
    d = gpt_disk(512, 4 * MiB)
    d[512 + 16] ^= 0xFF  # primary header CRC wrong: the backup must be used
    save("gpt-512-bad-primary-crc.img.gz", d)
    d = gpt_disk(512, 4 * MiB)
    d[2 * 512 + 200] ^= 0xFF  # entry array (shared by both headers here? no: each copy)
    d[(len(d) // 512 - 1 - 32) * 512 + 200] ^= 0xFF
    save("gpt-512-bad-entries-crc-both.img.gz", d)
    save("fat12.img.gz", fat_image(12, 2 * MiB))
    save("fat16.img.gz", fat_image(16, 20 * MiB))
    save("fat32.img.gz", fat_image(32, 40 * MiB))
    save("fat16-4096.img.gz", fat_image(16, 40 * MiB, 4096, ("-s", "1")))
    f = bytearray(fat_image(16, 20 * MiB))
    # Corrupt FAT: point every FAT16 entry of boot.bin's chain at cluster 1 (invalid).
    rsv = struct.unpack_from("<H", f, 14)[0]
    for i in range(2, 64):
        off = rsv * 512 + 2 * i
        if struct.unpack_from("<H", f, off)[0] not in (0,):
            struct.pack_into("<H", f, off, 1)
    save("fat16-bad-chain.img.gz", bytes(f))


if __name__ == "__main__":
    main()
