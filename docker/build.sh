#!/usr/bin/env bash
# build.sh: build the onnx-cria runtime image with podman on a machine that
# cannot pull base images and cannot run build steps (no RUN).
#
#   1. the base image: docker/mkrootfs.sh lays out glibc, libstdc++, libgcc and
#      the user cria from Debian packages, and `podman import` makes it an image
#      (BASE_IMAGE). It is made again only when mkrootfs.sh has changed (the
#      image carries the script's sha256 as a label) or REBUILD_BASE=1.
#   2. the binary: go build ./cmd/onnx-cria (cgo), or BINARY=path to use a
#      pre-built one (it must be linked against glibc 2.36 or older).
#   3. ONNX Runtime: scripts/setup-ort.sh (pinned sha256), or ORT_LIB=path.
#   4. podman build -f docker/Containerfile on a context holding just 2 and 3.
#
# Settings (environment): IMAGE (onnx-cria:local), BASE_IMAGE
# (localhost/onnx-cria-base:bookworm), BUILD_DIR (docker/.build, git-ignored),
# ENGINE (podman; docker works too), VERSION (git describe), BINARY, ORT_LIB,
# REBUILD_BASE. Needs root (for the base tree's file owners), apt-get,
# dpkg-deb, the engine, and Go and gcc unless BINARY is given.
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=${IMAGE:-onnx-cria:local}
BASE_IMAGE=${BASE_IMAGE:-localhost/onnx-cria-base:bookworm}
BUILD_DIR=${BUILD_DIR:-docker/.build}
ENGINE=${ENGINE:-podman}
VERSION=${VERSION:-$(git describe --always --dirty 2>/dev/null || echo dev)}

die() {
	echo "build: error: $*" >&2
	exit 1
}
step() { echo "build: $*" >&2; }

command -v "$ENGINE" >/dev/null 2>&1 || die "$ENGINE is not installed (apt-get install podman)"
[ "$(id -u)" = 0 ] || die "must run as root (the base tree holds files owned by uid 10001)"

mkdir -p "$BUILD_DIR"

# 1. The base image.
rootfs_sum=$(sha256sum docker/mkrootfs.sh | cut -d' ' -f1)
have_sum=$("$ENGINE" image inspect --format '{{index .Config.Labels "onnx-cria.rootfs"}}' "$BASE_IMAGE" 2>/dev/null || true)
if [ "${REBUILD_BASE:-0}" = 1 ] || [ "$have_sum" != "$rootfs_sum" ]; then
	step "making the base image $BASE_IMAGE"
	rm -rf "$BUILD_DIR/base" "$BUILD_DIR/base.tar"
	docker/mkrootfs.sh "$BUILD_DIR/base"
	tar -C "$BUILD_DIR/base" --numeric-owner --sort=name -cf "$BUILD_DIR/base.tar" .
	"$ENGINE" import \
		--change "LABEL onnx-cria.rootfs=$rootfs_sum" \
		--message "onnx-cria runtime base (docker/mkrootfs.sh)" \
		"$BUILD_DIR/base.tar" "$BASE_IMAGE" >/dev/null
	rm -rf "$BUILD_DIR/base" "$BUILD_DIR/base.tar"
else
	step "base image $BASE_IMAGE is up to date"
fi

# 2 and 3. The build context.
ctx="$BUILD_DIR/context"
rm -rf "$ctx"
mkdir -p "$ctx"
if [ -n "${BINARY:-}" ]; then
	step "using the binary $BINARY"
	install -m 0755 "$BINARY" "$ctx/onnx-cria"
else
	step "building onnx-cria $VERSION"
	CGO_ENABLED=1 go build -trimpath -buildvcs=false \
		-ldflags "-s -w -X main.version=$VERSION" \
		-o "$ctx/onnx-cria" ./cmd/onnx-cria
fi
if [ -n "${ORT_LIB:-}" ]; then
	lib=$ORT_LIB
else
	lib=$(scripts/setup-ort.sh)
fi
step "ONNX Runtime library $lib"
install -m 0755 "$lib" "$ctx/libonnxruntime.so.1"

# 4. The image.
step "building $IMAGE"
"$ENGINE" build --build-arg "BASE=$BASE_IMAGE" -f docker/Containerfile -t "$IMAGE" "$ctx" >&2
rm -rf "$ctx"
size=$("$ENGINE" image inspect --format '{{.Size}}' "$IMAGE")
step "built $IMAGE ($((size / 1000000)) MB)"
