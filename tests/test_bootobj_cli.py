"""`pippin bootobj …` end to end: real files in, exit codes and one-line errors out."""

from __future__ import annotations

import json
import logging
import os
import subprocess
from pathlib import Path

import pytest

from installer.bootobj import sign, version
from installer.cli import main
from tests.support.bootobjgen import dtb, fake_kernel, fake_stage, newc_cpio

ROOT = Path(__file__).resolve().parent.parent
UUID = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"


@pytest.fixture(autouse=True)
def _isolated_logging(monkeypatch, tmp_path):
    """main() sets up root logging and a log file: keep both inside this test."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    yield
    for h in list(root.handlers):
        if h not in saved[0]:
            root.removeHandler(h)
            h.close()
    for h in saved[0]:
        if h not in root.handlers:
            root.addHandler(h)
    root.setLevel(saved[1])


def run(capsys, *args: str) -> tuple[int, str, str]:
    rc = main(["bootobj", *map(str, args)])
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture
def inputs(tmp_path):
    (tmp_path / "stage2.bin").write_bytes(fake_stage("0.3.0"))
    (tmp_path / "stage1.bin").write_bytes(fake_stage("0.3.0", "stage1"))
    (tmp_path / "virt.dtb").write_bytes(dtb())
    (tmp_path / "Image").write_bytes(fake_kernel())
    (tmp_path / "initrd").write_bytes(newc_cpio(tmp_path, {"init": b"x"}))
    return tmp_path


@pytest.fixture
def keys(tmp_path, capsys):
    rc, out, _ = run(capsys, "keygen", "-o", tmp_path / "key.pem",
                     "--public-out", tmp_path / "key.pub")
    assert rc == 0
    assert out.startswith("chainload.key=ed25519:")
    return tmp_path / "key.pem", tmp_path / "key.pub"


def test_build_sign_verify_info_update(capsys, inputs, keys, tmp_path):
    out_bin = tmp_path / "boot.bin"
    rc, out, err = run(
        capsys, "build", "--stage2", inputs / "stage2.bin", "--dtb", inputs / "virt.dtb",
        "--kernel", inputs / "Image", "--initramfs", inputs / "initrd",
        "--var", "chosen.bootargs=console=ttyAMA0 rw", "-o", out_bin, "--json",
    )
    assert (rc, err) == (0, "")
    doc = json.loads(out)
    assert doc == {"output": str(out_bin), "size": out_bin.stat().st_size, "signed": False}

    assert run(capsys, "sign", out_bin, "--key", keys[0])[0] == 0
    rc, out, _ = run(capsys, "verify", out_bin, "--key", keys[1], "--json")
    assert rc == 0
    assert json.loads(out)["valid"] is True

    rc, out, _ = run(capsys, "info", out_bin, "--json")
    assert rc == 0
    info = json.loads(out)
    assert info["version"] == {"loader": "pippin", "version": "0.3.0", "stage": "stage2"}
    assert info["image_size"] == len(fake_stage("0.3.0"))
    kinds = [p["kind"] for p in info["payloads"]]
    assert kinds == ["fdt", "gzip", "initramfs", "variables", "signature"]
    assert info["payloads"][3]["variables"] == [["chosen.bootargs", "console=ttyAMA0 rw"]]

    rc, out, _ = run(capsys, "info", out_bin)
    assert "loader: pippin 0.3.0 (stage2)" in out
    assert "chosen.bootargs=console=ttyAMA0 rw" in out

    esp = tmp_path / "esp"
    esp.mkdir()
    rc, out, _ = run(capsys, "update-esp", esp, out_bin, "--key", keys[1], "--json")
    assert rc == 0
    assert json.loads(out)["installed"]["version"] == "0.3.0"
    assert (esp / "m1n1" / "boot.bin").read_bytes() == out_bin.read_bytes()


def test_build_signed_in_one_step(capsys, inputs, keys, tmp_path):
    rc, _, _ = run(capsys, "build", "--stage2", inputs / "stage2.bin", "--kernel",
                   inputs / "Image", "--sign-key", keys[0], "-o", tmp_path / "b.bin")
    assert rc == 0
    sign.verify((tmp_path / "b.bin").read_bytes(), sign.load_public_key(keys[1]))


def test_build_raw_kernel_last_with_gzip_initramfs_and_level(capsys, inputs, tmp_path):
    from installer.bootobj import assemble, scan

    rc, _, err = run(capsys, "build", "--stage2", inputs / "stage2.bin", "--kernel",
                     inputs / "Image", "--compress", "none", "--initramfs", inputs / "initrd",
                     "--initramfs-mode", "gzip", "--gzip-level", "1", "--var",
                     "chosen.bootargs=quiet", "-o", tmp_path / "b.bin")
    assert (rc, err) == (0, "")
    data = (tmp_path / "b.bin").read_bytes()
    kinds = [p.kind for p in scan.scan(data, scan.payload_start(data))]
    assert kinds == ["gzip", "fdt", "variables", "image"]
    assert data.endswith(b"chosen.bootargs=quiet\n" + (inputs / "Image").read_bytes())
    assert assemble.gzip_member((inputs / "initrd").read_bytes(), 1) in data
    rc, _, err = run(capsys, "build", "--stage2", inputs / "stage2.bin", "--kernel",
                     inputs / "Image", "--gzip-level", "10", "-o", tmp_path / "c.bin")
    assert rc != 0
    assert not (tmp_path / "c.bin").exists()


def test_stage1(capsys, inputs, keys, tmp_path):
    out = tmp_path / "s1.bin"
    rc, _, err = run(capsys, "stage1", "--image", inputs / "stage1.bin", "--esp-partuuid",
                     UUID.upper(), "--chainload-key", keys[1], "--var", "display=auto",
                     "-o", out)
    assert (rc, err) == (0, "")
    got = {v.name: v.value for v in version.read_installed_vars(out.read_bytes())}
    pub = sign.load_public_key(keys[1])
    assert got == {
        "chosen.asahi,efi-system-partition": UUID,
        "chainload": f"{UUID};m1n1/boot.bin",
        "chainload.key": "ed25519:" + pub.hex(),
        "display": "auto",
    }


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["build", "--stage2", "{d}/Image", "-o", "{d}/o"], "stage 2: no ##pippin_ver##"),
        (["build", "--stage2", "{d}/stage2.bin", "--dtb", "{d}/Image", "-o", "{d}/o"],
         "device tree #1: not a device tree blob"),
        (["build", "--stage2", "{d}/stage2.bin", "--kernel", "{d}/virt.dtb", "-o", "{d}/o"],
         "kernel: not an arm64 Image"),
        (["build", "--stage2", "{d}/stage2.bin", "--var", "chosen.x", "-o", "{d}/o"],
         "is not NAME=VALUE"),
        (["build", "--stage2", "{d}/missing", "-o", "{d}/o"], "cannot read stage 2"),
        (["stage1", "--image", "{d}/stage1.bin", "--esp-partuuid", "nope", "-o", "{d}/o"],
         "not a PARTUUID"),
        (["verify", "{d}/stage2.bin", "--key", "{d}/key.pub"], "is not signed"),
        (["info", "{d}/virt.dtb"], "no STACKBOT end marker"),
    ],
)
def test_errors_are_one_line_and_write_nothing(capsys, inputs, keys, args, message):
    rc, out, err = run(capsys, *[a.format(d=inputs) for a in args])
    assert rc == 1
    lines = err.splitlines()
    assert lines[0].startswith("pippin: error: ")
    assert message in lines[0]
    assert len(lines) <= 2
    assert not (inputs / "o").exists()
    assert not [n for n in os.listdir(inputs) if n.endswith(".tmp")]


def test_downgrade_exit_code_and_allow_older(capsys, inputs, tmp_path):
    esp = tmp_path / "esp"
    esp.mkdir()
    for ver in ("0.3.0", "0.2.0"):
        (tmp_path / f"s{ver}").write_bytes(fake_stage(ver))
        assert run(capsys, "build", "--stage2", tmp_path / f"s{ver}",
                   "-o", tmp_path / f"b{ver}")[0] == 0
    assert run(capsys, "update-esp", esp, tmp_path / "b0.3.0")[0] == 0
    rc, _, err = run(capsys, "update-esp", esp, tmp_path / "b0.2.0")
    assert rc == 1
    assert err.splitlines() == [
        f"pippin: error: {esp}/m1n1/boot.bin has pippin 0.3.0; refusing to install the "
        "older 0.2.0",
        "pippin: hint: pass --allow-older to downgrade on purpose",
    ]
    assert run(capsys, "update-esp", esp, tmp_path / "b0.2.0", "--allow-older")[0] == 0


def test_keygen_refuses_to_overwrite(capsys, keys):
    rc, _, err = run(capsys, "keygen", "-o", keys[0])
    assert rc == 1
    assert "refusing to overwrite a key" in err


def test_sign_twice_needs_replace(capsys, inputs, keys):
    target = inputs / "stage2.bin"
    assert run(capsys, "sign", target, "--key", keys[0], "-o", inputs / "s")[0] == 0
    rc, _, err = run(capsys, "sign", inputs / "s", "--key", keys[0])
    assert rc == 1
    assert "already signed" in err
    assert run(capsys, "sign", inputs / "s", "--key", keys[0], "--replace")[0] == 0


def test_console_script(tmp_path):
    """The installed `pippin` entry point reaches the group (real process, real exit code)."""
    exe = ROOT / ".venv" / "bin" / "pippin"
    proc = subprocess.run([str(exe), "bootobj", "info", str(tmp_path / "nope")],
                          capture_output=True, text=True, timeout=60, check=False,
                          env={**os.environ, "XDG_CACHE_HOME": str(tmp_path)})
    assert proc.returncode == 1
    assert proc.stderr.startswith("pippin: error: cannot read boot object")
