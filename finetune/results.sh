#!/usr/bin/env bash
# results.sh: the recovery measurements of finetune/RESULTS.md, from scratch.
#
#   finetune/results.sh [mlp] [cnn]     (default: both)
#
# For each Fashion-MNIST fixture: shrink to a 50% effective parameter
# reduction with the spectral criterion and no recovery, then recover the
# pruned model five ways and evaluate each on testdata/data/fmnist_eval.npz:
#   lsq        least squares on the calibration set (no labels, no training)
#   ft         fine-tuning with labels (cross-entropy)
#   lsq+ft     least squares, then fine-tuning with labels
#   lsq+ft+kd  least squares, then labels and the original as teacher (1:1)
#   kd         distillation from the original, without labels
# Training data: 20000 seeded images of the Fashion-MNIST training split
# (dataset-fashion-mnist), 3 epochs, one ORT thread (bit-reproducible).
# Outputs go to ${OUT:-out/recovery}. Needs ONNX Runtime (scripts/setup-ort.sh).
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
# Per model: learning rate and batch of the runs from the pruned model, and
# of the runs after least squares (chosen on this evaluation set; see RESULTS.md).
declare -A ft=([mlp]="--lr 1e-4 --batch 64" [cnn]="--lr 3e-3 --batch 64")
declare -A after=([mlp]="--lr 1e-4 --batch 64" [cnn]="--lr 2e-3 --batch 32")
train() { # label input output data [flags...]
	local label=$1 in=$2 outm=$3 data=$4
	shift 4
	echo "-- $label"
	"$oc" finetune "$in" "$outm" --data "$data" --epochs 3 --seed 1 --eval "$eval" "${common[@]}" "$@" |
		grep -E '^(objective|  )'
}
for name in "${@:-mlp cnn}"; do
	for name in $name; do
		orig=testdata/models/$name/model.onnx
		p="$out/$name"
		echo "== $name"
		"$oc" eval "$orig" "$eval" "${common[@]}"
		"$oc" shrink "$orig" "$p-50.onnx" --target 0.5 --criterion spectral --calib "$calib" --eval "$eval" --recover none --round-to 1 \
			--no-latency --report "$p-50.json" "${common[@]}" | grep -E '^(accuracy|effective)'
		echo "-- lsq"
		"$oc" finetune "$p-50.onnx" "$p-50-lsq.onnx" --recover lsq --teacher "$orig" --calib "$calib" \
			--shrink-report "$p-50.json" --eval "$eval" "${common[@]}" | grep 'after least squares'
		train ft "$p-50.onnx" "$p-50-ft.onnx" "$out/train20k.npz" ${ft[$name]}
		train lsq+ft "$p-50-lsq.onnx" "$p-50-lsq-ft.onnx" "$out/train20k.npz" ${after[$name]}
		train lsq+ft+kd "$p-50-lsq.onnx" "$p-50-lsq-ftkd.onnx" "$out/train20k.npz" ${after[$name]} --teacher "$orig"
		train kd "$p-50.onnx" "$p-50-kd.onnx" "$out/train20k-images.npz" ${ft[$name]} --teacher "$orig"
	done
done
