#!/bin/sh
# Pippin vendor-firmware loader, library part (formats.md §9). Functions only: sourced by
# vendorfw-load. POSIX sh + `local`; runs under dash, busybox ash and bash.
#
# Every path goes through VENDORFW_ROOT (default: empty = the real root) so the tests can
# run the whole thing against a fake root. Nothing here prints except pippin_log.

# pippin_tools: the programs the core runs besides shell builtins. Every adapter installs
# them into the image (blkid too, when the build host has it; it is optional).
pippin_tools() {
    printf '%s\n' cat tr head grep sed awk od dd cpio mkdir rm rmdir mv cp ln find wc sleep \
        mount umount modprobe
}

# pippin_modules: the kernel modules an image needs: VENDORFW_MODULES (storage + vfat) and
# the NLS tables vfat mounts need on kernels that build them as modules. At build time, as
# at boot, /etc/pippin/vendorfw.conf overrides the environment (read in a subshell here, so
# the generator's own shell is left alone).
pippin_modules() (
    pippin_read_conf
    # shellcheck disable=SC2086 # a word list, split on purpose
    printf '%s\n' ${VENDORFW_MODULES-apple-mailbox nvme-apple vfat} nls_cp437 nls_ascii nls_utf8
)

# pippin_read_conf: source /etc/pippin/vendorfw.conf (sh assignments, written by the admin)
# when it is there. It is tried in a subshell first: a syntax error in a sourced file ends
# the whole script, so a broken file is logged and skipped instead.
pippin_read_conf() {
    local conf
    conf=${VENDORFW_ROOT-}/etc/pippin/vendorfw.conf
    [ -r "$conf" ] || return 0
    # shellcheck source=/dev/null # written by the admin
    if ! (. "$conf"; exit 0) >/dev/null 2>&1; then
        pippin_log err "$conf is not valid sh: ignored"
        return 1
    fi
    # shellcheck source=/dev/null
    . "$conf"
}

# pippin_log LEVEL MSG...: one line "<prio>pippin: msg" to the kernel log when writable,
# otherwise to stderr. LEVEL is err, warn, notice or info.
pippin_log() {
    local prio kmsg
    case "$1" in
        err) prio=3 ;;
        warn) prio=4 ;;
        notice) prio=5 ;;
        *) prio=6 ;;
    esac
    shift
    kmsg=${VENDORFW_KMSG:-/dev/kmsg}
    if [ -w "$kmsg" ] && printf '<%s>pippin: %s\n' "$prio" "$*" 2>/dev/null >>"$kmsg"; then
        return 0
    fi
    printf '<%s>pippin: %s\n' "$prio" "$*" >&2
}

# pippin_die MSG...: log an error and return 1 (callers do `... || return 1`; boot goes on).
pippin_die() {
    pippin_log err "$@"
    return 1
}

# pippin_getarg NAME: print the value of NAME=value from the kernel command line (last one
# wins); a bare NAME prints nothing. Returns 1 when NAME is absent.
pippin_getarg() {
    local arg found value
    found=1
    value=""
    [ -r "$VENDORFW_ROOT/proc/cmdline" ] || return 1
    # shellcheck disable=SC2013 # the command line is one line of words: split it
    for arg in $(cat "$VENDORFW_ROOT/proc/cmdline"); do
        case "$arg" in
            "$1") found=0 value="" ;;
            "$1"=*) found=0 value=${arg#*=} ;;
        esac
    done
    [ "$found" = 0 ] || return 1
    printf '%s\n' "$value"
}

# pippin_uint NAME VALUE DEFAULT: print VALUE as a decimal number (leading zeros dropped,
# at most 6 digits), else log that DEFAULT is used and print it. Shell arithmetic on a bad
# value would abort the whole script, perhaps with the ESP still mounted.
pippin_uint() {
    local v
    v=$2
    while :; do
        case "$v" in
            0?*) v=${v#0} ;;
            *) break ;;
        esac
    done
    case "$v" in
        '' | *[!0-9]* | ???????*)
            pippin_log warn "$1='$2' is not a whole number: using $3"
            v=$3
            ;;
    esac
    printf '%s\n' "$v"
}

# pippin_valid_partuuid STRING: true when STRING is a lowercase GPT unique GUID, not zero.
pippin_valid_partuuid() {
    local h
    h='[0-9a-f]'
    # shellcheck disable=SC2254 # $h is a pattern on purpose
    case "$1" in
        00000000-0000-0000-0000-000000000000) return 1 ;;
        $h$h$h$h$h$h$h$h-$h$h$h$h-$h$h$h$h-$h$h$h$h-$h$h$h$h$h$h$h$h$h$h$h$h) return 0 ;;
    esac
    return 1
}

