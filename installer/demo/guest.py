"""The demo guest: an initramfs around busybox and Pippin's initramfs hook core.

Shared by "Pippin demo Linux" (booted by stage 2) and the UEFI media of
``scripts/make-uefi-media`` (booted by U-Boot → systemd-boot). Its ``/init`` runs the hook
the way a distro initramfs does (``vendorfw-load early``, then ``handoff`` before
switch_root), prints which ESP the running OS belongs to (what ``vendorfw esp`` answers in a
full system), switches to a tmpfs root and reports every manifest file it finds under
``/lib/firmware/vendor`` with its size and SHA-256, checked against the manifest.
``installer.demo.bootcheck`` reads those lines back.

Lines the guest prints (one per line on the serial console)::

    PIPPIN-COUNTER: <ticks> <Hz>                      (when /bin/pippin-counter is there)
    PIPPIN-DEMO: Linux started by <who>
    PIPPIN-EFI: LoaderTimeInitUSec=<us>               (booted by systemd-boot)
    PIPPIN-DEMO: chosen/<asahi,*>=<value>
    PIPPIN-ESP: partuuid=<uuid> device=<node>        (or: PIPPIN-ESP: none)
    PIPPIN-FW: <ok|bad|missing> <name> <size> <sha256>
    PIPPIN-FW-COUNT: <manifest entries> <verified>
    PIPPIN-DEMO-DONE
"""

from __future__ import annotations

import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from installer.errors import PippinError

DEMO_MARKER = "PIPPIN-DEMO-DONE"
#: Kernel modules the guest needs for the hook on QEMU virt (Debian builds them as modules).
GUEST_MODULES = ("virtio_mmio", "virtio_blk", "vfat", "nls_cp437", "nls_ascii", "nls_utf8",
                 "efivarfs")
#: systemd-boot's vendor GUID: it records its start and hand-off times in these variables.
LOADER_GUID = "4a67b082-0a4c-41cf-b6c7-440b29bb8c4f"
HOOK_FILES = ("vendorfw-load", "vendorfw-lib.sh")

#: /init: the hook's two steps around a switch to a tmpfs root that reports what it sees.
INIT = """#!/bin/sh
[ -x /bin/pippin-counter ] && /bin/pippin-counter
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
echo "PIPPIN-DEMO: Linux started by @WHO@"
if [ -d /sys/firmware/efi ] && modprobe efivarfs 2>/dev/null &&
    mount -t efivarfs efivarfs /sys/firmware/efi/efivars 2>/dev/null; then
    for v in LoaderTimeInitUSec LoaderTimeExecUSec; do
        f=/sys/firmware/efi/efivars/$v-@LOADER@
        [ -f "$f" ] && echo "PIPPIN-EFI: $v=$(tail -c +5 "$f" | tr -d '\000')"
    done
    umount /sys/firmware/efi/efivars
fi
for f in /proc/device-tree/chosen/asahi,*; do
    [ -e "$f" ] && printf 'PIPPIN-DEMO: chosen/%s=%s\\n' "${f##*/}" "$(tr -d '\\000' < "$f")"
done
/usr/lib/pippin/vendorfw-load early
VENDORFW_ROOT=
. /usr/lib/pippin/vendorfw-lib.sh
if uuid=$(pippin_esp_partuuid 2>/dev/null); then
    dev=$(pippin_find_partuuid "$uuid") || dev=none
    echo "PIPPIN-ESP: partuuid=$uuid device=$dev"
else
    echo "PIPPIN-ESP: none"
fi
mount -t tmpfs -o mode=0755 root /newroot
mkdir -p /newroot/bin /newroot/proc /newroot/sys /newroot/dev /newroot/lib/firmware
cp /bin/busybox /newroot/bin/busybox
cp /report /newroot/report
/usr/lib/pippin/vendorfw-load handoff /newroot
dmesg | grep 'pippin:' | sed 's/^/PIPPIN-KLOG: /'
mount --move /proc /newroot/proc
mount --move /sys /newroot/sys
mount --move /dev /newroot/dev
exec switch_root /newroot /bin/busybox sh /report
"""

#: /report in the new root: every manifest entry, checked against the manifest's hash.
REPORT = """/bin/busybox --install -s /bin
fw=/lib/firmware/vendor
n=0
good=0
if [ -f "$fw/.vendorfw.manifest" ]; then
    while read -r kind name a b; do
        case "$kind" in
            FILE) want=$b ;;
            LINK) want=$(sed -n "s|^FILE $a SHA256 ||p" "$fw/.vendorfw.manifest") ;;
            *) continue ;;
        esac
        n=$((n + 1))
        if [ -f "$fw/$name" ]; then
            sum=$(sha256sum "$fw/$name" | cut -d' ' -f1)
            st=bad
            [ "$sum" = "$want" ] && st=ok && good=$((good + 1))
            echo "PIPPIN-FW: $st $name $(wc -c < "$fw/$name") $sum"
        else
            echo "PIPPIN-FW: missing $name - -"
        fi
    done < "$fw/.vendorfw.manifest"
fi
echo "PIPPIN-FW-COUNT: $n $good"
echo PIPPIN-DEMO-DONE
poweroff -f
"""


