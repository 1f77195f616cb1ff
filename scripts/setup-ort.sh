#!/usr/bin/env bash
# setup-ort.sh installs the ONNX Runtime shared library that onnx-cria loads.
#
# The library is taken from the onnxruntime-node npm package with `npm pack`,
# which only downloads the package tarball. `npm install` must not be used:
# the package's install script downloads from hosts that may be unreachable.
# The library's sha256 is pinned; a mismatch is an error.
#
# It installs into
#   ${ONNX_CRIA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/onnx-cria}/ort/1.30.0/libonnxruntime.so.1
# where the ort package looks for it, and prints that path. Running it
# again only re-checks the hash of the installed copy.
set -euo pipefail

ORT_VERSION=1.30.0
NPM_SPEC="onnxruntime-node@${ORT_VERSION}"
MEMBER="package/bin/napi-v6/linux/x64/libonnxruntime.so.1"
LIB_SHA256=ffb75a925ba05e47b235bb66e3e3911714a80b328a9c9425539feb204aa32a23
TGZ_SHA256=6e3390d6b783e7be946fad629292799da28d0b42f84856e50d2c1b0383291e75

die() {
	echo "setup-ort: error: $*" >&2
	exit 1
}

case "$(uname -s)/$(uname -m)" in
Linux/x86_64 | Linux/amd64) ;;
*) die "the pinned library is for Linux x86-64 only, this is $(uname -s)/$(uname -m); set ONNX_CRIA_ORT_LIB to an ONNX Runtime >= 1.24 library instead" ;;
esac

sha256() {
	if command -v sha256sum >/dev/null 2>&1; then
		sha256sum "$1" | cut -d' ' -f1
	elif command -v shasum >/dev/null 2>&1; then
		shasum -a 256 "$1" | cut -d' ' -f1
	else
		die "neither sha256sum nor shasum is installed; cannot verify the library"
	fi
}

cache="${ONNX_CRIA_CACHE:-${XDG_CACHE_HOME:-${HOME:?HOME is not set}/.cache}/onnx-cria}"
dest_dir="$cache/ort/$ORT_VERSION"
dest="$dest_dir/libonnxruntime.so.1"

if [ -f "$dest" ]; then
	got=$(sha256 "$dest")
	if [ "$got" = "$LIB_SHA256" ]; then
		echo "$dest"
		exit 0
	fi
	echo "setup-ort: installed copy $dest has sha256 $got, expected $LIB_SHA256; fetching it again" >&2
fi

command -v npm >/dev/null 2>&1 ||
	die "npm is not installed; it is needed to fetch $NPM_SPEC (install Node.js and npm, or set ONNX_CRIA_ORT_LIB to an ONNX Runtime >= 1.24 library)"
command -v tar >/dev/null 2>&1 || die "tar is not installed"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/onnx-cria-ort.XXXXXX")
part=""
trap 'rm -rf "$tmp"; [ -z "$part" ] || rm -f "$part"' EXIT

echo "setup-ort: fetching $NPM_SPEC with npm pack (about 60 MB)" >&2
# --ignore-scripts: never run package scripts, even if npm would.
if ! (cd "$tmp" && npm pack "$NPM_SPEC" --ignore-scripts --loglevel=error >"$tmp/pack.out" 2>"$tmp/pack.err"); then
	cat "$tmp/pack.err" >&2
	die "npm pack $NPM_SPEC failed (is the npm registry reachable? check 'npm config get registry' and proxy settings)"
fi
tgz=$(find "$tmp" -maxdepth 1 -name 'onnxruntime-node-*.tgz' | head -n 1)
[ -n "$tgz" ] || die "npm pack succeeded but left no onnxruntime-node tarball in $tmp"

tgz_sum=$(sha256 "$tgz")
if [ "$tgz_sum" != "$TGZ_SHA256" ]; then
	# Only a warning: the library hash below is what decides.
	echo "setup-ort: warning: package tarball sha256 is $tgz_sum, expected $TGZ_SHA256" >&2
fi

tar -xzf "$tgz" -C "$tmp" "$MEMBER" ||
	die "the package tarball has no $MEMBER"
lib="$tmp/$MEMBER"
got=$(sha256 "$lib")
if [ "$got" != "$LIB_SHA256" ]; then
	die "sha256 mismatch for $MEMBER from $NPM_SPEC:
  got      $got
  expected $LIB_SHA256
refusing to install it"
fi

mkdir -p "$dest_dir" || die "cannot create $dest_dir"
# Copy then rename, so a reader never sees a half-written library.
part="$dest.part.$$"
cp "$lib" "$part" || die "cannot write $part"
chmod 0755 "$part"
mv -f "$part" "$dest" || die "cannot install $dest"
echo "setup-ort: installed ONNX Runtime $ORT_VERSION" >&2
echo "$dest"
