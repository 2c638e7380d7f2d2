#!/usr/bin/env bash
# build-fips-provider.sh: build OpenSSL's FIPS provider (fips.so) from the Debian source of the
# system's own OpenSSL and cache it per machine, with ready-to-use OpenSSL config files.
#
# Usage (no Makefile needed):
#   scripts/build-fips-provider.sh [DIR]              build unless a usable cache exists
#   scripts/build-fips-provider.sh --print-dir [DIR]  print where the cache is/would be; build nothing
#   scripts/build-fips-provider.sh --check [DIR]      exit 0 (and print DIR) only if the cache is usable
#   --arch ARCH   build for Debian architecture ARCH (default: this machine's; arm64 on an
#                 amd64 host is cross-compiled with Debian's gcc-aarch64-linux-gnu)
#
#   dir=$(scripts/build-fips-provider.sh | tail -n1)
#   OPENSSL_CONF=$dir/openssl-fips.cnf OPENSSL_MODULES=$dir/ossl-modules python3 -c \
#       'import _hashlib; print(_hashlib.get_fips_mode())'
#
# The last line of stdout is always the cache directory; all other output goes to stderr.
# DIR defaults to ${ALLOCSCOPE_CACHE:-$HOME/.cache/allocscope}/fips/openssl-<version>-<arch>.
# A cross-compiled provider (another architecture's) holds only ossl-modules/fips.so,
# VERSION and README: no host openssl can load it, so its fipsinstall (self-tests, module
# MAC) runs where it is installed, under emulation (container/base/build-bases.sh).
# Layout of DIR:
#   ossl-modules/fips.so               the provider, built from the upstream OpenSSL tarball
#   fipsmodule.cnf                     from `openssl fipsinstall` (module MAC, self-tests passed)
#   openssl-fips.cnf                   fips+base+default active, default_properties = fips=yes
#   openssl-fips-strict.cnf            fips+base only (OpenSSL cannot fetch non-FIPS algorithms)
#   openssl-fips-nodefaultprops.cnf    fips+base+default active, NOT enforced (no fips=yes)
#   VERSION, README
# This is the OpenSSL FIPS provider code built from source, NOT a FIPS 140 validated module.
#
# Needs: Debian/Ubuntu with apt; root or sudo only when a deb-src entry or a build
# prerequisite is missing. Environment: ALLOCSCOPE_CACHE, TMPDIR.
set -euo pipefail

# Keep stdout for the single result line: fd 3 is the real stdout, everything else -> stderr.
exec 3>&1 1>&2

# shellcheck source=scripts/lib.sh
. "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

mode=build
dir_arg=
target_arch=$(dpkg --print-architecture)
while (($#)); do
    case $1 in
        --print-dir) mode=print ;;
        --check) mode=check ;;
        --arch) target_arch=${2:?--arch needs an architecture}; shift ;;
        -h | --help) usage; exit 0 ;;
        --) shift; dir_arg=${1:-}; break ;;
        -*) usage; die "unknown option: $1" ;;
        *) [[ -z $dir_arg ]] || die "only one DIR may be given"; dir_arg=$1 ;;
    esac
    shift
done

# System `openssl` runs must not pick up a caller's FIPS config (it may point at this cache).
sysossl() { env -u OPENSSL_CONF -u OPENSSL_MODULES openssl "$@"; }

