#!/bin/sh
# dracut module: Pippin vendor firmware (formats.md §9). Build-time glue; the run-time logic
# is /usr/lib/pippin/vendorfw-load (vendorfw install-hooks; PIPPIN_LIBDIR overrides).
# shellcheck disable=SC2154 # moddir is set by dracut before it sources this file

check() { return 0; }

depends() { return 0; }

installkernel() {
    # shellcheck source=../../common/vendorfw-lib.sh
    . "${PIPPIN_LIBDIR:-/usr/lib/pippin}/vendorfw-lib.sh"
    # shellcheck disable=SC2046 # a word list, split on purpose
    hostonly='' instmods $(pippin_modules)
}

install() {
    local lib
    lib=${PIPPIN_LIBDIR:-/usr/lib/pippin}
    # shellcheck source=../../common/vendorfw-lib.sh
    . "$lib/vendorfw-lib.sh"
    # shellcheck disable=SC2046 # a word list, split on purpose
    inst_multiple $(pippin_tools)
    inst_multiple -o blkid /etc/pippin/vendorfw.conf
    inst_simple "$lib/vendorfw-lib.sh" /usr/lib/pippin/vendorfw-lib.sh
    inst_script "$lib/vendorfw-load" /usr/lib/pippin/vendorfw-load
    inst_hook pre-udev 10 "$moddir/vendorfw-early.sh"
    inst_hook cleanup 90 "$moddir/vendorfw-handoff.sh"
}
