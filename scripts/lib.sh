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


host_codename() {
    local c
    # shellcheck disable=SC1091
    c=$(. /etc/os-release && printf '%s' "${VERSION_CODENAME:-}")
    [[ -n $c ]] || die "cannot read VERSION_CODENAME from /etc/os-release"
    printf '%s\n' "$c"
}

# The host's Debian archive as deb822 stanzas, parsed once for every script that needs
# another view of it (a deb-src entry, another suite, another architecture's packages):
# all enabled "deb" entries for the host's codename (and its -updates/-security), from
# deb822 .sources and one-line .list files, with Types and Suites replaced.
# $1 = Types to write, $2 = Suites to write ("" keeps the original suites).
host_sources() {
    local types=$1 suites=$2 codename f
    codename=$(host_codename)
    for f in /etc/apt/sources.list.d/*.sources; do
        [[ -f $f ]] || continue
        awk -v types="$types" -v suites="$suites" -v code="$codename" '
            function flush() {
                if (n && isdeb && hascode) {
                    if (out) print ""
                    for (i = 1; i <= n; i++) print s[i]
                    out = 1
                }
                n = 0; isdeb = 0; hascode = 0
            }
            /^[[:space:]]*$/ { flush(); next }
            /^[[:space:]]*#/ { next }
            {
                line = $0
                if (tolower(line) ~ /^types:/) {
                    t = " " substr(line, index(line, ":") + 1) " "
                    if (t ~ /[[:space:]]deb[[:space:]]/) isdeb = 1
                    line = "Types: " types
                }
                if (tolower(line) ~ /^suites:/) {
                    t = " " substr(line, index(line, ":") + 1) " "
                    # Rewriting suites: only the plain release stanza; else also -updates/-security.
                    if (t ~ ("[[:space:]]" code "[[:space:]]")) hascode = 1
                    if (suites == "" && t ~ ("[[:space:]]" code "-[a-z]+[[:space:]]")) hascode = 1
                    if (suites != "") line = "Suites: " suites
                }
                s[++n] = line
            }
            END { flush() }
        ' "$f"
        printf '\n'
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [[ -f $f ]] || continue
        awk -v types="$types" -v suites="$suites" -v code="$codename" '
            /^[[:space:]]*deb[[:space:]]/ {
                sub(/^[[:space:]]*deb[[:space:]]+/, ""); opts = ""
                if ($0 ~ /^\[/) { opts = substr($0, 2, index($0, "]") - 2); sub(/^\[[^]]*\][[:space:]]*/, "") }
                n = split($0, f, /[[:space:]]+/)
                if (f[2] != code && (suites != "" || f[2] !~ ("^" code "-[a-z]+$"))) next
                comps = ""
                for (i = 3; i <= n; i++) if (f[i] != "") comps = comps (comps ? " " : "") f[i]
                print "Types: " types; print "URIs: " f[1]
                print "Suites: " (suites != "" ? suites : f[2])
                if (comps != "") print "Components: " comps
                if (match(opts, /signed-by=[^[:space:]]+/)) print "Signed-By: " substr(opts, RSTART + 10, RLENGTH - 10)
                print ""
            }
        ' "$f"
    done
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

# Emulation of another architecture's programs: Debian's qemu-user-static registered in
# binfmt_misc by binfmt-support (flags F: the interpreter is opened at registration, so it
# also works inside chroots and containers). Mounts binfmt_misc when it is not mounted.
# $1 = Debian architecture. Returns 1, with the reason on stderr, when it cannot be had.
emulation_ready() {
    local f
    f=/proc/sys/fs/binfmt_misc/qemu-$(arch_uname "$1")
    [[ -r $f ]] && grep -qx enabled "$f" && grep -q '^flags:.*F' "$f"
}
ensure_emulation() {
    emulation_ready "$1" && return 0
    ensure_packages qemu-user-static binfmt-support || return 1
    if ! mountpoint -q /proc/sys/fs/binfmt_misc; then
        as_root mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc ||
            { log "cannot mount binfmt_misc (the kernel lacks it, or this is an unprivileged container)"; return 1; }
    fi
    as_root update-binfmts --enable "qemu-$(arch_uname "$1")" >&2 || true
    emulation_ready "$1" || { log "qemu-$(arch_uname "$1") is not registered with flag F in binfmt_misc"; return 1; }
}
