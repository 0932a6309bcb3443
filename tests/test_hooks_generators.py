"""`vendorfw install-hooks` and the generator adapters: files land where each generator looks,
and real dracut and initramfs-tools images built from the installed files carry the core,
its tools, the storage/vfat/NLS modules and the hooks at the right points.

The images are built from the Debian arm64 kernel's modules (the test assets) on this host,
so their programs are the host's: they are inspected, not booted (the core itself is booted
in test_hooks_qemu.py). mkinitcpio is not packaged in Debian: its hooks are checked by
sourcing them in bash against recorders of its build API.
"""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from tests.conftest import require_tool
from tests.support import fakeroot, hookenv, qemu
from vendorfw import cli, hooks

KMODS = ("virtio_blk", "vfat", "nls_cp437", "nls_ascii", "nls_utf8")


@pytest.fixture
def staged(tmp_path):
    prefix = tmp_path / "prefix"
    hooks.install_hooks(prefix)
    return prefix


def _list_cpio(img: Path) -> set[str]:
    out = subprocess.run(["bsdtar", "-tf", str(img)], check=True, capture_output=True,
                         text=True).stdout
    return {line.removeprefix("./").rstrip("/") for line in out.splitlines()}


# ---- install-hooks -----------------------------------------------------------------------

def test_install_hooks_places_every_file(tmp_path, capsys):
    prefix = tmp_path / "p"
    assert cli.main(["install-hooks", "--prefix", str(prefix)]) == 0
    out = capsys.readouterr()
    for f in hooks.HOOK_FILES:
        dest = prefix / f.dest
        assert dest.read_bytes() == (hookenv.HOOKS / f.source).read_bytes()
        assert stat.S_IMODE(dest.stat().st_mode) == f.mode, f.dest
        assert str(dest) in out.out
    assert (prefix / "lib/firmware/vendor").is_dir()
    assert "initramfs-tools: next, update-initramfs -u" in out.err
    # every adapter file in the repository is installed by something
    shipped = {str(p.relative_to(hookenv.HOOKS)) for p in hookenv.HOOKS.rglob("*")
               if p.is_file() and p.name != "README.md"}
    assert shipped == {f.source for f in hooks.HOOK_FILES}


def test_install_hooks_is_idempotent_and_selective(tmp_path):
    prefix = tmp_path / "p"
    first = hooks.install_hooks(prefix, [hooks.Generator.DRACUT])
    again = hooks.install_hooks(prefix, [hooks.Generator.DRACUT])
    assert first == again
    assert sorted(str(p.relative_to(prefix)) for p in first) == sorted(
        f.dest for f in hooks.HOOK_FILES if f.generator in ("common", "dracut"))
    assert not (prefix / "etc").exists()
    assert [p.name for p in (prefix / hooks._DRACUT).iterdir() if p.name.startswith(".")] == []


