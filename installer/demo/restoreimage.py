"""Synthetic Apple restore images (IPSW and OTA): the demo's restore image, and test input.

The layout is realistic (formats.md §11): a BuildManifest.plist with several build
identities (board, chip, device class, Erase/Update variants), Restore/System version plists,
PlatformSupport.plist, bootcaches.plist, a Bootability bundle, restore manifests,
Firmware/*.im4p (FUD firmware among them), kernelcache IM4Ps, a BaseSystem "dmg" and large
decoys that an install must never fetch (a sparse OS image, several GB by default, so the
archive is ZIP64 and members behind it have offsets beyond 4 GiB). Contents are random
(fixed seed), so the same arguments always give the same bytes.

The BaseSystem stand-in is a ustar archive (libarchive reads it) holding
``usr/share/firmware/{wifi,bluetooth}`` trees; Linux cannot build a real APFS dmg. In the
OTA variant it is wrapped as BXDIFF50 + PBZX (xz chunks) at
``AssetData/payloadv2/basesystem_patches/arm64eBaseSystem.dmg``, other members carry the
``AssetData/boot/`` (and ``AssetData/Restore/``) prefixes.

``scripts/make-test-ipsw OUT.ipsw [--size 300M] [--ota] [--seed N]`` writes one.
"""

from __future__ import annotations

import hashlib
import io
import lzma
import plistlib
import random
import struct
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyimg4

from installer.demo.osserialize import osserialize
from installer.demo.zipwriter import DEFLATED, STORED, ZipWriter

MiB = 1 << 20
DEFAULT_SIZE = 24 * MiB
DEFAULT_DECOY = 4608 * MiB  # > 4 GiB: members after it need ZIP64 offsets
BUILD = "22G90"
VERSION = "13.5"


@dataclass(frozen=True)
class Device:
    device_class: str  # e.g. "j314sap"
    board_id: int
    chip_id: int

    @property
    def target(self) -> str:
        return self.device_class.removesuffix("ap")


DEVICES = (
    Device("j274ap", 0x22, 0x8103),
    Device("j314sap", 0x04, 0x6000),
    Device("j413ap", 0x28, 0x8112),
    Device("j316cap", 0x0A, 0x6001),
)


@dataclass
class GeneratedImage:
    """What was written: member digests (sha256 of the uncompressed bytes) and the roles."""

    path: Path
    ota: bool
    prefix: str
    devices: tuple[Device, ...]
    sha256: dict[str, str] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)
    decoys: list[str] = field(default_factory=list)
    basesystem: str = ""
    basesystem_tar_sha256: str = ""  # of the decoded BaseSystem (same as sha256 for IPSW)
    firmware_files: dict[str, bytes] = field(default_factory=dict)  # inside BaseSystem


