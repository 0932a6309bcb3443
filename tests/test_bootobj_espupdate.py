"""Atomic, downgrade-refusing update of m1n1/boot.bin (formats.md §4), with crash injection."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from installer.bootobj import assemble, espupdate, sign
from installer.bootobj.assemble import Stage2Parts
from installer.bootobj.espupdate import Step
from installer.bootobj.vars import Variable
from installer.errors import BootObjectError
from tests.support.bootobjgen import dtb, fake_kernel, fake_m1n1, fake_stage

ROOT = Path(__file__).resolve().parent.parent


def boot_bin(ver: str, *, bootargs: str = "quiet", key=None) -> bytes:
    return assemble.assemble_stage2(
        Stage2Parts(fake_stage(ver), kernel=fake_kernel(),
                    variables=(Variable("chosen.bootargs", bootargs),)),
        key,
    )


@pytest.fixture
def esp(tmp_path):
    d = tmp_path / "esp"
    d.mkdir()
    return d


def _install(esp: Path, data: bytes) -> Path:
    (esp / "m1n1").mkdir(exist_ok=True)
    (esp / "m1n1" / "boot.bin").write_bytes(data)
    return esp / "m1n1" / "boot.bin"


def _listing(esp: Path) -> list[str]:
    return sorted(os.listdir(esp / "m1n1"))


def test_fresh_esp(esp):
    res = espupdate.update_esp(esp, boot_bin("0.1.0"))
    assert (esp / "m1n1" / "boot.bin").read_bytes() == boot_bin("0.1.0")
    assert _listing(esp) == ["boot.bin"]
    assert (res.previous, res.kept_old, str(res.installed.version)) == (None, False, "0.1.0")


def test_upgrade_keeps_previous_as_old(esp):
    _install(esp, boot_bin("0.1.0"))
    res = espupdate.update_esp(esp, boot_bin("0.2.0"))
    assert (esp / "m1n1" / "boot.bin").read_bytes() == boot_bin("0.2.0")
    assert (esp / "m1n1" / "boot.bin.old").read_bytes() == boot_bin("0.1.0")
    assert _listing(esp) == ["boot.bin", "boot.bin.old"]
    assert str(res.previous.version) == "0.1.0"
    assert res.kept_old


def test_same_version_reinstall_is_allowed(esp):
    _install(esp, boot_bin("0.2.0"))
    espupdate.update_esp(esp, boot_bin("0.2.0", bootargs="debug"))
    assert (esp / "m1n1" / "boot.bin").read_bytes() == boot_bin("0.2.0", bootargs="debug")


@pytest.mark.parametrize(("installed", "new"), [("0.2.0", "0.1.9"), ("1.0.0", "1.0.0-rc.1"),
                                                ("0.2.0-beta.11", "0.2.0-beta.2")])
def test_downgrade_refused_then_allowed(esp, installed, new):
    path = _install(esp, boot_bin(installed))
    with pytest.raises(BootObjectError, match=f"refusing to install the older {new}") as exc:
        espupdate.update_esp(esp, boot_bin(new))
    assert exc.value.hint == "pass --allow-older to downgrade on purpose"
    assert path.read_bytes() == boot_bin(installed)
    assert _listing(esp) == ["boot.bin"]
    res = espupdate.update_esp(esp, boot_bin(new), allow_older=True)
    assert res.downgrade
    assert path.read_bytes() == boot_bin(new)
    assert (esp / "m1n1" / "boot.bin.old").read_bytes() == boot_bin(installed)


def test_takes_over_an_m1n1_install(esp, caplog):
    m1n1 = fake_m1n1("v1.4.11") + dtb() + b"\0\0\0\0"
    _install(esp, m1n1)
    res = espupdate.update_esp(esp, boot_bin("0.1.0"))
    assert res.previous.kind == "m1n1"
    assert (esp / "m1n1" / "boot.bin.old").read_bytes() == m1n1
    assert "replacing m1n1 v1.4.11 with pippin 0.1.0" in caplog.text


def test_unreadable_installed_object_is_replaced(esp, caplog):
    _install(esp, b"half a file")
    res = espupdate.update_esp(esp, boot_bin("0.1.0"))
    assert res.previous is None
    assert (esp / "m1n1" / "boot.bin.old").read_bytes() == b"half a file"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"junk", "new boot.bin: 4 bytes, too short"),
        (fake_stage().replace(b"##pippin_ver##", b"##pippinXver##"), "no ##pippin_ver##"),
        (fake_stage(stage="stage1") + b"\0\0\0\0", "is a stage-1 object"),
        (fake_stage() + b"\x7fELF", "unrecognised payload"),
        (fake_stage() + b"m1n1_initramfs\xff\xff\x00\x00", "says 65535 bytes"),
    ],
)
def test_invalid_new_object_refused(esp, data, message):
    path = _install(esp, boot_bin("0.1.0"))
    with pytest.raises(BootObjectError, match=message):
        espupdate.update_esp(esp, data)
    assert path.read_bytes() == boot_bin("0.1.0")
    assert _listing(esp) == ["boot.bin"]


def test_key_requires_a_valid_signature(esp):
    key = sign.generate_key()
    pub = sign.public_bytes(key.public_key())
    with pytest.raises(BootObjectError, match="not signed"):
        espupdate.update_esp(esp, boot_bin("0.1.0"), public_key=pub)
    other = sign.generate_key()
    with pytest.raises(BootObjectError, match="signed by key"):
        espupdate.update_esp(esp, boot_bin("0.1.0", key=other), public_key=pub)
    tampered = boot_bin("0.1.0", key=key).replace(b"=quiet", b"=debug")
    with pytest.raises(BootObjectError, match="does not match"):
        espupdate.update_esp(esp, bytes(tampered), public_key=pub)
    assert not (esp / "m1n1" / "boot.bin").exists()
    espupdate.update_esp(esp, boot_bin("0.1.0", key=key), public_key=pub)
    sign.verify((esp / "m1n1" / "boot.bin").read_bytes(), pub)


def test_missing_esp(tmp_path):
    with pytest.raises(BootObjectError, match="does not exist"):
        espupdate.update_esp(tmp_path / "nope", boot_bin("0.1.0"))


def test_stale_leftovers_from_a_crash_are_overwritten(esp):
    path = _install(esp, boot_bin("0.1.0"))
    (esp / "m1n1" / "boot.bin.new").write_bytes(b"partial")
    (esp / "m1n1" / "boot.bin.old.tmp").write_bytes(b"partial")
    espupdate.update_esp(esp, boot_bin("0.2.0"))
    assert path.read_bytes() == boot_bin("0.2.0")
    assert _listing(esp) == ["boot.bin", "boot.bin.old"]


# -- failures at each step -----------------------------------------------------------------

_CRASHER = """
import os, sys
from pathlib import Path
from installer.bootobj import espupdate

