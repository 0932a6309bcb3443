"""all_firmware.tar.gz: deterministic pack, safe unpack of hostile archives (formats.md §8)."""

from __future__ import annotations

import gzip
import io
import os
import subprocess
import tarfile
import tempfile
from pathlib import Path

import pytest

from tests.conftest import require_tool
from vendorfw import rawdump
from vendorfw.errors import ArchiveError, CollectError


def make_dump_tree(root: Path) -> Path:
    (root / "firmware/wifi/C-4378__s-B1").mkdir(parents=True)
    (root / "firmware/wifi/C-4378__s-B1/shikoku.trx").write_bytes(b"\x01" * 5000)
    (root / "firmware/bluetooth").mkdir()
    (root / "firmware/bluetooth/BCM4378B1_PCIE_shikoku_MUR.bin").write_bytes(b"bt")
    (root / "fud_firmware/j314/mt").mkdir(parents=True)
    (root / "fud_firmware/j314/mt/Multitouch.im4p").write_bytes(b"im4p" * 100)
    os.symlink("mt/Multitouch.im4p", root / "fud_firmware/j314/Multitouch.im4p")
    (root / "appleh13camerad").write_bytes(b"\0" * 8192)
    (root / "apple").mkdir()
    (root / "apple/aop-als-cal.bin").write_bytes(b"als")
    (root / ("fud_firmware/" + "long" * 40)).write_bytes(b"long name")  # > 100 chars
    return root


def tree_state(root: Path) -> dict[str, object]:
    out: dict[str, object] = {}
    for dirpath, dirs, files in os.walk(root):
        for n in dirs + files:
            p = Path(dirpath, n)
            rel = p.relative_to(root).as_posix()
            if p.is_symlink():
                out[rel] = ("link", os.readlink(p))
            elif p.is_dir():
                out[rel] = "dir"
            else:
                out[rel] = p.read_bytes()
    return out


def test_pack_unpack_roundtrip_and_determinism(tmp_path):
    src = make_dump_tree(tmp_path / "src")
    a, b = tmp_path / "a.tar.gz", tmp_path / "b.tar.gz"
    n = rawdump.pack(src, a)
    assert n == len(tree_state(src))
    os.utime(src / "appleh13camerad", (12345, 12345))
    rawdump.pack(src, b)
    assert a.read_bytes() == b.read_bytes()
    listing = subprocess.run([require_tool("tar"), "tzf", a], capture_output=True, text=True,
                             check=True).stdout.split()
    assert "fud_firmware/j314/Multitouch.im4p" in listing
    dest = tmp_path / "dest"
    dest.mkdir()
    stats = rawdump.unpack(a, dest)
    assert tree_state(dest) == tree_state(src)
    assert stats.symlinks == 1


