#!/usr/bin/env bash
# test.sh: set everything up and run the checks and the tests: gofmt, go vet,
# and the whole test suite under the race detector, against the real ONNX
# Runtime. Needs Go, gcc and npm. Tests that need Debian's torch (structure-only
# fixtures generated on the fly) skip with a message when it is absent.
set -euo pipefail
cd "$(dirname "$0")/.."

lib=$(scripts/setup-ort.sh)
export ONNX_CRIA_ORT_LIB="$lib"

unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
	echo "gofmt would change:" >&2
	echo "$unformatted" >&2
	exit 1
fi
go vet ./...
(cd bench && go vet ./...)
go test -race -timeout 30m "$@" ./...
# bench/ is its own module (its plotting dependencies stay out of the
# library's go.mod); its smoke tests run here too.
(cd bench && go test -timeout 20m "$@" ./...)
# The race detector makes the torchvision structure tests (resnet18,
# mobilenet_v2) and the export zoo matrix (testdata/exports; both generated
# with Debian's torch when it is installed) take minutes, so they run here
# without it; they skip when torch is absent.
go test -count=1 -timeout 20m -run 'TestTorchvision|TestExports' "$@" ./rewrite ./cmd/onnx-cria