class _Gen:
    def __init__(self, path: Path, size: int, seed: int, ota: bool, decoy: int,
                 basesystem: bytes | None = None) -> None:
        self.rng = random.Random(seed)
        self.basesystem = basesystem
        self.scale = max(size, 4 * MiB) / DEFAULT_SIZE
        self.ota = ota
        self.decoy = decoy
        self.prefix = "AssetData/boot/" if ota else ""
        self.img = GeneratedImage(path, ota, self.prefix, DEVICES)
        self.pending: list[tuple[str, bytes, int]] = []

    def n(self, base: int) -> int:
        return max(64, int(base * self.scale))

    def rand(self, n: int) -> bytes:
        step = 64 << 20  # randbytes() overflows past 256 MiB; below 64 MiB one call as before
        return b"".join(self.rng.randbytes(min(step, n - i)) for i in range(0, n, step))

    def text_like(self, n: int) -> bytes:
        words = [self.rand(self.rng.randint(2, 9)).hex().encode() for _ in range(64)]
        out = bytearray()
        while len(out) < n:
            out += self.rng.choice(words) + b" "
        return bytes(out[:n])

    def im4p(self, fourcc: str, payload: bytes, lzfse: bool = False) -> bytes:
        data = pyimg4.IM4PData(payload)
        if lzfse:
            data.compress(pyimg4.Compression.LZFSE)
        return bytes(pyimg4.IM4P(fourcc=fourcc, description=f"{fourcc}-{BUILD}",
                                 payload=data).output())

    def member(self, name: str, data: bytes, method: int = STORED) -> None:
        self.pending.append((name, data, method))
        self.img.sha256[name] = hashlib.sha256(data).hexdigest()
        self.img.sizes[name] = len(data)

    def basesystem_tar(self) -> bytes:
        files: dict[str, bytes] = {}
        wifi = "usr/share/firmware/wifi"
        for chip, board in (("C-4378__s-B1", "shikoku"), ("C-4387__s-C2", "kyushu")):
            files[f"{wifi}/{chip}/{board}.trx"] = self.rand(self.n(96 << 10))
            files[f"{wifi}/{chip}/P-{board}-X3_M-RASP_V-u__m-6.11.txt"] = (
                b"boardrev=0x1234\n macaddr = 00:90:4c:c5:12:38 \n\nsromrev=11\n")
            # named by the bare platform, like the .trx (formats.md §7)
            files[f"{wifi}/{chip}/{board}.clmb"] = self.rand(self.n(8 << 10))
        bt = "usr/share/firmware/bluetooth"
        files[f"{bt}/BCM4378B1_22.2.540.2069_PCIE_macOS_Shikoku_MUR.bin"] = self.rand(
            self.n(64 << 10))
        files[f"{bt}/BCM4378B1_22.2.540.2069_PCIE_macOS_Shikoku_MUR.ptb"] = self.rand(
            self.n(8 << 10))
        self.img.firmware_files = dict(files)
        files["System/Library/CoreServices/filler.bin"] = self.rand(self.n(7 * MiB))
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
            for name in sorted(files):
                ti = tarfile.TarInfo(name)
                ti.size, ti.mode, ti.mtime = len(files[name]), 0o644, 0
                tar.addfile(ti, io.BytesIO(files[name]))
        return buf.getvalue()

    def manifest_entry(self, path: str, **info: Any) -> dict[str, Any]:
        return {"Digest": self.rand(48), "Info": {"Path": path, **info}, "Trusted": True}

    def identity(self, dev: Device, update: bool, shared: dict[str, str]) -> dict[str, Any]:
        t = dev.target
        m: dict[str, Any] = {
            "BaseSystem": self.manifest_entry(shared["BaseSystem"]),
            "OS": self.manifest_entry(shared["OS"]),
            "RestoreRamDisk": self.manifest_entry(shared["RestoreRamDisk"]),
            "RestoreTrustCache": self.manifest_entry(shared["RestoreTrustCache"]),
            "Ap,SystemVolumeCanonicalMetadata": self.manifest_entry(shared["mtree"]),
            "Cryptex1,SystemOS": self.manifest_entry(shared["Cryptex"]),
            "KernelCache": self.manifest_entry(f"kernelcache.release.{t[:4]}"),
            "DeviceTree": self.manifest_entry(
                f"Firmware/all_flash/DeviceTree.{dev.device_class}.im4p", IsLoadedByiBoot=True),
            "iBoot": self.manifest_entry(f"Firmware/all_flash/iBoot.{t}.RELEASE.im4p",
                                         IsLoadedByiBoot=True),
            "LLB": self.manifest_entry(f"Firmware/all_flash/LLB.{t}.RELEASE.im4p",
                                       IsLoadedByiBootStage1=True),
            "StaticTrustCache": self.manifest_entry(f"Firmware/{shared['tcprefix']}.trustcache"),
            "Multitouch": self.manifest_entry(f"Firmware/Multitouch/{t}/Multitouch.im4p",
                                              IsFUDFirmware=True),
            "ISP": self.manifest_entry(f"Firmware/isp_bni/adc-{t}.im4p", IsFUDFirmware=True),
            "ANE": self.manifest_entry(f"Firmware/ane/{t}/ane.im4p", IsFUDFirmware=True),
            "AppleLogo": self.manifest_entry(f"Firmware/all_flash/applelogo.{t}.im4p",
                                             IsFUDFirmware=True, IsLoadedByiBoot=True),
            "SEP": self.manifest_entry(f"Firmware/all_flash/sep-firmware.{t}.RELEASE.im4p"),
        }
        variant = "macOS Customer Software Update" if update else "macOS Customer"
        return {
            "ApBoardID": f"0x{dev.board_id:02X}",
            "ApChipID": f"0x{dev.chip_id:04X}",
            "ApSecurityDomain": "0x01",
            "Info": {
                "BuildNumber": BUILD,
                "DeviceClass": dev.device_class,
                "RestoreBehavior": "Update" if update else "Erase",
                "Variant": variant,
                "MinimumSystemPartition": 12000,
            },
            "Manifest": m,
        }

    def build(self) -> GeneratedImage:
        p = self.prefix
        shared = {
            "BaseSystem": "090-27516-003.dmg",
            "OS": "090-27493-003.dmg",
            "RestoreRamDisk": "090-27520-003.dmg",
            "RestoreTrustCache": "Firmware/090-27520-003.dmg.trustcache",
            "mtree": "Firmware/090-27493-003.mtree",
            "Cryptex": "090-27617-003.dmg",
            "tcprefix": "090-27493-003.dmg",
        }
        idents = [self.identity(d, u, shared) for d in DEVICES for u in (False, True)]
        bm = {
            "BuildIdentities": idents,
            "ManifestVersion": 0,
            "ProductBuildVersion": BUILD,
            "ProductVersion": VERSION,
            "SupportedProductTypes": ["Mac14,2", "MacBookPro18,3", "Mac14,7", "MacBookAir10,1"],
        }
        self.member(f"{p}BuildManifest.plist", plistlib.dumps(bm), DEFLATED)
        self.member(f"{p}RestoreVersion.plist", plistlib.dumps(
            {"ProductBuildVersion": BUILD, "ProductVersion": VERSION,
             "RestoreLongVersion": "22.7.90.0.0,0"}), DEFLATED)
        self.member(f"{p}SystemVersion.plist", plistlib.dumps(
            {"ProductBuildVersion": BUILD, "ProductName": "macOS",
             "ProductUserVisibleVersion": VERSION, "ProductVersion": VERSION}), DEFLATED)
        self.member(f"{p}PlatformSupport.plist", plistlib.dumps(
            {"SupportedBoardIds": [], "SupportedModelProperties": ["Mac14,2"]}), DEFLATED)
        self.member(f"{p}usr/standalone/bootcaches.plist", plistlib.dumps(
            {"PreBootPaths": {"DiskLabel": "/System/Library/CoreServices/.disk_label"}}),
            DEFLATED)
        # The decoy OS image first, as in real IPSWs: everything after it lies beyond 4 GiB.
        decoy = f"{p}{shared['OS']}"
        self.pending.append((decoy, b"", -1))
        self.img.decoys.append(decoy)
        self.img.sizes[decoy] = self.decoy
        tar = self.basesystem_tar()
        if self.basesystem is not None:
            tar = self.basesystem
        self.img.basesystem_tar_sha256 = hashlib.sha256(tar).hexdigest()
        if self.ota:
            self.img.basesystem = "AssetData/payloadv2/basesystem_patches/arm64eBaseSystem.dmg"
            self.member(self.img.basesystem, bxdiff50(tar))
        else:
            self.img.basesystem = shared["BaseSystem"]
            self.member(self.img.basesystem, tar)
        rp = "AssetData/Restore/" if self.ota else ""
        for name in ("Info.plist", "BootabilityBrain.dylib", "iBootStage1.img4"):
            self.member(f"{rp}BootabilityBundle/Restore/Bootability/{name}",
                        self.text_like(self.n(40 << 10)), DEFLATED)
        self.member(f"{rp}BootabilityBundle/Restore/Firmware/Bootability.dmg.trustcache",
                    self.rand(self.n(6 << 10)))
        for variant in ("macOS Customer", "macOS Customer Software Update"):
            for name in ("apticket.der", "RestoreManifest.plist"):
                self.member(f"{p}Firmware/Manifests/restore/{variant}/{name}",
                            self.text_like(self.n(2 << 10)), DEFLATED)
        paths: dict[str, tuple[str, bool]] = {}
        for ident in idents:
            for key, ent in ident["Manifest"].items():
                path = ent["Info"]["Path"]
                if path in shared.values() or path in (shared["BaseSystem"],):
                    continue
                paths[path] = (key, True)
        for path in sorted(paths):
            key = paths[path][0]
            if key == "KernelCache":
                n = self.n(1536 << 10)  # mostly incompressible; some text so LZFSE applies
                body = bytearray(self.rand(n - n // 4) + self.text_like(n // 4))
                rcfg = b"2214A_RCFG" + bytes(0x25) + struct.pack("<I", 0x18000)
                body[4096:4096 + len(rcfg)] = rcfg
                self.member(f"{p}{path}", self.im4p("krnl", bytes(body), lzfse=True))
            elif key == "Multitouch":
                # A trackpad the vendorfw collector converts (one interface to renumber).
                # Real shape (OSSerialize: bare <dict>, hex integers, IDs), NUL-padded.
                pl = osserialize({"C1FD0000": [
                    {"Type": "Config", "Config": {"Interface Config": [
                        {"bInterfaceNumber": 2, "Name": "multitouch interface"}]}},
                    {"Type": "Binary", "Address": 0x20000, "Payload": self.rand(32)},
                ]})
                self.member(f"{p}{path}", self.im4p("mtfw", pl), DEFLATED)
            else:
                fourcc = {"DeviceTree": "dtre", "iBoot": "ibot", "LLB": "illb",
                          "ISP": "ispf", "ANE": "anef", "AppleLogo": "logo",
                          "SEP": "sepi", "StaticTrustCache": "trst"}[key]
                self.member(f"{p}{path}", self.im4p(fourcc, self.rand(self.n(96 << 10))))
        # Other decoys (real random bytes; never needed).
        for key in ("RestoreRamDisk", "Cryptex", "RestoreTrustCache", "mtree"):
            name = f"{p}{shared[key]}"
            self.member(name, self.rand(self.n((3 * MiB) if key in ("RestoreRamDisk",
                                                                    "Cryptex") else 8192)))
            self.img.decoys.append(name)
        self.write()
        return self.img

    def write(self) -> None:
        with open(self.img.path, "wb") as f:
            zw = ZipWriter(f)
            for name, data, method in self.pending:
                if method < 0:
                    zw.add_sparse(name, self.decoy)
                else:
                    zw.add(name, data, method=method)
            zw.close()


def bxdiff50(data: bytes, block: int = 1 * MiB) -> bytes:
    """BXDIFF50 header + PBZX stream (xz chunks, the last one stored raw) around ``data``."""
    out = bytearray(b"pbzx" + struct.pack(">Q", block))
    chunks = [data[i:i + block] for i in range(0, len(data), block)] or [b""]
    for i, chunk in enumerate(chunks):
        if i == len(chunks) - 1:  # a stored chunk: usize == csize
            out += struct.pack(">QQ", len(chunk), len(chunk)) + chunk
        else:
            xz = lzma.compress(chunk, format=lzma.FORMAT_XZ, preset=0)
            out += struct.pack(">QQ", len(chunk), len(xz)) + xz
    head = b"BXDIFF50" + bytes(8) + struct.pack("<QQQ", len(data), 0, len(out))
    return head + hashlib.sha1(data).digest() + bytes(out)


def make_image(path: Path, *, size: int = DEFAULT_SIZE, seed: int = 0, ota: bool = False,
               decoy_size: int = DEFAULT_DECOY,
               basesystem: bytes | None = None) -> GeneratedImage:
    """Write a synthetic IPSW (or OTA) zip at ``path`` and describe it. ``basesystem``
    replaces the BaseSystem's tar (e.g. bytes no disk-image reader recognises)."""
    return _Gen(Path(path), size, seed, ota, decoy_size, basesystem).build()
