"""Generated Apple firmware trees for the collector, packaging and benchmark tests.

Names look like macOS's (several Wi-Fi chips and revisions, antenna variants, identical and
differing variants, perf/ and assert/ dirs, ``_gen`` files, ``C-4388__s-C2``, Bluetooth
MUR/USI/GEN/Willamette/ES2/_DEV, Multitouch IM4Ps holding OSSerialize payloads (bare dict
root, hex integers, ID/IDREF), symlinked by device in the raw dump, a kernelcache carrying
the ASMedia blob, camerad with set-file headers, factory-data HmCA files, ALS calibration).
Contents are random bytes from a seeded RNG.

The expected Linux names and bytes of the fixed core are written out by hand here from
formats.md §7 (``WIFI_CORE``, ``BT_CORE``, Z2FW/HIDF in fwmultitouch.py); they are not
computed by vendorfw. ``scale`` > 1 adds Wi-Fi boards whose variants all differ, whose
names follow directly from the path (no pruning applies); scale 11 gives about 1,000 files
and 50 MB, the size of the dump measured in issue 13 (``make_asahi_dir`` packs it).
"""

from __future__ import annotations

import hashlib
import os
import random
import struct
from dataclasses import dataclass, field
from pathlib import Path

import pyimg4

from tests.support.fwmultitouch import (
    J293_DFRMTFW,
    J293_TPMTFW,
    J314C_TPMTFW,
    j293_value,
    j314c_value,
    osserialize,
)

# --------------------------------------------------------------------------- expectations

# Wi-Fi core: output name -> key of the content it must carry (see _wifi_core).
WIFI_CORE: dict[str, str] = {
    # 4378 B1, shikoku: bare-platform blobs; two antenna NVRAMs equal after cleanup collapse
    "brcm/brcmfmac4378b1-pcie.apple,shikoku.bin": "shikoku.trx",
    "brcm/brcmfmac4378b1-pcie.apple,shikoku.clm_blob": "shikoku.clmb",
    "brcm/brcmfmac4378b1-pcie.apple,shikoku.txcap_blob": "shikoku.txcb",
    "brcm/brcmfmac4378b1-pcie.apple,shikoku.txt": "N1",
    # kyushu: differing antennas stay, a single-antenna vendor collapses to the vendor
    "brcm/brcmfmac4378b1-pcie.apple,kyushu.bin": "kyushu.trx",
    "brcm/brcmfmac4378b1-pcie.apple,kyushu.clm_blob": "kyushu.clmb",
    "brcm/brcmfmac4378b1-pcie.apple,kyushu.sig": "kyushu.sig",
    "brcm/brcmfmac4378b1-pcie.apple,kyushu-RASP-m-7.9-X0.txt": "N2",
    "brcm/brcmfmac4378b1-pcie.apple,kyushu-RASP-m-7.9-X2.txt": "N3",
    "brcm/brcmfmac4378b1-pcie.apple,kyushu-RASP-u.txt": "N2",
    # hokkaido: (Pippin) rule (b) keeps the differing antenna under an equal version
    "brcm/brcmfmac4378b1-pcie.apple,hokkaido.bin": "hokkaido.trx",
    "brcm/brcmfmac4378b1-pcie.apple,hokkaido.txt": "N5",
    "brcm/brcmfmac4378b1-pcie.apple,hokkaido-RASP.txt": "N5",
    "brcm/brcmfmac4378b1-pcie.apple,hokkaido-RASP-u.txt": "N5",
    "brcm/brcmfmac4378b1-pcie.apple,hokkaido-RASP-u-5.0.txt": "N5",
    "brcm/brcmfmac4378b1-pcie.apple,hokkaido-RASP-u-5.0-X1.txt": "N6",
    # honshu: everything below the module equals it -> one board-level file
    "brcm/brcmfmac4378b1-pcie.apple,honshu.bin": "honshu.trx",
    "brcm/brcmfmac4378b1-pcie.apple,honshu.txt": "N7",
    # 4387 C2: differing modules stay apart, identical modules collapse
    "brcm/brcmfmac4387c2-pcie.apple,maui.bin": "maui.trx",
    "brcm/brcmfmac4387c2-pcie.apple,maui.clm_blob": "maui.clmb",
    "brcm/brcmfmac4387c2-pcie.apple,maui.txcap_blob": "maui.txcb",
    "brcm/brcmfmac4387c2-pcie.apple,maui-HRPN.txt": "N8",
    "brcm/brcmfmac4387c2-pcie.apple,maui-RASP.txt": "N9",
    "brcm/brcmfmac4387c2-pcie.apple,lanai.bin": "lanai.trx",
    "brcm/brcmfmac4387c2-pcie.apple,lanai.txt": "N10",
    # 4388 B0 (the C-4388__s-C2 directory is skipped) and 4377 B3 with no module/vendor
    "brcm/brcmfmac4388b0-pcie.apple,tokara.bin": "tokara88.trx",
    "brcm/brcmfmac4388b0-pcie.apple,tokara.txt": "N11",
    "brcm/brcmfmac4377b3-pcie.apple,tokara.bin": "tokara77.trx",
    "brcm/brcmfmac4377b3-pcie.apple,tokara.clm_blob": "tokara77.clmb",
    # a lone version-only NVRAM collapses up to the board (rule (a) on single children)
    "brcm/brcmfmac4377b3-pcie.apple,tokara.txt": "N12",
}

