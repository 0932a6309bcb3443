"""The `vendorfw` CLI: extract, verify, list, diff; --json, progress, one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.fwtree import make_macos_tree, make_raw_dump_dir
from tests.test_package_cpio import parse_newc
from tests.test_package_verify import newc
from tests.test_vendorfw_update import make_esp
from vendorfw.cli import main


@pytest.fixture
def env(tmp_path, monkeypatch):
    """Logs under tmp_path (conftest puts the root log handlers back after each test)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path


def run(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


@pytest.fixture(scope="module")
def raw_dump(tmp_path_factory):
    root = tmp_path_factory.mktemp("raw") / "dump"
    return root, make_raw_dump_dir(root, seed=5)


def test_extract_raw_dump_dir(env, capsys, raw_dump):
    src, summary = raw_dump
    dest = env / "out" / "vendorfw"
    rc, out, err = run(capsys, "extract", src, dest, "--json")
    assert rc == 0, err
    report = json.loads(out)
    assert report["files"] == len(summary.files)
    assert {p["path"].removeprefix(str(src) + "/") for p in report["problems"]} == \
        summary.problems
    assert sorted(os.listdir(dest)) == ["firmware.cpio", "firmware.tar", "manifest.txt", "u-boot"]
    rc, out, _ = run(capsys, "verify", dest / "firmware.cpio")
    assert rc == 0
    assert out.strip().endswith(f"OK, {len(summary.files)} files match the manifest")
    rc, out, _ = run(capsys, "verify", dest / "firmware.tar", "--json")
    assert rc == 0
    assert json.loads(out)["ok"] is True
    rc, out, _ = run(capsys, "list", dest, "--json")
    listed = {r["name"]: r["sha256"] for r in json.loads(out)}
    assert listed == summary.files


def test_extract_from_tar_gz_equals_unpacked(env, capsys, raw_dump):
    src, _ = raw_dump
    esp = env / "esp"
    make_esp(esp, seed=5)
    a, b = env / "a", env / "b"
    assert run(capsys, "extract", src, a)[0] == 0
    assert run(capsys, "extract", esp / "asahi", b)[0] == 0
    for name in ("firmware.cpio", "firmware.tar", "manifest.txt"):
        assert (a / name).read_bytes() == (b / name).read_bytes()


def test_extract_macos_tree_and_diff(env, capsys):
    src = env / "macos"
    summary = make_macos_tree(src, seed=2)
    old = env / "old"
    assert run(capsys, "extract", src, old)[0] == 0
    names = [ln.split()[1] for ln in (old / "manifest.txt").read_text().splitlines()]
    assert sorted(names) == sorted(summary.files)
    # change one input file: the diff names exactly the output that changed
    als = src / "apple" / "aop-als-cal.bin"
    als.write_bytes(b"recalibrated")
    new = env / "new"
    assert run(capsys, "extract", src, new)[0] == 0
    rc, out, _ = run(capsys, "diff", old, new)
    assert rc == 0
    assert out.splitlines() == [
        "~ apple/aop-als-cal.bin",
        f"0 added, 0 removed, 1 changed, {len(names) - 1} unchanged",
    ]
    rc, out, _ = run(capsys, "diff", old / "manifest.txt", new / "firmware.tar", "--json")
    assert json.loads(out)["changed"] == ["apple/aop-als-cal.bin"]


def test_verify_reports_tampering(env, capsys, raw_dump):
    src, _ = raw_dump
    dest = env / "v"
    assert run(capsys, "extract", src, dest)[0] == 0
    cpio = dest / "firmware.cpio"
    data = bytearray(cpio.read_bytes())
    victim = next(e for e in parse_newc(bytes(data)) if e["size"] > 100 and
                  not e["name"].endswith(".vendorfw.manifest"))
    pos = bytes(data).index(victim["data"]) + 50
    data[pos] ^= 1
    cpio.write_bytes(bytes(data))
    rc, out, err = run(capsys, "verify", cpio)
    assert rc == 1
    assert out.splitlines() == [f"{victim['name']}: SHA-256 does not match the manifest"]
    assert err.splitlines() == [f"vendorfw: error: {cpio} does not match its manifest (1 problems)"]


def test_extract_failure_keeps_old_dest(env, capsys):
    esp = env / "esp"
    make_esp(esp)
    dest = env / "dest"
    assert run(capsys, "extract", esp / "asahi", dest)[0] == 0
    before = {p.name: p.read_bytes() for p in dest.iterdir() if p.is_file()}
    dump = esp / "asahi" / "all_firmware.tar.gz"
    dump.write_bytes(dump.read_bytes()[:5000])
    rc, out, err = run(capsys, "extract", esp / "asahi", dest)
    assert rc == 1
    assert out == ""
    assert len(err.strip().splitlines()) == 1
    assert {p.name: p.read_bytes() for p in dest.iterdir() if p.is_file()} == before
    assert sorted(os.listdir(env)) == sorted(["cache", "dest", "esp", "esp-dump", "esp-src"])


@pytest.mark.parametrize(
    ("argv", "msg"),
    [
        (["extract", "/nonexistent/src", "x"], "firmware source /nonexistent/src is not a dir"),
        (["verify", "/nonexistent/firmware.cpio"], "cannot read /nonexistent/firmware.cpio"),
        (["list", "/etc/hostname"], "not a firmware.cpio, firmware.tar or manifest"),
        (["update", "--esp", "/nonexistent"], "--esp /nonexistent is not a directory"),
    ],
)
def test_bad_input_is_one_line(env, capsys, argv, msg):
    rc, out, err = run(capsys, *argv)
    assert rc == 1
    assert err.splitlines()[0] == f"vendorfw: error: {msg}" or msg in err.splitlines()[0]
    assert not [ln for ln in err.splitlines() if not ln.startswith("vendorfw: ")]


def test_progress_on_request(env, capsys, raw_dump):
    src, _ = raw_dump
    rc, _, err = run(capsys, "extract", src, env / "p", "--progress")
    assert rc == 0
    err = "".join(ln for ln in err.splitlines(True) if not ln.startswith("WARNING: "))
    assert err.startswith("\rextract: ")
    assert err.endswith("\n")
    assert "/s)" in err
    rc, _, err = run(capsys, "extract", src, env / "q")
    assert "extract: " not in err  # not a terminal: no progress line


def test_console_script_exit_codes(env):
    exe = Path(sys.executable).parent / "vendorfw"
    envv = dict(os.environ, XDG_CACHE_HOME=str(env / "cache"))
    r = subprocess.run([exe, "verify"], capture_output=True, text=True, env=envv, check=False)
    assert r.returncode == 2
    r = subprocess.run([exe, "diff", env, env], capture_output=True, text=True, env=envv,
                       check=False)
    assert r.returncode == 1
    assert r.stderr.startswith("vendorfw: error: ")


def test_extract_refuses_to_replace_a_foreign_directory(env, capsys, raw_dump):
    src, _ = raw_dump
    home = env / "home"
    home.mkdir()
    (home / "notes.txt").write_text("precious")
    rc, _, err = run(capsys, "extract", src, home)
    assert rc == 1
    assert err.splitlines()[0] == (
        f"vendorfw: error: {home} holds other files (notes.txt); it would be replaced as a whole"
    )
    assert os.listdir(home) == ["notes.txt"]


def test_verify_needs_an_archive(env, capsys):
    m = env / "manifest.txt"
    m.write_text("FILE a.bin SHA256 " + "0" * 64 + "\n")
    rc, _, err = run(capsys, "verify", m)
    assert rc == 1
    assert err.splitlines() == [f"vendorfw: error: {m} is a manifest: verify checks a "
                                "firmware.cpio or firmware.tar against one"]


def test_extract_unpacks_a_packed_dump_into_tmpdir(env, capsys):
    """`extract --tmpdir` as `update --tmpdir`: the dump's spool goes there (a missing one
    is named in one line with the hint), and the result is the same as without it."""
    esp = env / "esp"
    make_esp(esp, seed=5)
    a, b = env / "a", env / "b"
    assert run(capsys, "extract", esp / "asahi", a)[0] == 0
    spool = env / "spool"
    spool.mkdir()
    rc, _, err = run(capsys, "extract", esp / "asahi", b, "--tmpdir", spool)
    assert rc == 0, err
    for name in ("firmware.cpio", "firmware.tar", "manifest.txt"):
        assert (a / name).read_bytes() == (b / name).read_bytes()
    assert list(spool.iterdir()) == []  # nothing left behind
    rc, _, err = run(capsys, "extract", esp / "asahi", env / "c", "--tmpdir", env / "missing")
    assert rc == 1
    lines = err.strip().splitlines()
    assert lines[0] == (f"vendorfw: error: cannot unpack {esp / 'asahi' / 'all_firmware.tar.gz'}"
                        f" into {env / 'missing'}: No such file or directory"), lines
    assert "hint: pass --tmpdir DIR" in err
    assert not (env / "c").exists()
    rc, out, _ = run(capsys, "extract", "--help")
    assert "--tmpdir" in out


def test_bug_os_errors_were_internal_errors(env, capsys, raw_dump):
    """An uncreatable DEST parent and a missing --tmpdir gave exit 70 and a traceback."""
    root, _ = raw_dump
    blocker = env / "file"
    blocker.write_text("x")
    rc, _, err = run(capsys, "extract", root, blocker / "sub" / "out")
    assert rc == 1
    assert err.strip().splitlines() == [f"vendorfw: error: cannot create {blocker / 'sub'}: "
                                        "Not a directory"]
    esp = env / "esp"
    make_esp(esp)
    rc, _, err = run(capsys, "update", "--esp", esp, "--tmpdir", env / "missing")
    assert rc == 1
    assert "cannot unpack" in err
    assert "hint: pass --tmpdir DIR" in err
    assert "Traceback" not in err


def test_symlinked_dest_is_refused(env, capsys, raw_dump):
    root, _ = raw_dump
    real = env / "real"
    real.mkdir()
    os.symlink(real, env / "link")
    rc, _, err = run(capsys, "extract", root, env / "link")
    assert rc == 1
    assert "is a symlink" in err
    assert (env / "link").is_symlink()


def test_bug_problems_in_a_packed_dump_named_a_vanished_temp_dir(env, capsys):
    """Skipped files inside all_firmware.tar.gz are shown as <archive>:<member>."""
    esp = env / "esp"
    make_esp(esp, seed=5)
    dump = esp / "asahi" / "all_firmware.tar.gz"
    rc, out, err = run(capsys, "extract", esp / "asahi", env / "out", "--json")
    assert rc == 0, err
    paths = [p["path"] for p in json.loads(out)["problems"]]
    assert f"{dump}:firmware/wifi/C-4355__s-C1_Z-9/borneo.trx" in paths
    assert all(p.startswith(f"{dump}:") for p in paths), paths
    assert f"WARNING: wifi: {dump}:firmware/wifi/C-4355__s-C1_Z-9/borneo.trx" in err
    assert "vendorfw-dump-" not in err


def test_bug_non_utf8_file_names_were_internal_errors(env, capsys):
    """Names that are not UTF-8, in a tree and inside all_firmware.tar.gz, are skipped with
    a warning (they crashed the byte-order sort, the tar reader and the log file)."""
    tree = env / "tree"
    wifi = tree / "firmware" / "wifi" / "C-4378__s-B1"
    wifi.mkdir(parents=True)
    (wifi / "ok.trx").write_bytes(b"blob")
    with open(os.fsencode(wifi) + b"/P-a\xff.txt", "wb") as f:
        f.write(b"k=v\n")
    bt = tree / "firmware" / "bluetooth"
    bt.mkdir()
    with open(os.fsencode(bt) + b"/BCM4378B1_PCIE_Shik\xffoku_MUR.bin", "wb") as f:
        f.write(b"x")
    packed = env / "packed"
    packed.mkdir()
    subprocess.run(["tar", "-C", tree, "-czf", packed / "all_firmware.tar.gz", "firmware"],
                   check=True)
    for src, out in ((tree, env / "o1"), (packed, env / "o2")):
        rc, stdout, err = run(capsys, "extract", src, out, "--json")
        assert rc == 0, err
        report = json.loads(stdout)
        assert report["files"] == 1
        assert len(report["problems"]) == 2
        assert "Traceback" not in err
    log = (env / "cache" / "pippin" / "vendorfw.log").read_text()
    assert "Logging error" not in log
    assert "P-a\\udcff.txt" in log


def test_bug_non_utf8_member_crashed_list_diff_verify(env):
    """A cpio member whose name is not UTF-8: list, diff and verify print it escaped
    (stdout strict UTF-8) instead of exit 70."""
    bad = os.fsdecode(b"vendorfw/a\xff.bin")
    cpio = env / "x.cpio"
    cpio.write_bytes(newc([("vendorfw", 0o040755, b"", 1, 2), (bad, 0o100644, b"x", 2, 1),
                           ("vendorfw/.vendorfw.manifest", 0o100644, b"", 3, 1)]))
    exe = Path(sys.executable).parent / "vendorfw"
    envv = dict(os.environ, XDG_CACHE_HOME=str(env / "cache"), PYTHONIOENCODING="utf-8:strict")
    for argv, rc in ((["list", cpio], 0), (["diff", cpio, cpio], 0), (["verify", cpio], 1)):
        r = subprocess.run([exe, *argv], capture_output=True, text=True, env=envv, check=False,
                           errors="replace")
        assert r.returncode == rc, (argv, r.stderr)
        assert "internal error" not in r.stderr
    r = subprocess.run([exe, "list", cpio], capture_output=True, text=True, env=envv,
                       check=True)
    assert "a\\udcff.bin" in r.stdout