# pippin_esp_partuuid: print the ESP PARTUUID, lowercase: `vendorfw.esp=` on the kernel
# command line, else /chosen/asahi,efi-system-partition (a NUL-terminated string).
pippin_esp_partuuid() {
    local prop uuid
    if ! uuid=$(pippin_getarg vendorfw.esp); then
        prop="${VENDORFW_DT:-$VENDORFW_ROOT/proc/device-tree}/chosen/asahi,efi-system-partition"
        [ -r "$prop" ] || pippin_die "no $prop: firmware will not be loaded" || return 1
        # at most 64 bytes: the property is untrusted input
        uuid=$(head -c 64 "$prop" | tr -d '\000')
    fi
    uuid=$(printf '%s\n' "$uuid" | tr 'A-F' 'a-f')
    pippin_valid_partuuid "$uuid" ||
        pippin_die "ESP PARTUUID '$uuid' is not a GUID: firmware will not be loaded" || return 1
    printf '%s\n' "$uuid"
}

# pippin_load_modules: the storage + filesystem drivers (VENDORFW_MODULES), then the NLS
# tables vfat needs on kernels whose FAT defaults use them (Debian: cp437, ascii, utf8).
pippin_load_modules() {
    local m
    command -v modprobe >/dev/null 2>&1 || {
        pippin_log warn "no modprobe: relying on built-in drivers"
        return 0
    }
    for m in ${VENDORFW_MODULES-apple-mailbox nvme-apple vfat}; do
        modprobe "$m" >/dev/null 2>&1 || pippin_log info "module $m not loaded (built in or absent)"
    done
    for m in nls_cp437 nls_ascii nls_utf8; do
        modprobe "$m" >/dev/null 2>&1 || :
    done
}