# Wi-Fi source files that must be reported (unknown key, not key-value).
WIFI_PROBLEMS = (
    "wifi/C-4378__s-B1/P-shikoku-X0_Q-RASP_V-u.txt",
    "wifi/C-4355__s-C1_Z-9/borneo.trx",
    "wifi/C-4378__s-B1/P-kyushu-X0_MRASP.txt",
)

# Bluetooth core: output name -> source file name (first in name order wins).
_BT_SHIKOKU_OLD = "BCM4378B1_22.1.500.1000_PCIE_macOS_Shikoku_MUR"
BT_CORE: dict[str, str] = {
    "brcm/brcmbt4378b1-apple,shikoku-m.bin": f"{_BT_SHIKOKU_OLD}.bin",
    "brcm/brcmbt4378b1-apple,shikoku-m.ptb": f"{_BT_SHIKOKU_OLD}.ptb",
    "brcm/brcmbt4378b1-apple,shikoku-u.bin": "BCM4378B1_22.1.538.4006_PCIE_macOS_Shikoku_USI.bin",
    "brcm/brcmbt4378b1-apple,shikoku-u.ptb": "BCM4378B1_22.1.538.4006_PCIE_macOS_Shikoku_USI.ptb",
    "brcm/brcmbt4387c2-apple,maui-u.bin":
        "BCM4387C2_19.3.395.4044_PCIE_macOS_Willamette_MauiES2_USI.bin",
    "brcm/brcmbt4387c2-apple,maui-u.ptb":
        "BCM4387C2_19.3.395.4044_PCIE_macOS_Willamette_MauiES2_USI.ptb",
    "brcm/brcmbt4388b0-apple,tokara.bin": "BCM4388B0_23.1.15.1001_PCIE_macOS_Tokara_GEN.bin",
    "brcm/brcmbt4388b0-apple,amami.bin": "BCM4388B0_23.1.15.1001_PCIE_macOS_AmamiES_GEN.bin",
    "brcm/brcmbt4388b0-apple,kauai.bin": "BCM4388B0_23.1.15.1001_PCIE_macOS_Kauai_GEN.bin",
    "brcm/brcmbt4377b3-apple,tokara-u.bin": "BCM4377B3_21.1.508.1001_PCIE_Tokara_USI.bin",
    "brcm/brcmbt4377b3-apple,tokara-u.ptb": "BCM4377B3_21.1.508.1001_PCIE_Tokara_USI.ptb",
}
# Reported: no vendor, two vendors, unparsable chip, no PCIE, and the kauai missing .ptb.
BT_PROBLEMS = (
    "bluetooth/BCM4378B1_22.1.538.4006_PCIE_macOS_Kyushu.bin",
    "bluetooth/BCM4378B1_22.1.538.4006_PCIE_macOS_Kyushu_MUR_USI.bin",
    "bluetooth/Bluetooth_PCIE_Shikoku_MUR.bin",
    "bluetooth/BCM4378B1_22.1.538.4006_macOS_Kyushu_MUR.bin",
    "bluetooth/BCM4388B0_23.1.15.1001_PCIE_macOS_Kauai_GEN.bin",
)

