"""The demo site: a catalog in the real format, its OS packages and a restore image.

Generated into ``<cache>/demo/www/`` on first use (again when an input changes) and served
by :mod:`installer.demo.server`, so a demo install downloads everything over HTTP like a
real one. Entries:

- "UEFI environment only": one EFI partition; the package holds ``esp/m1n1/boot.bin`` =
  Pippin's stage 2 (bootchain/prebuilt/stage2.bin) + Debian's U-Boot for QEMU virt as a
  firmware payload (``u-boot.bin`` from the test assets), so the installed machine boots
  into U-Boot's UEFI, which boots EFI programs from removable media. Without U-Boot in the
  assets it holds stage 2 alone (said in :attr:`Site.notes`).
- "Pippin demo Linux": an EFI partition whose ``m1n1/boot.bin`` is stage 2 + a gzipped arm64
  kernel + the demo guest's initramfs (:mod:`installer.demo.guest`: busybox and Pippin's
  initramfs hook, which loads ``vendorfw/firmware.cpio`` from the ESP), and a small Linux
  partition written from an image. Left out, with the reason in :attr:`Site.notes`, when the
  assets are missing.

The restore image is :func:`installer.demo.restoreimage.make_image` output under the file
name the pinned 13.5 image has, so ``IPSW_BASE=<site>`` resolves it.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from installer.bootobj import sign
from installer.bootobj.assemble import Compression, InitramfsMode, Stage2Parts, assemble_stage2
from installer.bootobj.vars import Variable
from installer.catalog_trust import SIG_SUFFIX, sign_catalog
from installer.demo.guest import DEMO_MARKER, HOOK_FILES, KernelAssets, guest_initramfs
from installer.demo.restoreimage import make_image
from installer.errors import BootObjectError, PippinError
from installer.ipsw.images import IMAGES
from vendorfw.atomic import atomic_dir, write_bytes
from vendorfw.hooks import DEFAULT_SOURCE as HOOKS_DIR

log = logging.getLogger(__name__)

__all__ = ["DEMO_LINUX", "DEMO_MARKER", "UEFI_ONLY", "Site", "ensure_site"]

SITE_VERSION = "4"  # bump when the generated layout changes
CATALOG_NAME = "installer_data.json"
UEFI_ONLY = "UEFI environment only"
DEMO_LINUX = "Pippin demo Linux"
IMAGE_VERSION = "13.5"
ROOT_IMAGE_SIZE = 4 << 20
U_BOOT = "u-boot.bin"  # in the test assets (scripts/fetch-test-assets)

@dataclass(frozen=True, slots=True)
class Site:
    root: Path  # the directory to serve
    catalog: str  # file name of the catalog inside root
    entries: tuple[str, ...]
    notes: tuple[str, ...]  # why an entry is missing
    catalog_key: bytes = b""  # the demo key's raw public key; it signs the catalog (.sig)


def image_file_name() -> str:
    img = next(i for i in IMAGES if i.version == IMAGE_VERSION)
    assert img.url is not None  # pinned in the table
    return PurePosixPath(urlsplit(img.url).path).name


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name in sorted(members):
            info = zipfile.ZipInfo(name, date_time=(2024, 6, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, members[name])
    return buf.getvalue()


def _entry(name: str, package: str, data: bytes, partitions: list[dict[str, object]]) -> dict[
        str, object]:
    return {
        "name": name, "default_os_name": name, "boot_object": "m1n1.bin",
        "next_object": "m1n1/boot.bin", "package": package,
        "supported_fw": [IMAGE_VERSION], "extras": [], "expert": False,
        "external_boot": False, "partitions": partitions,
        "sha256": hashlib.sha256(data).hexdigest(),
    }


def _esp(volume_id: str) -> dict[str, object]:
    return {"name": "EFI", "type": "EFI", "size": "524288000B", "format": "fat",
            "volume_id": volume_id, "copy_firmware": True, "copy_installer_data": True,
            "source": "esp"}


def root_image() -> bytes:
    """The demo Linux partition image: a recognisable header, then zeros (4 KiB multiple)."""
    head = b"PIPPIN-DEMO-ROOT\0" + struct.pack("<Q", ROOT_IMAGE_SIZE)
    return head + bytes(ROOT_IMAGE_SIZE - len(head))


def _signing_key(path: Path) -> Ed25519PrivateKey:
    """The demo catalog's signing key, generated on first use (a damaged one is replaced)."""
    try:
        return sign.load_private_key(path)
    except BootObjectError:
        key = sign.generate_key()
        path.parent.mkdir(parents=True, exist_ok=True)
        sign.save_private_key(path, key)
        return key


