"""Reading packages back and verifying them against their manifest, incl. hostile archives."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import subprocess
import tarfile

import pytest

from tests.conftest import require_tool
from tests.test_package_cpio import make_files, parse_newc
from vendorfw.errors import ArchiveError, ManifestError
from vendorfw.package import plan_package, write_package_files
from vendorfw.readback import Kind, read_package, verify


def newc(entries: list[tuple[str, int, bytes, int, int]]) -> bytes:
    """Hand-built newc archive (name, mode, data, ino, nlink) for hostile inputs."""
    out = bytearray()
    for name, mode, data, ino, nlink in [*entries, ("TRAILER!!!", 0, b"", 0, 1)]:
        nb = os.fsencode(name) + b"\0"
        fields = [ino, mode, 0, 0, nlink, 0, len(data), 0, 0, 0, 0, len(nb), 0]
        out += b"070701" + b"".join(b"%08X" % v for v in fields) + nb
        out += b"\0" * (-len(out) % 4) + data
        out += b"\0" * (-len(out) % 4)
    return bytes(out)


@pytest.fixture
def pkg(tmp_path):
    files = make_files(tmp_path / "src")
    plan = plan_package(files)
    out = tmp_path / "out"
    out.mkdir()
    write_package_files(plan, out)
    return plan, out


def test_good_package_verifies_all_forms(pkg):
    plan, out = pkg
    for path, kind in [
        (out / "firmware.cpio", Kind.CPIO),
        (out / "firmware.tar", Kind.TAR),
        (out / "manifest.txt", Kind.MANIFEST),
        (out, Kind.CPIO),
    ]:
        p = read_package(path)
        assert p.kind is kind
        assert verify(p) == []
        assert p.files() == plan.manifest.hashes()


def test_flipped_byte_is_found(pkg):
    _, out = pkg
    data = bytearray((out / "firmware.cpio").read_bytes())
    ents = parse_newc(bytes(data))
    victim = next(e for e in ents if e["name"].endswith("board0.bin") and e["size"])
    pos = bytes(data).index(victim["data"])
    data[pos] ^= 0xFF
    bad = out / "bad.cpio"
    bad.write_bytes(bytes(data))
    problems = verify(read_package(bad))
    assert problems == ["vendorfw/brcm/brcmfmac4378b1-pcie.apple,board0.bin: "
                        "SHA-256 does not match the manifest"]


def test_tar_with_wrong_sidecar_manifest(pkg, tmp_path):
    _, out = pkg
    other = tmp_path / "other.txt"
    text = (out / "manifest.txt").read_text().splitlines()
    other.write_text("\n".join(text[1:]) + "\n")
    problems = verify(read_package(out / "firmware.tar", other))
    assert any("not in the manifest" in p for p in problems)


def test_link_that_is_a_copy_is_reported(tmp_path):
    data = b"same"
    h = hashlib.sha256(data).hexdigest()
    man = f"FILE a.bin SHA256 {h}\nLINK b.bin a.bin\n".encode()
    raw = newc([
        ("vendorfw", 0o040755, b"", 1, 2),
        ("vendorfw/a.bin", 0o100644, data, 2, 1),
        ("vendorfw/b.bin", 0o100644, data, 3, 1),
        ("vendorfw/.vendorfw.manifest", 0o100644, man, 4, 1),
    ])
    p = tmp_path / "x.cpio"
    p.write_bytes(raw)
    problems = verify(read_package(p))
    assert "vendorfw/b.bin: should be a data-less hard link to a.bin" in problems
    assert "vendorfw/a.bin: nlink 1, expected 2" in problems


@pytest.mark.parametrize(
    ("name", "mode", "want"),
    [
        ("vendorfw/../../etc/passwd", 0o100644, "'..'"),
        ("/etc/passwd", 0o100644, "outside vendorfw/"),
        ("vendorfw/evil", 0o120777, "symlink entries are not allowed"),
        ("other/x", 0o100644, "outside vendorfw/"),
    ],
)
def test_hostile_members_are_reported(tmp_path, name, mode, want):
    raw = newc([
        ("vendorfw", 0o040755, b"", 1, 2),
        (name, mode, b"/etc/shadow" if mode == 0o120777 else b"x", 2, 1),
        ("vendorfw/.vendorfw.manifest", 0o100644, b"", 3, 1),
    ])
    p = tmp_path / "x.cpio"
    p.write_bytes(raw)
    problems = verify(read_package(p))
    assert any(want in pr for pr in problems), problems


def test_truncated_cpio_is_an_archive_error(pkg, tmp_path):
    _, out = pkg
    data = (out / "firmware.cpio").read_bytes()
    bad = tmp_path / "t.cpio"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(ArchiveError, match=r"t\.cpio"):
        read_package(bad)


def test_compressed_or_foreign_inputs(pkg, tmp_path):
    _, out = pkg
    gz = tmp_path / "firmware.cpio.gz"
    gz.write_bytes(gzip.compress((out / "firmware.cpio").read_bytes(), mtime=0))
    with pytest.raises(ArchiveError, match="not a firmware.cpio"):
        read_package(gz)
    odc = tmp_path / "odc.cpio"
    src = tmp_path / "f"
    src.write_text("x")
    with open(odc, "wb") as f:
        subprocess.run([require_tool("cpio"), "-o", "-H", "odc", "--quiet"], input=b"f\n",
                       stdout=f, cwd=tmp_path, check=True)
    with pytest.raises(ArchiveError, match="not the newc format"):
        read_package(odc)


def test_garbage_manifest(tmp_path):
    p = tmp_path / "manifest.txt"
    p.write_text("FILE a.bin SHA256 nothex\n")
    with pytest.raises(ManifestError, match=r"manifest\.txt:1: bad SHA-256"):
        read_package(p)
    p.write_text("LINK a.bin b.bin\n")
    with pytest.raises(ManifestError, match="no FILE before"):
        read_package(p)


@pytest.mark.parametrize(
    ("name", "typ", "want"),
    [
        ("../escape.bin", b"0", "'..'"),
        ("/abs.bin", b"0", "absolute"),
        ("brcm/ln", b"2", "symlink entries are not allowed"),
    ],
)
def test_hostile_tar_members_are_reported(tmp_path, name, typ, want):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as t:
        info = tarfile.TarInfo(name)
        info.type = typ
        info.linkname = "/etc/shadow" if typ == b"2" else ""
        data = b"x" if typ == b"0" else b""
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))
    (tmp_path / "firmware.tar").write_bytes(buf.getvalue())
    (tmp_path / "manifest.txt").write_text("")
    problems = verify(read_package(tmp_path / "firmware.tar"))
    assert any(want in p for p in problems), problems


def test_bug_non_utf8_member_name_was_an_internal_error(tmp_path):
    """libarchive-c returns bytes for such a name; it is now a reported problem."""
    bad = os.fsdecode(b"vendorfw/a\xff.bin")
    raw = newc([
        ("vendorfw", 0o040755, b"", 1, 2),
        (bad, 0o100644, b"x", 2, 1),
        ("vendorfw/.vendorfw.manifest", 0o100644, b"", 3, 1),
    ])
    p = tmp_path / "x.cpio"
    p.write_bytes(raw)
    problems = verify(read_package(p))
    assert any("not valid UTF-8" in pr for pr in problems), problems