SETFILE_MAGICS = {  # magic -> (name, size), formats.md §7
    0x18200103: ("1820_01XX", 0x442C),
    0x18220201: ("1822_02XX", 0x442C),
    0x87200103: ("8720_01XX", 0x36AC),
    0x87230101: ("8723_01XX", 0x361C),
    0x19210106: ("1921_01XX", 0xAD40),
    0x19220201: ("1922_02XX", 0xAD40),
}


@dataclass
class ExpectedSummary:
    """What collecting the generated tree must give.

    ``files`` maps every expected output name to the SHA-256 of its bytes; ``problems``
    holds the source paths (relative to the root) that must be reported.
    """

    root: Path
    files: dict[str, str] = field(default_factory=dict)
    problems: set[str] = field(default_factory=set)
    source_files: int = 0
    source_bytes: int = 0

    @property
    def names(self) -> list[str]:
        return sorted(self.files, key=str.encode)


# --------------------------------------------------------------------------- writers


class _Tree:
    def __init__(self, root: Path, rng: random.Random, summary: ExpectedSummary) -> None:
        self.root, self.rng, self.summary = root, rng, summary

    def write(self, rel: str, data: bytes) -> Path:
        p = self.root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        self.summary.source_files += 1
        self.summary.source_bytes += len(data)
        return p

    def rand(self, lo: int, hi: int) -> bytes:
        return self.rng.randbytes(self.rng.randint(lo, hi))

    def expect(self, name: str, data: bytes) -> None:
        assert name not in self.summary.files, name
        self.summary.files[name] = hashlib.sha256(data).hexdigest()


def _nvram(rng: random.Random, n: int) -> tuple[bytes, list[bytes]]:
    """A clean NVRAM text and its lines."""
    lines = [f"key{i}_{rng.randrange(1 << 16):x}={rng.randrange(1 << 32):#x}".encode()
             for i in range(n)]
    lines.append(b"boardflags3= 0x00000108 ")  # value keeps its spaces byte for byte
    return b"".join(x + b"\n" for x in lines), lines


def _noisy(lines: list[bytes], variant: int) -> bytes:
    """The same NVRAM as macOS might ship it: blank lines, spaced keys, no final newline."""
    out = []
    for i, line in enumerate(lines):
        key, _, value = line.partition(b"=")
        if (i + variant) % 3 == 0:
            key = b"  " + key + b"\t "
        out.append(key + b"=" + value)
        if (i + variant) % 4 == 0:
            out.append(b"" if variant % 2 else b"   ")
    return b"\n".join(out)


