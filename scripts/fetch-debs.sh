#!/usr/bin/env bash
# fetch-debs.sh: download Debian packages built for another architecture (the host's suite),
# for tests that read their files (no emulation is needed for that), and cache them.
#
# Usage:
#   scripts/fetch-debs.sh ARCH PACKAGE...
#
# The .debs land in ${ALLOCSCOPE_CACHE:-$HOME/.cache/allocscope}/debs/ARCH/ and are fetched
# only when one is missing. apt runs with a private state (its own sources, derived from
# the host's, lists and cache under that directory): the host's apt configuration and its
# architectures are left as they are (no dpkg --add-architecture).
# stdout: the directory; progress goes to stderr.
set -euo pipefail

exec 3>&1 1>&2

# shellcheck source=scripts/lib.sh
. "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

case ${1:-} in
    -h | --help | '') usage; exit 0 ;;
esac
arch=$1
shift
(($#)) || die "name at least one package"
[[ $arch =~ ^[a-z0-9]+$ ]] || die "not a Debian architecture: $arch"

dir=${ALLOCSCOPE_CACHE:-${HOME:?HOME is not set}/.cache/allocscope}/debs/$arch
apt_dir=$dir/.apt
missing=()
for p in "$@"; do
    compgen -G "$dir/${p}_*_$arch.deb" >/dev/null || compgen -G "$dir/${p}_*_all.deb" >/dev/null ||
        missing+=("$p")
done
if ((${#missing[@]} == 0)); then
    printf '%s\n' "$dir" >&3
    exit 0
fi

mkdir -p "$apt_dir/sources.list.d" "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial"
exec 9>"$dir/.lock"
flock 9
host_sources deb "" >"$apt_dir/sources.list.d/host.sources"
grep -q '^URIs:' "$apt_dir/sources.list.d/host.sources" || die "no Debian 'deb' entries in the host's apt sources"
opts=(
    -o "Dir::Etc::SourceList=/dev/null"
    -o "Dir::Etc::SourceParts=$apt_dir/sources.list.d"
    -o "Dir::State::Lists=$apt_dir/lists"
    -o "Dir::Cache=$apt_dir/cache"
    -o "Dir::State::status=/dev/null"
    -o "APT::Architecture=$arch"
    -o "APT::Architectures::=$arch"
    -o "Acquire::Languages=none"
)
# The cache is under a home apt's sandbox user cannot enter.
if ((EUID == 0)); then opts+=(-o "APT::Sandbox::User=root"); fi
log "fetching $arch packages: ${missing[*]}"
apt-get "${opts[@]}" -q update >&2 || die "apt-get update for $arch failed"
(cd "$dir" && apt-get "${opts[@]}" -q download "${missing[@]}" >&2) || die "apt-get download failed"
printf '%s\n' "$dir" >&3
