"""firmware.cpio / firmware.tar / manifest.txt (formats.md §6), checked with real unpackers."""

from __future__ import annotations

import hashlib
import os
import random
import subprocess
from pathlib import Path

import pytest

from tests.conftest import require_tool
from vendorfw.errors import ArchiveError, ManifestError
from vendorfw.model import Content, FirmwareFile
from vendorfw.package import plan_package, write_package, write_package_files


def make_files(root: Path, seed: int = 1) -> list[FirmwareFile]:
    """A small firmware set: held and file-backed contents, duplicates, odd sizes."""
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    shared = rng.randbytes(4099)
    files: list[FirmwareFile] = []
    for i in range(6):
        name = f"brcm/brcmfmac4378b1-pcie.apple,board{i}.bin"
        data = shared if i in (1, 4) else rng.randbytes(rng.randrange(0, 9000))
        src = root / f"src{i}"
        src.write_bytes(data)
        files.append(FirmwareFile(name, source=src))
    files.append(FirmwareFile("brcm/brcmfmac4378b1-pcie.apple,x.txt", data=b"k= v \n"))
    files.append(FirmwareFile("apple/tpmtfw-j314.bin", data=shared))
    files.append(FirmwareFile("apple/empty.bin", data=b""))
    files.append(FirmwareFile("asmedia/asm2214a-apple.bin", data=rng.randbytes(0x18000)))
    return files


def expected(files: list[FirmwareFile]) -> dict[str, str]:
    return {f.name: hashlib.sha256(f.read()).hexdigest() for f in files}


