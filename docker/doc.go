// Package docker holds the container image of onnx-cria and its tests; it has
// no Go API.
//
// Two build paths make the same runtime image (Debian's glibc, libstdc++ and
// libgcc, the onnx-cria binary, ONNX Runtime 1.30.0, the user cria with uid
// and gid 10001, /work as the working directory, onnx-cria as the entrypoint):
//
//   - ../Dockerfile, a multi-stage build from source for machines that can
//     pull base images (docker build --platform linux/amd64 -t onnx-cria .);
//   - Containerfile with build.sh (make image), for machines without registry
//     access: mkrootfs.sh lays out the base from Debian packages on the host,
//     podman imports it, and the build itself has no RUN step.
//
// export.sh unpacks an image's filesystem (podman create and export), where
// the tests run the tool with chroot, since containers cannot run everywhere.
// The image test is slow and needs root, podman and apt-get: it runs with
// ONNX_CRIA_DOCKER_TEST=1 (make image-test) and skips otherwise.
package docker