# The version that matters is the libcrypto Python and friends load, i.e. "Library:".
system_openssl_version() {
    local v
    v=$(sysossl version 2>/dev/null) || return 1
    if [[ $v == *"Library: OpenSSL "* ]]; then
        v=${v##*Library: OpenSSL }
    else
        v=${v#OpenSSL }
    fi
    [[ $v =~ ^([0-9]+\.[0-9]+\.[0-9]+) ]] || return 1
    printf '%s\n' "${BASH_REMATCH[1]}"
}

command -v openssl >/dev/null 2>&1 ||
    { [[ $mode == build ]] || die "openssl is not installed"; }

# Openssl may be absent only in build mode; install it before we need its version.
command -v openssl >/dev/null 2>&1 || ensure_packages openssl

version=$(system_openssl_version) || die "cannot parse \`openssl version\`"
host_arch=$(dpkg --print-architecture)
cross=0
case $target_arch in
    "$host_arch") ;;
    arm64) cross=1 cross_prefix=aarch64-linux-gnu- cross_target=linux-aarch64 ;;
    *) die "cannot build the FIPS provider for $target_arch on $host_arch (only arm64 is cross-compiled)" ;;
esac
arch=$(arch_uname "$target_arch")

if [[ -n $dir_arg ]]; then
    cache_dir=$(realpath -m -- "$dir_arg")
else
    cache_dir=$(realpath -m -- "${ALLOCSCOPE_CACHE:-${HOME:?HOME is not set}/.cache/allocscope}/fips/openssl-$version-$arch")
fi
# The path is written into OpenSSL config files, where '$', '#', quotes, '\' and spaces are
# special; refuse rather than produce a config that silently means something else.
[[ $cache_dir =~ ^[A-Za-z0-9_./@+:,=~-]+$ ]] ||
    die "cache dir '$cache_dir' contains characters unsafe in an OpenSSL config; pass another DIR"

# --- config files ------------------------------------------------------------------------
# $1 = directory the config should refer to (the final cache dir), $2 = where to write it.
write_configs() {
    local ref=$1 out=$2 variant name providers props header
    for variant in enforced strict nodefaultprops; do
        name=openssl-fips-$variant.cnf
        if [[ $variant == enforced ]]; then name=openssl-fips.cnf; fi
        case $variant in
            enforced)
                header="FIPS provider active AND enforced: default_properties = fips=yes. The default
# provider stays loaded so non-FIPS algorithms are reachable only when asked for explicitly
# (e.g. a \"-fips\" property query, as hashlib.md5(usedforsecurity=False) does)."
                providers=$'fips = fips_sect\nbase = base_sect\ndefault = default_sect'
                props=1 ;;
            strict)
                header="FIPS provider + base provider only: no default provider, so OpenSSL cannot
# fetch non-FIPS algorithms at all, even with usedforsecurity=False. Beware: CPython then
# binds hashlib.md5 to its built-in _md5 at import, so hashlib.md5() works unrefused."
                providers=$'fips = fips_sect\nbase = base_sect'
                props=1 ;;
            nodefaultprops)
                header="FIPS provider active but NOT enforced: fips, base and default providers
# are loaded and no default_properties are set, so fetches may pick the default provider."
                providers=$'fips = fips_sect\nbase = base_sect\ndefault = default_sect'
                props=0 ;;
        esac
        {
            printf '# Generated by allocscope scripts/build-fips-provider.sh for OpenSSL %s.\n' "$version"
            printf '# %s\n' "$header"
            printf '# Use with OPENSSL_MODULES=%s/ossl-modules.\n' "$ref"
            printf '# Built from source: NOT a FIPS 140 validated module.\n\n'
            # As in Debian's own openssl.cnf: a malformed config is an error. (Measured on
            # 3.0.22: a fips provider failing its integrity check is still skipped silently.)
            printf 'config_diagnostics = 1\n'
            printf 'openssl_conf = openssl_init\n\n'
            printf '.include %s/fipsmodule.cnf\n\n' "$ref"
            printf '[openssl_init]\nproviders = provider_sect\n'
            if ((props)); then printf 'alg_section = algorithm_sect\n'; fi
            printf '\n[provider_sect]\n%s\n\n' "$providers"
            printf '[base_sect]\nactivate = 1\n'
            if [[ $providers == *default_sect* ]]; then printf '\n[default_sect]\nactivate = 1\n'; fi
            if ((props)); then printf '\n[algorithm_sect]\ndefault_properties = fips=yes\n'; fi
        } >"$out/$name"
    done
}

