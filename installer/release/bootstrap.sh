#!/bin/sh
trap 'printf "%s\n" "pippin: this install script is incomplete (cut short while downloading); nothing was run, fetch it again" >&2; exit 1' EXIT
# shellcheck shell=sh
# Pippin @PIPPIN_VERSION@ bootstrap, written by scripts/make-release.
#
#   curl -fsSL @PIPPIN_BASE_URL@/install | sh              (as root: | sudo sh)
#   curl -fsSL @PIPPIN_BASE_URL@/install | sh -s -- ARGS   (ARGS go to `pippin install`)
#
# It downloads the release bundle into a fresh temporary directory, checks its size and
# SHA-256 against the values written here at build time (against PIPPIN_BASE/latest when
# PIPPIN_BASE names another server), installs the bundle's wheels there without touching
# the network again, runs `pippin install` (under `caffeinate -dis` when there is one) and
# removes the temporary directory whatever happens.
#
# Environment: PIPPIN_BASE (or INSTALLER_BASE): where `latest` and the bundle are;
# INSTALLER_DATA, REPO_BASE, IPSW_BASE: the catalog, OS packages and restore images;
# EXPERT=1: expert mode; http_proxy, https_proxy, all_proxy, no_proxy: used by curl and by
# Pippin; PIPPIN_ALLOW_NON_MAC=1: run off an Apple Silicon Mac (onto a simulated Mac).
#
# Run as a file beside `latest`, the release bundle and an offline bundle's bundle.json
# (`pippin bundle create OUT --with-installer`, e.g. `/Volumes/<stick>/install` from
# recoveryOS's Terminal), it uses those files and no network: the release bundle is copied
# and checked as above, and the install reads everything from that folder (--source).
#
# The whole program is the function below, called on the last line: a download cut short
# defines nothing and runs nothing (the trap above says so).

