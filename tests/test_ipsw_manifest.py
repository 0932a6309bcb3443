"""BuildManifest identities, needed-member lists, OTA layout and decoding, image table."""

from __future__ import annotations

import hashlib
import io
import lzma
import plistlib
import random
import struct
import tarfile
import tracemalloc
import zipfile

import pytest

from installer.errors import RestoreImageError
from installer.ipsw import images, manifest, ota
from installer.ipsw.fetch import fetch_members
from installer.ipsw.image4 import read_im4p
from installer.ipsw.member import DirectorySink, MemorySink
from installer.ipsw.remote import open_archive
from tests.support import ipswfix, ipswgen

session = ipswfix.session  # fixture (``served`` comes from conftest.py)


@pytest.fixture(scope="module")
def ipsw_image(tmp_path_factory):
    path = tmp_path_factory.mktemp("img") / "t.ipsw"
    return ipswgen.make_image(path, seed=3, size=6 << 20, decoy_size=64 << 20)


def _bm(image):
    with zipfile.ZipFile(image.path) as zf:
        data = zf.read(f"{image.prefix}BuildManifest.plist")
        return data, manifest.parse_build_manifest(data), zf.namelist()


@pytest.mark.parametrize("dev", ipswgen.DEVICES, ids=lambda d: d.device_class)
def test_identity_selection_per_device_and_variant(ipsw_image, dev):
    _, bm, _ = _bm(ipsw_image)
    erase = manifest.select_identity(bm, board_id=dev.board_id, chip_id=dev.chip_id,
                                     device_class=dev.device_class.upper())
    update = manifest.select_identity(bm, board_id=dev.board_id, chip_id=dev.chip_id,
                                      device_class=dev.device_class, ota=True)
    assert (erase.restore_behavior, erase.variant) == ("Erase", "macOS Customer")
    assert (update.restore_behavior, update.variant) == (
        "Update", "macOS Customer Software Update")
    assert erase.device_class == dev.device_class
    assert erase.path("KernelCache") == f"kernelcache.release.{dev.target[:4]}"


def test_unknown_device_names_what_the_image_supports(ipsw_image):
    _, bm, _ = _bm(ipsw_image)
    with pytest.raises(RestoreImageError, match="no 'macOS Customer' build identity") as ei:
        manifest.select_identity(bm, board_id=0x99, chip_id=0x6000, device_class="j314sap")
    assert "j314sap (board 0x04, chip 0x6000)" in (ei.value.hint or "")


def test_stub_members_follow_the_rules(ipsw_image):
    _, bm, names = _bm(ipsw_image)
    ident = manifest.select_identity(bm, board_id=0x04, chip_id=0x6000,
                                     device_class="j314sap")
    got = manifest.stub_members(names, ident, ota.IPSW)
    assert len(got) == len(set(got))
    for must in ("BuildManifest.plist", "RestoreVersion.plist", "SystemVersion.plist",
                 "PlatformSupport.plist", "usr/standalone/bootcaches.plist",
                 "BootabilityBundle/Restore/Firmware/Bootability.dmg.trustcache",
                 "BootabilityBundle/Restore/Bootability/Info.plist",
                 "Firmware/Manifests/restore/macOS Customer/apticket.der",
                 "kernelcache.release.j314", "Firmware/all_flash/iBoot.j314s.RELEASE.im4p",
                 ident.path("BaseSystem")):
        assert must in got, must
    # Never the OS image, RestoreRamDisk, trust caches of the ramdisk, mtree, cryptexes,
    # other devices' files, or the other variant's restore manifests.
    for never in (ident.path("OS"), ident.path("RestoreRamDisk"),
                  ident.path("RestoreTrustCache"),
                  ident.path("Ap,SystemVolumeCanonicalMetadata"),
                  ident.path("Cryptex1,SystemOS"), "kernelcache.release.j274",
                  "Firmware/Manifests/restore/macOS Customer Software Update/apticket.der"):
        assert never not in got, never
    assert got == sorted(got, key=names.index)


def test_firmware_members_are_fud_kernelcache_and_basesystem(ipsw_image):
    _, bm, names = _bm(ipsw_image)
    ident = manifest.select_identity(bm, board_id=0x04, chip_id=0x6000,
                                     device_class="j314sap")
    got = manifest.firmware_members(names, ident, ota.IPSW)
    assert set(got) == {"BuildManifest.plist", "kernelcache.release.j314",
                        "Firmware/Multitouch/j314s/Multitouch.im4p",
                        "Firmware/isp_bni/adc-j314s.im4p", "Firmware/ane/j314s/ane.im4p",
                        ident.path("BaseSystem")}
    # AppleLogo is FUD but loaded by iBoot: not collected.
    assert "Firmware/all_flash/applelogo.j314s.im4p" not in got
    assert ident.path("BaseSystem") not in manifest.firmware_members(
        names, ident, ota.IPSW, basesystem=False)


