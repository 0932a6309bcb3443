"""installer_data.json (formats.md §10): the real catalog reads unchanged; bad input is named."""

from __future__ import annotations

import json

import pytest

from installer.catalog import STUB_SIZE, PartitionType, load_catalog, parse_catalog
from installer.errors import CatalogError

REPO = "https://cdn.example.org/repo"


@pytest.fixture(scope="module")
def real(real_catalog):
    return load_catalog(real_catalog, REPO)


def test_real_catalog_entries(real):
    names = [e.name for e in real.entries]
    assert len(names) == 7
    assert "Fedora Asahi Remix 44 with KDE Plasma" in names
    server = real.find("Fedora Asahi Remix 44 Server")
    assert [p.name for p in server.partitions] == ["EFI", "Boot", "Root"]
    assert [p.type for p in server.partitions] == [
        PartitionType.EFI, PartitionType.LINUX, PartitionType.LINUX]
    assert server.partitions[0].size == 524_288_000
    assert server.partitions[0].volume_id == 0x2D29CCB0
    assert server.partitions[2].expand
    assert server.partitions[2].image == "root.img"
    assert server.min_size == STUB_SIZE + 524_288_000 + 1_073_741_824 + 4_456_448_000
    assert server.recommended_size == 2 * server.min_size
    assert server.extras == ()  # written as {} in the real file


def test_real_catalog_package_urls(real):
    kde = real.find("Fedora Asahi Remix 44 with KDE Plasma")
    assert kde.package == "https://asahilinux-fedora.b-cdn.net/os/fedora-44-kde-202607221600.zip"
    uefi = real.find("UEFI environment only (m1n1 + U-Boot + ESP)")  # real name ends with a blank
    assert uefi.package == f"{REPO}/os/uefi-only-20260810-asahi-7.1.6-1.zip"
    assert uefi.partitions[0].size == 500_000_000
    assert uefi.partitions[0].aligned_size == 477 * 1024 * 1024  # 500 MB rounds up to 477 MiB
    tethered = real.find("Tethered boot (m1n1, for development)")
    assert tethered.package is None
    assert tethered.external_boot
    assert tethered.expert
    assert tethered.partitions == ()


def test_unknown_entry_lists_known_names(real):
    with pytest.raises(CatalogError, match="'Nope' not in the catalog .known: 'Fedora"):
        real.find("Nope")


def _entry(**over):
    e = {"name": "X", "default_os_name": "X", "package": "x.zip",
         "partitions": [{"name": "EFI", "type": "EFI", "size": "500MB", "format": "fat"}]}
    e.update(over)
    return json.dumps({"os_list": [e]}).encode()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\xff\xfe", "not valid JSON"),
        (b"[]", "os_list"),
        (b'{"os_list": [1]}', r"os_list\[0\] must be an object"),
        (_entry(name=3), r"os_list\[0\]\.name must be str"),
        (_entry(partitions=[{"name": "A", "type": "NTFS", "size": "1MB"}]), "type 'NTFS'"),
        (_entry(partitions=[{"name": "A", "type": "EFI", "size": "lots"}]),
         r"partitions\[0\]\.size: not a size"),
        (_entry(partitions=[{"name": "A", "type": "EFI", "size": "0"}]), "must be positive"),
        (_entry(partitions=[{"name": "A", "type": "EFI", "size": "1MB", "volume_id": "0xzz"}]),
         "volume_id '0xzz' is not hex"),
        (_entry(partitions=[{"name": "A", "type": "EFI", "size": "1MB",
                             "volume_id": "0x1ffffffff"}]), "exceeds 32 bits"),
        (_entry(partitions=[{"name": "A", "type": "Linux", "size": "1MB", "format": "ext4"}]),
         "format 'ext4'"),
        (_entry(partitions=[{"name": "A", "type": "Linux", "size": "1MB", "expand": True},
                            {"name": "B", "type": "Linux", "size": "1MB", "expand": True}]),
         "more than one expand"),
        (_entry(expert="yes"), r"os_list\['X'\]\.expert must be bool"),
        (_entry(extras="http://x"), "extras must be a list of strings"),
        (_entry(partitions=[{"type": "EFI", "size": "1MB"}]), r"partitions\[0\]\.name is missing"),
    ],
)
def test_hostile_catalogs(data, message):
    with pytest.raises(CatalogError, match=message):
        parse_catalog(data, REPO)


def test_missing_file(tmp_path):
    with pytest.raises(CatalogError, match="cannot read catalog"):
        load_catalog(tmp_path / "none.json", REPO)
