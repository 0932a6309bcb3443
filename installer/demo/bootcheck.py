"""``scripts/qemu-boot --check``: boot the simulated Mac and judge what the guest reports.

It passes only when the demo guest (:mod:`installer.demo.guest`) reports the ESP PARTUUID
that the installed stage-1 object names and that the disk's GPT holds, and every file of
that ESP's ``vendorfw/firmware.cpio`` is under ``/lib/firmware/vendor`` of the switched-to
root with the same size and SHA-256. One summary line either way::

    boot ok: ESP <uuid>, vendorfw 10/10 files verified, 7.4 s
    boot failed: <reason>

The console goes to a log file (named on failure).
"""

from __future__ import annotations

import argparse
import os
import re
import select
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from installer.bootobj.version import read_installed_vars
from installer.disk.model import TYPE_GUIDS, PartKind
from installer.errors import BootObjectError, PippinError
from installer.platform.gpt import read_gpt
from vendorfw.errors import VendorFwError
from vendorfw.manifest import MANIFEST_ENTRY
from vendorfw.readback import read_package

ESP_VAR = "chosen.asahi,efi-system-partition"
_FW = re.compile(r"^PIPPIN-FW: (ok|bad|missing) (\S+) (\S+) (\S+)\s*$", re.M)
_ESP = re.compile(r"^PIPPIN-ESP: (?:partuuid=(\S+) device=(\S+)|none)\s*$", re.M)
# the first kernel line that says why Linux went down
_KERNEL_FAIL = re.compile(r"^\[[\s\d.]+\] (Kernel panic - .*|Initramfs unpacking failed.*|"
                          r"Internal error: Oops.*)$", re.M)
_SILENCE_AFTER_OOPS = 10.0  # seconds without output after an oops: the guest is stuck


@dataclass(frozen=True, slots=True)
class Expected:
    """What the installed disk says the guest should see."""

    esp_uuid: str
    files: dict[str, tuple[int, str]]  # name -> (size, sha256)


def expected(image: Path, stage1: Path) -> Expected:
    """The ESP named by the stage-1 object, checked against the GPT, and its firmware."""
    try:
        variables = read_installed_vars(stage1.read_bytes())
    except OSError as exc:
        raise PippinError(f"cannot read the stage-1 object {stage1}: {exc.strerror}") from exc
    except BootObjectError as exc:
        raise PippinError(f"stage-1 object {stage1}: {exc.message}") from exc
    uuid = next((v.value for v in variables if v.name == ESP_VAR), None)
    if uuid is None:
        raise PippinError(f"{stage1} sets no {ESP_VAR}")
    with open(image, "rb") as f:
        table = read_gpt(f.fileno(), os.fstat(f.fileno()).st_size, str(image))
    part = next((e for e in table.entries if e.uuid.lower() == uuid.lower()), None)
    if part is None or part.type_guid != TYPE_GUIDS[PartKind.EFI]:
        raise PippinError(f"stage 1 names ESP {uuid}, which the GPT of {image} does not hold")
    with tempfile.TemporaryDirectory(prefix="pippin-check-") as tmp:
        cpio = Path(tmp) / "firmware.cpio"
        with open(cpio, "wb") as out:
            r = subprocess.run(["mtype", "-i", f"{image}@@{part.start}",
                                "::/vendorfw/firmware.cpio"], stdout=out, stderr=subprocess.PIPE,
                               env=dict(os.environ, MTOOLS_SKIP_CHECK="1"), check=False)
        if r.returncode != 0:
            return Expected(uuid.lower(), {})
        try:
            pkg = read_package(cpio)
        except VendorFwError as exc:
            raise PippinError(f"the ESP's vendorfw/firmware.cpio: {exc.message}") from exc
    sizes = {m.name: m.size for m in pkg.members if m.type == "file"}
    for m in pkg.members:
        if m.type == "link" and m.link_to is not None:
            sizes[m.name] = sizes.get(m.link_to, m.size)
    files = {n: (sizes.get(n, -1), h) for n, h in pkg.files().items() if n != MANIFEST_ENTRY}
    return Expected(uuid.lower(), files)


