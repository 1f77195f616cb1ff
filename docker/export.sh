#!/usr/bin/env bash
# export.sh IMAGE DIR: unpack the filesystem of IMAGE into DIR, for looking at
# it and for running the tool in it with chroot where containers cannot run.
# It uses `podman create` and `podman export` (no container is started) and
# removes the container again. DIR must not exist or be empty. ENGINE=docker
# works too.
set -euo pipefail

ENGINE=${ENGINE:-podman}
die() {
	echo "export: error: $*" >&2
	exit 1
}
[ $# -eq 2 ] || die "usage: export.sh IMAGE DIR"
image=$1
dest=$2
if [ -e "$dest" ] && [ -n "$(ls -A "$dest")" ]; then
	die "$dest exists and is not empty"
fi
command -v "$ENGINE" >/dev/null 2>&1 || die "$ENGINE is not installed"

cid=$("$ENGINE" create "$image") || die "cannot create a container from $image"
trap '"$ENGINE" rm -f "$cid" >/dev/null 2>&1 || true' EXIT
mkdir -p "$dest"
"$ENGINE" export "$cid" | tar -C "$dest" --numeric-owner -xf -
echo "export: $image unpacked into $dest ($(du -sh "$dest" | cut -f1))" >&2
