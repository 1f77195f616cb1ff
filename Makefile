# Image targets (see README, "Docker"). The image is built with podman from a
# local base, without registry access and without RUN steps; `make docker-build`
# is the multi-stage build from source for machines that can pull images.

IMAGE ?= onnx-cria:local
ROOTFS ?= docker/.build/rootfs
DOCKER ?= docker

.PHONY: image image-export image-smoke image-test image-clean docker-build

# Build $(IMAGE) with podman: base from Debian packages, go build, ORT, Containerfile.
image:
	IMAGE=$(IMAGE) docker/build.sh

# Unpack the image's filesystem into $(ROOTFS) (podman create + export).
image-export: image
	rm -rf $(ROOTFS)
	docker/export.sh $(IMAGE) $(ROOTFS)

# Run the tool in the exported filesystem as `docker run` would: chrooted, as
# the image's user, with its environment and working directory, and /proc
# mounted (in private namespaces, so nothing stays mounted). Plain
# `chroot --userspec=10001:10001 $(ROOTFS) /usr/local/bin/onnx-cria version`
# works too, but ONNX Runtime then complains that /proc/cpuinfo is missing.
image-smoke: image-export
	mkdir -p $(ROOTFS)/proc
	env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin ONNX_CRIA_ORT_LIB=/usr/local/lib/libonnxruntime.so.1 \
		unshare --mount --pid --fork --kill-child --mount-proc=/proc --root=$(ROOTFS) --wd=/work \
		--setgid=10001 --setuid=10001 -- /usr/local/bin/onnx-cria version

# Build, export, and shrink a bundled fixture inside the image's filesystem
# (root, podman, apt-get; 2 to 10 minutes, see README).
image-test:
	ONNX_CRIA_DOCKER_TEST=1 go test -count=1 -v -timeout 60m ./docker/

# Remove the build directory and the images that image and image-test made.
image-clean:
	rm -rf docker/.build
	podman rmi --ignore $(IMAGE) onnx-cria:test localhost/onnx-cria-base:bookworm

# The multi-stage build from source (Dockerfile); needs registry access, so it
# cannot run on machines without it.
docker-build:
	$(DOCKER) build --platform linux/amd64 \
		--build-arg VERSION=$$(git describe --always --dirty 2>/dev/null || echo dev) \
		-t $(IMAGE) .
