#!/usr/bin/env bash
# Make a Docker engine and the local base images ready for the docker tests; idempotent, as root.
#
#   1. install docker.io, debootstrap, patchelf and binutils with apt-get when one of them is missing;
#   2. start dockerd in the background when `docker info` does not answer, and wait for it (bounded);
#   3. build the base images with debootstrap when `docker image inspect` does not find them:
#        venvprune-base:bookworm        minbase + python3, python3-venv, libpq5, binutils (the builder stage;
#                                       binutils for the find/strip chain that docker-examples/build.py
#                                       compares with: python:3.12-slim lacks it and the chain installs it)
#        venvprune-final:bookworm       minbase + python3 only: no pip, no venv, no libpq5 (a final stage; the
#                                       missing-system-library test needs libpq.so.5 to be absent)
#        venvprune-distroless:bookworm  Debian's python3 and the libraries it needs, copied out of the final
#                                       image by make-distroless.py: no shell, no pip, no apt (stands for
#                                       gcr.io/distroless/python3-debian12, which cannot be pulled here)
#      The root file systems are kept as tarballs (and the .debs in a package cache) under
#      $VENVPRUNE_DOCKER_CACHE (default /var/cache/venvprune-docker), so a second build is fast.
#
# There is no registry here: nothing is pulled, the images are imported from tarballs.
# Prints one line per thing it does on stderr, nothing when all is ready; exits non-zero with a message on failure.
#
# Environment:
#   VENVPRUNE_DOCKER_CACHE   cache directory (default /var/cache/venvprune-docker)
#   VENVPRUNE_DOCKER_WAIT    seconds to wait for dockerd (default 60)
#   VENVPRUNE_DEBIAN_MIRROR  Debian mirror for debootstrap (default http://deb.debian.org/debian)
#   VENVPRUNE_DOCKERD_LOG    dockerd's log file (default: a new temporary file)

set -euo pipefail

SUITE=bookworm
BASE_IMAGE="venvprune-base:$SUITE"
BASE_PACKAGES="python3,python3-venv,libpq5,binutils"
FINAL_IMAGE="venvprune-final:$SUITE"
FINAL_PACKAGES="python3"
DISTROLESS_IMAGE="venvprune-distroless:$SUITE"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
MAKE_DISTROLESS="$HERE/make-distroless.py"

CACHE="${VENVPRUNE_DOCKER_CACHE:-/var/cache/venvprune-docker}"
WAIT="${VENVPRUNE_DOCKER_WAIT:-60}"
MIRROR="${VENVPRUNE_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
DOCKER=/usr/bin/docker # Debian's client: BuildKit built in (the one in /usr/local/bin wants a buildx plugin)

say() { echo "start-engine: $*" >&2; }
die() {
    echo "start-engine: error: $*" >&2
    exit 1
}

[ "$(id -u)" = 0 ] || die "must run as root (it installs packages, starts dockerd and runs debootstrap)"