def tgz(members: list[tuple[tarfile.TarInfo, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", format=tarfile.GNU_FORMAT) as t:
        for info, data in members:
            info.size = len(data) if info.isreg() else 0
            t.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return buf.getvalue()


def reg(name: str) -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(name), b"payload"


def special(name: str, typ: bytes, link: str = "") -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type = typ
    info.linkname = link
    return info, b""


HOSTILE = {
    "dotdot": ([reg("firmware/../../evil")], "unsafe path"),
    "absolute": ([reg("/tmp/evil")], "absolute path"),
    "symlink-up": ([special("firmware", tarfile.SYMTYPE, "../..")], "points outside"),
    "symlink-abs": ([special("x", tarfile.SYMTYPE, "/etc")], "absolute"),
    "write-through-symlink": (
        [special("d", tarfile.SYMTYPE, "."), reg("d/x")],
        "clashes with a file",
    ),
    "symlink-chain-escape": (
        [
            (tarfile.TarInfo("a/b"), b""),
            special("a/b/l1", tarfile.SYMTYPE, ".."),
            special("x", tarfile.SYMTYPE, "a/b/l1/../.."),
        ],
        "points outside",
    ),
    "symlink-under-symlink": (
        [special("s", tarfile.SYMTYPE, "real"), (tarfile.TarInfo("real"), b""),
         special("s/t", tarfile.SYMTYPE, "x")],
        "both a directory",
    ),
    "hardlink-outside": ([special("h", tarfile.LNKTYPE, "../../etc/passwd")], "unsafe path"),
    "hardlink-unknown": ([special("h", tarfile.LNKTYPE, "nothing")], "no earlier file"),
    "file-then-dir": ([reg("f"), reg("f/x")], "f is both a directory and a file"),
    "dir-then-file": ([special("d", tarfile.DIRTYPE), reg("d")], "d is both a directory"),
    "hardlink-to-dir": ([special("d", tarfile.DIRTYPE), special("h", tarfile.LNKTYPE, "d")],
                        "no earlier file"),
    "symlink-loop": ([special("l1", tarfile.SYMTYPE, "l2/x"), special("l2", tarfile.SYMTYPE,
                                                                      "l1/y")], "is a loop"),
    "fifo": ([special("f", tarfile.FIFOTYPE)], "device or fifo"),
    "chardev": ([special("c", tarfile.CHRTYPE)], "device or fifo"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_members_rejected_when_read_in_place(tmp_path, case):
    """open_source (the spool, no directory) refuses the same archives as unpack."""
    members, msg = HOSTILE[case]
    for info, _ in members:
        if info.name in ("a/b", "real"):
            info.type = tarfile.DIRTYPE
    asahi = tmp_path / "asahi"
    asahi.mkdir()
    (asahi / rawdump.RAWDUMP_NAME).write_bytes(tgz(members))
    (tmp_path / "tmp").mkdir()
    with pytest.raises(ArchiveError, match=msg), rawdump.open_source(asahi, tmp_path / "tmp"):
        pass
    assert os.listdir(tmp_path / "tmp") == []


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_members_rejected(tmp_path, case):
    members, msg = HOSTILE[case]
    for info, _ in members:
        if info.name in ("a/b", "real"):
            info.type = tarfile.DIRTYPE
    bad = tmp_path / "all_firmware.tar.gz"
    bad.write_bytes(tgz(members))
    (tmp_path / "work").mkdir()
    dest = tmp_path / "work" / "dest"
    dest.mkdir()
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(ArchiveError, match=msg) as ei:
        rawdump.unpack(bad, dest)
    assert str(bad) in ei.value.message
    assert list(dest.iterdir()) == []  # the partial tree is gone
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert sorted(p.name for p in (tmp_path / "work").iterdir()) == ["dest"]


def test_truncated_and_corrupted(tmp_path):
    good = tmp_path / "good.tar.gz"
    rawdump.pack(make_dump_tree(tmp_path / "src"), good)
    data = good.read_bytes()
    dest = tmp_path / "dest"
    dest.mkdir()
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(data[: len(data) - 200])
    with pytest.raises(ArchiveError, match="cut.tar.gz"):
        rawdump.unpack(cut, dest)
    assert list(dest.iterdir()) == []
    flipped = bytearray(data)
    for i in range(40, len(flipped), 97):
        flipped[i] ^= 0x5A
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(bytes(flipped))
    with pytest.raises(ArchiveError, match="bad.tar.gz"):
        rawdump.unpack(bad, dest)
    assert list(dest.iterdir()) == []
    notgz = tmp_path / "text.tar.gz"
    notgz.write_bytes(gzip.compress(b"hello world" * 100))
    with pytest.raises(ArchiveError):
        rawdump.unpack(notgz, dest)


def test_decompression_limit(tmp_path):
    bomb = tmp_path / "bomb.tar.gz"
    info = tarfile.TarInfo("firmware/zeros")
    bomb.write_bytes(tgz([(info, b"\0" * 200_000)]))
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(ArchiveError, match="more than 100000 bytes"):
        rawdump.unpack(bomb, dest, limit=100_000)
    assert list(dest.iterdir()) == []
    with tempfile.TemporaryFile() as spool:  # refused from the header: nothing is written
        with pytest.raises(ArchiveError, match="more than 100000 bytes"):
            rawdump.read_dump(bomb, spool, limit=100_000)
        assert os.fstat(spool.fileno()).st_size == 0


def test_open_source_unpacks_beside_kernelcache(tmp_path):
    esp_asahi = tmp_path / "asahi"
    esp_asahi.mkdir()
    rawdump.pack(make_dump_tree(tmp_path / "src"), esp_asahi / rawdump.RAWDUMP_NAME)
    (esp_asahi / "kernelcache.release.mac13g").write_bytes(b"kc")
    before = sorted(os.listdir(tmp_path))
    with rawdump.open_source(esp_asahi, tmp_parent=tmp_path) as source:
        assert source.tree is not None
        assert source.firmware == "firmware"
        assert source.tree.read("firmware/wifi/C-4378__s-B1/shikoku.trx") == b"\1" * 5000
        assert source.tree.shown("firmware") == f"{esp_asahi / rawdump.RAWDUMP_NAME}:firmware"
        assert source.kernelcache is not None
        assert source.kernelcache.read_bytes() == b"kc"
        assert source.als_cal == "apple/aop-als-cal.bin"
        assert sorted(os.listdir(tmp_path)) == before  # the spool has no name
    assert sorted(os.listdir(tmp_path)) == before


def test_pack_symlink_leaving_tree_is_refused(tmp_path):
    src = make_dump_tree(tmp_path / "src")
    os.symlink("../../outside", src / "firmware" / "escape")
    out = tmp_path / "d.tar.gz"
    with pytest.raises(ArchiveError, match="leaves"):
        rawdump.pack(src, out)
    assert not out.exists()
    assert sorted(os.listdir(tmp_path)) == ["src"]  # no temp file left


def test_unpack_refuses_non_empty_dest(tmp_path):
    good = tmp_path / "good.tar.gz"
    rawdump.pack(make_dump_tree(tmp_path / "src"), good)
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "mine").write_text("keep")
    with pytest.raises(ArchiveError, match="is not empty"):
        rawdump.unpack(good, dest)
    assert os.listdir(dest) == ["mine"]


def test_bug_dot_slash_root_member_was_rejected(tmp_path):
    """`tar -C dump -czf all_firmware.tar.gz .` starts with a "./" directory member."""
    src = make_dump_tree(tmp_path / "src")
    dump = tmp_path / "dot.tar.gz"
    subprocess.run([require_tool("tar"), "-C", src, "-czf", dump, "."], check=True)
    dest = tmp_path / "dest"
    dest.mkdir()
    rawdump.unpack(dump, dest)
    assert tree_state(dest) == tree_state(src)


def test_bug_repeated_member_rewrote_its_hard_link_target(tmp_path):
    """A later member named like an earlier hard link replaces the link, not the shared file."""
    first, again = tarfile.TarInfo("firmware/a"), tarfile.TarInfo("firmware/b")
    archive = tmp_path / "dup.tar.gz"
    archive.write_bytes(tgz([(first, b"original"), special("firmware/b", tarfile.LNKTYPE,
                                                           "firmware/a"), (again, b"newer")]))
    dest = tmp_path / "dest"
    dest.mkdir()
    rawdump.unpack(archive, dest)
    assert (dest / "firmware/a").read_bytes() == b"original"
    assert (dest / "firmware/b").read_bytes() == b"newer"


def test_bug_dump_directory_named_like_the_kernelcache_was_an_internal_error(tmp_path):
    """open_source used to unlink() a same-named member to put the kernelcache symlink in."""
    src = make_dump_tree(tmp_path / "src")
    (src / "kernelcache.release.mac13g").mkdir()
    (src / "kernelcache.release.mac13g" / "x").write_bytes(b"x")
    asahi = tmp_path / "asahi"
    asahi.mkdir()
    rawdump.pack(src, asahi / rawdump.RAWDUMP_NAME)
    (asahi / "kernelcache.release.mac13g").write_bytes(b"kc")
    with rawdump.open_source(asahi, tmp_parent=tmp_path) as source:
        assert source.kernelcache == asahi / "kernelcache.release.mac13g"
        assert source.firmware is not None


def test_bug_empty_dump_error_named_the_temporary_directory(tmp_path):
    asahi = tmp_path / "asahi"
    asahi.mkdir()
    (tmp_path / "empty" / "unrelated").mkdir(parents=True)
    rawdump.pack(tmp_path / "empty", asahi / rawdump.RAWDUMP_NAME)
    with pytest.raises(CollectError) as ei, rawdump.open_source(asahi, tmp_parent=tmp_path):
        pass
    assert ei.value.message == f"no firmware sources found in {asahi / rawdump.RAWDUMP_NAME}"


def test_member_count_limit(tmp_path):
    """Empty members cost no bytes but an inode each: their number is bounded too."""
    bomb = tmp_path / "many.tar.gz"
    bomb.write_bytes(tgz([(tarfile.TarInfo(f"firmware/f{i}"), b"") for i in range(50)]))
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(ArchiveError, match="more than 20 members"):
        rawdump.unpack(bomb, dest, max_members=20)
    assert list(dest.iterdir()) == []
    assert rawdump.unpack(bomb, dest, max_members=50).files == 50


def test_write_dump_is_what_update_reads(tmp_path):
    src = make_dump_tree(tmp_path / "src")
    kc = tmp_path / "kernelcache.release.mac13g"
    kc.write_bytes(b"kc" * 1000)
    asahi = tmp_path / "esp" / "asahi"
    asahi.mkdir(parents=True)
    seen: list[int] = []
    written = rawdump.write_dump(src, asahi, kc, seen.append)
    assert written == (asahi / rawdump.RAWDUMP_NAME, asahi / kc.name)
    assert sorted(os.listdir(asahi)) == [rawdump.RAWDUMP_NAME, kc.name]  # no temp files
    assert sum(seen) >= 5000 + 2000
    with rawdump.open_source(asahi, tmp_parent=tmp_path) as source:
        assert source.kernelcache == asahi / kc.name
        assert source.kernelcache.read_bytes() == kc.read_bytes()
        assert source.tree.read("firmware/wifi/C-4378__s-B1/shikoku.trx") == b"\1" * 5000
    with pytest.raises(ArchiveError, match="must be named kernelcache"):
        rawdump.write_dump(src, asahi, src / "appleh13camerad")
    with pytest.raises(ArchiveError, match="cannot copy"):
        rawdump.write_dump(src, asahi, tmp_path / "kernelcache.missing")


def test_bug_reading_a_dump_made_a_file_per_member(tmp_path):
    """Issue 13: creating and deleting ~1,000 files cost more than the whole extraction.
    The dump is now read into one unnamed spool file; nothing appears in the temp dir."""
    asahi = tmp_path / "asahi"
    asahi.mkdir()
    rawdump.pack(make_dump_tree(tmp_path / "src"), asahi / rawdump.RAWDUMP_NAME)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    with rawdump.open_source(asahi, tmp) as source:
        assert os.listdir(tmp) == []
        tree = source.tree
        assert tree is not None
        assert tree.read("fud_firmware/j314/Multitouch.im4p") == b"im4p" * 100  # via symlink
        assert tree.is_link("fud_firmware/j314/Multitouch.im4p")
        assert tree.resolve("fud_firmware/j314/Multitouch.im4p") == \
            "fud_firmware/j314/mt/Multitouch.im4p"
        assert sorted(tree.listdir("fud_firmware/j314")) == ["Multitouch.im4p", "mt"]
        with tree.mapped("appleh13camerad") as view:
            assert bytes(view) == b"\0" * 8192
    assert os.listdir(tmp) == []


def test_symlinks_in_a_dump_loop_dangle_or_chain(tmp_path):
    def read(members):
        archive = tmp_path / "t.tar.gz"
        archive.write_bytes(tgz(members))
        with tempfile.TemporaryFile() as spool:
            return rawdump.read_dump(archive, spool)

    with pytest.raises(ArchiveError, match="symlink a -> b is a loop"):
        read([special("a", tarfile.SYMTYPE, "b"), special("b", tarfile.SYMTYPE, "a")])
    tree = read([reg("d/f"), special("d/dangling", tarfile.SYMTYPE, "nothing/../x"),
                 special("l1", tarfile.SYMTYPE, "d"), special("l2", tarfile.SYMTYPE, "l1/./f"),
                 special("d/up", tarfile.SYMTYPE, "../l2")])
    assert not tree.is_file("d/dangling")
    assert tree.resolve("d/dangling") is None
    assert tree.is_file("l2")
    assert tree.resolve("d/up") == "d/f"
    assert tree.is_dir("l1")
    assert tree.escapes("d/up", "d") is False
    assert tree.escapes("l2", "l1") is True  # resolves to d/f, outside "l1"
    assert tree.escapes("d/dangling", "") is True


def test_contents_outliving_the_dump_fail_instead_of_reading_a_reused_descriptor(tmp_path):
    asahi = tmp_path / "asahi"
    asahi.mkdir()
    rawdump.pack(make_dump_tree(tmp_path / "src"), asahi / rawdump.RAWDUMP_NAME)
    with rawdump.open_source(asahi, tmp_path) as source:
        assert source.tree is not None
        content = source.tree.content("apple/aop-als-cal.bin")
        assert content.read() == b"als"
    with open(asahi / rawdump.RAWDUMP_NAME, "rb"):  # likely takes the freed descriptor
        with pytest.raises(OSError, match="spool it was read from is closed"):
            content.read()