# --- usability check ---------------------------------------------------------------------
# $1 = cache dir. Usable = all files present, same OpenSSL version, module MAC verifies, and
# the strict config (where fips is the only digest source) really computes a SHA-256.
cache_usable() {
    local d=$1 f out
    if ((cross)); then
        [[ -s $d/ossl-modules/fips.so && -s $d/VERSION && $(<"$d/VERSION") == "$version" ]] || return 1
        [[ $(elf_machine "$d/ossl-modules/fips.so") == "$(arch_elf_machine "$target_arch")" ]] || return 1
        return 0
    fi
    for f in ossl-modules/fips.so fipsmodule.cnf openssl-fips.cnf openssl-fips-strict.cnf \
        openssl-fips-nodefaultprops.cnf VERSION; do
        [[ -s $d/$f ]] || return 1
    done
    [[ $(<"$d/VERSION") == "$version" ]] || return 1
    # A copied or moved cache still names the old fipsmodule.cnf; that is not this cache.
    for f in openssl-fips.cnf openssl-fips-strict.cnf openssl-fips-nodefaultprops.cnf; do
        grep -qxF ".include $d/fipsmodule.cnf" "$d/$f" || return 1
    done
    sysossl fipsinstall -module "$d/ossl-modules/fips.so" -in "$d/fipsmodule.cnf" \
        -provider_name fips -verify >/dev/null 2>&1 || return 1
    out=$(OPENSSL_CONF=$d/openssl-fips-strict.cnf OPENSSL_MODULES=$d/ossl-modules \
        openssl list -providers 2>/dev/null) || return 1
    grep -A3 '^  fips$' <<<"$out" | grep -q 'status: active' || return 1
    printf 'x' | OPENSSL_CONF=$d/openssl-fips-strict.cnf OPENSSL_MODULES=$d/ossl-modules \
        openssl dgst -sha256 >/dev/null 2>&1 || return 1
}

case $mode in
    print)
        printf '%s\n' "$cache_dir" >&3
        exit 0 ;;
    check)
        if cache_usable "$cache_dir"; then
            log "usable FIPS provider cache: $cache_dir"
            printf '%s\n' "$cache_dir" >&3
            exit 0
        fi
        log "no usable FIPS provider cache at $cache_dir"
        exit 1 ;;
esac

if cache_usable "$cache_dir"; then
    log "cached FIPS provider for OpenSSL $version is usable: $cache_dir"
    printf '%s\n' "$cache_dir" >&3
    exit 0
fi

parent=$(dirname -- "$cache_dir")
mkdir -p -- "$parent"
# One builder per cache dir at a time; a second caller waits, then finds the cache ready.
exec 9>"$parent/.$(basename -- "$cache_dir").lock"
flock 9
if cache_usable "$cache_dir"; then
    log "cache was built by a concurrent run: $cache_dir"
    printf '%s\n' "$cache_dir" >&3
    exit 0
fi

