# syntax=docker/dockerfile:1
#
# The onnx-cria runtime image, built from source with Docker (or podman) on a
# machine that can pull base images:
#
#   docker build --platform linux/amd64 -t onnx-cria .
#   docker run --rm -v "$PWD":/work onnx-cria shrink /work/in.onnx /work/out.onnx \
#       --target 0.5 --calib /work/calib.npz
#
# The result holds glibc, libstdc++ and libgcc from Debian, the onnx-cria
# binary and ONNX Runtime 1.30.0 (sha256-pinned by scripts/setup-ort.sh), and
# runs as the user cria (10001:10001) in /work. Machines without registry access
# build the same image with `make image` (docker/build.sh and
# docker/Containerfile); the final stage below must say the same as
# docker/Containerfile (docker/docker_test.go checks that they agree).

ARG GO_VERSION=1.26
ARG NODE_VERSION=22
ARG DEBIAN_RELEASE=bookworm

# ONNX Runtime from the onnxruntime-node npm package, by `npm pack` (never
# `npm install`), its library checked against the pinned sha256.
FROM node:${NODE_VERSION}-${DEBIAN_RELEASE}-slim AS ort
COPY scripts/setup-ort.sh /src/scripts/setup-ort.sh
RUN lib=$(ONNX_CRIA_CACHE=/tmp/ort-cache /src/scripts/setup-ort.sh) && \
    cp "$lib" /libonnxruntime.so.1 && rm -rf /tmp/ort-cache

# The binary (cgo: it dlopens ONNX Runtime), linked against the same Debian
# release's glibc as the runtime stage.
FROM golang:${GO_VERSION}-${DEBIAN_RELEASE} AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=1 go build -trimpath -buildvcs=false \
      -ldflags "-s -w -X main.version=${VERSION}" \
      -o /out/onnx-cria ./cmd/onnx-cria

# The runtime tree: Debian's libc6, libstdc++6, libgcc-s1 unpacked (no shell, no
# package manager), /etc/passwd and /etc/group with the user cria, /work, /tmp.
FROM debian:${DEBIAN_RELEASE}-slim AS rootfs
COPY docker/mkrootfs.sh /usr/local/bin/mkrootfs.sh
RUN apt-get update && mkrootfs.sh /rootfs

FROM scratch
COPY --from=rootfs /rootfs/ /

LABEL org.opencontainers.image.title="onnx-cria" \
      org.opencontainers.image.description="Shrinks trained ONNX networks by spectral structural importance"

COPY --from=build /out/onnx-cria /usr/local/bin/onnx-cria
COPY --from=ort /libonnxruntime.so.1 /usr/local/lib/libonnxruntime.so.1
ENV ONNX_CRIA_ORT_LIB=/usr/local/lib/libonnxruntime.so.1
USER 10001:10001
WORKDIR /work
ENTRYPOINT ["/usr/local/bin/onnx-cria"]