@dataclass(frozen=True, slots=True)
class KernelAssets:
    """scripts/fetch-test-assets output: a Debian arm64 kernel, its modules and busybox."""

    image: Path
    version: str
    modules: Path  # lib/modules/<version>
    busybox: Path

    @classmethod
    def from_dir(cls, assets: Path) -> KernelAssets:
        try:
            version = (assets / "kernel-version").read_text().strip()
        except OSError as exc:
            raise PippinError(f"no kernel in {assets}: {exc.strerror}",
                              hint="run scripts/fetch-test-assets") from exc
        return cls(assets / "Image", version, assets / "lib" / "modules" / version,
                   assets / "busybox")


def module_closure(modules_dir: Path, names: Iterable[str]) -> list[tuple[str, list[str]]]:
    """(relative path, dependencies) of the named modules and what they need, dependencies
    first, from ``modules.dep``."""
    deps: dict[str, list[str]] = {}
    by_name: dict[str, str] = {}
    try:
        text = (modules_dir / "modules.dep").read_text()
    except OSError as exc:
        raise PippinError(f"cannot read {modules_dir / 'modules.dep'}: {exc.strerror}") from exc
    for line in text.splitlines():
        mod, _, rest = line.partition(":")
        deps[mod] = rest.split()
        by_name[Path(mod).name.removesuffix(".ko").replace("-", "_")] = mod
    order: list[str] = []

    def visit(mod: str) -> None:
        if mod not in order:
            for d in deps.get(mod, []):
                visit(d)
            order.append(mod)

    for n in names:
        key = n.replace("-", "_")
        if key not in by_name:
            raise PippinError(f"module {n} is not in {modules_dir / 'modules.dep'}")
        visit(by_name[key])
    return [(m, deps[m]) for m in order]


def newc(entries: Sequence[tuple[str, int, bytes]]) -> bytes:
    """A newc cpio archive of (name, mode, data) entries (a symlink's data is its target)."""
    out = bytearray()

    def add(name: str, mode: int, data: bytes, ino: int) -> None:
        raw = name.encode() + b"\0"
        fields = (ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(raw), 0)
        out.extend(b"070701" + b"".join(b"%08X" % f for f in fields) + raw)
        out.extend(bytes(-len(out) % 4))
        out.extend(data)
        out.extend(bytes(-len(out) % 4))

    for i, (name, mode, data) in enumerate(entries, start=1):
        add(name, mode, data, i)
    add("TRAILER!!!", 0, b"", 0)
    return bytes(out)


def tree_cpio(files: dict[str, tuple[int, bytes]]) -> bytes:
    """newc archive of ``files`` (path → (mode, data)), each parent directory first."""
    d = stat.S_IFDIR | 0o755
    entries: list[tuple[str, int, bytes]] = []
    seen: set[str] = set()
    for path in sorted(files):
        parts = path.split("/")
        for i in range(1, len(parts)):
            parent = "/".join(parts[:i])
            if parent not in seen:
                seen.add(parent)
                entries.append((parent, d, b""))
        if path not in seen:
            seen.add(path)
            entries.append((path, *files[path]))
    return newc(entries)


def guest_initramfs(assets: KernelAssets, hooks: Path, *, who: str,
                    extra: dict[str, tuple[int, bytes]] | None = None) -> bytes:
    """The demo guest's initramfs (newc, uncompressed): busybox, the hook core with a
    ``vendorfw.conf`` naming QEMU's storage modules, those modules, /init and /report;
    ``extra`` files (path → (mode, data)) on top (the benchmark's counter reader)."""
    x, f = stat.S_IFREG | 0o755, stat.S_IFREG | 0o644
    d = stat.S_IFDIR | 0o755
    try:
        files: dict[str, tuple[int, bytes]] = {
            "bin/busybox": (x, assets.busybox.read_bytes()),
            "bin/sh": (stat.S_IFLNK | 0o777, b"busybox"),
            "init": (x, INIT.replace("@WHO@", who).replace("@LOADER@", LOADER_GUID).encode()),
            "report": (x, REPORT.encode()),
            "etc/pippin/vendorfw.conf": (
                f, b'VENDORFW_MODULES="virtio_mmio virtio_blk vfat"\nVENDORFW_WAIT=5\n'),
        }
        for name in HOOK_FILES:
            files[f"usr/lib/pippin/{name}"] = (x, (hooks / "common" / name).read_bytes())
        mods = module_closure(assets.modules, GUEST_MODULES)
        base = f"lib/modules/{assets.version}"
        for rel, _deps in mods:
            files[f"{base}/{rel}"] = (f, (assets.modules / rel).read_bytes())
    except OSError as exc:
        raise PippinError(f"cannot read the demo guest's inputs: {exc}",
                          hint="run scripts/fetch-test-assets") from exc
    files[f"{base}/modules.dep"] = (
        f, "".join(f"{m}: {' '.join(dd)}\n".replace(" \n", "\n") for m, dd in mods).encode())
    files.update(extra or {})
    for mount_point in ("dev", "proc", "sys", "run", "tmp", "newroot"):
        files[mount_point] = (d, b"")
    return tree_cpio(files)