def _wifi_core(t: _Tree, fw: str) -> None:
    w = f"{fw}/wifi"
    content: dict[str, bytes] = {}
    for key in ("shikoku.trx", "shikoku.clmb", "shikoku.txcb", "kyushu.trx", "kyushu.clmb",
                "kyushu.sig", "hokkaido.trx", "honshu.trx", "maui.trx", "maui.clmb",
                "maui.txcb", "lanai.trx", "tokara88.trx", "tokara77.trx", "tokara77.clmb"):
        content[key] = t.rand(20_000, 60_000)
    nv: dict[str, list[bytes]] = {}
    for i in range(1, 13):
        clean, lines = _nvram(t.rng, 8 + i)
        content[f"N{i}"], nv[f"N{i}"] = clean, lines

    def blob(rel: str, key: str) -> None:
        t.write(f"{w}/{rel}", content[key])

    def nvram(rel: str, key: str, variant: int = 0) -> None:
        t.write(f"{w}/{rel}", _noisy(nv[key], variant))

    b1, c2 = "C-4378__s-B1", "C-4387__s-C2"
    blob(f"{b1}/shikoku.trx", "shikoku.trx")
    blob(f"{b1}/shikoku.clmb", "shikoku.clmb")
    blob(f"{b1}/shikoku.txcb", "shikoku.txcb")
    nvram(f"{b1}/P-shikoku-X0_M-RASP_V-u__m-6.11.txt", "N1", 0)
    nvram(f"{b1}/P-shikoku-X3_M-RASP_V-u__m-6.11.txt", "N1", 1)
    blob(f"{b1}/kyushu.trx", "kyushu.trx")
    blob(f"{b1}/kyushu.clmb", "kyushu.clmb")
    blob(f"{b1}/kyushu.sig", "kyushu.sig")
    nvram(f"{b1}/P-kyushu-X0_M-RASP_V-m__m-7.9.txt", "N2")
    nvram(f"{b1}/P-kyushu-X2_M-RASP_V-m__m-7.9.txt", "N3")
    nvram(f"{b1}/P-kyushu-X0_M-RASP_V-u__m-7.9.txt", "N2", 2)
    blob(f"{b1}/hokkaido.trx", "hokkaido.trx")
    nvram(f"{b1}/P-hokkaido_M-RASP_V-u.txt", "N5")
    nvram(f"{b1}/P-hokkaido_M-RASP_V-u__m-5.0.txt", "N5", 1)
    nvram(f"{b1}/P-hokkaido-X1_M-RASP_V-u__m-5.0.txt", "N6")
    blob(f"{b1}/honshu.trx", "honshu.trx")
    nvram(f"{b1}/P-honshu_M-HRPN.txt", "N7")
    nvram(f"{b1}/P-honshu-X1_M-HRPN_V-m__m-3.2.txt", "N7", 1)
    nvram(f"{b1}/P-honshu-X2_M-HRPN_V-m__m-3.2.txt", "N7", 2)
    blob(f"{c2}/maui.trx", "maui.trx")
    blob(f"{c2}/maui.clmb", "maui.clmb")
    blob(f"{c2}/maui.txcb", "maui.txcb")
    nvram(f"{c2}/P-maui-X0_M-HRPN_V-u__m-7.5.txt", "N8")
    nvram(f"{c2}/P-maui-X0_M-RASP_V-u__m-7.5.txt", "N9")
    blob(f"{c2}/lanai.trx", "lanai.trx")
    nvram(f"{c2}/P-lanai-X0_M-HRPN_V-m__m-1.1.txt", "N10")
    nvram(f"{c2}/P-lanai-X0_M-RASP_V-m__m-1.1.txt", "N10", 3)
    blob("C-4388__s-B0/tokara.trx", "tokara88.trx")
    nvram("C-4388__s-B0/P-tokara-X0_M-SPPR_V-m__m-2.3.txt", "N11")
    blob("C-4377__s-B3/tokara.trx", "tokara77.trx")
    blob("C-4377__s-B3/tokara.clmb", "tokara77.clmb")
    nvram("C-4377__s-B3/P-tokara_m-1.0.txt", "N12")
    # skipped silently: excluded dirs, _gen, other extensions
    for rel in ("C-4388__s-C2/tokara.trx", f"perf/{b1}/shikoku.trx", f"{b1}/assert/kyushu.trx",
                f"{b1}/perf/P-kyushu-X9_M-RASP_V-m__m-7.9.txt", f"{b1}/shikoku_gen.trx",
                f"{b1}/P-shikoku-X0_M-RASP_V-u__m-6.11_gen.txt", f"{b1}/shikoku.plist",
                f"{b1}/kyushu.bin"):
        t.write(f"{w}/{rel}", t.rand(100, 2000))
    # reported
    for rel in WIFI_PROBLEMS:
        t.write(f"{fw}/{rel}", b"k=v\n")
        t.summary.problems.add(f"{fw}/{rel}")
    for name, key in WIFI_CORE.items():
        t.expect(name, content[key])


