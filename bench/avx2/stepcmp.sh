#!/bin/sh
# stepcmp.sh [ROUNDS]: the CNN fixture's training step (batch 64, one
# thread) in onnx-cria (ORT + Go) and in PyTorch, interleaved, with each
# library's AVX-512 kernels and with its AVX2 kernels: ORT through
# cpuidmask.so (CPUID without AVX-512), PyTorch through
# ONEDNN_MAX_CPU_ISA=AVX2. Prints the CPU time per step, which other work
# on the machine disturbs far less than the wall time, and the wall-time
# median and minimum. With BASE=<git revision> in the environment, ORT at
# that revision runs too, before this tree's in each round (a before/after
# comparison). Run from the repository root; needs gcc, Debian's
# python3-torch and python3-onnx, and a CPU with the cpuid_fault flag.
set -eu
rounds=${1:-2}
tmp=$(mktemp -d)
cleanup() {
	[ -d "$tmp/base" ] && git worktree remove --force "$tmp/base"
	rm -rf "$tmp"
}
trap cleanup EXIT
gcc -O2 -Wall -shared -fPIC -o "$tmp/cpuidmask.so" bench/avx2/cpuidmask.c -ldl
go test -c -o "$tmp/finetune.test" ./finetune
builds="$tmp/finetune.test:finetune:ORT"
if [ -n "${BASE:-}" ]; then
	git worktree add --detach "$tmp/base" "$BASE" >/dev/null
	(cd "$tmp/base" && go test -c -o "$tmp/base.test" ./finetune)
	builds="$tmp/base.test:$tmp/base/finetune:base $builds"
fi
model=testdata/models/cnn/model.onnx
i=0
while [ "$i" -lt "$rounds" ]; do
	i=$((i + 1))
	for isa in avx512 avx2; do
		pre=""
		[ "$isa" = avx2 ] && pre="$tmp/cpuidmask.so"
		for b in $builds; do
			bin=${b%%:*}
			rest=${b#*:}
			printf '%-5s %-6s ' "${rest#*:}" "$isa"
			(cd "${rest%%:*}" && LD_PRELOAD="$pre" "$bin" -test.run '^$' -test.bench 'TrainStep/cnn/step' -test.benchtime 100x) |
				awk '/cnn\/step/ {print $5, $6, $7, $8, $9, $10}'
		done
		printf 'torch %-6s ' "$isa"
		if [ "$isa" = avx2 ]; then
			ONEDNN_MAX_CPU_ISA=AVX2 OMP_NUM_THREADS=1 /usr/bin/python3 bench/torchstep/torchstep.py "$model" --steps 100 | tail -1 | sed 's/.*thread: //'
		else
			OMP_NUM_THREADS=1 /usr/bin/python3 bench/torchstep/torchstep.py "$model" --steps 100 | tail -1 | sed 's/.*thread: //'
		fi
	done
done
