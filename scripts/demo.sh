#!/usr/bin/env bash
# demo.sh: set everything up and run the main job on the bundled default: shrink
# the bundled Fashion-MNIST CNN to half its parameters with spectral structural
# importance, evaluate it before and after, and print the report.
# Needs Go, gcc and npm. Outputs go to ./out/.
set -euo pipefail
cd "$(dirname "$0")/.."

lib=$(scripts/setup-ort.sh)
export ONNX_CRIA_ORT_LIB="$lib"
echo "building onnx-cria" >&2
go build -o bin/onnx-cria ./cmd/onnx-cria
mkdir -p out
bin/onnx-cria shrink testdata/models/cnn/model.onnx out/cnn-50.onnx \
	--target 0.5 \
	--calib testdata/data/fmnist_calib.npz \
	--eval testdata/data/fmnist_eval.npz \
	--report out/cnn-50.json \
	"$@"
echo "wrote out/cnn-50.onnx and out/cnn-50.json" >&2
