# shellcheck shell=bash
# Shared by the project's shell scripts (sourced, never run): logging, root, apt.
# Scripts that print a result keep it on fd 3 and send everything else to stderr.

prog=${0##*/}
log() { printf '%s: %s\n' "$prog" "$*" >&2; }
die() { log "error: $*"; exit 1; }
# Print the script's header comment (line 2 up to `set -euo`) as its usage.
usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0" >&2; }

as_root() {
    if ((EUID == 0)); then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        die "need root for: $* (no sudo available)"
    fi
}

# Other apt users may hold the dpkg/lists locks; wait for them instead of failing.
apt_lock=(-o DPkg::Lock::Timeout=600)

apt_updated=0
apt_update_once() {
    ((apt_updated)) && return 0
    log "running apt-get update"
    as_root apt-get "${apt_lock[@]}" update -q >&2
    apt_updated=1
}

pkg_installed() {
    [[ $(dpkg-query -W -f='${Status}' "$1" 2>/dev/null) == "install ok installed" ]]
}

# Install only what is missing; refresh package lists only if the first attempt fails.
ensure_packages() {
    local missing=() p
    for p in "$@"; do pkg_installed "$p" || missing+=("$p"); done
    ((${#missing[@]})) || return 0
    log "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    if ! as_root apt-get "${apt_lock[@]}" install -y -q --no-install-recommends "${missing[@]}" >&2; then
        apt_update_once
        as_root apt-get "${apt_lock[@]}" install -y -q --no-install-recommends "${missing[@]}" >&2
    fi
}

# Architectures: Debian's name (amd64, arm64) -> the kernel's (uname -m) and ELF's (readelf).
arch_uname() {
    case $1 in
        amd64) echo x86_64 ;;
        arm64) echo aarch64 ;;
        *) die "unsupported architecture: $1" ;;
    esac
}
arch_elf_machine() {
    case $1 in
        amd64) echo 'Advanced Micro Devices X86-64' ;;
        arm64) echo AArch64 ;;
        *) die "unsupported architecture: $1" ;;
    esac
}
elf_machine() { LC_ALL=C readelf -h -- "$1" 2>/dev/null | sed -n 's/^ *Machine: *//p'; }
