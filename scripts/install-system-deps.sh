#!/usr/bin/env bash
# Debian packages the project needs on the host: the allocators the tests preload, the
# load generator, and the toolchain the FIPS provider build uses. Idempotent; uses sudo
# when not root.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

packages=(
  libjemalloc2 libtcmalloc-minimal4 libmimalloc2.0  # the allocators under test
  wrk                                              # load generator for benchmarks/
  build-essential perl dpkg-dev openssl libssl-dev # OpenSSL FIPS provider build
  python3 python3-venv jq curl ca-certificates     # Debian's python3: a non-PIE interpreter
  ruby puma nodejs                                 # other languages' real processes to inspect
  libjemalloc-dev                                  # static libjemalloc.a: a statically linked target
  gdb                                              # --attach into CPython older than 3.14
  prometheus                                       # promtool and a real Prometheus for the rules
  qemu-user-static binfmt-support arch-test        # arm64 images and programs under emulation
  gcc-aarch64-linux-gnu libc6-dev-arm64-cross      # arm64 FIPS provider and test programs, cross-compiled
  skopeo                                           # the images as one OCI image index (multi-arch)
  shellcheck                                       # make lint: every shell script
  chromium fonts-dejavu-core                       # the docs site rendered in a real browser (tests/docs)
)
ensure_packages "${packages[@]}"