def step(s):
    if s.value == sys.argv[3]:
        os._exit(9)  # power loss: no cleanup, no finally blocks

espupdate.update_esp(Path(sys.argv[1]), Path(sys.argv[2]).read_bytes(), step=step)
"""


@pytest.mark.parametrize("crash_at", list(Step))
def test_crash_at_each_step_leaves_a_valid_boot_bin(esp, tmp_path, crash_at):
    old, new = boot_bin("0.1.0"), boot_bin("0.2.0")
    path = _install(esp, old)
    (tmp_path / "new.bin").write_bytes(new)
    proc = subprocess.run(
        [sys.executable, "-c", _CRASHER, str(esp), str(tmp_path / "new.bin"), crash_at.value],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )
    assert proc.returncode == 9, proc.stderr
    expected = new if crash_at is Step.REPLACED else old
    assert path.read_bytes() == expected
    espupdate.inspect(path.read_bytes(), "boot.bin after the crash")
    if crash_at in (Step.OLD_KEPT, Step.REPLACED):
        assert (esp / "m1n1" / "boot.bin.old").read_bytes() == old
    # The next update completes the job from whatever state the crash left.
    espupdate.update_esp(esp, new)
    assert path.read_bytes() == new
    assert (esp / "m1n1" / "boot.bin.old").read_bytes() == (new if crash_at is Step.REPLACED
                                                            else old)
    assert _listing(esp) == ["boot.bin", "boot.bin.old"]


@pytest.mark.parametrize("fail_call", [1, 2])
def test_rename_failure_is_one_error_and_no_leftovers(esp, monkeypatch, fail_call):
    path = _install(esp, boot_bin("0.1.0"))
    real_replace = os.replace
    calls = []

    def flaky(src, dst):
        calls.append(dst)
        if len(calls) == fail_call:
            raise OSError(5, "Input/output error")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", flaky)
    with pytest.raises(BootObjectError, match="updating .* failed: Input/output error") as exc:
        espupdate.update_esp(esp, boot_bin("0.2.0"))
    assert path.read_bytes() == boot_bin("0.1.0")
    assert exc.value.hint.endswith("is unchanged")
    assert "boot.bin.new" not in _listing(esp)
    assert "boot.bin.old.tmp" not in _listing(esp)


def test_fsync_failure_after_rename_says_new_version_is_in_place(esp, monkeypatch):
    path = _install(esp, boot_bin("0.1.0"))
    import installer.bootobj.espupdate as mod

    calls = []

    def failing_fsync_dir(p):
        calls.append(p)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(mod, "fsync_dir", failing_fsync_dir)
    with pytest.raises(BootObjectError, match="No space left") as exc:
        espupdate.update_esp(esp, boot_bin("0.2.0"))
    assert exc.value.hint.endswith("now holds the new version")
    assert path.read_bytes() == boot_bin("0.2.0")


def test_write_failure_on_a_full_esp(esp, monkeypatch):
    path = _install(esp, boot_bin("0.1.0"))

    def no_space(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(BootObjectError, match="No space left on device"):
        espupdate.update_esp(esp, boot_bin("0.2.0"))
    assert path.read_bytes() == boot_bin("0.1.0")
    assert _listing(esp) == ["boot.bin"]


def test_m1n1_is_a_file(esp):
    (esp / "m1n1").write_bytes(b"x")
    with pytest.raises(BootObjectError, match="m1n1/boot.bin: Not a directory"):
        espupdate.update_esp(esp, boot_bin("0.1.0"))
    assert (esp / "m1n1").read_bytes() == b"x"