def test_install_hooks_dry_run_writes_nothing(tmp_path, capsys):
    prefix = tmp_path / "p"
    assert cli.main(["install-hooks", "--prefix", str(prefix), "--generator", "grub",
                     "--dry-run"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [f"would write {prefix / f.dest}" for f in hooks.HOOK_FILES
                   if f.generator in ("common", "grub")]
    assert not prefix.exists()


def test_install_hooks_missing_source_writes_nothing(tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    (src / "common").mkdir()
    (src / "common" / "vendorfw-load").write_text("#!/bin/sh\n")
    prefix = tmp_path / "p"
    rc = cli.main(["install-hooks", "--prefix", str(prefix), "--from", str(src)])
    err = capsys.readouterr().err
    assert rc == 1
    assert err.startswith(f"vendorfw: error: hook file {src}/common/vendorfw-lib.sh is unreadable")
    assert not prefix.exists()


def test_install_hooks_unwritable_prefix(tmp_path, capsys):
    prefix = tmp_path / "p"
    prefix.mkdir()
    (prefix / "usr").write_text("")  # where a directory must go
    rc = cli.main(["install-hooks", "--prefix", str(prefix)])
    err = capsys.readouterr().err
    assert rc == 1
    assert "vendorfw: error: cannot install the initramfs hooks into" in err
    assert "Traceback" not in err


def test_core_tool_list_is_what_the_unit_tests_allow():
    """The dash unit tests run with exactly these programs on PATH, so an adapter that
    installs pippin_tools installs everything the core needs."""
    out = subprocess.run(["dash", "-c", f'. "{hookenv.COMMON}/vendorfw-lib.sh"; pippin_tools'],
                         check=True, capture_output=True, text=True).stdout.split()
    assert sorted(out) == sorted(fakeroot.TOOLS + fakeroot.SHIMMED)


# ---- dracut --------------------------------------------------------------------------------

def test_dracut_image_carries_the_module(tmp_path, staged, test_assets):
    dracut = require_tool("dracut")
    base = tmp_path / "dracut"
    (base / "modules.d").mkdir(parents=True)
    for entry in Path("/usr/lib/dracut").iterdir():
        if entry.name != "modules.d":
            (base / entry.name).symlink_to(entry)
    for mod in Path("/usr/lib/dracut/modules.d").iterdir():
        (base / "modules.d" / mod.name).symlink_to(mod)
    (base / "modules.d" / "91pippin-vendorfw").symlink_to(staged / hooks._DRACUT)
    (tmp_path / "conf.d").mkdir()
    k = qemu.kernel_assets()
    img = tmp_path / "initrd.img"
    env = dict(os.environ, dracutbasedir=str(base), PIPPIN_LIBDIR=str(staged / "usr/lib/pippin"),
               VENDORFW_MODULES="apple-mailbox nvme-apple virtio_blk vfat")
    res = subprocess.run(
        [dracut, "--conf", "/dev/null", "--confdir", str(tmp_path / "conf.d"), "--no-hostonly",
         "--kver", k.version, "--kmoddir", str(k.modules), "-m", "base pippin-vendorfw",
         "--no-compress", "--no-early-microcode", "--force", "--tmpdir", str(tmp_path),
         str(img)], env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    names = _list_cpio(img)
    assert {"usr/lib/pippin/vendorfw-load", "usr/lib/pippin/vendorfw-lib.sh",
            "usr/lib/dracut/hooks/pre-udev/10-vendorfw-early.sh",
            "usr/lib/dracut/hooks/cleanup/90-vendorfw-handoff.sh"} <= names
    for tool in fakeroot.TOOLS + fakeroot.SHIMMED:
        assert any(n.endswith(f"bin/{tool}") for n in names), tool
    for mod in KMODS:
        assert any(n.endswith(f"/{mod}.ko") for n in names), mod


# ---- initramfs-tools -----------------------------------------------------------------------

# mkinitramfs reads /lib/modules/<ver> and /boot/config-<ver> of the running system. Give it
# the test kernel's through a private mount namespace and a chroot whose /usr is an overlay:
# nothing is written outside the test's directory.
CHROOT = r"""set -eu
R=$1 K=$2 V=$3; shift 3
mkdir -p "$R/usr" "$R/etc" "$R/boot" "$R/tmp" "$R/dev" "$R/proc" "$R/var/tmp" "$R/ov/u" "$R/ov/w"
mount -t overlay overlay -o "lowerdir=/usr,upperdir=$R/ov/u,workdir=$R/ov/w" "$R/usr"
mkdir -p "$R/usr/lib/modules/$V"
mount --bind "$K" "$R/usr/lib/modules/$V"
mount --bind /etc "$R/etc"
mount --rbind /dev "$R/dev"
mount -t proc proc "$R/proc"
mount --bind /tmp "$R/tmp"
for d in bin lib lib64 sbin; do [ -e "/$d" ] && ln -s "usr/$d" "$R/$d"; done
printf 'CONFIG_RD_GZIP=y\n' >"$R/boot/config-$V"
exec chroot "$R" "$@"
"""


def test_initramfs_tools_image_runs_before_udev(tmp_path, staged, test_assets):
    mkinitramfs = require_tool("mkinitramfs")
    if not str(tmp_path).startswith("/tmp/"):
        pytest.fail("the chroot shares /tmp only: run pytest with the default basetemp")
    conf = staged / "etc/initramfs-tools"
    (conf / "initramfs.conf").write_text("MODULES=list\nBUSYBOX=auto\nCOMPRESS=gzip\n")
    k = qemu.kernel_assets()
    img = tmp_path / "initrd.img"
    env = dict(os.environ, PIPPIN_LIBDIR=str(staged / "usr/lib/pippin"),
               VENDORFW_MODULES="virtio_blk vfat")
    res = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", CHROOT, "chroot",
         str(tmp_path / "root"), str(k.modules), k.version,
         mkinitramfs, "-d", str(conf), "-o", str(img), k.version],
        env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    out = tmp_path / "unpacked"
    subprocess.run(["unmkinitramfs", str(img), str(out)], check=True, capture_output=True)
    names = {str(p.relative_to(out)) for p in out.rglob("*")}
    assert {"usr/lib/pippin/vendorfw-load", "usr/lib/pippin/vendorfw-lib.sh",
            "scripts/init-top/pippin-vendorfw", "scripts/init-bottom/pippin-vendorfw"} <= names
    for tool in ("cpio", "awk", "od", "dd", "mount", "modprobe"):
        assert any(n.endswith(f"bin/{tool}") for n in names), tool
    for mod in KMODS:
        assert any(n.endswith(f"/{mod}.ko") for n in names), mod
    order = [ln.split()[0].rsplit("/", 1)[1] for ln in
             (out / "scripts/init-top/ORDER").read_text().splitlines() if ln.startswith("/")]
    assert "udev" in order
    assert order.index("pippin-vendorfw") < order.index("udev"), order
    assert "/scripts/init-bottom/pippin-vendorfw" in (out / "scripts/init-bottom/ORDER").read_text()


# ---- mkinitcpio (not in Debian): the build API recorded -------------------------------------

def test_mkinitcpio_hook_contract(staged):
    bash = require_tool("bash")
    script = f"""
add_module() {{ echo "MODULE $1"; }}
add_binary() {{ echo "BINARY $1"; }}
add_file() {{ echo "FILE $*"; }}
add_runscript() {{ echo RUNSCRIPT; }}
. "{staged}/etc/initcpio/install/vendorfw"
build
help >/dev/null
. "{staged}/etc/initcpio/hooks/vendorfw"
type run_earlyhook run_latehook
"""
    env = {"PATH": os.environ["PATH"], "PIPPIN_LIBDIR": str(staged / "usr/lib/pippin")}
    res = subprocess.run([bash, "-c", script], env=env, capture_output=True, text=True,
                         check=True)
    lines = res.stdout.splitlines()
    assert [ln for ln in lines if ln.startswith("MODULE")] == [
        f"MODULE {m}?" for m in ("apple-mailbox", "nvme-apple", "vfat", "nls_cp437",
                                 "nls_ascii", "nls_utf8")]
    assert {ln.split()[1] for ln in lines if ln.startswith("BINARY")} == set(
        fakeroot.TOOLS + fakeroot.SHIMMED)
    assert f"FILE {staged}/usr/lib/pippin/vendorfw-load /usr/lib/pippin/vendorfw-load 755" in lines
    assert "RUNSCRIPT" in lines
    assert "/usr/lib/pippin/vendorfw-load early" in res.stdout
    assert "/usr/lib/pippin/vendorfw-load handoff /new_root" in res.stdout


def test_bug_config_modules_were_ignored_at_build_time(staged, tmp_path):
    """bug: VENDORFW_MODULES in /etc/pippin/vendorfw.conf steered the boot-time modprobe but
    not the build, so a non-Mac's storage driver (nvme) never got into the image."""
    bash = require_tool("bash")
    root = tmp_path / "hostroot"
    (root / "etc/pippin").mkdir(parents=True)
    (root / "etc/pippin/vendorfw.conf").write_text('VENDORFW_MODULES="nvme vfat"\n')
    script = f"""
add_module() {{ echo "MODULE $1"; }}
add_binary() {{ :; }}
add_file() {{ :; }}
add_runscript() {{ :; }}
. "{staged}/etc/initcpio/install/vendorfw"
build
"""
    env = {"PATH": os.environ["PATH"], "PIPPIN_LIBDIR": str(staged / "usr/lib/pippin"),
           "VENDORFW_ROOT": str(root)}
    out = subprocess.run([bash, "-c", script], env=env, capture_output=True, text=True,
                         check=True).stdout.split()
    assert [w for w in out if w != "MODULE"] == [
        "nvme?", "vfat?", "nls_cp437?", "nls_ascii?", "nls_utf8?"]
    # the build environment itself is left alone
    res = subprocess.run(["dash", "-c", f'. "{staged}/usr/lib/pippin/vendorfw-lib.sh"; '
                          'pippin_modules >/dev/null; echo "${VENDORFW_MODULES-unset}"'],
                         env=env, capture_output=True, text=True, check=True)
    assert res.stdout == "unset\n"


# ---- GRUB ------------------------------------------------------------------------------------

@pytest.mark.parametrize("shell", ["dash", "busybox"])
def test_grub_snippet_appends_once(staged, shell):
    cfg = staged / "etc/default/grub.d/pippin-vendorfw.cfg"
    stock = "intel-uc.img intel-ucode.img amd-uc.img amd-ucode.img early_ucode.cpio microcode.cpio"
    script = (f'GRUB_EARLY_INITRD_LINUX_STOCK="{stock}"; . "{cfg}"; . "{cfg}"; '
              'printf "%s\\n" "$GRUB_EARLY_INITRD_LINUX_STOCK"')
    argv = ["busybox", "sh", "-c", script] if shell == "busybox" else ["dash", "-c", script]
    out = subprocess.run(argv, check=True, capture_output=True, text=True).stdout.split()
    assert out == [*stock.split(), "vendorfw/firmware.cpio"]