def tree(root: Path) -> tuple[dict[str, str], dict[int, set[str]]]:
    """Name → SHA-256 of regular files below root, and inode → names for link sets."""
    hashes: dict[str, str] = {}
    inodes: dict[int, set[str]] = {}
    for dirpath, _dirs, names in os.walk(root):
        for n in names:
            p = Path(dirpath, n)
            rel = p.relative_to(root).as_posix()
            assert p.is_file()
            assert not p.is_symlink()
            hashes[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
            inodes.setdefault(p.stat().st_ino, set()).add(rel)
    return hashes, inodes


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    base = tmp_path_factory.mktemp("pkg")
    files = make_files(base / "src")
    plan = plan_package(files)
    out = base / "out"
    out.mkdir()
    write_package_files(plan, out)
    return files, plan, out


UNPACKERS = {
    "gnu": ["cpio", "-i", "-d", "--quiet"],
    "busybox": ["busybox", "cpio", "-i", "-d"],
    "bsdcpio": ["bsdcpio", "-i", "-d", "--quiet"],
}


@pytest.mark.parametrize("tool", sorted(UNPACKERS))
def test_cpio_unpacks_identically(package, tmp_path, tool):
    files, plan, out = package
    argv = UNPACKERS[tool]
    require_tool(argv[0])
    with open(out / "firmware.cpio", "rb") as f:
        subprocess.run(argv, stdin=f, cwd=tmp_path, check=True, capture_output=True)
    assert sorted(os.listdir(tmp_path)) == ["vendorfw"]
    hashes, inodes = tree(tmp_path / "vendorfw")
    want = expected(files)
    want[".vendorfw.manifest"] = hashlib.sha256(plan.manifest.text().encode()).hexdigest()
    assert hashes == want
    # identical contents come out as one inode with several names
    groups = sorted(sorted(names) for names in inodes.values() if len(names) > 1)
    assert groups == [
        [
            "apple/tpmtfw-j314.bin",
            "brcm/brcmfmac4378b1-pcie.apple,board1.bin",
            "brcm/brcmfmac4378b1-pcie.apple,board4.bin",
        ]
    ]
    for names in inodes.values():
        p = tmp_path / "vendorfw" / sorted(names)[0]
        assert p.stat().st_nlink == len(names)


def test_manifest_text_and_order(package):
    files, plan, out = package
    text = (out / "manifest.txt").read_text()
    lines = text.splitlines()
    assert [ln.split()[1] for ln in lines] == [f.name for f in files]
    assert lines[4] == (
        "LINK brcm/brcmfmac4378b1-pcie.apple,board4.bin brcm/brcmfmac4378b1-pcie.apple,board1.bin"
    )
    assert lines[7] == "LINK apple/tpmtfw-j314.bin brcm/brcmfmac4378b1-pcie.apple,board1.bin"
    digest = hashlib.sha256(files[0].read()).hexdigest()
    assert lines[0] == f"FILE {files[0].name} SHA256 {digest}"
    assert text.endswith("\n")


def parse_newc(data: bytes) -> list[dict]:
    """Independent newc parser: every header field, alignment checked."""
    out, off = [], 0
    while True:
        assert data[off : off + 6] == b"070701", off
        f = [int(data[off + 6 + 8 * i : off + 14 + 8 * i], 16) for i in range(13)]
        namesize, size = f[11], f[6]
        name = data[off + 110 : off + 110 + namesize]
        assert name.endswith(b"\0")
        doff = (off + 110 + namesize + 3) & ~3
        assert data[off + 110 + namesize : doff] == b"\0" * (doff - off - 110 - namesize)
        ent = dict(ino=f[0], mode=f[1], uid=f[2], gid=f[3], nlink=f[4], mtime=f[5], size=size,
                   name=name[:-1].decode(), data=data[doff : doff + size])
        out.append(ent)
        off = (doff + size + 3) & ~3
        if ent["name"] == "TRAILER!!!":
            assert off == len(data)  # nothing (no block padding) after the trailer
            return out


def test_cpio_layout_byte_level(package):
    files, plan, out = package
    ents = parse_newc((out / "firmware.cpio").read_bytes())
    assert ents[-1]["name"] == "TRAILER!!!"
    assert ents[-2]["name"] == "vendorfw/.vendorfw.manifest"
    assert ents[-2]["data"] == plan.manifest.text().encode()
    seen_dirs = set()
    by_name = {}
    for e in ents[:-1]:
        assert e["name"] == "vendorfw" or e["name"].startswith("vendorfw/")
        assert (e["uid"], e["gid"], e["mtime"]) == (0, 0, 0)
        parent = e["name"].rpartition("/")[0]
        assert parent == "" or parent in seen_dirs  # directory entry precedes contents
        if e["mode"] == 0o040755:
            seen_dirs.add(e["name"])
        else:
            assert e["mode"] == 0o100644
        by_name[e["name"]] = e
    assert seen_dirs == {"vendorfw", "vendorfw/brcm", "vendorfw/apple", "vendorfw/asmedia"}
    first = by_name["vendorfw/brcm/brcmfmac4378b1-pcie.apple,board1.bin"]
    for link in ("vendorfw/brcm/brcmfmac4378b1-pcie.apple,board4.bin",
                 "vendorfw/apple/tpmtfw-j314.bin"):
        e = by_name[link]
        assert (e["ino"], e["nlink"], e["size"]) == (first["ino"], 3, 0)
    assert first["nlink"] == 3
    assert first["size"] == 4099
    inos = [e["ino"] for e in ents[:-1] if e["nlink"] == 1 or e["mode"] == 0o040755]
    assert len(inos) == len(set(inos))


def test_tar_unpacks_with_hard_links(package, tmp_path):
    files, plan, out = package
    for tool in ("tar", "bsdtar"):
        dest = tmp_path / tool
        dest.mkdir()
        subprocess.run([require_tool(tool), "-xf", out / "firmware.tar", "-C", dest], check=True)
        hashes, inodes = tree(dest)
        assert hashes == expected(files)  # no prefix, no manifest entry
        assert max(len(n) for n in inodes.values()) == 3


def test_output_is_deterministic(tmp_path):
    outs = []
    for i in range(2):
        files = make_files(tmp_path / f"src{i}")
        out = tmp_path / f"out{i}"
        out.mkdir()
        write_package_files(plan_package(files), out)
        outs.append(out)
    for name in ("firmware.cpio", "firmware.tar", "manifest.txt"):
        assert (outs[0] / name).read_bytes() == (outs[1] / name).read_bytes()


@pytest.mark.parametrize(
    ("names", "msg"),
    [
        (["../evil.bin"], "'..'"),
        (["/abs.bin"], "absolute"),
        (["a b.bin"], "whitespace"),
        (["a.bin", "a.bin"], "twice"),
        (["apple", "apple/x.bin"], "also a directory"),
        ([".vendorfw.manifest"], "reserved"),
        (["brcm//x.bin"], "empty"),
    ],
)
def test_bad_names_rejected(names, msg):
    with pytest.raises(ManifestError, match=msg):
        plan_package([FirmwareFile(n, data=b"x") for n in names])


def test_file_changed_between_passes(tmp_path):
    src = tmp_path / "f"
    src.write_bytes(b"one")
    plan = plan_package([FirmwareFile("brcm/f.bin", source=src)])
    src.write_bytes(b"two")
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(ArchiveError, match="changed while"):
        write_package_files(plan, out)


def test_spool_slices_are_hashed_once(tmp_path):
    """A spool slice (an unnamed file only vendorfw holds) cannot change between passes:
    a digest its collector computed is used as is, and the bytes are not hashed again."""
    spool = tmp_path / "spool"
    spool.write_bytes(b"....payload....")
    with open(spool, "rb") as f:
        content = Content("dump:x", spool=f, offset=4, size=7, digest=b"\1" * 32)
        plan = plan_package([FirmwareFile("brcm/x.bin", source=content)])
        assert plan.files[0].sha256 == "01" * 32  # taken from the collector, not recomputed
        out = tmp_path / "out"
        out.mkdir()
        write_package_files(plan, out)  # no "changed while" check against the fake digest
    members = {e["name"]: e["data"] for e in parse_newc((out / "firmware.cpio").read_bytes())}
    assert members["vendorfw/brcm/x.bin"] == b"payload"


def test_unreadable_source_is_one_line_error(tmp_path):
    with pytest.raises(ArchiveError, match="cannot read"):
        plan_package([FirmwareFile("brcm/f.bin", source=tmp_path / "missing")])


def test_progress_counts_bytes(tmp_path):
    files = make_files(tmp_path / "src")
    seen: list[int] = []
    plan = plan_package(files, seen.append)
    total = sum(len(f.read()) for f in files)
    assert sum(seen) == total
    seen.clear()
    out = tmp_path / "out"
    out.mkdir()
    write_package_files(plan, out, seen.append)
    assert sum(seen) == plan.stored_bytes


def test_disk_full_is_one_line_error(tmp_path):
    plan = plan_package(make_files(tmp_path / "src"))
    with open("/dev/full", "wb", buffering=0) as full, \
            pytest.raises(ArchiveError, match="cannot write firmware.cpio: No space left"):
        write_package(plan, full, None)
