"""Which kernel layout the installer writes to ``m1n1/boot.bin`` (issue 13).

A compressed kernel costs stage 2 ~21 instructions a byte to inflate (95 % of the kernel's
own boot to /init with the 33 MB Debian kernel); stored raw, last and on a 2 MiB boundary it
is booted in place (5 %), for a ~2.6x larger file. The installer turns an OS package's
gzip/xz kernel into the raw layout when the ESP has room for it, keeping every other payload
byte for byte; otherwise (or when nothing can change) the object stays as the package has it.

Room means three copies of the raw object next to everything else on the ESP: ``boot.bin``,
the ``boot.bin.old`` an update keeps, and the ``boot.bin.new`` it writes before the rename.
A signed object is never rewritten (its signature covers the bytes).
"""

from __future__ import annotations

import gzip
import lzma
import zlib
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from installer.bootobj import assemble, scan, sign, version
from installer.bootobj import vars as bvars
from installer.errors import BootObjectError
from vendorfw.atomic import write_bytes

COPIES = 3  # boot.bin, boot.bin.old, boot.bin.new during an update


class Layout(StrEnum):
    RAW = "raw"  # kernel stored raw, last, 2 MiB-aligned: booted in place
    COMPRESSED = "compressed"  # gzip/xz kernel, inflated by stage 2
    FIRMWARE = "firmware"  # a UEFI firmware payload (U-Boot), which boots EFI programs
    NO_KERNEL = "no kernel"  # bare stage 2


@dataclass(frozen=True, slots=True)
class Choice:
    layout: Layout
    data: bytes
    reason: str

    def describe(self) -> str:
        return f"{self.layout} ({self.reason})"


def kernel_layout(data: bytes) -> Layout:
    """What ``data`` (a stage-2 boot object) holds."""
    payloads = scan.scan(data, scan.payload_start(data))
    if any(p.kind is scan.Kind.IMAGE for p in payloads):
        return Layout.RAW
    if any(i.kind is scan.Kind.IMAGE for p in payloads for i in p.inner):
        return Layout.COMPRESSED
    if any(p.kind is scan.Kind.FIRMWARE for p in payloads):
        return Layout.FIRMWARE
    return Layout.NO_KERNEL


def raw_layout(data: bytes) -> bytes | None:
    """``data`` with its compressed kernel stored raw and last (every other payload kept
    byte for byte, the variable lines moved before the kernel); None when there is no
    compressed kernel to move or the object is signed."""
    if not version.is_pippin(data) or sign.find_signature(data) is not None:
        return None
    start = scan.payload_start(data)
    payloads = scan.scan(data, start)
    kernels = [p for p in payloads if any(i.kind is scan.Kind.IMAGE for i in p.inner)]
    if len(kernels) != 1:
        return None
    k = kernels[0]
    stream = data[k.offset:k.offset + k.size]
    try:
        kernel = (gzip.decompress(stream) if k.kind is scan.Kind.GZIP
                  else lzma.decompress(stream, format=lzma.FORMAT_XZ))
    except (OSError, EOFError, zlib.error, lzma.LZMAError) as exc:
        raise BootObjectError(f"kernel stream at offset {k.offset}: {exc}") from exc
    prefix = [data[:start]]
    variables: list[bvars.Variable] = []
    for p in payloads:
        if p.kind is scan.Kind.VARIABLES:
            variables += p.variables
        elif p is not k:
            prefix.append(data[p.offset:p.offset + p.size])
    out = assemble.kernel_last(b"".join(prefix), variables, kernel)
    scan.scan(out, start)  # reads back as the loader will see it
    return out


def choose(data: bytes, esp_size: int, other_bytes: int) -> Choice:
    """The boot object to install on an ESP of ``esp_size`` bytes that holds
    ``other_bytes`` of other files."""
    layout = kernel_layout(data)
    if layout is not Layout.COMPRESSED:
        why = {Layout.RAW: "as packaged", Layout.FIRMWARE: "U-Boot, which boots an EFI program "
               "from a disk", Layout.NO_KERNEL: "nothing to move"}[layout]
        return Choice(layout, data, why)
    raw = raw_layout(data)
    if raw is None:
        return Choice(layout, data, "signed by its publisher: kept as packaged")
    need = other_bytes + COPIES * len(raw)
    mb = 1_000_000
    if need > esp_size:
        return Choice(layout, data, f"the ESP ({esp_size / mb:.0f} MB) has no room for "
                                    f"{COPIES} copies of the {len(raw) / mb:.1f} MB raw layout")
    return Choice(Layout.RAW, raw, f"{len(raw) / mb:.1f} MB, stage 2 boots the kernel in place")


def _tree_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def choose_staged(staging: Path, package_esp: Path | None, esp_size: int) -> Choice:
    """:func:`choose` for the installer's staged ESP tree (its ``m1n1/boot.bin`` is
    rewritten when the layout changes); ``package_esp`` is the OS package's ``esp/`` tree,
    which lands on the ESP too (its own boot.bin is replaced by the staged one)."""
    boot = staging / "m1n1" / "boot.bin"
    try:
        data = boot.read_bytes()
        other = _tree_bytes(staging) - len(data)
        if package_esp is not None and package_esp.is_dir():
            pkg_boot = package_esp / "m1n1" / "boot.bin"
            other += _tree_bytes(package_esp) - (
                pkg_boot.stat().st_size if pkg_boot.is_file() else 0)
    except OSError as exc:
        raise BootObjectError(f"cannot read the staged ESP {staging}: {exc.strerror}") from exc
    choice = choose(data, esp_size, other)
    if choice.data is not data:
        write_bytes(boot, choice.data)
    return choice
