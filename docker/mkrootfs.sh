#!/usr/bin/env bash
# mkrootfs.sh DIR: lay out the runtime base of the onnx-cria image in DIR.
#
# The image needs only what the binary and ONNX Runtime link against: glibc
# (libc6), libstdc++6 and libgcc-s1 (and gcc-12-base, which they depend on).
# Those Debian packages, with their dependencies as apt resolves them, are
# fetched with `apt-get download` (checked against the signed package lists
# like any apt download) and unpacked with `dpkg-deb -x`, with no shell, no
# package manager and no maintainer scripts, in the manner of a "distroless"
# image. A debootstrap --variant=minbase tree of the same release is about
# 206 MB; this one is about 7 MB.
#
# It also adds what a container needs around the libraries:
#   /etc/passwd, /etc/group   root, nobody and the user cria (uid and gid 10001)
#   /home/cria                cria's home, mode 0700
#   /work                     owned by cria: the working directory, where a
#                             host directory is mounted
#   /tmp                      mode 1777
#   /var/lib/dpkg/status.d/   one control file per package, so that image
#                             scanners can tell which package versions are in it
#
# Used by both build paths: the Dockerfile runs it in a Debian stage, and
# docker/build.sh runs it on a Debian or Ubuntu host before `podman import`.
# Needs root (for the ownership of /work and /home/cria), apt-get and dpkg-deb.
# When the package lists are missing, it runs `apt-get update` once.
set -euo pipefail

CRIA_UID=10001
CRIA_GID=10001
PACKAGES=(libc6 libstdc++6 libgcc-s1)

die() {
	echo "mkrootfs: error: $*" >&2
	exit 1
}

[ $# -eq 1 ] || die "usage: mkrootfs.sh DIR"
dest=$1
[ "$(id -u)" = 0 ] || die "must run as root (the tree holds files owned by uid $CRIA_UID)"
command -v apt-get >/dev/null 2>&1 || die "apt-get is not installed (a Debian or Ubuntu system is needed)"
command -v dpkg-deb >/dev/null 2>&1 || die "dpkg-deb is not installed"
if [ -e "$dest" ] && [ -n "$(ls -A "$dest")" ]; then
	die "$dest exists and is not empty"
fi

arch=$(dpkg --print-architecture)
[ "$arch" = amd64 ] || die "the image is for amd64 (the pinned ONNX Runtime library is x86-64), this is $arch"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/onnx-cria-rootfs.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
# apt's download sandbox user must be able to write the download directory.
chmod 0755 "$tmp"
if id _apt >/dev/null 2>&1; then
	chown _apt "$tmp"
fi

# The packages and everything they depend on (Depends and Pre-Depends only).
deps() {
	apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts \
		--no-breaks --no-replaces --no-enhances "${PACKAGES[@]}" 2>/dev/null |
		grep -v '^ ' | grep -v '^<' | sort -u
}
mapfile -t pkgs < <(deps)
if [ "${#pkgs[@]}" -lt "${#PACKAGES[@]}" ]; then
	echo "mkrootfs: no package lists; running apt-get update" >&2
	apt-get update -qq || die "apt-get update failed"
	mapfile -t pkgs < <(deps)
fi
[ "${#pkgs[@]}" -ge "${#PACKAGES[@]}" ] || die "apt does not know ${PACKAGES[*]}"
echo "mkrootfs: packages: ${pkgs[*]}" >&2

(cd "$tmp" && apt-get download -qq "${pkgs[@]}") ||
	die "apt-get download ${pkgs[*]} failed (try apt-get update)"

mkdir -p "$dest"
mkdir -p "$dest/var/lib/dpkg/status.d"
for deb in "$tmp"/*.deb; do
	name=$(dpkg-deb -f "$deb" Package)
	dpkg-deb -x "$deb" "$dest"
	{
		dpkg-deb -f "$deb"
		echo "Status: install ok installed"
	} >"$dest/var/lib/dpkg/status.d/$name"
done

# Neither onnx-cria nor ONNX Runtime converts character sets: drop glibc's
# iconv modules (8 MB) and keep of the documentation only the licences.
rm -rf "$dest/usr/lib/x86_64-linux-gnu/gconv" \
	"$dest/usr/share/gcc" "$dest/usr/share/gdb" "$dest/usr/share/lintian"
find "$dest/usr/share/doc" -type f ! -name copyright -delete
find "$dest/usr/share/doc" -type l -delete

mkdir -p "$dest/etc" "$dest/usr/local/bin" "$dest/usr/local/lib"
cat >"$dest/etc/passwd" <<EOF
root:x:0:0:root:/root:/usr/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
cria:x:$CRIA_UID:$CRIA_GID:onnx-cria:/home/cria:/usr/sbin/nologin
EOF
cat >"$dest/etc/group" <<EOF
root:x:0:
nogroup:x:65534:
cria:x:$CRIA_GID:
EOF
chmod 0644 "$dest/etc/passwd" "$dest/etc/group"

install -d -m 0700 "$dest/root"
install -d -m 0700 -o "$CRIA_UID" -g "$CRIA_GID" "$dest/home/cria"
install -d -m 0755 -o "$CRIA_UID" -g "$CRIA_GID" "$dest/work"
install -d -m 1777 "$dest/tmp"
chmod 0755 "$dest"
echo "mkrootfs: $(du -sh "$dest" | cut -f1) in $dest" >&2