start=$SECONDS
work=$(mktemp -d "${TMPDIR:-/tmp}/allocscope-fips.XXXXXX")
stage=
cleanup() {
    rm -rf -- "$work"
    [[ -z $stage ]] || rm -rf -- "$stage"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- prerequisites -----------------------------------------------------------------------
# The build needs a C toolchain, make and perl (OpenSSL's Configure is perl); dpkg-dev is
# apt-get source's companion tooling; the system openssl runs fipsinstall.
ensure_packages build-essential perl dpkg-dev openssl
if ((cross)); then ensure_packages "gcc-${cross_prefix%-}"; fi

# --- deb-src entry -----------------------------------------------------------------------
# Source package + exact version of the installed openssl, so the tarball matches the
# system libcrypto and a deb-src entry for another suite (e.g. trixie) is never picked.
src_spec=$(dpkg-query -W -f='${source:Package}=${source:Version}' openssl) ||
    die "cannot query the openssl package"

src_list=/etc/apt/sources.list.d/allocscope-src.sources

ensure_deb_src() {
    # Already resolvable? Then leave apt alone entirely.
    apt-get source --print-uris "$src_spec" >/dev/null 2>&1 && return 0
    local want
    want=$(host_sources deb-src "")
    want=$(sed '/./,$!d' <<<"$want")
    [[ -n $want ]] || die "found no 'deb' entries to derive a deb-src entry from"
    want="# Added by allocscope scripts/build-fips-provider.sh: source entries for the system's
# own suites, needed by \`apt-get source openssl\`.
$want"
    if [[ ! -f $src_list || $(<"$src_list") != "$want" ]]; then
        log "writing $src_list"
        printf '%s\n' "$want" | as_root tee "$src_list.tmp" >/dev/null
        as_root mv -f "$src_list.tmp" "$src_list"
    fi
    apt_update_once
}

ensure_deb_src

# --- fetch the source --------------------------------------------------------------------
mkdir -p "$work/src" "$work/build"
# Let apt's sandbox user write here when root, so it need not fall back to unsandboxed.
if ((EUID == 0)) && id _apt >/dev/null 2>&1; then
    chmod 0755 "$work"
    chown _apt "$work/src"
fi
find_tarballs() {
    tarballs=()
    local f
    for f in "$work"/src/*.orig.tar.*; do
        if [[ -f $f && $f != *.asc ]]; then tarballs+=("$f"); fi
    done
}

# Only the upstream tarball is needed. Some mirrors serve it but not the .dsc/.debian.tar
# (apt-get then exits non-zero after fetching it), so judge by the tarball, not the exit code.
# apt checks the tarball against the hash in the signed Sources index before keeping it.
log "downloading source $src_spec"
(cd "$work/src" && apt-get source --download-only -q "$src_spec" >&2) ||
    log "apt-get source reported errors; using the upstream tarball if it arrived"
find_tarballs
if ((${#tarballs[@]} == 0)); then
    # The exact version may have left the archive; take what apt offers, the check below
    # still refuses a different major.minor.
    log "warning: $src_spec not available, falling back to the candidate openssl source"
    (cd "$work/src" && apt-get source --download-only -q "${src_spec%%=*}" >&2) || true
    find_tarballs
fi
((${#tarballs[@]} == 1)) || die "expected one upstream tarball, found ${#tarballs[@]}"
tarball=${tarballs[0]}
src_version=$(basename -- "$tarball")
src_version=${src_version#*_}
src_version=${src_version%%.orig.tar.*}

# fips.so must come from the same major.minor as the libcrypto that loads it.
if [[ ${src_version%.*} != "${version%.*}" ]]; then
    die "source OpenSSL $src_version does not match system libcrypto $version (major.minor)"
elif [[ $src_version != "$version" ]]; then
    log "WARNING: source OpenSSL $src_version differs from system libcrypto $version (patch level)"
fi

# --- build only the FIPS provider --------------------------------------------------------
log "building providers/fips.so from OpenSSL $src_version (quiet; log tail shown on failure)"
tar -xf "$tarball" -C "$work/build"
srcdir=$(find "$work/build" -mindepth 1 -maxdepth 1 -type d | head -n1)
[[ -x $srcdir/Configure ]] || die "no Configure in $tarball"
jobs=$(nproc 2>/dev/null || echo 1)
if ! (
    cd "$srcdir"
    if ((cross)); then
        ./Configure "$cross_target" enable-fips --cross-compile-prefix="$cross_prefix"
    else
        ./Configure enable-fips
    fi
    make -j"$jobs" build_generated
    make -j"$jobs" providers/fips.so
) >"$work/build.log" 2>&1; then
    tail -n 40 "$work/build.log" >&2
    die "build failed"
fi
log "built in $((SECONDS - start)) s"

# --- stage, validate, publish ------------------------------------------------------------
# Staged next to the final dir (same filesystem), so publishing is a single rename.
stage=$(mktemp -d "$parent/.$(basename -- "$cache_dir").tmp.XXXXXX")
chmod 0755 "$stage"
install -D -m 0755 "$srcdir/providers/fips.so" "$stage/ossl-modules/fips.so"
if ((cross)); then
    printf '%s\n' "$version" >"$stage/VERSION"
    cat >"$stage/README" <<EOF
This is the OpenSSL FIPS provider code built from source, NOT a FIPS 140 validated module.
fips.so was cross-compiled for $target_arch ($arch) with ${cross_prefix}gcc from the upstream
OpenSSL $src_version tarball of Debian source package $src_spec by allocscope
scripts/build-fips-provider.sh on $(date -u +%Y-%m-%dT%H:%M:%SZ). It has no fipsmodule.cnf: run
\`openssl fipsinstall\` with an $target_arch openssl where it is installed (self-tests run there).
EOF
    cache_usable "$stage" || die "the cross-compiled fips.so is not an $target_arch object"
    rm -rf -- "${cache_dir:?}"
    mv -T -- "$stage" "$cache_dir"
    stage=
    log "FIPS provider for OpenSSL $version ($target_arch, cross-compiled) cached in $cache_dir ($((SECONDS - start)) s)"
    printf '%s\n' "$cache_dir" >&3
    exit 0
fi
log "running openssl fipsinstall (module self-tests)"
sysossl fipsinstall -module "$stage/ossl-modules/fips.so" -out "$stage/fipsmodule.cnf" \
    -provider_name fips >&2
chmod 0644 "$stage/fipsmodule.cnf"
write_configs "$cache_dir" "$stage"
printf '%s\n' "$version" >"$stage/VERSION"
cat >"$stage/README" <<EOF
This is the OpenSSL FIPS provider code built from source, NOT a FIPS 140 validated module.
fips.so was built from the upstream OpenSSL $src_version tarball of Debian source package $src_spec
by allocscope scripts/build-fips-provider.sh on $(date -u +%Y-%m-%dT%H:%M:%SZ) for $arch; fipsmodule.cnf comes
from \`openssl fipsinstall\` with the system openssl $version. Use it to test FIPS behaviour, not to claim compliance:
  OPENSSL_CONF=$cache_dir/openssl-fips.cnf OPENSSL_MODULES=$cache_dir/ossl-modules <command>
A provider that fails its integrity check or self-tests is skipped SILENTLY (and
_hashlib.get_fips_mode() still returns 1); confirm "fips ... status: active" with
  OPENSSL_CONF=$cache_dir/openssl-fips.cnf OPENSSL_MODULES=$cache_dir/ossl-modules openssl list -providers
or run: scripts/build-fips-provider.sh --check $cache_dir
EOF

# The configs name the final dir; validate the staged files through a throwaway copy of
# the configs that names the staging dir instead.
mkdir -p "$work/validate"
cp -a "$stage/." "$work/validate/"
write_configs "$work/validate" "$work/validate"
cache_usable "$work/validate" || die "freshly built provider failed validation"

if [[ -e $cache_dir ]]; then
    # Stale or broken: move it aside first (rename cannot replace a non-empty dir).
    old=$(mktemp -d "$parent/.$(basename -- "$cache_dir").old.XXXXXX")
    mv -T -- "$cache_dir" "$old/d"
    mv -T -- "$stage" "$cache_dir"
    rm -rf -- "$old"
else
    mv -T -- "$stage" "$cache_dir"
fi
stage=
cache_usable "$cache_dir" || die "installed cache at $cache_dir is not usable"
log "FIPS provider for OpenSSL $version cached in $cache_dir ($((SECONDS - start)) s)"
printf '%s\n' "$cache_dir" >&3
