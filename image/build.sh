#!/usr/bin/env bash
# Builds the provider's image, localhost/csi-provider-aws:dev (or $IMAGE), from a clone, with
# podman: compiles the static binary on the host (release profile, --locked; first time
# ~10 minutes on 2 cores, then incremental), stages it with the CA bundle and nsswitch.conf in
# target/image/, and builds the Dockerfile's runtime stage from them (--build-arg
# BINARY=prebuilt), the same stage `docker build .` ends in. Prints the image's size and
# every file in it.
#
# Installs podman, buildah and runc with apt-get when podman is missing (as root), and when
# the runtime cannot start the image, adds the two containers.conf settings this kind of
# machine needs (a nofile limit the kernel allows, and runc instead of crun, which fails on
# hybrid cgroups) in /etc/containers/containers.conf.d/.
#
# usage: bash image/build.sh            IMAGE=localhost/other:tag bash image/build.sh
set -euo pipefail
cd "$(dirname "$0")/.."
IMAGE=${IMAGE:-localhost/csi-provider-aws:dev}
TARGET="$(uname -m)-unknown-linux-gnu"
STAGE=target/image
say() { printf -- '--- image: %s\n' "$*" >&2; }
die() { printf 'image/build.sh: %s\n' "$*" >&2; exit 1; }

install_podman() {
  local packages="podman buildah runc uidmap slirp4netns fuse-overlayfs catatonit"
  [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null \
    || die "podman is not installed: install podman (4.3 or later), buildah and runc, then run this again"
  say "installing $packages (apt-get)"
  # shellcheck disable=SC2086 # a list of package names
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $packages >&2 \
    || { apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $packages >&2; } \
    || die "apt-get could not install $packages"
}

configure_runtime() {
  local conf=/etc/containers/containers.conf.d/50-csi-provider-aws.conf
  [ "$(id -u)" = 0 ] || die "podman cannot start $IMAGE (see above); as root this script would configure it"
  [ -e "$conf" ] && die "podman cannot start $IMAGE although $conf exists (see above)"
  local nofile
  nofile=$(ulimit -Hn)
  [ "$nofile" = unlimited ] && nofile=1048576
  say "configuring podman in $conf: nofile limit $nofile (the kernel's), runtime runc"
  mkdir -p "$(dirname "$conf")"
  cat >"$conf" <<EOF
# Written by csi-provider-aws's image/build.sh: podman asks for nofile=1048576 by default,
# more than this machine allows, and crun fails on hybrid cgroups here; runc does not.
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=32768:32768"]
[engine]
runtime = "runc"
EOF
}

command -v podman >/dev/null || install_podman
command -v podman >/dev/null || die "podman is still not on PATH"

say "compiling the static binary for $TARGET (release)"
RUSTFLAGS="-C target-feature=+crt-static" \
  cargo build --release --locked --target "$TARGET" --bin csi-provider-aws >&2
BINARY="target/$TARGET/release/csi-provider-aws"
if readelf -lW "$BINARY" | grep -q 'INTERP'; then
  die "$BINARY is dynamically linked (it would not start in a scratch image)"
fi

say "staging the binary, the CA bundle and nsswitch.conf in $STAGE/out"
CA_BUNDLE=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
[ -s "$CA_BUNDLE" ] || die "no CA bundle at $CA_BUNDLE (install ca-certificates, or set CA_BUNDLE)"
rm -rf "$STAGE" && mkdir -p "$STAGE/out"
cp "$BINARY" "$STAGE/out/csi-provider-aws"
cp "$CA_BUNDLE" "$STAGE/out/ca-certificates.crt"
cp image/nsswitch.conf "$STAGE/out/nsswitch.conf"

say "building $IMAGE from Dockerfile (runtime stage, BINARY=prebuilt)"
podman build --quiet --build-arg BINARY=prebuilt -f Dockerfile -t "$IMAGE" "$STAGE" >&2
if ! podman run --rm --network none "$IMAGE" --version >&2; then
  configure_runtime
  podman run --rm --network none "$IMAGE" --version >&2 || die "podman cannot start $IMAGE"
fi

size=$(podman image inspect --format '{{.Size}}' "$IMAGE")
say "$IMAGE: $((size / 1024)) KiB, files:"
container=$(podman create "$IMAGE")
podman export "$container" | tar -tv >&2
podman rm "$container" >/dev/null
echo "$IMAGE"