pippin_bootstrap() {
    trap - EXIT
    local built_base built_file built_size built_sha base file size sha tty py pipwhl \
        bundle top have rc cand failed here

    built_base='@PIPPIN_BASE_URL@'
    built_file='@PIPPIN_BUNDLE@'
    built_size='@PIPPIN_SIZE@'
    built_sha='@PIPPIN_SHA256@'

    pippin_say() {
        printf 'pippin: %s\n' "$*" >&2
    }
    # Progress only where a person watches; a refusal is always exactly one line.
    pippin_info() {
        [ -t 2 ] && printf 'pippin: %s\n' "$*" >&2
        return 0
    }
    pippin_sha256() {
        if command -v sha256sum >/dev/null 2>&1; then
            sha256sum "$1" | cut -d' ' -f1
        elif command -v shasum >/dev/null 2>&1; then
            shasum -a 256 "$1" | cut -d' ' -f1
        else
            openssl dgst -sha256 -r "$1" | cut -d' ' -f1
        fi
    }
    # pippin_get URL FILE MAXBYTES: download (or copy a local path); on failure say why in
    # one line and return 1.
    pippin_get() {
        local code rc
        case $1 in
        /*)
            cp -- "$1" "$2" 2>/dev/null || {
                pippin_say "cannot read $1"
                return 1
            }
            return 0
            ;;
        esac
        code=$(curl -sL --connect-timeout 10 --max-time 600 --retry 2 --max-filesize "$3" \
            -o "$2" -w '%{http_code}' -- "$1")
        rc=$?
        if [ "$rc" -ne 0 ]; then
            case $rc in
            63) pippin_say "cannot download $1: larger than the $3 bytes expected" ;;
            5) pippin_say "cannot download $1: could not resolve the proxy" ;;
            6) pippin_say "cannot download $1: could not resolve the host (no network?)" ;;
            7) pippin_say "cannot download $1: could not connect (no network, or the server is down)" ;;
            28) pippin_say "cannot download $1: timed out" ;;
            *) pippin_say "cannot download $1: curl exit $rc" ;;
            esac
            return 1
        fi
        if [ "$code" != 200 ]; then
            pippin_say "cannot download $1: HTTP $code"
            return 1
        fi
    }
    # pippin_field NAME FILE: the value of NAME=... in the release index.
    pippin_field() {
        sed -n "s/^$1=//p" "$2" | head -n 1
    }
    # pippin_quoted ARGS...: the arguments as one line a shell reads back the same.
    pippin_quoted() {
        local a out
        out=""
        for a in "$@"; do
            case $a in
            "" | *[!A-Za-z0-9_./:=@%+,-]*)
                a="'$(printf '%s' "$a" | sed "s/'/'\\\\''/g")'"
                ;;
            esac
            out="$out${out:+ }$a"
        done
        printf '%s' "$out"
    }

    case "$(uname -s) $(uname -m)" in
    "Darwin arm64") ;;
    Darwin\ *)
        if [ "$(sysctl -n hw.optional.arm64 2>/dev/null)" != 1 ] &&
            [ "${PIPPIN_ALLOW_NON_MAC:-}" != 1 ]; then
            pippin_say "Pippin installs onto Apple Silicon Macs; this Mac is $(uname -m) (set PIPPIN_ALLOW_NON_MAC=1 to try it on a simulated Mac)"
            return 1
        fi
        ;;
    *)
        if [ "${PIPPIN_ALLOW_NON_MAC:-}" != 1 ]; then
            pippin_say "Pippin installs onto Apple Silicon Macs, not $(uname -s) $(uname -m) (set PIPPIN_ALLOW_NON_MAC=1 to try it on a simulated Mac)"
            return 1
        fi
        ;;
    esac

    # An offline bundle with the installer: this script's own folder.
    here=""
    case $0 in
    */install) here=$(CDPATH='' cd -- "$(dirname -- "$0")" 2>/dev/null && pwd) ;;
    esac
    if [ -n "$here" ] && [ -f "$here/latest" ] && [ -f "$here/bundle.json" ]; then
        base=$here
        built_base=$here
    else
        here=""
        base=${PIPPIN_BASE:-${INSTALLER_BASE:-$built_base}}
        base=${base%/}
    fi
    if [ "$(id -u)" != 0 ]; then
        if [ -n "$here" ]; then
            pippin_say "the installer needs root; run: sudo sh $(pippin_quoted "$here/install" "$@")"
        elif [ $# -gt 0 ]; then
            pippin_say "the installer needs root; run: curl -fsSL $base/install | sudo sh -s -- $(pippin_quoted "$@")"
        else
            pippin_say "the installer needs root; run: curl -fsSL $base/install | sudo sh"
        fi
        return 1
    fi
    for have in curl tar mktemp sed; do
        [ -n "$here" ] && [ "$have" = curl ] && continue
        command -v "$have" >/dev/null 2>&1 || {
            pippin_say "$have is missing; it is needed to download and unpack Pippin"
            return 1
        }
    done

    pippin_tmp=$(mktemp -d "${TMPDIR:-/tmp}/pippin.XXXXXX") || {
        pippin_say "cannot create a temporary directory in ${TMPDIR:-/tmp}"
        return 1
    }
    # pippin_tmp is global: the EXIT trap runs after this function has returned.
    trap 'rm -rf "$pippin_tmp"' EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    trap 'exit 129' HUP

    pippin_get "$base/latest" "$pippin_tmp/latest" 65536 || return 1
    file=$(pippin_field file "$pippin_tmp/latest")
    size=$(pippin_field size "$pippin_tmp/latest")
    sha=$(pippin_field sha256 "$pippin_tmp/latest")
    case $file in
    pippin-*.tar.gz) ;;
    *) file="" ;;
    esac
    case $file$size in *[!A-Za-z0-9.+_-]*) file="" ;; esac
    case $size in "" | *[!0-9]*) file="" ;; esac
    case $sha in *[!0-9a-f]*) sha="" ;; esac
    if [ -z "$file" ] || [ ${#sha} -ne 64 ]; then
        pippin_say "$base/latest is not a Pippin release index (version, file, size, sha256); nothing was run"
        return 1
    fi
    if [ "$base" = "$built_base" ]; then
        if [ "$sha" != "$built_sha" ] || [ "$file" != "$built_file" ]; then
            pippin_say "$base/latest names $file with SHA-256 $sha, but this script was made for $built_file with $built_sha; nothing was run (fetch the install script again)"
            return 1
        fi
        size=$built_size
    fi

    pippin_info "downloading $file ($size bytes)"
    bundle="$pippin_tmp/$file"
    pippin_get "$base/$file" "$bundle" "$size" || return 1
    have=$(wc -c <"$bundle" | tr -d ' ')
    if [ "$have" != "$size" ]; then
        pippin_say "$file is $have bytes, expected $size (cut short or altered in transfer); nothing was run"
        return 1
    fi
    have=$(pippin_sha256 "$bundle")
    if [ "$have" != "$sha" ]; then
        pippin_say "$file has SHA-256 $have, expected $sha (altered in transfer or on the server); nothing was run"
        return 1
    fi

    { mkdir "$pippin_tmp/b" && tar -xzf "$bundle" -C "$pippin_tmp/b"; } || {
        pippin_say "cannot unpack $file into $pippin_tmp"
        return 1
    }
    top="$pippin_tmp/b/${file%.tar.gz}"

    pipwhl=""
    for have in "$top"/wheels/pip-*.whl; do pipwhl=$have; done
    [ -f "$pipwhl" ] || {
        pippin_say "$file holds no pip wheel"
        return 1
    }
    # The runtime: the bundle's, else the first Python >= 3.11 on PATH that the bundle has
    # wheels for (python3 may be newer than the wheels; python3.1x may then fit).
    py=""
    failed=""
    for cand in "$top/python/bin/python3" python3 python3.13 python3.12 python3.11; do
        case $cand in
        /*) [ -x "$cand" ] || continue ;;
        *) cand=$(command -v "$cand") || continue ;;
        esac
        "$cand" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || continue
        pippin_info "installing Pippin with $cand"
        rm -rf "$pippin_tmp/site"
        if PIP_CONFIG_FILE=/dev/null PYTHONNOUSERSITE=1 "$cand" "$pipwhl/pip" install -q \
            --root-user-action=ignore --disable-pip-version-check --no-index --find-links "$top/wheels" \
            --only-binary=:all: --no-compile --no-warn-script-location \
            --target "$pippin_tmp/site" "pippin==@PIPPIN_VERSION@" 2>"$pippin_tmp/pip.log"; then
            py=$cand
            break
        fi
        failed="$cand: $(tail -n 1 "$pippin_tmp/pip.log")"
    done
    if [ -z "$py" ] && [ -n "$failed" ]; then
        pippin_say "cannot install the bundle's wheels with any Python here; $failed"
        return 1
    elif [ -z "$py" ]; then
        have=$(python3 -c 'import platform; print(platform.python_version())' 2>/dev/null)
        pippin_say "Pippin needs Python 3.11 or newer: this bundle carries no runtime for this machine and python3 is ${have:-missing} (install Python 3.11+, e.g. from python.org)"
        return 1
    fi

    if [ -n "$here" ]; then
        set -- --source "$here" "$@"
        pippin_info "installing from the bundle in $here (no network)"
    fi
    case ${EXPERT:-0} in
    0 | "" | no | false) set -- install "$@" ;;
    *) set -- install --expert "$@" ;;
    esac

    # The installer's questions come from the terminal, not from this script's pipe.
    tty=/dev/null
    if (: </dev/tty) 2>/dev/null; then tty=/dev/tty; fi
    if command -v caffeinate >/dev/null 2>&1; then
        set -- caffeinate -dis "$py" -m installer.cli "$@"
    else
        set -- "$py" -m installer.cli "$@"
    fi
    PYTHONPATH="$pippin_tmp/site" PYTHONNOUSERSITE=1 \
        PIPPIN_PREBUILT="$top/bootchain/prebuilt" "$@" <"$tty"
    rc=$?
    return "$rc"
}

pippin_bootstrap "$@"