def judge(console: str, want: Expected) -> tuple[bool, str]:
    """(passed, summary without timing) from the guest's console."""
    refusal = next((ln.strip() for ln in console.splitlines() if "refusing to boot" in ln), None)
    if refusal:
        return False, refusal
    if "PIPPIN-DEMO: Linux started" not in console:
        if m := _KERNEL_FAIL.search(console):
            return False, f"the kernel failed: {m[1].strip()}"
        if "EFI boot manager: Cannot load any image" in console and "Found EFI" not in console:
            return False, ("U-Boot found no EFI program on any disk (\"EFI boot manager: "
                           "Cannot load any image\"; is efi/boot/bootaa64.efi on the media?)")
        return False, f"Linux never started the demo guest (last console line: {_last(console)})"
    m = _ESP.search(console)
    if m is None or m.group(1) is None:
        return False, f"the guest found no ESP (stage 1 names {want.esp_uuid})"
    if m.group(1) != want.esp_uuid:
        return False, f"the guest reports ESP {m.group(1)}, the installed ESP is {want.esp_uuid}"
    seen = {name: (st, size, sha) for st, name, size, sha in _FW.findall(console)}
    good = 0
    problems: list[str] = []
    for name, (size, sha) in sorted(want.files.items()):
        got = seen.get(name)
        if got is None:
            problems.append(f"{name} not in the guest's manifest")
        elif got[0] != "ok" or got[1] != str(size) or got[2] != sha:
            problems.append(f"{name}: {got[0]}, {got[1]} bytes (want {size})")
        else:
            good += 1
    extra = sorted(set(seen) - set(want.files))
    problems += [f"{n} is in the guest but not on the ESP" for n in extra]
    if "PIPPIN-DEMO-DONE" not in console:
        problems.append("the guest did not finish its report")
    if not want.files:
        problems.append("the ESP has no vendorfw/firmware.cpio")
    summary = f"ESP {want.esp_uuid}, vendorfw {good}/{len(want.files)} files verified"
    if problems:
        return False, f"{summary}: {problems[0]}"
    return True, summary


def _stuck(console: str) -> bool:
    """U-Boot tried every boot source and sits at its prompt: nothing more will happen."""
    return console.rstrip(" ").endswith("=>") and "Cannot load any image" in console


def run_console(qemu: list[str], log: Path, timeout: float,
                oops_silence: float = _SILENCE_AFTER_OOPS) -> tuple[str, int | None, bool]:
    """Run QEMU with its serial console on stdout copied to ``log``; stop it early when
    U-Boot gives up, or when a kernel oops is followed by ``oops_silence`` seconds without
    output. Returns (console, exit code or None when stopped, timed out)."""
    deadline = time.monotonic() + timeout
    buf = bytearray()
    proc = subprocess.Popen(qemu, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL)
    assert proc.stdout is not None  # PIPE above
    fd = proc.stdout.fileno()
    timed_out = stuck = False
    quiet_since = time.monotonic()
    with open(log, "wb", buffering=0) as out:  # live: the log shows a hung boot
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                timed_out = True
                break
            ready, _, _ = select.select([fd], [], [], min(left, 1.0))
            if not ready:
                tail = buf[-4096:].decode(errors="replace")
                oops = b"Internal error: Oops" in buf and \
                    time.monotonic() - quiet_since > oops_silence
                if _stuck(tail) or oops:
                    stuck = True
                    break
                continue
            quiet_since = time.monotonic()
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            buf += chunk
            out.write(chunk)
    if timed_out or stuck:
        proc.kill()
    rc = proc.wait()
    proc.stdout.close()
    return (buf.decode(errors="replace").replace("\r", ""),
            None if timed_out or stuck else rc, timed_out)


def _last(console: str) -> str:
    lines = [ln.strip() for ln in console.splitlines() if ln.strip()]
    return lines[-1][:160] if lines else "(no output)"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="qemu-boot --check",
                                 description="boot QEMU_ARGV and check the demo guest's report "
                                 "against the installed disk: one line, 'boot ok: …' (exit 0) "
                                 "or 'boot failed: <reason>' (exit 1)")
    ap.add_argument("--image", type=Path, required=True,
                    help="the simulated Mac's disk image (its GPT and ESP are read)")
    ap.add_argument("--stage1", type=Path, required=True,
                    help="the installed stage-1 object (it names the ESP PARTUUID)")
    ap.add_argument("--timeout", type=float, default=240,
                    help="seconds before the boot counts as hung (default: %(default)g)")
    ap.add_argument("--log", type=Path, required=True, help="where the console goes")
    ap.add_argument("qemu", nargs=argparse.REMAINDER, help="-- qemu-system-aarch64 …")
    args = ap.parse_args(argv)
    qemu = args.qemu[1:] if args.qemu[:1] == ["--"] else args.qemu
    try:
        want = expected(args.image, args.stage1)
    except (PippinError, OSError) as exc:
        msg = exc.message if isinstance(exc, PippinError) else str(exc)
        print(f"boot failed: {msg}")
        return 1
    t0 = time.monotonic()
    try:
        args.log.parent.mkdir(parents=True, exist_ok=True)
        console, rc, timed_out = run_console(qemu, args.log, args.timeout)
    except OSError as exc:
        print(f"boot failed: cannot run {qemu[0] if qemu else 'QEMU'}: {exc.strerror or exc}")
        return 1
    secs = time.monotonic() - t0
    ok, summary = judge(console, want)
    if ok:
        print(f"boot ok: {summary}, {secs:.1f} s")
        return 0
    if timed_out and "PIPPIN-DEMO-DONE" not in console:
        summary += f" (timed out after {args.timeout:g} s)"
    elif rc not in (0, None) and "PIPPIN-DEMO" not in console:
        summary += f" (QEMU exit {rc})"
    print(f"boot failed: {summary}")
    print(f"qemu-boot: console log: {args.log}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