def test_missing_member_is_named(ipsw_image):
    _, bm, names = _bm(ipsw_image)
    ident = manifest.select_identity(bm, board_id=0x04, chip_id=0x6000,
                                     device_class="j314sap")
    names = [n for n in names if n != "kernelcache.release.j314"]
    with pytest.raises(RestoreImageError, match="kernelcache.release.j314"):
        manifest.stub_members(names, ident, ota.IPSW)


def test_filtered_manifest_keeps_one_identity(ipsw_image):
    data, bm, _ = _bm(ipsw_image)
    ident = manifest.select_identity(bm, board_id=0x28, chip_id=0x8112,
                                     device_class="j413ap")
    top = plistlib.loads(manifest.filtered_manifest(data, ident))
    assert len(top["BuildIdentities"]) == 1
    assert top["BuildIdentities"][0]["Info"]["DeviceClass"] == "j413ap"
    assert top["ProductVersion"] == ipswgen.VERSION


@pytest.mark.parametrize(
    ("data", "msg"),
    [
        (b"not a plist", "not a valid plist"),
        (plistlib.dumps([1, 2]), "not a dictionary"),
        (plistlib.dumps({"BuildIdentities": []}), "missing or empty"),
        (plistlib.dumps({"BuildIdentities": [{"Info": {}, "Manifest": {}}]}), "ApBoardID"),
        (plistlib.dumps({"BuildIdentities": [{"ApBoardID": "zz", "ApChipID": "0x1",
                                              "Info": {}, "Manifest": {}}]}), "ApBoardID"),
    ],
)
def test_bad_manifests_name_the_problem(data, msg):
    with pytest.raises(RestoreImageError, match=msg):
        manifest.parse_build_manifest(data)


def test_kernelcache_im4p_decodes(ipsw_image):
    with zipfile.ZipFile(ipsw_image.path) as zf:
        im4p = read_im4p(zf.read("kernelcache.release.j314"), "kernelcache")
    assert im4p.fourcc == "krnl"
    assert b"2214A_RCFG" in im4p.payload
    with pytest.raises(RestoreImageError, match="junk: malformed IM4P"):
        read_im4p(b"\x30\x03\x16\x01A", "junk")


def test_bug_hostile_im4p_is_a_restore_image_error(ipsw_image):
    """Mutated IM4Ps raised asn1.Error or lzfse.error (an internal error, exit 70)."""
    with zipfile.ZipFile(ipsw_image.path) as zf:
        good = zf.read("kernelcache.release.j314")  # LZFSE payload
    rng = random.Random(5)
    messages = []
    for _ in range(400):
        bad = bytearray(good[:4096])
        for _ in range(rng.randint(1, 4)):
            bad[rng.randrange(200)] = rng.randrange(256)
        if rng.random() < 0.3:
            bad = bad[:rng.randrange(len(bad))]
        try:
            read_im4p(bytes(bad), "kc")
        except RestoreImageError as exc:
            messages.append(exc.message)
    assert len(messages) > 100
    assert all(m.startswith("kc: ") and "\n" not in m for m in messages)


# --- OTA ---------------------------------------------------------------------------------


def test_ota_over_http_layout_members_and_basesystem(served, session, tmp_path):
    img = served.ota
    arc = open_archive(served.server.url(img.path.name), session)
    layout = ota.detect_layout(arc.names())
    assert layout is ota.OTA
    sink = MemorySink()
    fetch_members(arc, ["AssetData/boot/BuildManifest.plist"], sink, session=session,
                  cache_root=tmp_path / "c")
    bm = manifest.parse_build_manifest(sink.data["AssetData/boot/BuildManifest.plist"])
    ident = manifest.select_identity(bm, board_id=0x22, chip_id=0x8103,
                                     device_class="j274ap", ota=True)
    names = manifest.stub_members(arc.names(), ident, layout)
    assert ota.OTA_BASESYSTEM in names
    assert "AssetData/Restore/BootabilityBundle/Restore/Bootability/Info.plist" in names
    assert "AssetData/boot/kernelcache.release.j274" in names
    assert all(n.startswith("AssetData/") for n in names)
    out = tmp_path / "out"
    fetch_members(arc, names, DirectorySink(out), session=session, cache_root=tmp_path / "c")
    ipswfix.assert_identical(out, img, names)
    dmg = tmp_path / "BaseSystem.tar"
    size = ota.decode_bxdiff50_file(out / ota.OTA_BASESYSTEM, dmg)
    assert size == dmg.stat().st_size
    assert hashlib.sha256(dmg.read_bytes()).hexdigest() == img.basesystem_tar_sha256
    with tarfile.open(dmg) as tar:  # the firmware trees are inside
        wifi = [n for n in tar.getnames() if n.startswith("usr/share/firmware/wifi/")]
    assert wifi


def _bx(payload=b"hello firmware " * 50000):
    return ipswgen.bxdiff50(payload, block=64 << 10), payload


def _decode(data):
    out = io.BytesIO()
    ota.decode_bxdiff50(io.BytesIO(data), out.write)
    return out.getvalue()


