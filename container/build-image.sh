#!/usr/bin/env bash
# build-image.sh: build the allocscope image (container/Dockerfile), offline, as `make image`.
#
# Usage:
#   container/build-image.sh [--no-cache] [--app DIR [--requirements FILE] [--command CMD]]
#
#   --app DIR            your app's source directory (inside this repository, the build
#                        context; copied to /app/src); default: the demo service
#   --requirements FILE  its hash-locked requirements (default DIR/requirements.lock)
#   --command CMD        what the launcher execs after its checks (the image's
#                        ALLOCSCOPE_COMMAND), e.g. 'gunicorn -c python:allocscope.gunicorn_conf app:app';
#                        default: the first line of DIR/command, if there is one
#
# Steps: start a loopback-only Docker engine if none runs (scripts/docker-engine.sh; it is
# left running for `docker run`), choose the base images, fetch the hash-locked wheels and
# build allocscope's wheel on the host (container/fetch-wheels.sh), then
# `docker build --network host` with the bases as build arguments. Nothing inside a build
# container touches the network.
#
# Base images (ALLOCSCOPE_BASES):
#   auto (default)  Chainguard's python:latest-dev and python-fips:latest when both are
#                   already present locally; otherwise the Debian stand-ins
#   chainguard      Chainguard's; pulled when missing (fails without registry access)
#   debian          allocscope-base/builder and allocscope-base/runtime-fips, built from
#                   Debian packages by container/base/build-bases.sh when missing or when
#                   that script (or the FIPS provider script) changed since they were built
# BUILDER_IMAGE and RUNTIME_IMAGE, when both are set, override the choice.
#
# Platforms (PLATFORMS, e.g. linux/amd64,linux/arm64): default, both where arm64 can already
# be emulated here (qemu-aarch64 registered in binfmt_misc), this machine's own otherwise;
# the build output says which and why. Another architecture named in PLATFORMS runs under
# emulation (Debian's qemu-user-static and binfmt-support, installed when missing;
# binfmt_misc is mounted when it is not): cold, its bases take about ten minutes on two
# cores.
# Each platform is built on its own bases (another architecture's always on the Debian
# stand-ins, built under emulation) and tagged in the local engine: this machine's as
# ALLOCSCOPE_IMAGE, another as ALLOCSCOPE_IMAGE-ARCH (allocscope:latest-arm64). With more
# than one, they are also published as one multi-architecture reference, an OCI image
# index, in the OCI layout container/oci/NAME (tag as ALLOCSCOPE_IMAGE's), for skopeo,
# podman or a registry push: `skopeo copy oci:container/oci/allocscope:latest docker://...`.
#
# Environment:
#   REGISTRY, ORG              Chainguard's registry and organisation (cgr.dev, chainguard)
#   ALLOCSCOPE_IMAGE           the tag to build (default allocscope:latest; also tagged
#                              with the version)
#   ALLOCSCOPE_REBUILD_BASES=1 rebuild the Debian bases even if they look current
#   ALLOCSCOPE_CACHE           cache root (default ~/.cache/allocscope), shared with
#                              build-bases.sh
#   ALLOCSCOPE_SOURCE_URL      the org.opencontainers.image.source label (default: the git
#                              remote origin, if any)
# stdout: one line "image size-in-bytes" per platform; progress goes to stderr.
set -euo pipefail

exec 3>&1 1>&2

here=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd -- "$here/.." && pwd)

# shellcheck source=scripts/lib.sh
. "$repo_root/scripts/lib.sh"

no_cache=()
app_src=container/demo
app_requirements=
app_command=
while (($#)); do
    case $1 in
        --no-cache) no_cache=(--no-cache) ;;
        --app) app_src=${2:?--app needs a directory}; shift ;;
        --requirements) app_requirements=${2:?--requirements needs a file}; shift ;;
        --command) app_command=${2?--command needs a command}; shift ;;
        -h | --help) usage; exit 0 ;;
        *) usage; die "unknown argument: $1" ;;
    esac
    shift
done

