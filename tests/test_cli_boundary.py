"""The shared CLI boundary: one-line errors, exit codes, atomic outputs."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest

from vendorfw import atomic
from vendorfw.cliboundary import EXIT_ERROR, EXIT_INTERNAL, run_click, setup_logging
from vendorfw.errors import VendorFwError


def _cmd(exc: BaseException) -> click.Command:
    @click.command()
    def boom() -> None:
        raise exc

    return boom


def test_known_error_is_one_line_with_hint(capsys, tmp_path):
    rc = run_click("x", _cmd(VendorFwError("bad thing on y", hint="do z")), [], tmp_path / "l")
    err = capsys.readouterr().err.splitlines()
    assert rc == EXIT_ERROR
    assert err == ["x: error: bad thing on y", "x: hint: do z"]


def test_internal_error_points_to_log(capsys, tmp_path):
    log = tmp_path / "x.log"
    rc = run_click("x", _cmd(ZeroDivisionError("oops")), [], log)
    err = capsys.readouterr().err.strip()
    assert rc == EXIT_INTERNAL
    assert err == f"x: internal error, details in {log}"


def test_usage_error_exit_2(capsys):
    rc = run_click("x", _cmd(RuntimeError()), ["--nope"], None)
    assert rc == 2
    assert "No such option" in capsys.readouterr().err


def test_atomic_file_keeps_old_content_on_failure(tmp_path):
    target = tmp_path / "f"
    target.write_bytes(b"old")

    def write_half():
        with atomic.atomic_file(target) as f:
            f.write(b"half")
            raise RuntimeError

    with pytest.raises(RuntimeError):
        write_half()
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["f"]


def test_atomic_dir_replaces_whole_tree(tmp_path):
    d = tmp_path / "vendorfw"
    d.mkdir()
    (d / "stale").write_text("x")
    with atomic.atomic_dir(d) as new:
        (new / "a").write_text("1")
        assert (d / "stale").exists()  # old tree untouched until the new one is complete
    assert sorted(p.name for p in d.iterdir()) == ["a"]
    assert sorted(os.listdir(tmp_path)) == ["vendorfw"]


def test_atomic_dir_failure_leaves_old(tmp_path):
    d = tmp_path / "vendorfw"
    d.mkdir()
    (d / "keep").write_text("x")

    def fill_then_fail():
        with atomic.atomic_dir(d) as new:
            (new / "a").write_text("1")
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        fill_then_fail()
    assert sorted(p.name for p in d.iterdir()) == ["keep"]
    assert sorted(os.listdir(tmp_path)) == ["vendorfw"]


@pytest.mark.parametrize("prog", ["pippin", "vendorfw"])
def test_console_scripts_help(prog):
    exe = Path(sys.executable).parent / prog
    out = subprocess.run([exe, "--help"], capture_output=True, text=True, check=False)
    assert out.returncode == 0
    assert "Usage:" in out.stdout


def test_bug_internal_error_printed_the_traceback_on_stderr(capsys, tmp_path):
    """With the real log setup, stderr gets one line; the traceback goes to the log file."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        log = setup_logging(tmp_path / "x.log")
        rc = run_click("x", _cmd(ZeroDivisionError("oops")), [], log)
        logging.getLogger("lib").warning("careful", exc_info=ValueError("why"))
    finally:
        for h in list(root.handlers):
            root.removeHandler(h)
            h.close()
        for h in saved[0]:
            root.addHandler(h)
        root.setLevel(saved[1])
    err = capsys.readouterr().err.splitlines()
    assert rc == EXIT_INTERNAL
    assert err == [f"x: internal error, details in {log}", "WARNING: careful"]
    text = (tmp_path / "x.log").read_text()
    assert "Traceback" in text
    assert "ZeroDivisionError: oops" in text


def test_atomic_dir_swaps_in_one_step_where_the_kernel_can(tmp_path, monkeypatch):
    """With RENAME_EXCHANGE (ext4/tmpfs here) no plain rename is used, so there is no
    moment in which the target is missing; the old tree is removed afterwards."""
    if not atomic.exchange(*(_two_dirs(tmp_path / "probe"))):
        pytest.skip("this filesystem cannot exchange names")
    d = tmp_path / "vendorfw"
    d.mkdir()
    (d / "old").write_text("1")

    def no_rename(*_args):
        raise AssertionError("plain rename: the target would be missing for a moment")

    monkeypatch.setattr(atomic.os, "rename", no_rename)
    with atomic.atomic_dir(d) as new:
        (new / "new").write_text("2")
    assert os.listdir(d) == ["new"]
    assert sorted(os.listdir(tmp_path)) == ["probe", "vendorfw"]


def test_atomic_dir_falls_back_to_two_renames(tmp_path, monkeypatch):
    monkeypatch.setattr(atomic, "exchange", lambda a, b: False)
    d = tmp_path / "vendorfw"
    d.mkdir()
    (d / "old").write_text("1")
    with atomic.atomic_dir(d) as new:
        (new / "new").write_text("2")
    assert os.listdir(d) == ["new"]
    assert os.listdir(tmp_path) == ["vendorfw"]


def test_exchange_reports_real_errors(tmp_path):
    a, _ = _two_dirs(tmp_path)
    with pytest.raises(FileNotFoundError):
        atomic.exchange(a, tmp_path / "missing")


def _two_dirs(base):
    a, b = base / "a", base / "b"
    a.mkdir(parents=True)
    b.mkdir()
    return a, b