def test_bxdiff50_roundtrip_xz_and_stored_chunks():
    data, payload = _bx()
    assert _decode(data) == payload


@pytest.mark.parametrize(
    ("mutate", "msg"),
    [
        (lambda d: b"BXDIFF49" + d[8:], "no BXDIFF50 magic"),
        (lambda d: d[:40], "truncated header"),
        (lambda d: d[:-10], "truncated PBZX chunk"),
        (lambda d: d[:60] + b"pbzy" + d[64:], "not PBZX"),
        (lambda d: d[:64] + (1 << 40).to_bytes(8, "big") + d[72:], "block size"),
        (lambda d: d[:40] + bytes(19) + b"\x01" + d[60:], "SHA-1"),
        (lambda d: d[:200] + bytes(64) + d[264:], "bad xz chunk|out of range|decodes"),
    ],
)
def test_bxdiff50_hostile_inputs(mutate, msg):
    data, _ = _bx()
    with pytest.raises(RestoreImageError, match=msg):
        _decode(mutate(data))


def test_bug_pbzx_xz_bomb_is_refused_without_inflating_it():
    """A chunk header claiming 1 MiB whose xz stream inflates to 128 MiB was decoded whole
    (lzma.decompress) before its size was checked; now at most usize + 1 bytes are held."""
    bomb = lzma.compress(bytes(128 << 20), format=lzma.FORMAT_XZ, preset=0)
    pbzx = b"pbzx" + struct.pack(">Q", 1 << 20) + struct.pack(">QQ", 1 << 20, len(bomb)) + bomb
    data = (b"BXDIFF50" + bytes(8) + struct.pack("<QQQ", 1 << 20, 0, len(pbzx)) + bytes(20)
            + pbzx)
    tracemalloc.start()
    try:
        with pytest.raises(RestoreImageError, match="decodes to more than"):
            _decode(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20


def test_pbzx_chunk_with_trailing_garbage_is_refused():
    chunk = lzma.compress(b"x" * 1000, format=lzma.FORMAT_XZ) + b"junk"
    pbzx = b"pbzx" + struct.pack(">Q", 1 << 20) + struct.pack(">QQ", 1000, len(chunk)) + chunk
    data = (b"BXDIFF50" + bytes(8) + struct.pack("<QQQ", 1000, 0, len(pbzx)) + bytes(20)
            + pbzx)
    with pytest.raises(RestoreImageError, match="bad xz chunk"):
        _decode(data)


def test_layout_detection_refuses_non_images():
    with pytest.raises(RestoreImageError, match="not a restore image"):
        ota.detect_layout(["foo.txt"])


# --- pinned images -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("chip", "macos", "want"),
    [
        (0x8103, "12.1", "12.3.1"),  # M1 on 12.1: newest it can use
        (0x8103, "13.4", "13.5"),
        (0x6002, "12.3", "12.3.1"),  # M1 Ultra needs ≥ 12.3
        (0x8112, "13.0", "13.5"),  # M2: 12.3.x is older than the chip
        (0x6022, "14.0", "13.5"),
        (0x8122, "14.6", "14.8.3"),  # M3: only the OTA
        (0x6030, "15.1", "14.8.3"),
    ],
)
def test_image_choice(chip, macos, want):
    assert images.choose_image(chip, macos).version == want


@pytest.mark.parametrize(("chip", "macos"), [(0x8112, "12.4"), (0x8122, "14.5"),
                                              (0x6020, "12.9")])
def test_no_image_is_a_clear_error(chip, macos):
    with pytest.raises(RestoreImageError, match="no pinned restore image"):
        images.choose_image(chip, macos)


def test_unknown_chip_and_table_facts():
    with pytest.raises(RestoreImageError, match="unknown chip 0x1234"):
        images.usable_images(0x1234, "14.0")
    by_version = {i.version: i for i in images.IMAGES}
    assert by_version["13.5"].iboot == "iBoot-8422.141.2"
    assert by_version["14.8.3"].ota
    assert by_version["14.8.3"].chips == images.M3_CHIPS
    for img in images.IMAGES:
        assert img.url is None or img.url.startswith("https://updates.cdn-apple.com/")


def test_needed_members_then_fetch_into_a_directory(served, session, tmp_path):
    from installer.ipsw.fetch import fetch
    from installer.ipsw.select import Purpose, needed_members

    url = served.server.url(served.ipsw.path.name)
    need = needed_members(open_archive(url, session), board_id=0x28, chip_id=0x8112,
                          device_class="j413ap", purpose=Purpose.FIRMWARE,
                          session=session, cache_root=tmp_path / "c")
    assert need.identity.device_class == "j413ap"
    assert need.basesystem in need.members
    assert "kernelcache.release.j413" in need.members
    res = fetch(url, need.members, tmp_path / "out", session=session,
                cache_root=tmp_path / "c")
    assert set(res.members) == set(need.members)
    ipswfix.assert_identical(tmp_path / "out", served.ipsw, list(need.members))