# pippin_gpt_index DEVICE LOGICAL_BLOCK_SIZE UUID: print the 1-based number of the GPT
# entry on DEVICE whose unique GUID is UUID. Reads the header at LBA 1 and the entry array
# with dd + od; GUIDs are stored mixed-endian (first three fields little-endian). od prints
# 16 bytes a line, so with entries a multiple of 16 bytes long each GUID is one whole line:
# awk compares lines instead of storing every byte (which took about a second per disk in
# busybox awk under QEMU).
pippin_gpt_index() {
    local dev lbs want hdr lba n esz blocks
    dev=$1 lbs=$2 want=$3
    hdr=$(dd if="$dev" bs="$lbs" skip=1 count=1 2>/dev/null | od -A n -v -t x1 -N 92 | awk '
        function le(o, n,    v, i) {
            v = 0
            for (i = n - 1; i >= 0; i--) v = v * 256 + hex(b[o + i])
            return v
        }
        function hex(s,    v, i) {
            v = 0
            for (i = 1; i <= length(s); i++)
                v = v * 16 + index("0123456789abcdef", substr(s, i, 1)) - 1
            return v
        }
        { for (i = 1; i <= NF; i++) b[c++] = $i }
        END {
            if (c < 92) exit 1
            sig = ""
            for (i = 0; i < 8; i++) sig = sig b[i]
            if (sig != "4546492050415254") exit 1  # "EFI PART"
            printf "%.0f %d %d\n", le(72, 8), le(80, 4), le(84, 4)
        }') || return 1
    # shellcheck disable=SC2086 # three numbers, split on purpose
    set -- $hdr
    lba=$1 n=$2 esz=$3
    # untrusted numbers: keep the read small and the arithmetic in range
    [ "$n" -ge 1 ] && [ "$n" -le 1024 ] && [ "$esz" -ge 128 ] && [ "$esz" -le 4096 ] &&
        [ $((esz % 16)) = 0 ] && [ "$lba" -ge 2 ] && [ "$lba" -le 1048576 ] || return 1
    blocks=$(((n * esz + lbs - 1) / lbs))
    dd if="$dev" bs="$lbs" skip="$lba" count="$blocks" 2>/dev/null | od -A n -v -t x1 |
        awk -v want="$want" -v n="$n" -v per="$((esz / 16))" '
        BEGIN {
            # the od line of UUID as stored: bytes 4 3 2 1 6 5 8 7 9 .. 16
            g = want
            gsub("-", "", g)
            split("4 3 2 1 6 5 8 7 9 10 11 12 13 14 15 16", order, " ")
            for (i = 1; i <= 16; i++) pat = pat " " substr(g, order[i] * 2 - 1, 2)
            zero = " 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00"
        }
        # line 0 of an entry: its type GUID (all zero: unused); line 1: its unique GUID
        (NR - 1) % per == 0 { type = $0; next }
        (NR - 1) % per == 1 && $0 == pat && type != zero && int((NR - 1) / per) < n {
            print int((NR - 1) / per) + 1
            found = 1
            exit
        }
        END { exit !found }'
}

# pippin_uevent_get FILE KEY: print KEY's value from a sysfs uevent file.
pippin_uevent_get() {
    sed -n "s/^$2=//p" "$1" 2>/dev/null
}

# pippin_scan_gpt UUID: find the partition by reading every disk's GPT (no util-linux:
# uevent carries PARTNAME but not PARTUUID). Prints the device node.
pippin_scan_gpt() {
    local sys ev name lbs idx part
    sys=$VENDORFW_ROOT/sys/class/block
    for ev in "$sys"/*/uevent; do
        [ -f "$ev" ] || continue
        [ "$(pippin_uevent_get "$ev" DEVTYPE)" = disk ] || continue
        name=$(pippin_uevent_get "$ev" DEVNAME)
        { [ -n "$name" ] && [ -r "$VENDORFW_ROOT/dev/$name" ]; } || continue
        lbs=$(cat "${ev%/uevent}/queue/logical_block_size" 2>/dev/null) || lbs=512
        case "$lbs" in 512 | 1024 | 2048 | 4096) ;; *) lbs=512 ;; esac
        idx=$(pippin_gpt_index "$VENDORFW_ROOT/dev/$name" "$lbs" "$1") || continue
        for part in "${ev%/uevent}"/*/partition; do
            { [ -f "$part" ] && [ "$(cat "$part")" = "$idx" ]; } || continue
            name=$(pippin_uevent_get "${part%/partition}/uevent" DEVNAME)
            { [ -n "$name" ] && [ -e "$VENDORFW_ROOT/dev/$name" ]; } || continue
            printf '%s\n' "$VENDORFW_ROOT/dev/$name"
            return 0
        done
    done
    return 1
}

# pippin_find_partuuid UUID: print the device node of the partition, trying
# /dev/disk/by-partuuid (udev), util-linux blkid, then a GPT scan.
pippin_find_partuuid() {
    local dev
    dev=$VENDORFW_ROOT/dev/disk/by-partuuid/$1
    if [ -e "$dev" ]; then
        printf '%s\n' "$dev"
        return 0
    fi
    # busybox blkid ignores -t; accept only an answer that names an existing node
    if command -v blkid >/dev/null 2>&1; then
        dev=$(blkid -l -o device -t "PARTUUID=$1" 2>/dev/null) &&
            [ -n "$dev" ] && [ -e "$VENDORFW_ROOT$dev" ] && {
            printf '%s\n' "$VENDORFW_ROOT$dev"
            return 0
        }
    fi
    pippin_scan_gpt "$1"
}

# pippin_centisec: the time since boot in hundredths of a second, from /proc/uptime.
pippin_centisec() {
    local t rest frac
    [ -r "$VENDORFW_ROOT/proc/uptime" ] || return 1
    read -r t rest <"$VENDORFW_ROOT/proc/uptime" || return 1
    case "$t" in
        *[!0-9.]* | .*) return 1 ;;
        *.[0-9][0-9]) ;;
        *) return 1 ;;
    esac
    frac=${t#*.}
    # digit by digit: "08" would be a bad octal number to the shell
    printf '%s\n' "$((${t%.*} * 100 + ${frac%?} * 10 + ${frac#?}))"
}

# pippin_wait_partuuid UUID: resolve UUID, retrying for up to VENDORFW_WAIT seconds while
# the storage driver probes. Prints the device node. The deadline is on the clock when
# /proc/uptime is there, since a lookup (a GPT scan of every disk) takes time of its own;
# otherwise the polls are counted.
pippin_wait_partuuid() {
    local tries now end
    tries=$((VENDORFW_WAIT * 10))
    end=""
    if now=$(pippin_centisec); then
        end=$((now + VENDORFW_WAIT * 100))
    fi
    while :; do
        pippin_find_partuuid "$1" && return 0
        if [ -n "$end" ] && now=$(pippin_centisec); then
            [ "$now" -lt "$end" ] || break
        else
            [ "$tries" -gt 0 ] || break
        fi
        if sleep 0.1 2>/dev/null; then
            tries=$((tries - 1))
        else # a sleep without fractions
            sleep 1
            tries=$((tries - 10))
        fi
    done
    pippin_die "ESP $1 did not appear within ${VENDORFW_WAIT}s: firmware will not be loaded"
}