# --- 1. packages -------------------------------------------------------------------------------------------
missing=()
[ -x /usr/bin/docker ] && command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
command -v patchelf >/dev/null 2>&1 || missing+=(patchelf)
command -v strip >/dev/null 2>&1 || missing+=(binutils) # the tests run the find/strip chain on host venvs too
if [ "${#missing[@]}" -gt 0 ]; then
    say "installing ${missing[*]} with apt-get"
    apt_log="$(mktemp /tmp/venvprune-apt.XXXXXX.log)"
    if ! { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"; } \
        >"$apt_log" 2>&1 </dev/null; then
        tail -n 20 "$apt_log" >&2
        die "apt-get install ${missing[*]} failed (log: $apt_log)"
    fi
    rm -f "$apt_log"
fi

mkdir -p "$CACHE" 2>/dev/null || die "cannot create the cache directory $CACHE (VENVPRUNE_DOCKER_CACHE)"
# One run at a time: two test sessions must not start two daemons or debootstrap into the same directory.
exec 9>"$CACHE/.lock"
flock -w 1800 9 || die "another start-engine.sh has held $CACHE/.lock for 30 minutes"

# --- 2. the daemon -----------------------------------------------------------------------------------------
engine_up() { "$DOCKER" info >/dev/null 2>&1; }

if ! engine_up; then
    log="${VENVPRUNE_DOCKERD_LOG:-$(mktemp /tmp/venvprune-dockerd.XXXXXX.log)}"
    say "starting dockerd (log: $log)"
    # Detached from this script's stdin/stdout/stderr and lock, so a caller that captures our output
    # (pytest's subprocess.run) does not wait for the daemon to exit.
    setsid nohup dockerd >"$log" 2>&1 </dev/null 9>&- &
    pid=$!
    deadline=$((SECONDS + WAIT))
    until engine_up; do
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 20 "$log" >&2
            die "dockerd exited at start (log: $log)"
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            tail -n 20 "$log" >&2
            die "dockerd did not answer within ${WAIT} s (pid $pid, log: $log)"
        fi
        sleep 0.5
    done
fi

# --- 3. the base images ------------------------------------------------------------------------------------
# The image's comment records the package list, so changing BASE_PACKAGES or FINAL_PACKAGES rebuilds it.
image_ready() { # NAME COMMENT
    [ "$("$DOCKER" image inspect -f '{{.Comment}}' "$1" 2>/dev/null)" = "$2" ]
}

rootfs_tarball() { # NAME PACKAGES -> path of the cached tarball, made with debootstrap when absent
    local name="$1" packages="$2"
    local tarball="$CACHE/${name%%:*}-$SUITE-${packages//,/+}.tar"
    if [ ! -s "$tarball" ]; then
        local work
        work="$(mktemp -d "$CACHE/rootfs.XXXXXX")"
        # debootstrap mounts /proc and /sys inside the rootfs while it configures packages; never leave them.
        # shellcheck disable=SC2064
        trap "umount -R '$work/rootfs/proc' '$work/rootfs/sys' 2>/dev/null || true; rm -rf '$work'" EXIT
        say "debootstrap $SUITE with $packages for $name (about 1.5 min the first time)"
        mkdir -p "$CACHE/debs"
        if ! debootstrap --variant=minbase --include="$packages" --cache-dir="$CACHE/debs" \
            "$SUITE" "$work/rootfs" "$MIRROR" >"$work/debootstrap.log" 2>&1 </dev/null; then
            tail -n 20 "$work/debootstrap.log" >&2
            [ -f "$work/rootfs/debootstrap/debootstrap.log" ] && tail -n 20 "$work/rootfs/debootstrap/debootstrap.log" >&2
            die "debootstrap of $name failed"
        fi
        # No apt lists, no package caches, no docs in the image: the base should be small.
        rm -rf "$work/rootfs/var/lib/apt/lists/"* "$work/rootfs/var/cache/apt/"*.bin \
            "$work/rootfs/var/cache/apt/archives/"*.deb "$work/rootfs/usr/share/doc/"* \
            "$work/rootfs/usr/share/man/"* "$work/rootfs/usr/share/info/"*
        tar --numeric-owner --xattrs -C "$work/rootfs" -cf "$work/rootfs.tar" . ||
            die "cannot write the rootfs tarball of $name"
        mv "$work/rootfs.tar" "$tarball"
        rm -rf "$work"
        trap - EXIT
    fi
    echo "$tarball"
}

build_image() { # NAME PACKAGES
    local name="$1" packages="$2"
    local comment="venvprune debootstrap $SUITE minbase: $packages"
    image_ready "$name" "$comment" && return 0
    local tarball
    tarball="$(rootfs_tarball "$name" "$packages")"
    say "importing $name"
    "$DOCKER" import -m "$comment" \
        -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        -c 'ENV LANG=C.UTF-8' \
        -c 'CMD ["/usr/bin/python3"]' \
        "$tarball" "$name" >/dev/null || die "docker import of $name failed"
    image_ready "$name" "$comment" || die "$name is not in the image store after docker import"
}

build_distroless() { # made from the final image: only Debian's python3 and its libraries, no shell
    # The comment records the script's hash, so a change to make-distroless.py rebuilds the image.
    local comment
    comment="venvprune distroless from $FINAL_IMAGE: make-distroless.py $(sha256sum "$MAKE_DISTROLESS" | cut -c1-16)"
    image_ready "$DISTROLESS_IMAGE" "$comment" && return 0
    local work
    work="$(mktemp -d "$CACHE/distroless.XXXXXX")"
    # shellcheck disable=SC2064
    trap "rm -rf '$work'" EXIT
    say "making $DISTROLESS_IMAGE from $FINAL_IMAGE"
    mkdir "$work/rootfs"
    "$DOCKER" run --rm --network=none -v "$MAKE_DISTROLESS:/make-distroless.py:ro" -v "$work/rootfs:/out" \
        "$FINAL_IMAGE" python3 /make-distroless.py /out >"$work/make.log" 2>&1 ||
        { tail -n 20 "$work/make.log" >&2; die "make-distroless.py failed in $FINAL_IMAGE"; }
    # distroless/python3 runs Python as its entry point, so `docker run IMAGE script.py` works the same here.
    tar --numeric-owner --xattrs -C "$work/rootfs" -c . |
        "$DOCKER" import -m "$comment" \
            -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
            -c 'ENV LANG=C.UTF-8' \
            -c 'ENTRYPOINT ["/usr/bin/python3.11"]' \
            - "$DISTROLESS_IMAGE" >/dev/null || die "docker import of $DISTROLESS_IMAGE failed"
    rm -rf "$work"
    trap - EXIT
    image_ready "$DISTROLESS_IMAGE" "$comment" || die "$DISTROLESS_IMAGE is not in the image store after docker import"
}

build_image "$BASE_IMAGE" "$BASE_PACKAGES"
build_image "$FINAL_IMAGE" "$FINAL_PACKAGES"
build_distroless
