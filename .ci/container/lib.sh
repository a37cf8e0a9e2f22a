# Shared by .ci/container/test.sh: tools, podman set-up, the stand-in base image, the wheelhouse.
# Source it; it defines functions and variables only.
# shellcheck shell=bash

CONTAINER_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$CONTAINER_DIR/../.." && pwd)
TOOLS_DIR="$REPO_ROOT/.ci/.tools"
CACHE_DIR="${OBSERVER_INSIGHTS_CACHE:-$HOME/.cache/observer-insights}/container"
BASE_IMAGE=docker.io/library/python:3.11-slim-bookworm

log() { printf '[container %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "FAIL: $*"; exit 1; }

_apt_updated=
apt_install() {  # apt_install [--no-install-recommends] PKG...: install what is missing
    local flags=() missing=() pkg
    while [ "${1:-}" = --no-install-recommends ]; do flags+=("$1"); shift; done
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" \
            || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    log "apt-get install ${missing[*]}"
    if [ -z "$_apt_updated" ]; then
        apt-get update -qq >/dev/null
        _apt_updated=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${flags[@]}" "${missing[@]}" >/dev/null
}

# podman on these machines: crun fails (cgroups hybrid mode, setrlimit), so runc and no
# default ulimits; both lines are needed. A private file, so the machine's own stays untouched.
setup_podman() {
    apt_install podman buildah runc
    apt_install --no-install-recommends mmdebstrap
    mkdir -p "$TOOLS_DIR"
    CONTAINERS_CONF="$TOOLS_DIR/containers.conf"
    printf '[containers]\ndefault_ulimits = []\n\n[engine]\nruntime = "runc"\n' >"$CONTAINERS_CONF"
    export CONTAINERS_CONF
}

# The real base cannot be pulled here: build a stand-in with the same name from Debian
# bookworm's own python3 (3.11), slimmed like the official image, cached as a tarball keyed
# by this recipe. The Dockerfile is then built unchanged with --pull=never.
_base_recipe() {
    cat <<'RECIPE'
mmdebstrap --variant=minbase --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr
  --include=python3,python3-venv,ca-certificates bookworm; slim: docs, man, locales, apt lists
env: LANG=C.UTF-8 PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin; cmd python3
RECIPE
}

ensure_base_image() {
    local key tarball root
    key=$(_base_recipe | sha256sum | cut -c1-16)
    tarball="$CACHE_DIR/base-$key.tar"
    if podman image exists "$BASE_IMAGE" \
        && [ "$(podman image inspect -f '{{index .Labels "ci.stand-in"}}' "$BASE_IMAGE" 2>/dev/null)" = "$key" ]; then
        log "stand-in base image present ($key)"
        return 0
    fi
    mkdir -p "$CACHE_DIR"
    if [ -f "$tarball" ]; then
        log "loading stand-in base image from cache ($key)"
        podman load -q -i "$tarball" >/dev/null
        return 0
    fi
    log "building stand-in base image with mmdebstrap (about a minute)"
    root=$(mktemp -d)
    mmdebstrap --quiet --variant=minbase --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
        --include=python3,python3-venv,ca-certificates bookworm "$root" >"$CACHE_DIR/mmdebstrap.log" 2>&1 \
        || { tail -20 "$CACHE_DIR/mmdebstrap.log" >&2; die "mmdebstrap failed"; }
    rm -rf "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* \
        "$root"/usr/share/locale/* "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/* \
        "$root"/var/cache/debconf/*-old "$root"/var/log/*
    tar -C "$root" -c . | podman import -q \
        --change 'ENV LANG=C.UTF-8' \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change "LABEL ci.stand-in=$key" \
        --change 'CMD ["python3"]' \
        - "$BASE_IMAGE" >/dev/null
    rm -rf "$root"
    podman save -q -o "$tarball.tmp" "$BASE_IMAGE" && mv "$tarball.tmp" "$tarball"
    log "stand-in base image built and cached: $(du -h "$tarball" | cut -f1)"
}

# Containers cannot reach PyPI here: the host downloads the locked wheels (plus the build
# backend and the dev image's reloader) for the image's platform, and the build reads them through a mounted pip.conf.
ensure_wheelhouse() {
    local key watchfiles
    watchfiles=$(sed -n 's/^ARG WATCHFILES_VERSION=//p' "$REPO_ROOT/Dockerfile")
    key=$( (cat "$REPO_ROOT/requirements.lock" "$REPO_ROOT/pyproject.toml"; echo "$watchfiles") \
        | sha256sum | cut -c1-16)
    WHEELHOUSE="$CACHE_DIR/wheels-$key"
    PIP_CONF="$CACHE_DIR/pip.conf"
    mkdir -p "$CACHE_DIR"
    printf '[global]\nno-index = true\nfind-links = /wheels\n' >"$PIP_CONF"
    if [ -f "$WHEELHOUSE/.complete" ]; then
        log "wheelhouse present ($key)"
        return 0
    fi
    log "downloading the locked wheels for manylinux2014_x86_64 / cp311"
    rm -rf "$WHEELHOUSE"
    python3 -m pip download --quiet --disable-pip-version-check --only-binary=:all: \
        --platform manylinux2014_x86_64 --python-version 3.11 --implementation cp --abi cp311 \
        -d "$WHEELHOUSE" -r "$REPO_ROOT/requirements.lock" "setuptools>=69" wheel \
        "watchfiles==$watchfiles"
    touch "$WHEELHOUSE/.complete"
}