# pippin_check_listing CPIO: every member is vendorfw or under vendorfw/, no "..", only
# files and directories, and the archive reads to its trailer. Keeps a hostile ESP from
# writing outside the temp dir: cpio -i writes a later member through an earlier symlink.
pippin_check_listing() {
    # a cpio failure (a truncated or garbled archive) adds a line that fails the check
    { cpio -t <"$1" 2>/dev/null || echo /; } | awk '
        $0 != "vendorfw" && substr($0, 1, 9) != "vendorfw/" { bad = 1 }
        $0 ~ /(^|\/)\.\.(\/|$)/ { bad = 1 }
        END { exit bad }' || return 1
    # `ls -l` style lines in GNU and busybox cpio alike: the type is the first character
    # (a name with a newline makes a line that fails too)
    { cpio -t -v <"$1" 2>/dev/null || echo /; } | awk '!/^[-d]/ { bad = 1 } END { exit bad }'
}

# pippin_check_tree DIR: DIR/vendorfw holds only files and directories, and every file the
# manifest names is there (catches a truncated or corrupt archive). One find and one awk:
# a shell `read` loop costs about as much as the unpack itself (one syscall per byte).
pippin_check_tree() {
    local top
    top=$1/vendorfw
    [ -f "$top/.vendorfw.manifest" ] || return 1
    [ -z "$(find "$top" ! -type f ! -type d | head -n 1)" ] || return 1
    # the manifest first (only FILE and LINK lines), then the file list on stdin; each name
    # the manifest gives must be a file
    (cd "$top" && find . -type f) | awk -v m="$top/.vendorfw.manifest" '
        FILENAME == m {
            if (($1 == "FILE" || $1 == "LINK") && NF >= 2) want[++n] = $2
            else bad = 1
            next
        }
        { have[substr($0, 3)] = 1 }
        END {
            for (i = 1; i <= n; i++) if (!(want[i] in have)) bad = 1
            exit bad
        }' "$top/.vendorfw.manifest" -
}

# pippin_extract CPIO: unpack into a temp dir next to /vendorfw, check, then move into place.
pippin_extract() {
    local tmp rc
    tmp=$VENDORFW_ROOT/run/.vendorfw-new.$$
    rm -rf "$tmp" 2>/dev/null
    mkdir -p "$tmp" 2>/dev/null || pippin_die "cannot create $tmp" || return 1
    rc=0
    if ! pippin_check_listing "$1"; then
        pippin_log err "$1 is corrupt or has members outside vendorfw/: firmware not loaded"
        rc=1
    elif ! (cd "$tmp" && cpio -i -d <"$1" 2>/dev/null); then
        pippin_log err "cannot unpack $1: firmware not loaded"
        rc=1
    elif ! pippin_check_tree "$tmp"; then
        pippin_log err "$1 does not match its manifest: firmware not loaded"
        rc=1
    elif ! mv "$tmp/vendorfw" "$VENDORFW_ROOT/vendorfw" 2>/dev/null; then
        pippin_log err "cannot move the firmware to $VENDORFW_ROOT/vendorfw"
        rc=1
    fi
    rm -rf "$tmp" 2>/dev/null
    return "$rc"
}

# pippin_link_initramfs: /lib/firmware/vendor -> /vendorfw inside the initramfs, so drivers
# loaded before the root switch find the files too.
pippin_link_initramfs() {
    local fw
    fw=$VENDORFW_ROOT/lib/firmware
    if [ -e "$fw/vendor" ] || [ -L "$fw/vendor" ]; then
        return 0
    fi
    { mkdir -p "$fw" && ln -s /vendorfw "$fw/vendor"; } 2>/dev/null ||
        pippin_log warn "cannot link $fw/vendor to /vendorfw"
}

# pippin_count: number of files under /vendorfw (for the log line).
pippin_count() {
    find "$VENDORFW_ROOT/vendorfw" -type f ! -name .vendorfw.manifest | wc -l | tr -d ' '
}
