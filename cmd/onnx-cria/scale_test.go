package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/onnx-cria/onnx-cria/internal/exports"
	"github.com/onnx-cria/onnx-cria/internal/memstat"
	"github.com/onnx-cria/onnx-cria/onnxio"
)

// BenchmarkScale shrinks the LLM-scale decoders of testdata/exports/llm.py
// (random weights, every weight in model.onnx.data) to 30% of their
// parameters on this machine: FFN neurons and KV groups, 32 calibration
// sequences of 128 tokens at the largest batch whose memory estimate fits,
// the least-squares refit on, the output compared
// with the input on the 8 held-out sequences. The CLI runs as a process of
// its own, so that its peak resident memory (the kernel's count, ONNX
// Runtime's allocations and mapped files included) is its alone; the run
// must stay within 1.5 times the weight file (also passed as --max-memory)
// and the output must run in ONNX Runtime with the input's inputs and
// outputs. Models missing from the export cache are generated first
// (minutes, and 5.5 GiB of memory for tinyllama_1b). Run it niced, alone:
//
//	nice -n 10 go test ./cmd/onnx-cria -run '^$' -bench BenchmarkScale -benchtime 1x -timeout 3h
//
// (-bench BenchmarkScale/llama_128m for the small one.) The numbers are in
// docs/BENCHMARKS.md; docs/SCALE.md explains the settings.
func BenchmarkScale(b *testing.B) {
	if out, err := exec.Command(exports.Python, "-c", "import torch, onnx, numpy").CombinedOutput(); err != nil {
		b.Skipf("the generator needs torch, onnx and numpy for %s: %v %s", exports.Python, err, out)
	}
	bin := filepath.Join(b.TempDir(), "onnx-cria")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}
	// The batch is the largest whose memory estimate fits the limit:
	// activations do not shrink with the model, so the small one needs a
	// smaller batch to stay within 1.5x its (smaller) weights.
	for _, c := range []struct {
		size, name string
		batch      int
	}{{"128m", "llama_128m", 1}, {"tinyllama", "tinyllama_1b", 8}} {
		b.Run(c.name, func(b *testing.B) {
			dir := ensureLLM(b, c.size, c.name)
			for b.Loop() {
				scaleRun(b, bin, dir, c.batch)
			}
		})
	}
}

// ensureLLM runs the generator, which keeps an entry it made before.
func ensureLLM(b *testing.B, size, name string) string {
	root, err := exports.Dir()
	if err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(exports.Python, filepath.Join("..", "..", "testdata", "exports", "llm.py"), "--size", size, "--dir", root)
	cmd.Env = append(os.Environ(), "OMP_NUM_THREADS=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("llm.py --size %s: %v\n%s", size, err, out)
	}
	return filepath.Join(root, name)
}

// scaleRun shrinks the model in dir with the CLI at bin and checks and
// reports the run.
func scaleRun(b *testing.B, bin, dir string, batch int) {
	in := filepath.Join(dir, "model.onnx")
	st, err := os.Stat(filepath.Join(dir, "model.onnx.data"))
	if err != nil {
		b.Fatal(err)
	}
	limit := st.Size() * 3 / 2
	out := filepath.Join(b.TempDir(), "out.onnx")
	rep := out + ".json"
	args := []string{"shrink", in, out, "--target", "0.3", "--calib", filepath.Join(dir, "calib.npz"), "--samples", "32", "--batch", strconv.Itoa(batch),
		"--min-width", "2", "--exclude", "embed_tokens:hidden", "--eval", filepath.Join(dir, "eval.npz"), "--no-latency",
		"--max-memory", strconv.FormatInt(limit, 10), "--report", rep, "--quiet"}
	cmd := exec.Command(bin, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	t0 := time.Now()
	if err := cmd.Run(); err != nil {
		b.Fatalf("onnx-cria %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	wall := time.Since(t0)
	peak := cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss << 10 // kB on Linux
	var r struct {
		Reduction float64            `json:"effective_reduction"`
		Stages    map[string]float64 `json:"seconds_per_stage"`
		Peaks     map[string]int64   `json:"peak_rss_bytes_per_stage"`
		Estimate  struct {
			Total int64 `json:"total"`
		} `json:"memory_estimate"`
		Agreement struct {
			Top1 float64 `json:"top1_agreement"`
			KL   float64 `json:"mean_kl_nats"`
		} `json:"agreement"`
		Input, Output struct {
			Bytes int64 `json:"bytes"`
		}
	}
	raw, err := os.ReadFile(rep)
	if err != nil {
		b.Fatal(err)
	}
	if err := json.Unmarshal(raw, &r); err != nil {
		b.Fatal(err)
	}
	if peak > limit {
		b.Errorf("peak resident memory %s, over 1.5 x the weight file (%s)", memstat.Text(peak), memstat.Text(limit))
	}
	// The output runs in ORT with the input's inputs and outputs.
	src, err := onnxio.Load(in)
	if err != nil {
		b.Fatal(err)
	}
	small, err := onnxio.Load(out)
	if err != nil {
		b.Fatal(err)
	}
	sameIO(b, src, small)
	if o, err := exec.Command(bin, "eval", "--quiet", "--batch", strconv.Itoa(batch), out, filepath.Join(dir, "eval.npz")).CombinedOutput(); err != nil {
		b.Errorf("eval of the output: %v\n%s", err, o)
	}

	b.ReportMetric(wall.Seconds(), "wall-s")
	b.ReportMetric(float64(peak)/(1<<30), "peak-GiB")
	b.ReportMetric(float64(peak)/float64(st.Size()), "peak/weights")
	b.ReportMetric(float64(r.Estimate.Total)/(1<<30), "estimate-GiB")
	b.ReportMetric(r.Reduction, "reduction")
	b.ReportMetric(r.Agreement.Top1, "top1")
	b.ReportMetric(r.Agreement.KL, "KL-nats")
	var stages []string
	for stage, s := range r.Stages {
		b.ReportMetric(s, stage+"-s")
		stages = append(stages, fmt.Sprintf("%s %.1f s, %s", stage, s, memstat.Text(r.Peaks[stage])))
	}
	b.Logf("%s: %s -> %s bytes; peak %s; %s", filepath.Base(dir), memstat.Text(r.Input.Bytes), memstat.Text(r.Output.Bytes), memstat.Text(peak), strings.Join(stages, "; "))
}
