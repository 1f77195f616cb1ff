#!/bin/sh
# Regenerates onnx.pb.go from onnx.proto. Needs protoc (Debian: protobuf-compiler);
# protoc-gen-go is built from the version pinned in go.mod.
set -eu
cd "$(dirname "$0")"
command -v protoc >/dev/null || { echo "gen.sh: protoc not found; install it with: apt-get install -y protobuf-compiler" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
go build -o "$tmp/protoc-gen-go" google.golang.org/protobuf/cmd/protoc-gen-go
protoc --plugin=protoc-gen-go="$tmp/protoc-gen-go" --go_out=. --go_opt=paths=source_relative onnx.proto
