#!/bin/sh
# Shared by scripts/pippin, scripts/test and scripts/bench: make .venv match the lock file.
# Sourced, not run. Sets PIPPIN_ROOT and PIPPIN_PY.
set -u

PIPPIN_ROOT=$(CDPATH='' cd -- "$(dirname -- "$0")/.." && pwd)
PIPPIN_PY="$PIPPIN_ROOT/.venv/bin/python"

pippin_log() {
    printf 'pippin-setup: %s\n' "$*" >&2
}

# pippin_lock_sum LOCKFILE: what a venv installed from LOCKFILE is stamped with.
pippin_lock_sum() {
    cat "$PIPPIN_ROOT/$1" "$PIPPIN_ROOT/pyproject.toml" | sha256sum | cut -d' ' -f1
}

# pippin_venv LOCKFILE: create .venv on first use, reinstall only when the lock changed.
# A venv made from requirements-dev.lock (a superset) also satisfies requirements.lock, so
# alternating scripts/test and scripts/pippin does not reinstall each time.
pippin_venv() {
    local stamp want have
    stamp="$PIPPIN_ROOT/.venv/.pippin-lock"
    want=$(pippin_lock_sum "$1")
    have=$(cat "$stamp" 2>/dev/null)
    if [ -x "$PIPPIN_PY" ] && { [ "$have" = "$want" ] || {
        [ "$1" = requirements.lock ] && [ "$have" = "$(pippin_lock_sum requirements-dev.lock)" ]
    }; }; then
        return 0
    fi
    if [ ! -x "$PIPPIN_PY" ]; then
        pippin_log "creating .venv"
        python3 -m venv "$PIPPIN_ROOT/.venv" || return 1
    fi
    pippin_log "installing Python packages from $1"
    "$PIPPIN_PY" -m pip install -q --disable-pip-version-check -r "$PIPPIN_ROOT/$1" || return 1
    "$PIPPIN_PY" -m pip install -q --disable-pip-version-check --no-deps \
        -e "$PIPPIN_ROOT" || return 1
    printf '%s\n' "$want" >"$stamp"
}

# pippin_debs FILE: apt-get install the Debian packages listed in FILE that are missing
# (only as root; otherwise say what is missing).
pippin_debs() {
    local missing pkg
    missing=""
    while read -r pkg; do
        case "$pkg" in "" | "#"*) continue ;; esac
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed' ||
            missing="$missing $pkg"
    done <"$PIPPIN_ROOT/$1"
    [ -z "$missing" ] && return 0
    if [ "$(id -u)" != 0 ]; then
        pippin_log "missing Debian packages (install them as root):$missing"
        return 0
    fi
    pippin_log "apt-get install$missing"
    # shellcheck disable=SC2086 # word splitting of the package list is intended
    { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $missing; } \
        >"$PIPPIN_ROOT/.cache/apt.log" 2>&1 || {
        pippin_log "apt-get failed, see .cache/apt.log"
        return 1
    }
}
