#!/usr/bin/env bash
# Debian packages the project needs on the host: the allocators the tests preload, the
# load generator, and the toolchain the FIPS provider build uses. Idempotent; uses sudo
# when not root.
set -euo pipefail

packages=(
  libjemalloc2 libtcmalloc-minimal4 libmimalloc2.0  # the allocators under test
  wrk                                              # load generator for benchmarks/
  build-essential perl dpkg-dev openssl libssl-dev # OpenSSL FIPS provider build
  python3 python3-venv jq curl ca-certificates
)

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "installing: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
as_root apt-get update -q >&2 || true  # a stale index still often has what we need
as_root apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