def _key(prebuilt: Path, assets: Path | None, u_boot: Path | None, hooks: Path,
         catalog_key: bytes = b"") -> str:
    h = hashlib.sha256(SITE_VERSION.encode())
    h.update(catalog_key)
    h.update((prebuilt / "stage2.bin").read_bytes())
    if assets is not None:
        for name in ("kernel-version", "busybox"):
            h.update((assets / name).read_bytes())
        h.update(str((assets / "Image").stat().st_size).encode())
        for name in HOOK_FILES:
            h.update((hooks / "common" / name).read_bytes())
    if u_boot is not None:
        h.update(u_boot.read_bytes())
    return h.hexdigest()[:16]


def ensure_site(cache_dir: Path, *, prebuilt: Path, assets: Path | None,
                assets_missing: str = "", hooks: Path = HOOKS_DIR) -> Site:
    """The demo site under ``cache_dir/demo/www`` (built when missing or stale).

    ``assets``: a directory with ``Image`` and ``busybox`` (scripts/fetch-test-assets
    output), or None, in which case the demo Linux entry is left out with
    ``assets_missing`` as the reason; its ``u-boot.bin`` goes into "UEFI environment only".
    ``hooks``: the initramfs-hooks directory whose core the demo guest runs.
    """
    u_boot = assets / U_BOOT if assets is not None and (assets / U_BOOT).is_file() else None
    if assets is not None and not all((assets / n).is_file() for n in ("Image", "busybox")):
        assets_missing = f"{assets} lacks Image or busybox"
        assets = None
    signer = _signing_key(cache_dir / "demo" / "catalog-key.pem")  # kept out of www/
    public = sign.public_bytes(signer.public_key())
    try:
        stage2 = (prebuilt / "stage2.bin").read_bytes()
        key = _key(prebuilt, assets, u_boot, hooks, public)
    except OSError as exc:
        raise PippinError(f"cannot read the prebuilt loaders in {prebuilt}: {exc.strerror}",
                          hint="run from a Pippin checkout (bootchain/prebuilt/)") from exc
    root = cache_dir / "demo" / "www"
    notes: tuple[str, ...] = () if assets is not None else (
        f"{DEMO_LINUX!r} is left out: {assets_missing}",)
    if u_boot is None:
        notes += (f"{UEFI_ONLY!r} holds stage 2 alone: no {U_BOOT} in the test assets "
                  "(scripts/fetch-test-assets)",)
    names = (UEFI_ONLY,) if assets is None else (UEFI_ONLY, DEMO_LINUX)
    site = Site(root, CATALOG_NAME, names, notes, public)
    if (root / f".complete-{key}").is_file():
        return site
    log.info("generating the demo site in %s", root)
    root.parent.mkdir(parents=True, exist_ok=True)
    with atomic_dir(root) as new:
        (new / "os").mkdir()
        entries = []
        uefi_boot = stage2 if u_boot is None else assemble_stage2(
            Stage2Parts(stage2, firmware=u_boot.read_bytes()))
        uefi = _zip({"esp/m1n1/boot.bin": uefi_boot})
        write_bytes(new / "os" / "pippin-uefi-only.zip", uefi)
        entries.append(_entry(UEFI_ONLY, "pippin-uefi-only.zip", uefi, [_esp("0x2E3F4A5B")]))
        if assets is not None:
            boot = assemble_stage2(Stage2Parts(
                stage2, kernel=(assets / "Image").read_bytes(), compression=Compression.GZIP,
                initramfs=guest_initramfs(KernelAssets.from_dir(assets), hooks,
                                          who="Pippin's boot chain"),
                initramfs_mode=InitramfsMode.GZIP,
                variables=(Variable("chosen.bootargs", "console=ttyAMA0 panic=-1 quiet"),)))
            img = root_image()
            linux = _zip({"esp/m1n1/boot.bin": boot, "root.img": img})
            write_bytes(new / "os" / "pippin-demo-linux.zip", linux)
            root_part: dict[str, object] = {
                "name": "Root", "type": "Linux", "size": "64MiB", "image": "root.img",
                "sha256": hashlib.sha256(img).hexdigest()}
            entries.append(_entry(DEMO_LINUX, "pippin-demo-linux.zip", linux,
                                  [_esp("0x5B4A3F2E"), root_part]))
        catalog = {"os_list": entries}
        catalog_bytes = json.dumps(catalog, indent=1).encode() + b"\n"
        write_bytes(new / CATALOG_NAME, catalog_bytes)
        write_bytes(new / (CATALOG_NAME + SIG_SUFFIX), sign_catalog(catalog_bytes, signer))
        make_image(new / image_file_name(), size=8 << 20, seed=7, decoy_size=256 << 20)
        (new / f".complete-{key}").write_bytes(b"")
    return site
