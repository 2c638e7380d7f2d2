#!/usr/bin/env bash
# build-bases.sh: build the local base images the project's Dockerfile can use instead of
# Chainguard's, from Debian packages only (mmdebstrap + docker import), no image registry.
#
# Usage:
#   container/base/build-bases.sh [--force-cpython] [all|cpython|builder|runtime]
#
#   all (default)  build CPython (cached), then both images, smoke-test them, print sizes
#   cpython        only build (or find in the cache) CPython; print its staging dir
#   builder        CPython + allocscope-base/builder
#   runtime        CPython + FIPS provider + allocscope-base/runtime-fips
#   --force-cpython  rebuild CPython even if the cache has it
#
# Images (names configurable, see below):
#   allocscope-base/builder:latest       Debian (host suite) + our CPython + pip + shell +
#                                        coreutils + apt + libjemalloc2, with a real copy at
#                                        /usr/lib/libjemalloc.so.2
#   allocscope-base/runtime-fips:latest  distroless in spirit: shared libraries, CA bundle,
#                                        tzdata, our CPython (no pip/ensurepip), OpenSSL FIPS
#                                        provider active and enforced; no shell, apt or dpkg
# Both: USER 65532 (nonroot, like Chainguard), CMD ["/usr/bin/python"] and no ENTRYPOINT
# (so `docker run IMAGE /usr/bin/python -c ...` works; Chainguard's set ENTRYPOINT python).
#
# CPython comes from Debian's python3.14 source package of a newer suite (sid by default;
# python3.13 from trixie with ALLOCSCOPE_PY_SOURCE=python3.13), found through a deb-src
# entry derived from the host's own apt sources in a private apt state (the host's apt
# configuration is not changed), with Debian's bug and security fix
# patches applied (Debian integration patches skipped), configured with
# --with-builtin-hashlib-hashes=blake2 so hashlib has no built-in md5/sha1/sha2/sha3 to fall
# back on when OpenSSL's FIPS provider refuses. It is built on the host once and cached.
#
# Environment:
#   ALLOCSCOPE_CACHE         cache root (default $HOME/.cache/allocscope); CPython lives in
#                            $ALLOCSCOPE_CACHE/cpython/<debian-version>-<arch>/
#   ALLOCSCOPE_BASE_REPO     image repository prefix (default allocscope-base)
#   ALLOCSCOPE_BASE_TAG      image tag (default latest; latest-ARCH for another architecture)
#   ALLOCSCOPE_ARCH          Debian architecture of the images (default: this machine's);
#                            arm64 on an amd64 host runs under emulation (qemu-user-static,
#                            binfmt_misc), its FIPS provider is cross-compiled
#   ALLOCSCOPE_PY_SOURCE     Debian source package (default python3.14; python3.13 still builds)
#   ALLOCSCOPE_PY_SUITE      Debian suite to take it from (default: sid for python3.14, the
#                            newest 3.14 point release with Debian's patches; trixie for 3.13)
#   ALLOCSCOPE_PY_PGO        1 = configure --enable-optimizations --with-lto (much slower)
#   JOBS                     parallel make jobs (default: nproc)
#   TMPDIR                   work space (root filesystems are assembled there)
#
# stdout: `cpython` prints the staging dir; the image steps print one "name size" line per
# image. Everything else goes to stderr. Needs root (mmdebstrap, docker) and Debian's apt.
set -euo pipefail

exec 3>&1 1>&2

here=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd -- "$here/../.." && pwd)

# shellcheck source=scripts/lib.sh
. "$repo_root/scripts/lib.sh"

step=all
force_cpython=0
while (($#)); do
    case $1 in
        --force-cpython) force_cpython=1 ;;
        -h | --help) usage; exit 0 ;;
        all | cpython | builder | runtime) step=$1 ;;
        *) usage; die "unknown argument: $1" ;;
    esac
    shift
done

((EUID == 0)) || die "must run as root (mmdebstrap builds root filesystems, docker imports them)"

CACHE=${ALLOCSCOPE_CACHE:-${HOME:?HOME is not set}/.cache/allocscope}
REPO=${ALLOCSCOPE_BASE_REPO:-allocscope-base}
ARCH=${ALLOCSCOPE_ARCH:-$(dpkg --print-architecture)}
foreign=0
if [[ $ARCH != "$(dpkg --print-architecture)" ]]; then foreign=1; fi
TAG=${ALLOCSCOPE_BASE_TAG:-latest}
if ((foreign)) && [[ -z ${ALLOCSCOPE_BASE_TAG:-} ]]; then TAG=latest-$ARCH; fi
PY_SOURCE=${ALLOCSCOPE_PY_SOURCE:-python3.14}
# Where each CPython comes from (see "CPython" in container/base/README.md):
#   python3.13  built here from trixie's source package (Debian's patches), on the host's suite;
#   python3.14  Debian's own build from forky's binary packages (this machine's Debian mirror
#               does not serve python3.14's source), with a main() of ours that leaves the
#               built-in md5/sha1/sha2/sha3 out; both images are then forky root filesystems.
case $PY_SOURCE in
    python3.13) PY_FROM=source default_suite=trixie ;;
    *) PY_FROM=debian default_suite=forky ;;
esac
PY_FROM=${ALLOCSCOPE_PY_FROM:-$PY_FROM}
PY_SUITE=${ALLOCSCOPE_PY_SUITE:-$default_suite}
[[ $PY_FROM == source || $PY_FROM == debian ]] || die "ALLOCSCOPE_PY_FROM must be source or debian"
PY_PGO=${ALLOCSCOPE_PY_PGO:-0}
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 1)}
BUILDER_IMAGE=$REPO/builder:$TAG
RUNTIME_IMAGE=$REPO/runtime-fips:$TAG

