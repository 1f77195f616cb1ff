#!/usr/bin/env bash
# results.sh: the recovery measurements of finetune/RESULTS.md, from scratch.
#
#   finetune/results.sh [mlp|cnn ...]     (default: mlp cnn)
#
# For each Fashion-MNIST fixture: shrink to a 50% effective parameter
# reduction with the spectral criterion and no recovery, then recover the
# pruned model four ways (least squares; fine-tuning with labels; least
# squares then fine-tuning; distillation without labels) and evaluate each
# on testdata/data/fmnist_eval.npz. Training data: 20000 seeded images of the
# Fashion-MNIST training split (dataset-fashion-mnist), 3 epochs. Outputs go
# to ${OUT:-out/recovery}. Needs ONNX Runtime (scripts/setup-ort.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-out/recovery}
mkdir -p "$out"
go build -o "$out/onnx-cria" ./cmd/onnx-cria
oc="$out/onnx-cria"
[ -f "$out/train20k.npz" ] || go run ./internal/fmnist/cmd/fmnist-npz -split train -n 20000 -seed 1 -o "$out/train20k.npz"
[ -f "$out/train20k-images.npz" ] || go run ./internal/fmnist/cmd/fmnist-npz -split train -n 20000 -seed 1 -no-labels -o "$out/train20k-images.npz"
calib=testdata/data/fmnist_calib.npz
eval=testdata/data/fmnist_eval.npz
common=(--threads 1 --quiet)
for m in "${@:-mlp cnn}"; do
	for name in $m; do
		orig=testdata/models/$name/model.onnx
		p="$out/$name"
		echo "== $name"
		"$oc" eval "$orig" "$eval" "${common[@]}"
		"$oc" shrink "$orig" "$p-50.onnx" --target 0.5 --calib "$calib" --eval "$eval" --recover none \
			--no-latency --report "$p-50.json" "${common[@]}" | grep -E '^(accuracy|effective)'
		"$oc" finetune "$p-50.onnx" "$p-50-lsq.onnx" --recover lsq --teacher "$orig" --calib "$calib" \
			--shrink-report "$p-50.json" --eval "$eval" "${common[@]}" | grep 'after least squares'
		"$oc" finetune "$p-50.onnx" "$p-50-ft.onnx" --data "$out/train20k.npz" --epochs 3 --seed 1 \
			--eval "$eval" "${common[@]}" | grep -E '^(objective|  )'
		"$oc" finetune "$p-50-lsq.onnx" "$p-50-lsq-ft.onnx" --data "$out/train20k.npz" --epochs 3 --seed 1 \
			--eval "$eval" "${common[@]}" | grep -E '^(objective|  )'
		"$oc" finetune "$p-50.onnx" "$p-50-kd.onnx" --data "$out/train20k-images.npz" --teacher "$orig" \
			--epochs 3 --seed 1 --eval "$eval" "${common[@]}" | grep -E '^(objective|  )'
	done
done