_ISLANDS = ("sumatra", "borneo", "bali", "java", "flores", "timor", "sulawesi", "seram",
            "ambon", "lombok")
_CHIPS = (("C-4378__s-B1", "4378b1"), ("C-4387__s-C2", "4387c2"), ("C-4388__s-B0", "4388b0"))


def _wifi_extra(t: _Tree, fw: str, scale: int) -> None:
    """20 boards per scale step above 1, all variants distinct (names need no pruning)."""
    for i in range(20 * (scale - 1)):
        d, chip = _CHIPS[i % len(_CHIPS)]
        board = f"{_ISLANDS[i % len(_ISLANDS)]}{i}"
        pre = f"brcm/brcmfmac{chip}-pcie.apple,{board}"
        for ext, out, lo, hi in ((".trx", "bin", 190_000, 250_000),
                                 (".clmb", "clm_blob", 20_000, 30_000),
                                 (".txcb", "txcap_blob", 8_000, 12_000)):
            data = t.rand(lo, hi)
            t.write(f"{fw}/wifi/{d}/{board}{ext}", data)
            t.expect(f"{pre}.{out}", data)
        for ant in ("X0", "X1"):
            clean, lines = _nvram(t.rng, 40)
            t.write(f"{fw}/wifi/{d}/P-{board}-{ant}_M-RASP_V-u__m-9.9.txt", _noisy(lines, 1))
            t.expect(f"{pre}-RASP-u-9.9-{ant}.txt", clean)


def _bluetooth(t: _Tree, fw: str) -> None:
    b = f"{fw}/bluetooth"
    for name, src in BT_CORE.items():
        data = t.rand(5_000, 30_000)
        t.write(f"{b}/{src}", data)
        t.expect(name, data)
    for src in ("BCM4378B1_22.1.538.4006_PCIE_macOS_Shikoku_MUR.bin",  # loses to 22.1.500
                "BCM4378B1_22.1.538.4006_PCIE_macOS_Shikoku_MUR.ptb",
                "BCM4378B1_22.1.538.4006_PCIE_macOS_Shikoku_MUR_DEV.bin",
                "BCM4387C2_19.3.395.4044_PCIE_macOS_Lanai_MUR.ptb",  # no .bin: dropped
                "BCM4378B1_22.1.538.4006_PCIE_macOS_Shikoku_MUR.hcd"):
        t.write(f"{b}/{src}", t.rand(1000, 3000))
    for rel in BT_PROBLEMS:
        if not (t.root / fw / rel).exists():
            t.write(f"{fw}/{rel}", t.rand(100, 200))
        t.summary.problems.add(f"{fw}/{rel}")


# --------------------------------------------------------------------------- Image4


def make_im4p(fourcc: str, payload: bytes, *, compress: str | None = None) -> bytes:
    """An IM4P file; ``compress`` is None, "lzfse" or "lzss"."""
    data = pyimg4.IM4PData(payload)
    if compress == "lzfse":
        data.compress(pyimg4.Compression.LZFSE)
    elif compress == "lzss":
        data.compress(pyimg4.Compression.LZSS)
    out: bytes = pyimg4.IM4P(fourcc=fourcc, description=f"{fourcc}-1", payload=data).output()
    return out


def macho_header(filetype: int) -> bytes:
    """A 64-bit arm64e Mach-O header (magic, cputype, cpusubtype, filetype, no load
    commands), as Apple's binaries start: ``filetype`` 2 = MH_EXECUTE, 0xC = MH_FILESET (a
    kernelcache)."""
    return struct.pack("<8I", 0xFEEDFACF, 0x0100000C, 0x80000002, filetype, 0, 0, 0, 0)