[[ $PY_SOURCE =~ ^python3\.([0-9]+)$ ]] || die "ALLOCSCOPE_PY_SOURCE must look like python3.N"
PY_XY=${PY_SOURCE#python}

# Bump when the recipe below changes in a way that must invalidate cached builds.
RECIPE_REV=1

# Debian patches that adapt CPython to Debian's own packaging (install layout, multiarch
# paths, disabled ensurepip, the split into python3-tk/-gdbm, build-host quirks). They do
# not fit a self-contained /usr install; every other patch (upstream bug and security
# fixes) is applied.
SKIP_PATCHES=(
    deb-locations.diff distutils-install-layout.diff sysconfig-debian-schemes.diff
    tkinter-import.diff gdbm-import.diff link-opt.diff setup-modules.diff profiled-build.diff
    langpack-gettext.diff disable-sem-check.diff multiarch.diff ensurepip-disabled.diff
    destshared-location.diff 'min-*' makefile-bootstrap.diff test-freeze-strip-libdir.diff
    stable-abi-multiarch.diff no-sphinx-8.2.diff
    Add-Debian-specific-documentation-path-to-IDLE-menu.diff
)

# Modules left out on purpose: GUI/terminal/dbm bindings whose libraries the runtime does not
# carry. Disabled at configure time so the build does not depend on what -dev packages the
# host happens to have.
DISABLED_MODULES=(_tkinter _curses _curses_panel readline _gdbm _dbm)

CONFIGURE_ARGS=(
    --prefix=/usr
    --enable-shared
    --with-builtin-hashlib-hashes=blake2
    --with-ensurepip=install
    --with-system-expat
    --with-ssl-default-suites=openssl
    --disable-test-modules
    --without-static-libpython
)
if [[ $PY_PGO == 1 ]]; then CONFIGURE_ARGS+=(--enable-optimizations --with-lto); fi

# Shared libraries of the runtime image (plus what apt pulls in for them; see prune below).
RUNTIME_PACKAGES=(
    libc6 libc-bin libgcc-s1 libstdc++6 libssl3 openssl zlib1g libffi8 libbz2-1.0 liblzma5
    libsqlite3-0 libuuid1 libexpat1 ca-certificates tzdata
)
# Pulled in as dependencies and kept (their executables are still removed); globs.
RUNTIME_KEEP_EXTRA=('gcc-*-base')

BUILDER_PACKAGES=(
    ca-certificates openssl tzdata libssl3 zlib1g libffi8 libbz2-1.0 liblzma5 libsqlite3-0
    libuuid1 libexpat1 libstdc++6 libjemalloc2
)

if [[ $PY_FROM == debian ]]; then
    # The development suites name OpenSSL's library libssl3t64 (64-bit time_t), and carry
    # the interpreter: its standard library, and the shared libpython our main() links to.
    RUNTIME_PACKAGES=("${RUNTIME_PACKAGES[@]/#libssl3/libssl3t64}" libzstd1
        "lib$PY_SOURCE" "lib$PY_SOURCE-minimal" "lib$PY_SOURCE-stdlib")
    # Like Chainguard's -dev images: a compiler, so the builder can also build sdists.
    BUILDER_PACKAGES=("${BUILDER_PACKAGES[@]/#libssl3/libssl3t64}" libzstd1 "$PY_SOURCE"
        "lib$PY_SOURCE-dev" python3-pip gcc libc6-dev)
    # The runtime's standard library keeps no module whose library it does not carry, no
    # test module, and not _hmac (HACL*'s own HMAC-MD5/SHA-1: a way around OpenSSL's
    # FIPS provider, like the built-in hashes).
    RUNTIME_DROP_MODULES=(_curses _curses_panel readline _dbm _gdbm _tkinter _hmac
        '_test*' _ctypes_test _xxtestfuzz 'xx*')
fi

HOST_PACKAGES=(
    mmdebstrap arch-test build-essential pkg-config dpkg-dev xz-utils patch binutils openssl
    libssl-dev zlib1g-dev libffi-dev libbz2-dev liblzma-dev libsqlite3-dev uuid-dev
    libexpat1-dev
)


arch=$ARCH
multiarch=$(dpkg-architecture -a"$ARCH" -qDEB_HOST_MULTIARCH 2>/dev/null) ||
    die "dpkg-architecture does not know $ARCH"

work=$(mktemp -d "${TMPDIR:-/tmp}/allocscope-bases.XXXXXX")
cleanup() { rm -rf -- "$work"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------------------------------
# CPython
# ---------------------------------------------------------------------------------------
# Private apt state for the newer suite's Sources index: the host's apt is not touched.
srcapt_dir=$CACHE/apt-$PY_SUITE-src
srcapt_opts=(
    -o "Dir::Etc::SourceList=/dev/null"
    -o "Dir::Etc::SourceParts=$srcapt_dir/sources.list.d"
    -o "Dir::State::Lists=$srcapt_dir/lists"
    -o "Dir::Cache=$srcapt_dir/cache"
    -o "Dir::State::status=/dev/null"
    -o "APT::Sandbox::User=root"
)

# Prints the Debian versions of $PY_SOURCE in $PY_SUITE, newest first (network: one index
# fetch). A development suite's index can name a version its mirror does not serve yet.
resolve_python_versions() {
    mkdir -p "$srcapt_dir/sources.list.d" "$srcapt_dir/lists/partial" "$srcapt_dir/cache/archives/partial"
    local entry
    entry=$(host_sources deb-src "$PY_SUITE" | awk 'BEGIN{RS=""; ORS="\n\n"} /URIs:/ {print; exit}')
    [[ -n $entry ]] || die "found no Debian 'deb' entry for $(host_codename) in the host's apt sources"
    printf '# Derived from the host apt sources by %s\n%s\n' "$prog" "$entry" \
        >"$srcapt_dir/sources.list.d/src.sources"
    apt-get "${srcapt_opts[@]}" -q update >&2 || return 1
    apt-cache "${srcapt_opts[@]}" showsrc "$PY_SOURCE" 2>/dev/null |
        awk '/^Version:/ {print $2}' | sort -rV
}

recipe_text() {
    printf 'rev=%s\nsource=%s\nconfigure=%s\ndisabled=%s\nskip=%s\n' "$RECIPE_REV" "$PY_SOURCE" \
        "${CONFIGURE_ARGS[*]}" "${DISABLED_MODULES[*]}" "${SKIP_PATCHES[*]}"
}

cpython_complete() { # $1 = dir
    [[ -f $1/COMPLETE && -x $1/root/usr/bin/python$PY_XY ]] &&
        [[ $(<"$1/RECIPE") == "$(recipe_text)" ]]
}

# Sets cpython_dir and cpython_version: the newest version of the suite that is cached or
# can be downloaded.
ensure_cpython() {
    if [[ $PY_FROM == debian ]]; then ensure_debian_python; return; fi
    mkdir -p "$CACHE/cpython"
    local ver versions=()
    mapfile -t versions < <(resolve_python_versions || true)
    if ((${#versions[@]} == 0)); then
        # Offline: use the newest complete build of this recipe in the cache, if any.
        local d best=
        while read -r d; do
            if [[ -d $d ]] && cpython_complete "$d"; then best=$d; fi
        done < <(printf '%s\n' "$CACHE/cpython/"*"-$arch" | sort -V)
        [[ -n $best ]] || die "cannot resolve $PY_SOURCE in $PY_SUITE and no cached build exists"
        log "warning: could not reach the source index; using cached $best"
        cpython_dir=$best
        cpython_version=$(basename -- "$best")
        cpython_version=${cpython_version%-"$arch"}
        return 0
    fi
    for ver in "${versions[@]}"; do
        cpython_version=$ver
        cpython_dir=$CACHE/cpython/$ver-$arch
        exec 8>"$CACHE/cpython/.$ver-$arch.lock"
        flock 8
        if ((force_cpython == 0)) && cpython_complete "$cpython_dir"; then
            log "cached CPython $ver: $cpython_dir"
            return 0
        fi
        if fetch_python_source "$ver"; then
            build_cpython "$ver"
            return 0
        fi
        log "warning: $PY_SOURCE $ver is in the $PY_SUITE index but its source cannot be downloaded (the mirror lags the index); trying the next older version"
        exec 8>&-
    done
    die "no version of $PY_SOURCE in $PY_SUITE could be downloaded (${versions[*]})"
}

# Downloads the source of $PY_SOURCE=$1 into the cache unless it is there; sets srcdl.
fetch_python_source() {
    srcdl=$CACHE/src/$PY_SOURCE/$1
    mkdir -p "$srcdl"
    if compgen -G "$srcdl/*.orig.tar.*" >/dev/null && compgen -G "$srcdl/*.debian.tar.*" >/dev/null; then
        return 0
    fi
    log "downloading source $PY_SOURCE=$1 from $PY_SUITE"
    (cd "$srcdl" && apt-get "${srcapt_opts[@]}" source --download-only -q "$PY_SOURCE=$1" >&2)
}

build_cpython() {
    local ver=$1 start=$SECONDS src bld stage p name opt applied=() skipped=() failed=()
    src=$work/cpython-src
    bld=$work/cpython-build
    mkdir -p "$src" "$bld"
    tar -xf "$(compgen -G "$srcdl/*.orig.tar.*" | grep -v '\.asc$' | head -n1)" -C "$src" --strip-components=1
    tar -xf "$(compgen -G "$srcdl/*.debian.tar.*" | head -n1)" -C "$src"

    # Debian's quilt series, applied with patch(1) in series order.
    local series=$src/debian/patches/series
    if [[ -f $series ]]; then
        while read -r name opt _; do
            [[ -z $name || $name == \#* ]] && continue
            [[ $opt == -p* ]] || opt=-p1
            local skip=0 pat
            for pat in "${SKIP_PATCHES[@]}"; do
                # shellcheck disable=SC2053
                if [[ $name == $pat ]]; then skip=1; fi
            done
            if ((skip)); then skipped+=("$name"); continue; fi
            p=$src/debian/patches/$name
            if [[ -f $p ]] && patch -d "$src" "$opt" -N -s -f --dry-run <"$p" >/dev/null 2>&1; then
                patch -d "$src" "$opt" -N -s -f <"$p" >/dev/null
                applied+=("$name")
            else
                failed+=("$name")
            fi
        done <"$series"
    fi
    log "Debian patches: ${#applied[@]} applied, ${#skipped[@]} skipped (Debian integration), ${#failed[@]} failed to apply"
    if ((${#failed[@]})); then log "patches that did not apply: ${failed[*]}"; fi

    local modvars=() m
    for m in "${DISABLED_MODULES[@]}"; do modvars+=("py_cv_module_$m=n/a"); done

    log "configuring CPython $ver (${CONFIGURE_ARGS[*]})"
    (
        cd "$bld"
        "$src/configure" "${CONFIGURE_ARGS[@]}" "${modvars[@]}" \
            CFLAGS_NODIST="-fstack-protector-strong -fcf-protection -D_FORTIFY_SOURCE=2" \
            LDFLAGS_NODIST="-Wl,-z,relro -Wl,-z,now"
    ) >"$work/cpython-configure.log" 2>&1 || { tail -n 40 "$work/cpython-configure.log" >&2; die "configure failed"; }
    log "building CPython with -j$JOBS (log: $work/cpython-build.log)"
    if ! make -C "$bld" -j"$JOBS" >"$work/cpython-build.log" 2>&1; then
        tail -n 40 "$work/cpython-build.log" >&2
        die "CPython build failed"
    fi
    # make reports optional extension modules it could not build; ours must all be there.
    if grep -E -A3 'Failed to build these modules|necessary bits to build these optional modules were not found|built successfully but were removed' \
        "$work/cpython-build.log" >&2; then
        log "warning: see the module report above"
    fi

    stage=$CACHE/cpython/.$ver-$arch.tmp
    rm -rf -- "$stage"
    mkdir -p "$stage/root"
    log "installing into staging dir (ensurepip runs here)"
    if ! make -C "$bld" install DESTDIR="$stage/root" >"$work/cpython-install.log" 2>&1; then
        tail -n 40 "$work/cpython-install.log" >&2
        die "make install failed"
    fi
    local r=$stage/root
    ln -sfn "python$PY_XY" "$r/usr/bin/python"
    ln -sfn "python$PY_XY" "$r/usr/bin/python3"
    # Tests are not installed (--disable-test-modules); drop the GUI/demo packages too.
    rm -rf -- "$r/usr/lib/python$PY_XY/"{idlelib,tkinter,turtledemo,test} "$r/usr/bin/idle"*
    # Strip ELF files (strip refuses anything else, such as scripts, and leaves it alone).
    find "$r" -type f \( -name '*.so' -o -name '*.so.*' -o -perm -u+x \) -print0 |
        xargs -0 -r -n 50 strip --strip-unneeded 2>/dev/null || true

    # The staged interpreter must run and have everything the images promise.
    LD_LIBRARY_PATH=$r/usr/lib PYTHONHOME=$r/usr "$r/usr/bin/python$PY_XY" -c '
import importlib, sys
need = ["_ssl", "_hashlib", "_ctypes", "_sqlite3", "zlib", "_lzma", "_bz2", "_uuid",
        "pyexpat", "_decimal", "_blake2", "_json", "_zoneinfo", "_socket"]
for m in need:
    importlib.import_module(m)
for m in ("_md5", "_sha1", "_sha2", "_sha3"):
    try:
        importlib.import_module(m)
    except ImportError:
        continue
    sys.exit("built-in %s is present: hashlib would fall back to it" % m)
' || die "the staged CPython is missing required modules (or has built-in md5/sha)"

    local took=$((SECONDS - start))
    recipe_text >"$stage/RECIPE"
    {
        printf 'source=%s\nversion=%s\nsuite=%s\narch=%s\nbuilt=%s\nbuild_seconds=%s\njobs=%s\n' \
            "$PY_SOURCE" "$ver" "$PY_SUITE" "$arch" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$took" "$JOBS"
        printf 'configure=%s\n' "${CONFIGURE_ARGS[*]}"
        printf 'patches_applied=%s\n' "${applied[*]}"
        printf 'patches_skipped=%s\n' "${skipped[*]}"
        printf 'patches_failed=%s\n' "${failed[*]}"
    } >"$stage/BUILD-INFO"
    touch "$stage/COMPLETE"
    rm -rf -- "$cpython_dir"
    mv -T -- "$stage" "$cpython_dir"
    log "CPython $ver built in ${took}s: $cpython_dir"
}

# Debian's interpreter (PY_FROM=debian): the builder root filesystem (Debian's python with
# pip and a compiler, $work/builder-rootfs) is made first, and our main() is compiled in it
# against Debian's libpython ($work/python-main). Sets cpython_version (Debian's version).
ensure_debian_python() {
    local r=$work/builder-rootfs
    make_rootfs apt builder "$r" "${BUILDER_PACKAGES[@]}"
    # shellcheck disable=SC2016 # ${Version} is dpkg-query's field, not the shell's
    cpython_version=$(chroot "$r" dpkg-query -W -f '${Version}' "$PY_SOURCE")
    install -m 0644 "$here/python-main.c" "$r/tmp/python-main.c"
    # Control-flow protection as Debian builds with it: CET on x86-64, PAC/BTI on arm64.
    local cfi=-fcf-protection
    if [[ $ARCH == arm64 ]]; then cfi=-mbranch-protection=standard; fi
    chroot "$r" gcc -O2 -Wall -Wextra -Werror -fstack-protector-strong "$cfi" \
        -D_FORTIFY_SOURCE=2 -I"/usr/include/$PY_SOURCE" -o /tmp/python-main /tmp/python-main.c \
        -l"$PY_SOURCE" -Wl,-z,relro -Wl,-z,now >&2 || die "compiling our main() against Debian's lib$PY_SOURCE failed"
    mv -- "$r/tmp/python-main" "$work/python-main"
    rm -f -- "$r/tmp/python-main.c"
    log "Debian's $PY_SOURCE $cpython_version from $PY_SUITE, with our main() (built-in hashes: blake2 only)"
}

# Put CPython into a root filesystem. $1 = rootfs, $2 = builder|runtime.
install_cpython() {
    local rootfs=$1 kind=$2 excludes=()
    if [[ $PY_FROM == debian ]]; then
        install_debian_python "$rootfs" "$kind"
        return
    fi
    if [[ $kind == runtime ]]; then
        local lib=./usr/lib/python$PY_XY
        excludes=(
            --exclude="$lib/site-packages/*" --exclude="$lib/ensurepip"
            --exclude="$lib/config-$PY_XY-*" --exclude='./usr/bin/pip*' --exclude='./usr/bin/pydoc*'
            --exclude='./usr/bin/python*-config' --exclude=./usr/include --exclude=./usr/lib/pkgconfig
            --exclude=./usr/share --exclude='*.opt-1.pyc' --exclude='*.opt-2.pyc'
        )
    fi
    tar -C "$cpython_dir/root" "${excludes[@]}" -cf - . | tar -C "$rootfs" -xf - --keep-directory-symlink
}

install_debian_python() { # $1 = rootfs, $2 = builder|runtime
    local r=$1 lib=$1/usr/lib/python$PY_XY m
    if [[ $2 == builder ]]; then
        # A builder installs with pip --target; Debian's guard for its own site-packages is
        # for a system, not for an image's build stage.
        rm -f -- "$lib/EXTERNALLY-MANAGED"
    else
        install -m 0755 "$work/python-main" "$r/usr/bin/python$PY_XY"
        for m in "${RUNTIME_DROP_MODULES[@]}"; do
            # shellcheck disable=SC2086 # $m is a glob
            rm -f -- "$lib"/lib-dynload/$m.cpython-*.so
        done
        rm -rf -- "$lib"/{ensurepip,idlelib,tkinter,turtledemo,test,EXTERNALLY-MANAGED} "$lib"/config-"$PY_XY"-*
        # Debian compiles the standard library when the package is configured; nothing is
        # configured in an extracted root filesystem, and the image's user cannot write there.
        # The builder's packages were configured: its bytecode is copied first, and
        # compileall only checks it (a .pyc names its source's mtime and size, so one from
        # another package version is compiled again). Emulated, compiling it all took ~5 min.
        reuse_bytecode "$work/builder-rootfs" "$r"
        chroot "$r" "/usr/bin/python$PY_XY" -m compileall -q "/usr/lib/python$PY_XY" >&2 ||
            die "compiling the runtime's standard library failed"
    fi
    ln -sfn "python$PY_XY" "$r/usr/bin/python"
    ln -sfn "python$PY_XY" "$r/usr/bin/python3"
}

# The byte-compiled modules of the builder's standard library ($1 = its root filesystem)
# whose source the runtime ($2) has, copied into the runtime.
reuse_bytecode() {
    local from=$1/usr/lib/python$PY_XY to=$2/usr/lib/python$PY_XY pyc rel name n=0
    while IFS= read -r -d '' pyc; do
        rel=${pyc#"$from"/}   # json/__pycache__/decoder.cpython-314.pyc
        name=${rel##*/}
        if [[ -f $to/${rel%__pycache__/*}${name%%.*}.py ]]; then
            install -D -m 0644 "$pyc" "$to/$rel"
            n=$((n + 1))
        fi
    done < <(find "$from" -path '*/__pycache__/*' -name "*.cpython-${PY_XY/./}.pyc" -print0)
    log "runtime: $n byte-compiled modules of the builder's standard library reused"
}

python_abi() { # $1 = rootfs; prints "cache_tag soabi" of its /usr/bin/python
    chroot "$1" /usr/bin/python -c \
        'import sys, sysconfig; print(sys.implementation.cache_tag, sysconfig.get_config_var("SOABI"))'
}

# ---------------------------------------------------------------------------------------
# Root filesystems
# ---------------------------------------------------------------------------------------
mmdebstrap_common() { # prints args shared by both images
    local hooks=/usr/share/mmdebstrap/hooks/merged-usr
    [[ -d $hooks ]] && printf '%s\n' "--hook-dir=$hooks"
    printf '%s\n' --architectures="$ARCH" --aptopt='Acquire::Languages "none"' --dpkgopt='path-exclude=/usr/share/man/*' \
        --dpkgopt='path-exclude=/usr/share/info/*' --dpkgopt='path-exclude=/usr/share/locale/*'
    # A development suite's Release file expires within days; a mirror kept as a snapshot
    # serves it expired. Its signature is still checked.
    if [[ $PY_FROM == debian ]]; then printf '%s\n' --aptopt='Acquire::Check-Valid-Until "false"'; fi
}

# The Debian suite of both images: the host's, or the development suite Debian's
# interpreter comes from.
image_suite() {
    if [[ $PY_FROM == debian ]]; then printf '%s\n' "$PY_SUITE"; else host_codename; fi
}

write_host_sources() {
    local suites=
    if [[ $PY_FROM == debian ]]; then suites=$PY_SUITE; fi
    host_sources deb "$suites" >"$work/host.sources"
    grep -q '^URIs:' "$work/host.sources" || die "no Debian 'deb' entries for $(host_codename) in the host's apt sources"
}

# mmdebstrap a root filesystem of image_suite, once per run. $1 = variant, $2 = name for
# the logs, $3 = directory, the rest = packages.
make_rootfs() {
    local variant=$1 name=$2 r=$3 extra=()
    shift 3
    [[ -d $r ]] && return 0
    local -a common
    mapfile -t common < <(mmdebstrap_common)
    write_host_sources
    if [[ $variant == extract ]]; then extra=(--skip=cleanup/apt/cache); fi
    log "mmdebstrap: $name root filesystem ($(image_suite), variant $variant)"
    mmdebstrap --variant="$variant" "${extra[@]}" --include="$(IFS=,; printf '%s' "$*")" \
        "${common[@]}" "$(image_suite)" "$r" "$work/host.sources" >"$work/mmdebstrap-$name.log" 2>&1 ||
        { rm -rf -- "$r"; tail -n 30 "$work/mmdebstrap-$name.log" >&2; die "mmdebstrap ($name) failed"; }
}

# Users as in Chainguard's images: root and nonroot (65532), nonroot's home /home/nonroot.
add_nonroot() { # $1 = rootfs, $2 = login shell
    local r=$1 shell=$2
    if [[ -f $r/etc/passwd ]]; then
        grep -q '^nonroot:' "$r/etc/passwd" ||
            printf 'nonroot:x:65532:65532:nonroot:/home/nonroot:%s\n' "$shell" >>"$r/etc/passwd"
        grep -q '^nonroot:' "$r/etc/group" || printf 'nonroot:x:65532:\n' >>"$r/etc/group"
        if [[ -f $r/etc/shadow ]] && ! grep -q '^nonroot:' "$r/etc/shadow"; then
            printf 'nonroot:*:19000:0:99999:7:::\n' >>"$r/etc/shadow"
        fi
    else
        printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$r/etc/passwd"
        printf 'root:x:0:\nnonroot:x:65532:\n' >"$r/etc/group"
    fi
    install -d -m 0755 -o 65532 -g 65532 "$r/home/nonroot"
    install -d -m 0700 "$r/root"
    install -d -m 1777 "$r/tmp"
    chmod 1777 "$r/tmp"
}

# The host's ldconfig reads only its own architecture's libraries: another's runs its own,
# emulated.
rootfs_ldconfig() { # $1 = rootfs
    if ((foreign)); then chroot "$1" /usr/sbin/ldconfig; else ldconfig -r "$1"; fi
}

import_image() { # $1 = rootfs, $2 = image, $3 = title, $4 = description; extra --change via IMPORT_CHANGES
    local rootfs=$1 image=$2 title=$3 desc=$4 abi tag soabi created
    abi=$(python_abi "$rootfs")
    tag=${abi% *}
    soabi=${abi#* }
    created=$(date -u +%Y-%m-%dT%H:%M:%SZ)
    local changes=(
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
        --change 'ENV LANG=C.UTF-8'
        --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt'
        --change 'USER 65532:65532'
        --change 'CMD ["/usr/bin/python"]'
        --change "LABEL org.opencontainers.image.title=\"$title\""
        --change "LABEL org.opencontainers.image.description=\"$desc\""
        --change "LABEL org.opencontainers.image.created=\"$created\""
        --change "LABEL org.opencontainers.image.version=\"$cpython_version\""
        --change "LABEL org.opencontainers.image.vendor=\"allocscope\""
        --change "LABEL org.opencontainers.image.base.name=\"debian:$(image_suite)\""
        --change "LABEL allocscope.base=\"debian\""
        --change "LABEL allocscope.python.version=\"$cpython_version\""
        --change "LABEL allocscope.python.cache_tag=\"$tag\""
        --change "LABEL allocscope.python.soabi=\"$soabi\""
        "${IMPORT_CHANGES[@]}"
    )
    local old new
    old=$(docker image inspect -f '{{.Id}}' "$image" 2>/dev/null || true)
    log "importing $image"
    new=$(tar -C "$rootfs" --numeric-owner -cf - . | docker import "${changes[@]}" - "$image")
    if ((foreign)); then
        # docker import labels every image with the engine's own architecture.
        docker save "$image" >"$work/import.tar"
        docker rmi "$new" >/dev/null
        "$PYTHON" "$here/set_platform.py" "$work/import.tar" "$ARCH" | docker load -q >&2 ||
            die "re-labelling $image as $ARCH failed"
        rm -f -- "$work/import.tar"
        new=$(docker image inspect -f '{{.Id}}' "$image")
    fi
    # The previous build under this tag is now untagged: drop it unless something uses it.
    if [[ -n $old && $old != "$new" ]]; then docker rmi "$old" >/dev/null 2>&1 || true; fi
}

image_size() { docker image inspect -f '{{.Size}}' "$1"; }

build_builder() {
    local r=$work/builder-rootfs start=$SECONDS
    make_rootfs apt builder "$r" "${BUILDER_PACKAGES[@]}"
    install_cpython "$r" builder
    ln -sfn pip3 "$r/usr/bin/pip"   # Chainguard's -dev images have a plain `pip`
    # The Dockerfile copies /usr/lib/libjemalloc.so.2, Wolfi's path: a real file, not a link.
    local je
    je=$(readlink -f "$r/usr/lib/$multiarch/libjemalloc.so.2")
    [[ -f $je ]] || die "libjemalloc2 did not install in the builder"
    install -m 0644 "$je" "$r/usr/lib/libjemalloc.so.2"
    add_nonroot "$r" /bin/sh
    rootfs_ldconfig "$r"
    IMPORT_CHANGES=(--change 'WORKDIR /home/nonroot')
    import_image "$r" "$BUILDER_IMAGE" "allocscope builder base" \
        "Debian $(image_suite) with CPython $cpython_version, pip, jemalloc"
    log "builder image built in $((SECONDS - start))s"
}

# The FIPS provider built by scripts/build-fips-provider.sh (cached per machine).
ensure_fips_provider() {
    local script=$repo_root/scripts/build-fips-provider.sh
    [[ -x $script ]] || die "$script is missing"
    fips_dir=$("$script" --arch "$ARCH" | tail -n1)
    [[ -f $fips_dir/ossl-modules/fips.so ]] || die "build-fips-provider.sh gave no usable dir ($fips_dir)"
}

# `openssl fipsinstall` (the module's self-tests and MAC) for the image's fips.so: the host's
# openssl, the one the provider was built for; for another architecture the builder root
# filesystem's, emulated, with -self_test_oninstall so the file has the install-status a
# 3.0 provider requires. $1 = fips.so, $2 = fipsmodule.cnf to write.
image_fipsinstall() {
    if ((foreign == 0)); then
        env -u OPENSSL_CONF -u OPENSSL_MODULES openssl fipsinstall -module "$1" -out "$2" -provider_name fips
        return
    fi
    local b=$work/builder-rootfs
    [[ -x $b/usr/bin/openssl ]] || die "the builder root filesystem has no openssl to run fipsinstall with"
    install -m 0644 "$1" "$b/tmp/fips.so"
    chroot "$b" /usr/bin/openssl fipsinstall -self_test_oninstall -module /tmp/fips.so \
        -out /tmp/fipsmodule.cnf -provider_name fips || return 1
    mv -- "$b/tmp/fipsmodule.cnf" "$2"
    rm -f -- "$b/tmp/fips.so"
}

build_runtime() {
    local r=$work/runtime-rootfs start=$SECONDS
    local -a keep
    ensure_fips_provider
    make_rootfs extract runtime "$r" "${RUNTIME_PACKAGES[@]}"

    # --- prune: only the libraries and data of the wanted packages stay ---------------
    keep=("${RUNTIME_PACKAGES[@]}" "${RUNTIME_KEEP_EXTRA[@]}")
    local deb pkg ver removed=() manifest=() k want
    mkdir -p "$work/status.d"
    for deb in "$r"/var/cache/apt/archives/*.deb; do
        pkg=$(dpkg-deb -f "$deb" Package)
        ver=$(dpkg-deb -f "$deb" Version)
        want=0
        # shellcheck disable=SC2053 # entries may be globs
        for k in "${keep[@]}"; do if [[ $pkg == $k ]]; then want=1; fi; done
        if ((want)); then
            manifest+=("$pkg $ver")
            # Package metadata for image scanners, as Google's distroless images keep it.
            { dpkg-deb -f "$deb"; printf 'Status: install ok installed\n'; } >"$work/status.d/$pkg"
            continue
        fi
        removed+=("$pkg")
        dpkg-deb --fsys-tarfile "$deb" | tar -t | while read -r f; do
            [[ $f == */ ]] && continue
            rm -f -- "$r/${f#./}"
        done
    done
    log "runtime packages kept: ${manifest[*]}"
    log "dependencies pulled in by apt and removed again: ${removed[*]:-none}"
    # No executables but ldconfig (python is added below), no package manager state, no docs
    # except copyright files, no device nodes (the engine provides /dev), no iconv modules
    # (gconv, 8 MB: CPython's codecs are its own; glibc handles UTF-8 without them).
    # ldconfig stays (a static binary, not a shell): ctypes.util.find_library runs
    # `ldconfig -p`, as it can in Chainguard's images.
    find "$r/usr/bin" "$r/usr/sbin" -mindepth 1 ! -path "$r/usr/sbin/ldconfig" -delete
    [[ -x $r/usr/sbin/ldconfig ]] || die "ldconfig missing from libc-bin"
    rm -rf -- "$r/usr/libexec" "$r/usr/games" "$r/usr/lib/ssl/misc" \
        "$r"/usr/share/{man,info,lintian,bash-completion,locale,debconf,perl5,pixmaps,menu,bug,gcc,gdb} \
        "$r"/etc/{apt,dpkg,debconf.conf,ca-certificates,ca-certificates.conf,fstab,hostname,resolv.conf,kernel,cron.daily,logrotate.d} \
        "$r"/var/lib/{apt,dpkg} "$r"/var/cache/{apt,debconf,ldconfig} "$r"/var/log/* \
        "$r"/usr/lib/"$multiarch"/{perl-base,perl,audit,gconv} "${r:?}"/dev/*
    find "$r/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete 2>/dev/null || true
    find "$r/usr/share/doc" -mindepth 1 -type d -empty -delete 2>/dev/null || true
    for k in lib32 libx32; do
        if [[ -L $r/$k && ! -e $r/usr/$k ]]; then rm -f -- "$r/$k"; fi
    done
    install -d -m 0755 "$r/var/lib/dpkg/status.d"
    cp "$work/status.d/"* "$r/var/lib/dpkg/status.d/"

    # --- system files --------------------------------------------------------------------
    add_nonroot "$r" /sbin/nologin
    printf 'passwd: files\ngroup: files\nshadow: files\nhosts: files dns\n' >"$r/etc/nsswitch.conf"
    install -m 0644 /usr/lib/os-release "$r/usr/lib/os-release"
    ln -sfn ../usr/lib/os-release "$r/etc/os-release"
    ln -sfn /usr/share/zoneinfo/Etc/UTC "$r/etc/localtime"
    printf 'Etc/UTC\n' >"$r/etc/timezone"
    # CA bundle as update-ca-certificates would write it (every certificate, in order).
    install -d -m 0755 "$r/etc/ssl/certs"
    find "$r/usr/share/ca-certificates" -name '*.crt' | LC_ALL=C sort |
        while read -r f; do awk 1 "$f"; done >"$r/etc/ssl/certs/ca-certificates.crt"
    [[ -s $r/etc/ssl/certs/ca-certificates.crt ]] || die "empty CA bundle"
    printf 'include /etc/ld.so.conf.d/*.conf\n' >"$r/etc/ld.so.conf"

    # --- CPython ---------------------------------------------------------------------------
    install_cpython "$r" runtime

    # --- OpenSSL FIPS provider ---------------------------------------------------------------
    local moddir=$r/usr/lib/$multiarch/ossl-modules
    install -d -m 0755 "$moddir"
    install -m 0644 "$fips_dir/ossl-modules/fips.so" "$moddir/fips.so"
    # fipsmodule.cnf belongs to one exact fips.so: regenerate it for the copy in the image
    # (self-tests run again) and check it matches the one the provider cache made.
    image_fipsinstall "$moddir/fips.so" "$r/etc/ssl/fipsmodule.cnf" >"$work/fipsinstall.log" 2>&1 ||
        { cat "$work/fipsinstall.log" >&2; die "openssl fipsinstall failed for the image's fips.so"; }
    chmod 0644 "$r/etc/ssl/fipsmodule.cnf"
    if [[ ! -f $fips_dir/fipsmodule.cnf ]]; then
        log "fipsmodule.cnf written by the $ARCH openssl under emulation (self-tests passed)"
    elif cmp -s "$r/etc/ssl/fipsmodule.cnf" "$fips_dir/fipsmodule.cnf"; then
        log "fipsmodule.cnf for the image is identical to the provider cache's (MAC covers the file, not its path)"
    else
        log "note: regenerated fipsmodule.cnf differs from the provider cache's; using the regenerated one"
    fi
    install -m 0644 "$here/openssl.cnf" "$r/etc/ssl/openssl.cnf"
    install -d -m 0755 "$r/usr/lib/ssl"
    ln -sfn /etc/ssl/openssl.cnf "$r/usr/lib/ssl/openssl.cnf"
    ln -sfn /etc/ssl/certs "$r/usr/lib/ssl/certs"
    ln -sfn /etc/ssl/certs/ca-certificates.crt "$r/usr/lib/ssl/cert.pem"
    local libssl_ver fips_ver
    libssl_ver=$(grep -h '^Version:' "$r"/var/lib/dpkg/status.d/libssl3* | awk '{print $2}')
    fips_ver=$(cat "$fips_dir/VERSION" 2>/dev/null || echo unknown)
    log "runtime libssl3 $libssl_ver, FIPS provider built from OpenSSL $fips_ver"
    [[ ${libssl_ver%%-*} == "$fips_ver" ]] ||
        log "warning: libssl3 ($libssl_ver) and the FIPS provider ($fips_ver) versions differ"

    rootfs_ldconfig "$r"
    rm -rf -- "$r/var/cache/ldconfig"

    # --- what must not be there ------------------------------------------------------------
    local bad
    bad=$(cd "$r" && find . \( -path ./proc -prune \) -o \( -type f -o -type l \) \
        \( -name sh -o -name bash -o -name dash -o -name busybox -o -name 'apt' -o -name 'apt-get' \
        -o -name dpkg -o -name 'pip' -o -name 'pip3*' -o -name perl \) -print)
    [[ -z $bad ]] || die "runtime contains forbidden executables: $bad"
    local bins
    bins=$(cd "$r/usr" && ls bin/* sbin/*)
    log "runtime executables: $(tr '\n' ' ' <<<"$bins")"

    IMPORT_CHANGES=(--change 'LABEL allocscope.fips.provider="OpenSSL FIPS provider '"$fips_ver"' built from source, not a validated module"'
        --change 'WORKDIR /home/nonroot')
    import_image "$r" "$RUNTIME_IMAGE" "allocscope FIPS runtime base" \
        "Distroless-style Debian $(image_suite) runtime: CPython $cpython_version, OpenSSL FIPS provider enforced, no shell"
    log "runtime image built in $((SECONDS - start))s"
}

smoke_test() {
    local out
    log "smoke test: $RUNTIME_IMAGE"
    out=$(docker run --rm --pull never --network none "$RUNTIME_IMAGE" /usr/bin/python -c '
import hashlib, _hashlib
assert _hashlib.get_fips_mode() == 1, "fips mode off"
for f in (lambda: hashlib.md5(), lambda: hashlib.new("md5")):
    try:
        f()
    except ValueError:
        pass
    else:
        raise SystemExit("MD5 was not refused")
hashlib.md5(usedforsecurity=False); hashlib.sha256(b"x")
import ssl, ctypes, sqlite3, json, uuid, zlib, lzma, bz2, decimal, zoneinfo, platform
print("ok", platform.machine(), ssl.OPENSSL_VERSION)
') || die "runtime smoke test failed"
    log "runtime: $out"
    if docker run --rm --pull never --network none --entrypoint /bin/sh "$RUNTIME_IMAGE" -c true >/dev/null 2>&1; then
        die "runtime has a working /bin/sh"
    fi
}

check_abi() {
    local a b
    a=$(docker run --rm --pull never --network none "$BUILDER_IMAGE" python -c 'import sys,sysconfig; print(sys.implementation.cache_tag, sysconfig.get_config_var("SOABI"))')
    b=$(docker run --rm --pull never --network none "$RUNTIME_IMAGE" python -c 'import sys,sysconfig; print(sys.implementation.cache_tag, sysconfig.get_config_var("SOABI"))')
    [[ $a == "$b" ]] || die "builder ABI ($a) differs from runtime ABI ($b)"
    log "builder and runtime share the Python ABI: $a"
}

ensure_engine() {
    docker info >/dev/null 2>&1 && return 0
    die "no Docker engine answers; start one with scripts/docker-engine.sh start"
}

# ---------------------------------------------------------------------------------------
t0=$SECONDS
if [[ $step == cpython && $PY_FROM == debian ]]; then
    die "$PY_SOURCE is Debian's $PY_SUITE build here: it needs $PY_SUITE's C library and does not run on this host; run it in the builder image (docker run --rm allocscope-base/builder python -V), or build CPython from source with ALLOCSCOPE_PY_SOURCE=python3.13"
fi
ensure_packages "${HOST_PACKAGES[@]}"
if ((foreign)); then ensure_emulation "$ARCH" || die "cannot run $ARCH programs here (see above)"; fi
PYTHON=${PYTHON:-python3}
ensure_cpython
case $step in
    cpython)
        printf '%s\n' "$cpython_dir" >&3 ;;
    builder)
        ensure_engine; build_builder
        printf '%s %s\n' "$BUILDER_IMAGE" "$(image_size "$BUILDER_IMAGE")" >&3 ;;
    runtime)
        ensure_engine; build_runtime; smoke_test
        printf '%s %s\n' "$RUNTIME_IMAGE" "$(image_size "$RUNTIME_IMAGE")" >&3 ;;
    all)
        ensure_engine; build_builder; build_runtime; smoke_test; check_abi
        printf '%s %s\n' "$BUILDER_IMAGE" "$(image_size "$BUILDER_IMAGE")" >&3
        printf '%s %s\n' "$RUNTIME_IMAGE" "$(image_size "$RUNTIME_IMAGE")" >&3 ;;
esac
log "done in $((SECONDS - t0))s"
