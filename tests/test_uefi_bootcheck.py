"""`qemu-boot --check`'s judgement of a console (installer.demo.bootcheck.judge), on consoles
shaped like the real ones: every failure names one reason."""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from installer.bootobj import assemble
from installer.bootobj import vars as bvars
from installer.demo.bootcheck import Expected, judge, run_console
from tests.support import bootchain as bc

ESP = "1e3d8450-0f04-5160-842c-53a3229baabf"
SHA_A, SHA_B = "a" * 64, "b" * 64
WANT = Expected(ESP, {"brcm/a.bin": (10, SHA_A), "apple/b.bin": (20, SHA_B)})


def console(*, esp=ESP, fw=None, done=True, started=True) -> str:
    lines = ["pippin stage1 0.1.0 (qemu-virt) at 750 us"]
    if started:
        lines += ["PIPPIN-DEMO: Linux started by Pippin's boot chain",
                  f"PIPPIN-ESP: partuuid={esp} device=/dev/vda5" if esp else "PIPPIN-ESP: none"]
    for line in fw if fw is not None else [f"ok brcm/a.bin 10 {SHA_A}",
                                           f"ok apple/b.bin 20 {SHA_B}"]:
        lines.append(f"PIPPIN-FW: {line}")
    if done:
        lines += ["PIPPIN-FW-COUNT: 2 2", "PIPPIN-DEMO-DONE"]
    return "\n".join(lines) + "\n"


def test_all_verified():
    assert judge(console(), WANT) == (True, f"ESP {ESP}, vendorfw 2/2 files verified")


@pytest.mark.parametrize(("text", "reason"), [
    (console(esp="0b0f4e5a-3f2d-4a51-9c3e-2d1f0e9a8b7c"),
     f"the guest reports ESP 0b0f4e5a-3f2d-4a51-9c3e-2d1f0e9a8b7c, the installed ESP is {ESP}"),
    (console(esp=None), f"the guest found no ESP (stage 1 names {ESP})"),
    (console(fw=[f"ok brcm/a.bin 10 {SHA_A}"]),
     f"ESP {ESP}, vendorfw 1/2 files verified: apple/b.bin not in the guest's manifest"),
    (console(fw=[f"ok brcm/a.bin 9 {SHA_A}", f"ok apple/b.bin 20 {SHA_B}"]),
     f"ESP {ESP}, vendorfw 1/2 files verified: brcm/a.bin: ok, 9 bytes (want 10)"),
    (console(fw=[f"bad brcm/a.bin 10 {SHA_B}", f"ok apple/b.bin 20 {SHA_B}"]),
     f"ESP {ESP}, vendorfw 1/2 files verified: brcm/a.bin: bad, 10 bytes (want 10)"),
    (console(fw=[f"ok brcm/a.bin 10 {SHA_A}", f"ok apple/b.bin 20 {SHA_B}",
                 f"ok x.bin 1 {SHA_A}"]),
     f"ESP {ESP}, vendorfw 2/2 files verified: x.bin is in the guest but not on the ESP"),
    (console(done=False),
     f"ESP {ESP}, vendorfw 2/2 files verified: the guest did not finish its report"),
    (console(started=False, fw=[], done=False) + "Kernel panic - not syncing: VFS\n",
     "Linux never started the demo guest (last console line: Kernel panic - not syncing: VFS)"),
    ("pippin stage2: booting at 453831 us\n[    1.956868] Initramfs unpacking failed: invalid "
     "magic at start of compressed archive\n[    1.975553] Unable to handle kernel paging "
     "request\n[    1.981364] Internal error: Oops: 00000000979a0004 [#1] SMP\n",
     "the kernel failed: Initramfs unpacking failed: invalid magic at start of compressed "
     "archive"),
    ("pippin stage2: refusing to boot: payload at +1216: TruncatedPayload\n",
     "pippin stage2: refusing to boot: payload at +1216: TruncatedPayload"),
    ("Found nothing\nEFI boot manager: Cannot load any image\n=> ",
     'U-Boot found no EFI program on any disk ("EFI boot manager: Cannot load any image"; '
     "is efi/boot/bootaa64.efi on the media?)"),
])
def test_failures_name_one_reason(text, reason):
    assert judge(text, WANT) == (False, reason)


def test_an_esp_without_firmware_fails():
    ok, reason = judge(console(fw=[]), Expected(ESP, {}))
    assert not ok
    assert reason == (f"ESP {ESP}, vendorfw 0/0 files verified: "
                      "the ESP has no vendorfw/firmware.cpio")


def run_script(repo_root, tmp_path, *args):
    return subprocess.run([str(repo_root / "scripts" / "qemu-boot"), *map(str, args)],
                          capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "xdg")))


def test_script_refuses_bad_input_in_one_line_before_booting(repo_root, tmp_path):
    img = tmp_path / "junk.img"
    img.write_bytes(bytes(1 << 20))
    s1 = tmp_path / "s1.bin"
    s1.write_bytes(b"hi\n")
    r = run_script(repo_root, tmp_path, img, "--stage1", s1, "--media", tmp_path / "nope.img")
    assert r.returncode == 1
    assert r.stderr == (f"qemu-boot: no media image at {tmp_path}/nope.img (make one: "
                        f"scripts/make-uefi-media {tmp_path}/nope.img)\n")
    r = run_script(repo_root, tmp_path, img, "--stage1", s1, "--check")
    assert r.returncode == 1
    assert r.stdout == (f"boot failed: stage-1 object {s1}: no STACKBOT end marker: not an "
                        "m1n1-style loader image\n")
    s1.write_bytes(assemble.assemble_stage1(bc.stage_bytes("stage1"),
                                            bvars.stage1_config(ESP)))
    r = run_script(repo_root, tmp_path, img, "--stage1", s1, "--check")
    assert r.returncode == 1
    assert r.stdout == f"boot failed: {img}: no GPT header at sector 1\n"


@pytest.mark.parametrize(("output", "silence"), [
    ("U-Boot\nEFI boot manager: Cannot load any image\n=> ", 60.0),
    ("[    1.9] Internal error: Oops: 0 [#1] SMP\n", 0.5),
])
def test_run_console_stops_a_guest_that_will_not_go_on(tmp_path, output, silence):
    """A stand-in for QEMU that prints, then hangs: U-Boot at its prompt after giving up,
    or a kernel stuck after an oops. The check stops it instead of waiting for the timeout."""
    t0 = time.monotonic()
    console, rc, timed_out = run_console(
        ["sh", "-c", f"printf '%s' '{output}'; exec sleep 60"], tmp_path / "log", 30,
        oops_silence=silence)
    assert time.monotonic() - t0 < 10
    assert (console, rc, timed_out) == (output, None, False)
    assert (tmp_path / "log").read_text() == output