def kernel_image(asmedia: bytes, rng: random.Random, size: int = 2 << 20) -> bytes:
    """A fake kernel image: a Mach-O fileset header, filler, the 2214A_RCFG record, filler."""
    assert len(asmedia) == 0x18000
    record = b"2214A_RCFG" + bytes(0x2F - 10) + struct.pack("<I", 0x18000) + asmedia

    def filler(n: int) -> bytes:  # compressible like code and tables, not pure noise
        page = rng.randbytes(1024) + bytes(1024)
        return (page * (n // len(page) + 1))[:n]

    head = macho_header(0xC) + filler(size // 2)
    return head + record + bytes(4096) + filler(size // 2)


def make_kernelcache(path: Path, asmedia: bytes, lzfse: bool, seed: int = 0) -> bytes:
    """Write an IM4P kernelcache (LZFSE or raw payload) carrying ``asmedia``; return the image."""
    image = kernel_image(asmedia, random.Random(seed))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(make_im4p("krnl", image, compress="lzfse" if lzfse else None))
    return image


def _multitouch(t: _Tree, raw_dump: bool) -> None:
    """j293: Touch Bar + trackpad, LZFSE IM4P; j314c: trackpad only, raw IM4P (golden bytes
    in fwmultitouch.py); j413: a truncated IM4P (reported); a StockholmEMD beside them.
    In the raw dump (§8) the files sit at their manifest paths and every
    ``<device>/<ManifestKey>.im4p`` is a relative symlink to one."""
    im4ps = {
        ("j293ap", "Multitouch"): make_im4p("mtfw", osserialize(j293_value()), compress="lzfse"),
        ("j314cap", "Multitouch"): make_im4p("mtfw", osserialize(j314c_value())),
        ("j293ap", "StockholmEMD"): make_im4p("stfw", t.rand(100, 300)),
    }
    broken = make_im4p("mtfw", osserialize(j314c_value()))
    im4ps[("j413ap", "Multitouch")] = broken[: len(broken) // 2]
    for (device, key), data in im4ps.items():
        if raw_dump:
            target = f"Firmware/{key}/{device[:-2].upper()}_{key}.im4p"
            t.write(f"fud_firmware/{target}", data)
            link = t.root / f"fud_firmware/{device}/{key}.im4p"
            link.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(f"../{target}", link)
        else:
            t.write(f"fud_firmware/{device}/{key}.im4p", data)
    t.summary.problems.add("fud_firmware/j413ap/Multitouch.im4p")
    t.expect("apple/dfrmtfw-j293.bin", J293_DFRMTFW)
    t.expect("apple/tpmtfw-j293.bin", J293_TPMTFW)
    t.expect("apple/tpmtfw-j314c.bin", J314C_TPMTFW)


# --------------------------------------------------------------------------- camera, ALS


def setfile_header(magic: int) -> bytes:
    """Eight BE words satisfying the §7 header test for ``magic``."""
    return struct.pack(">8I", magic, 0x1234, 0, 0, 0x05000000, 0x00A80000, 0, 0x03C00000)


def make_camerad(rng: random.Random, magics: list[int]) -> tuple[bytes, dict[str, bytes]]:
    """A fake appleh13camerad with the given set-files (and decoys); returns it and the
    expected ``apple/isp_*.dat`` contents."""
    page = 4096
    blob = bytearray(rng.randbytes(64 * page))
    blob[:32] = macho_header(2)  # the daemon is an arm64e executable
    expected: dict[str, bytes] = {}
    at = 5 * page
    for magic in magics:
        name, size = SETFILE_MAGICS[magic]
        blob[at : at + 32] = setfile_header(magic)
        rounded = -(-size // 64) * 64
        expected[f"apple/isp_{name}.dat"] = bytes(blob[at : at + rounded])
        at += -(-rounded // page) * page + page
    # decoys: right magic off the 4 KiB grid; aligned header with a wrong word 7
    blob[at + 100 : at + 132] = setfile_header(0x18200103)
    bad = bytearray(setfile_header(0x18220201))
    bad[28:32] = b"\0\0\0\1"
    blob[at + page : at + page + 32] = bad
    return bytes(blob), expected


def _camera_als(t: _Tree, camerad: str, factory: str, als: str, magics: list[int]) -> None:
    blob, isp = make_camerad(t.rng, magics)
    t.write(camerad, blob)
    for name, data in isp.items():
        t.expect(name, data)
    if len(magics) < 6:
        t.summary.problems.add(camerad)
    cal = t.rand(300, 600)
    t.write(als, cal)
    t.expect("apple/aop-als-cal.bin", cal)
    for name in ("HmCA-F5K4213XQ05.bin", "HmCA-F5K4213XQ06"):
        data = t.rand(200, 500)
        t.write(f"{factory}/{name}", data)
        t.expect(f"apple/{name}", data)
    t.write(f"{factory}/FSCl-F5K4213XQ05", t.rand(100, 200))
    t.write(f"{factory}/HmCB-F5K4213XQ05", t.rand(100, 200))


# --------------------------------------------------------------------------- entry points


def make_macos_tree(root: Path, seed: int = 0, scale: int = 1) -> ExpectedSummary:
    """A macOS-style tree: usr/share/firmware, usr/sbin/appleh13camerad, fud_firmware/,
    System/Library/Caches/com.apple.factorydata/, apple/aop-als-cal.bin and a kernelcache
    with a raw payload. All six set-files are present."""
    summary = ExpectedSummary(root)
    t = _Tree(root, random.Random(seed), summary)
    fw = "usr/share/firmware"
    _wifi_core(t, fw)
    _wifi_extra(t, fw, scale)
    _bluetooth(t, fw)
    _multitouch(t, raw_dump=False)
    _camera_als(t, "usr/sbin/appleh13camerad", "System/Library/Caches/com.apple.factorydata",
                "apple/aop-als-cal.bin", list(SETFILE_MAGICS))
    asm = t.rng.randbytes(0x18000)
    kc = root / "kernelcache.release.mac13g"
    make_kernelcache(kc, asm, lzfse=False, seed=seed)
    summary.source_files += 1
    summary.source_bytes += kc.stat().st_size
    t.expect("asmedia/asm2214a-apple.bin", asm)
    return summary


def make_raw_dump_dir(root: Path, seed: int = 0, scale: int = 1) -> ExpectedSummary:
    """The §8 raw-dump layout, unpacked: firmware/, fud_firmware/ (with symlinks),
    appleh13camerad, com.apple.factorydata/, apple/aop-als-cal.bin, plus an LZFSE
    kernelcache beside them. Five of the six set-files (a reported warning)."""
    summary = ExpectedSummary(root)
    t = _Tree(root, random.Random(seed), summary)
    _wifi_core(t, "firmware")
    _wifi_extra(t, "firmware", scale)
    _bluetooth(t, "firmware")
    _multitouch(t, raw_dump=True)
    _camera_als(t, "appleh13camerad", "com.apple.factorydata", "apple/aop-als-cal.bin",
                list(SETFILE_MAGICS)[:5])
    asm = t.rng.randbytes(0x18000)
    kc = root / "kernelcache.release.mac13j"
    make_kernelcache(kc, asm, lzfse=True, seed=seed)
    summary.source_files += 1
    summary.source_bytes += kc.stat().st_size
    t.expect("asmedia/asm2214a-apple.bin", asm)
    return summary


def make_asahi_dir(asahi: Path, work: Path, seed: int = 0, scale: int = 1) -> ExpectedSummary:
    """An ESP ``asahi/`` directory as the installer leaves it (formats.md §5, §8):
    ``all_firmware.tar.gz`` (packed by vendorfw.rawdump, as the installer does) and the
    kernelcache beside it. ``work`` holds the unpacked tree while it is built."""
    from vendorfw import rawdump

    tree = work / "dump-tree"
    summary = make_raw_dump_dir(tree, seed=seed, scale=scale)
    asahi.mkdir(parents=True, exist_ok=True)
    for kc in tree.glob("kernelcache*"):
        os.rename(kc, asahi / kc.name)
    rawdump.pack(tree, asahi / rawdump.RAWDUMP_NAME)
    return summary


def raw_dump_members() -> tuple[str, ...]:
    """The top-level members of all_firmware.tar.gz (§8); kernelcache* stays beside it."""
    return ("firmware", "fud_firmware", "appleh13camerad", "com.apple.factorydata", "apple")
