"""OS package handling: hostile zips are refused with one clear error; images are checked."""

from __future__ import annotations

import hashlib
import stat
import zipfile

import pytest

from installer.catalog import parse_catalog
from installer.errors import CatalogError
from installer.ospackage import fetch_extras, open_package, unpack_package


def _entry(tmp_path, image_sha=None, extras=()):
    part = {"name": "Root", "type": "Linux", "size": "16MiB", "image": "root.img"}
    if image_sha:
        part["sha256"] = image_sha
    doc = {"os_list": [{"name": "T", "package": "t.zip", "extras": list(extras),
                        "partitions": [{"name": "EFI", "type": "EFI", "size": "500MB",
                                        "format": "fat", "source": "esp"}, part]}]}
    import json
    return parse_catalog(json.dumps(doc).encode(), str(tmp_path)).entries[0]


def _zip(path, members, link=None):
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        if link:
            info = zipfile.ZipInfo(link)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, "/etc/passwd")
    return path


GOOD = {"esp/m1n1/boot.bin": b"x" * 10, "root.img": bytes(8192)}


def test_good_package_unpacks(tmp_path):
    z = _zip(tmp_path / "t.zip", GOOD)
    out = unpack_package(z, tmp_path / "out", _entry(tmp_path, hashlib.sha256(bytes(8192))
                                                     .hexdigest()))
    assert (out / "esp/m1n1/boot.bin").read_bytes() == b"x" * 10


@pytest.mark.parametrize(("members", "link", "msg"), [
    ({**GOOD, "../evil": b"1"}, None, "unsafe member name"),
    ({**GOOD, "/abs": b"1"}, None, "unsafe member name"),
    (GOOD, "esp/link", "symbolic link"),
    ({"esp/m1n1/boot.bin": b"x"}, None, "lacks image root.img"),
    ({"root.img": bytes(8192)}, None, "lacks directory esp/"),
    ({**GOOD, "root.img": bytes(100)}, None, "multiple of 4 KiB"),
])
@pytest.mark.parametrize("opener", [unpack_package, open_package])
def test_hostile_or_incomplete_package(tmp_path, members, link, msg, opener):
    z = _zip(tmp_path / "t.zip", members, link)
    with pytest.raises(CatalogError, match=msg):
        opener(z, tmp_path / "out", _entry(tmp_path))
    assert not (tmp_path / "evil").exists()


def test_open_package_unpacks_all_but_the_images(tmp_path):
    z = _zip(tmp_path / "t.zip", GOOD)
    payloads = open_package(z, tmp_path / "out", _entry(tmp_path))
    assert (payloads.tree("esp") / "m1n1/boot.bin").read_bytes() == b"x" * 10
    assert not (tmp_path / "out" / "root.img").exists()
    with payloads.image("root.img") as f:
        assert f.read() == bytes(8192)


def test_image_sha256_checked(tmp_path):
    z = _zip(tmp_path / "t.zip", GOOD)
    with pytest.raises(Exception, match="does not match the catalog"):
        unpack_package(z, tmp_path / "out", _entry(tmp_path, "0" * 64))


def test_not_a_zip(tmp_path):
    (tmp_path / "t.zip").write_bytes(b"PK nope")
    with pytest.raises(CatalogError, match="not a readable zip"):
        unpack_package(tmp_path / "t.zip", tmp_path / "out", _entry(tmp_path))


def test_extras_copied(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    got = fetch_extras(_entry(tmp_path, extras=[str(tmp_path / "notes.txt")]), None,
                       tmp_path / "extras")
    assert [p.read_text() for p in got] == ["hello"]