# Build arguments name paths in the build context: relative to the repository root.
in_context() { # $1 = path as given; prints it relative to the repository root
    local full
    full=$(realpath -m -- "$1")
    [[ $full == "$repo_root"/* ]] || die "$1 is outside the build context ($repo_root): put your app inside it"
    printf '%s\n' "${full#"$repo_root"/}"
}
app_src=$(in_context "$app_src")
[[ -d $repo_root/$app_src ]] || die "--app $app_src is not a directory"
if [[ -z $app_requirements ]]; then
    if [[ $app_src == container/demo ]]; then app_requirements=container/requirements.lock
    else app_requirements=$app_src/requirements.lock; fi
fi
app_requirements=$(in_context "$app_requirements")
# An app directory may carry its command in a file named command (one line).
if [[ -z $app_command && -f $repo_root/$app_src/command ]]; then
    app_command=$(head -n1 -- "$repo_root/$app_src/command")
fi
[[ -f $repo_root/$app_requirements ]] || die "the requirements $app_requirements do not exist"

native=$(dpkg --print-architecture)
if [[ -n ${PLATFORMS:-} ]]; then
    IFS=, read -r -a platforms <<<"$PLATFORMS"
    for p in "${platforms[@]}"; do
        case $p in
            linux/amd64 | linux/arm64) ;;
            *) die "PLATFORMS: $p is not linux/amd64 or linux/arm64" ;;
        esac
        if [[ $p != "linux/$native" ]]; then
            ensure_emulation "${p#linux/}" || die "PLATFORMS names $p, but its programs cannot run here (see above)"
        fi
    done
else
    platforms=("linux/$native")
    if [[ $native == amd64 ]] && emulation_ready arm64; then
        platforms+=(linux/arm64)
        log "platforms: linux/amd64 and linux/arm64 (arm64 emulated: qemu-aarch64 is registered here; PLATFORMS=linux/amd64 builds one)"
    else
        log "platforms: linux/$native only (arm64 cannot be emulated here yet; PLATFORMS=linux/amd64,linux/arm64 installs qemu-user-static and builds both)"
    fi
fi

BASES=${ALLOCSCOPE_BASES:-auto}
REGISTRY=${REGISTRY:-cgr.dev}
ORG=${ORG:-chainguard}
IMAGE=${ALLOCSCOPE_IMAGE:-allocscope:latest}
CACHE=${ALLOCSCOPE_CACHE:-${HOME:?HOME is not set}/.cache/allocscope}
BASE_REPO=${ALLOCSCOPE_BASE_REPO:-allocscope-base}
BASE_TAG=${ALLOCSCOPE_BASE_TAG:-latest}
export DOCKER_BUILDKIT=0 # Debian's docker.io 20.10 has no BuildKit; say so explicitly

start=$SECONDS
# Before taking the lock: a dockerd started here must not inherit the lock's descriptor.
"$repo_root/scripts/docker-engine.sh" start 3>&-

mkdir -p "$CACHE"
# One build at a time on this machine (test sessions may ask for the image concurrently).
# Children get the descriptor closed (9>&-): mmdebstrap's helpers run under dash, which
# cannot redirect descriptors above 9, so they must find low numbers free.
exec 9>"$CACHE/build-image.lock"
flock 9

have_image() { docker image inspect "$1" >/dev/null 2>&1; }
image_id() { docker image inspect -f '{{.Id}}' "$1" 2>/dev/null || true; }

# A fingerprint of what the Debian bases are built from, with the images' ids: when it
# matches the stamp written after the last build, the images are current.
debian_stamp() {
    {
        sha256sum "$here/base/build-bases.sh" "$here/base/python-main.c" "$here/base/openssl.cnf" \
            "$here/base/set_platform.py" "$repo_root/scripts/build-fips-provider.sh" | cut -d' ' -f1
        printf '%s\n' "${ALLOCSCOPE_PY_SOURCE:-}" "${ALLOCSCOPE_PY_SUITE:-}" "${ALLOCSCOPE_PY_FROM:-}"
        image_id "$1"
        image_id "$2"
    } | sha256sum | cut -d' ' -f1
}

debian_bases() { # $1 = Debian architecture
    local tag=$BASE_TAG
    if [[ $1 != "$native" ]]; then tag=$BASE_TAG-$1; fi
    builder=$BASE_REPO/builder:$tag
    runtime=$BASE_REPO/runtime-fips:$tag
    local stamp_file=$CACHE/bases-${BASE_REPO//\//_}-$tag.stamp
    if [[ ${ALLOCSCOPE_REBUILD_BASES:-0} != 1 ]] && have_image "$builder" && have_image "$runtime" &&
        [[ -f $stamp_file && $(<"$stamp_file") == "$(debian_stamp "$builder" "$runtime")" ]]; then
        log "Debian bases are current: $builder, $runtime"
        return 0
    fi
    log "building the Debian bases (container/base/build-bases.sh; CPython is cached in $CACHE)"
    local t=$SECONDS
    ALLOCSCOPE_CACHE=$CACHE ALLOCSCOPE_BASE_REPO=$BASE_REPO ALLOCSCOPE_BASE_TAG=$tag \
        ALLOCSCOPE_ARCH=$1 PYTHON=$PYTHON "$here/base/build-bases.sh" all >&2 3>&- 9>&-
    debian_stamp "$builder" "$runtime" >"$stamp_file"
    log "Debian bases ($1) built in $((SECONDS - t))s"
}

PYTHON=${PYTHON:-$repo_root/.venv/bin/python}
[[ -x $PYTHON ]] || PYTHON=python3

# Chooses builder and runtime for Debian architecture $1 (another architecture's: the
# Debian stand-ins, built for it).
choose_bases() {
    if [[ $1 != "$native" ]]; then
        log "bases for $1: the Debian stand-ins (built under emulation)"
        debian_bases "$1"
        return
    fi
    choose_native_bases
}

chainguard_builder=$REGISTRY/$ORG/python:latest-dev
chainguard_runtime=$REGISTRY/$ORG/python-fips:latest

choose_native_bases() {
if [[ -n ${BUILDER_IMAGE:-} && -n ${RUNTIME_IMAGE:-} ]]; then
    builder=$BUILDER_IMAGE
    runtime=$RUNTIME_IMAGE
    for i in "$builder" "$runtime"; do have_image "$i" || die "$i is not present locally"; done
    log "bases from BUILDER_IMAGE/RUNTIME_IMAGE: $builder, $runtime"
else
    case $BASES in
        chainguard)
            builder=$chainguard_builder
            runtime=$chainguard_runtime
            for i in "$builder" "$runtime"; do
                if ! have_image "$i"; then
                    log "pulling $i"
                    docker pull "$i" >&2 ||
                        die "cannot pull $i (no access to that registry, or the image needs a subscription); ALLOCSCOPE_BASES=debian builds local stand-ins"
                fi
            done
            ;;
        auto)
            if have_image "$chainguard_builder" && have_image "$chainguard_runtime"; then
                builder=$chainguard_builder
                runtime=$chainguard_runtime
                log "using Chainguard's bases (present locally)"
            else
                log "Chainguard's bases are not present locally: using the Debian stand-ins"
                debian_bases "$native"
            fi
            ;;
        debian) debian_bases "$native" ;;
        *) die "ALLOCSCOPE_BASES must be auto, chainguard or debian, not $BASES" ;;
    esac
fi
}

# Both stages must run the same CPython ABI: ask each interpreter.
py_info() {
    docker run --rm --pull never --network none --entrypoint /usr/bin/python "$1" -c \
        'import sys; print(sys.implementation.cache_tag, "%d.%d" % sys.version_info[:2])'
}
# Builds the image for Debian architecture $1, tagged $IMAGE (set by the caller).
build_platform() {
choose_bases "$1"
read -r builder_tag builder_py < <(py_info "$builder") || die "cannot run /usr/bin/python in $builder"
read -r runtime_tag _ < <(py_info "$runtime") || die "cannot run /usr/bin/python in $runtime"
[[ $builder_tag == "$runtime_tag" ]] ||
    die "the builder runs $builder_tag but the runtime $runtime_tag: vendored extensions would not load (choose bases with the same Python)"
log "Python ABI of both stages: $builder_tag"

arch=$(docker image inspect -f '{{.Architecture}}' "$runtime")
[[ $arch == "$1" ]] || die "the runtime base $runtime is built for $arch, not $1"
"$here/fetch-wheels.sh" --python "$builder_py" --arch "$arch" --lock "$repo_root/$app_requirements" >/dev/null

version=$(cut -d' ' -f1 <<<"$(sed -n 's/^allocscope==\([^ ]*\).*/\1/p' "$here/wheels/app/allocscope.lock")")
revision=$(git -C "$repo_root" rev-parse HEAD 2>/dev/null || echo unknown)
if [[ $revision != unknown && -n $(git -C "$repo_root" status --porcelain -- src bench_alloc.py container "$app_src" "$app_requirements" 2>/dev/null) ]]; then
    revision=$revision-dirty
fi

# org.opencontainers.image.source: where the source is; the git remote when there is one.
source_url=${ALLOCSCOPE_SOURCE_URL:-$(git -C "$repo_root" remote get-url origin 2>/dev/null ||
    echo "unknown: no git remote (ALLOCSCOPE_SOURCE_URL names it)")}

old=$(image_id "$IMAGE")
log "docker build $IMAGE (builder $builder, runtime $runtime)"
t=$SECONDS
created=$(date -u +%Y-%m-%dT%H:%M:%SZ)
docker build --network host "${no_cache[@]}" -f "$here/Dockerfile" \
    --build-arg "BUILDER_IMAGE=$builder" --build-arg "RUNTIME_IMAGE=$runtime" \
    --build-arg "PYTHON_TAG=$builder_tag" --build-arg "VERSION=$version" \
    --build-arg "REVISION=$revision" --build-arg "CREATED=$created" \
    --build-arg "SOURCE=$source_url" \
    --build-arg "APP_SRC=$app_src" --build-arg "APP_REQUIREMENTS=$app_requirements" \
    --build-arg "APP_COMMAND=$app_command" \
    -t "$IMAGE" "$repo_root" >&2
log "docker build took $((SECONDS - t))s"

# --- SBOM (CycloneDX): the Python packages from the locks (cyclonedx-py) with the hashes of
# the very wheels installed, the runtime base's system packages, jemalloc and the FIPS
# provider; kept beside the image (container/sboms/) and added to it as /app/sbom.cdx.json.
# What only the built image can tell (its interpreter, the jemalloc it preloads) is asked of it.
IMAGE_FACTS_PY='import ctypes, json, platform
v = ctypes.c_char_p(); n = ctypes.c_size_t(ctypes.sizeof(v))
ctypes.CDLL("/usr/lib/libjemalloc.so.2").mallctl(b"version", ctypes.byref(v), ctypes.byref(n), None, 0)
print(json.dumps({"python": platform.python_version(), "jemalloc_version": v.value.decode()}))'

label() { docker image inspect -f "{{index .Config.Labels \"$2\"}}" "$1" 2>/dev/null || true; }

sbom() { # $1 = Debian architecture
    local work cyclonedx c digest
    work=$(mktemp -d "${TMPDIR:-/tmp}/allocscope-sbom.XXXXXX")
    cyclonedx=$repo_root/.venv/bin/cyclonedx-py
    [[ -x $cyclonedx ]] || cyclonedx=$(command -v cyclonedx-py) ||
        die "cyclonedx-py is missing: pip install -e '.[dev]' (cyclonedx-bom) into .venv"
    cat "$repo_root/$app_requirements" "$here/wheels/app/allocscope.lock" >"$work/requirements.txt"
    "$cyclonedx" requirements --of JSON --output-reproducible -i file:///wheels \
        -o "$work/python.cdx.json" "$work/requirements.txt" >&2 || die "cyclonedx-py failed"
    mkdir -p "$work/osdb"
    c=$(docker create --network none "$runtime")
    docker cp "$c:/var/lib/dpkg/status.d" "$work/osdb/status.d" >/dev/null 2>&1 ||
        docker cp "$c:/lib/apk/db/installed" "$work/osdb/installed" >/dev/null 2>&1 ||
        log "warning: $runtime has no dpkg status.d or apk database: the SBOM lists no system packages"
    docker rm "$c" >/dev/null
    docker run --rm --pull never --network none --entrypoint /usr/bin/python "$IMAGE" -c "$IMAGE_FACTS_PY" \
        >"$work/image.json" || die "cannot read the interpreter and jemalloc versions from $IMAGE"
    local base fips
    base=$(label "$runtime" org.opencontainers.image.base.name)
    fips=$(label "$runtime" allocscope.fips.provider)
    "$PYTHON" "$here/sbom_facts.py" "$work/image.json" image="$IMAGE" version="$version" \
        revision="$revision" created="$created" runtime="$runtime" builder="$builder" \
        app_src="$app_src" command="$app_command" distro="${base/:/-}" platform="linux/$1" \
        fips_provider="${fips:-the runtime base image provides it}" \
        >"$work/facts.json" || die "collecting the SBOM's facts failed"
    "$PYTHON" "$here/sbom.py" "$work/python.cdx.json" "$here/wheels" "$work/osdb" \
        "$work/facts.json" "$work/sbom.cdx.json" || die "writing the SBOM failed"
    mkdir -p "$here/sboms"
    sbom_file=$here/sboms/$(tr '/:' '__' <<<"$IMAGE").cdx.json
    cp "$work/sbom.cdx.json" "$sbom_file"
    digest=$(sha256sum "$sbom_file" | cut -d' ' -f1)
    printf 'FROM %s\nCOPY sbom.cdx.json /app/sbom.cdx.json\nLABEL allocscope.sbom="/app/sbom.cdx.json" allocscope.sbom.sha256="%s" allocscope.sbom.format="CycloneDX 1.6 JSON"\n' \
        "$(image_id "$IMAGE")" "$digest" >"$work/Dockerfile"
    docker build --network none -q -t "$IMAGE" -t "${IMAGE%:*}:$version$suffix" "$work" >/dev/null ||
        die "adding the SBOM to $IMAGE failed"
    rm -rf -- "$work"
    log "SBOM: $sbom_file ($(grep -c '"bom-ref"' "$sbom_file") bom-refs), also /app/sbom.cdx.json in $IMAGE"
}
sbom "$1"
new=$(image_id "$IMAGE")
# The previous build under this tag is now untagged: drop it unless something uses it.
if [[ -n $old && $old != "$new" ]]; then docker rmi "$old" >/dev/null 2>&1 || true; fi

size=$(docker image inspect -f '{{.Size}}' "$IMAGE")
log "$IMAGE: $((size / 1000 / 1000)) MB, built in $((SECONDS - start))s (bases: $builder, $runtime)"
printf '%s %s\n' "$IMAGE" "$size" >&3
}

oci_index() { # the built images as one OCI image index; $@ = the local tags, in platform order
    local name=${IMAGE%:*} tag=${IMAGE##*:} layout t refs=()
    layout=$here/oci/${name//\//_}
    command -v skopeo >/dev/null || ensure_packages skopeo
    mkdir -p "$layout"
    for t in "$@"; do
        skopeo copy -q "docker-daemon:$t" "oci:$layout:${t##*:}" >&2 || die "skopeo copy of $t failed"
        refs+=("${t##*:}")
    done
    "$PYTHON" "$here/oci_index.py" "$layout" "$tag" "${refs[@]}" >&2 || die "writing the OCI index failed"
    log "OCI image index: oci:$layout:$tag ($(skopeo inspect --raw "oci:$layout:$tag" |
        "$PYTHON" -c 'import json, sys; print(", ".join("%(os)s/%(architecture)s" % m["platform"] for m in json.load(sys.stdin)["manifests"]))'))"
}

base_image=$IMAGE
built=()
for p in "${platforms[@]}"; do
    a=${p#linux/}
    IMAGE=$base_image
    suffix=
    if [[ $a != "$native" ]]; then suffix=-$a; fi
    IMAGE=$base_image$suffix
    log "--- $p: $IMAGE"
    t0=$SECONDS
    build_platform "$a"
    log "$p built in $((SECONDS - t0))s"
    built+=("$IMAGE")
done
IMAGE=$base_image
if ((${#built[@]} > 1)); then oci_index "${built[@]}"; fi
