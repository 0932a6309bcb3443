"""`qemu-boot --check`'s judgement of a console (installer.demo.bootcheck.judge), on consoles
shaped like the real ones: every failure names one reason."""

from __future__ import annotations

import pytest

from installer.demo.bootcheck import Expected, judge

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
