package recover_test

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/onnx-cria/onnx-cria/dataset"
	"github.com/onnx-cria/onnx-cria/onnxio"
	"github.com/onnx-cria/onnx-cria/ort"
	"github.com/onnx-cria/onnx-cria/recover"
	"github.com/onnx-cria/onnx-cria/shrink"
)

// BenchmarkLSQ times the least-squares refit alone on models that shrink
// pruned (default settings, seed 1, no recovery): the fixtures cnn (50%),
// mlp (50%) and llama (50%), and, when ONNX_CRIA_BENCH_MODELS names a
// directory holding resnet18_opset17.onnx and resnet50_opset17.onnx from
// testdata/models/torchvision_structs.py (--size 96), those at 30% on 64
// random calibration rows. It reports the refit's wall and CPU seconds
// (one ORT thread) and the number of layers refit.
//
//	go test ./recover -run '^$' -bench LSQ -benchtime 1x
func BenchmarkLSQ(b *testing.B) {
	type job struct {
		name, model, data string
		target            float64
		samples           int
	}
	jobs := []job{
		{"cnn", "../testdata/models/cnn/model.onnx", "../testdata/data/fmnist_calib.npz", 0.5, 1024},
		{"mlp", "../testdata/models/mlp/model.onnx", "../testdata/data/fmnist_calib.npz", 0.5, 1024},
		{"llama", "../testdata/models/llama/model.onnx", "../testdata/data/llama_calib.npz", 0.5, 1024},
	}
	if dir := os.Getenv("ONNX_CRIA_BENCH_MODELS"); dir != "" {
		for _, n := range []string{"resnet18", "resnet50"} {
			jobs = append(jobs, job{n, filepath.Join(dir, n+"_opset17.onnx"), "", 0.3, 64})
		}
	}
	rt := ort.Config{Threads: 1}
	if err := ort.Init(rt); err != nil {
		b.Fatalf("ONNX Runtime is required (run scripts/setup-ort.sh): %v", err)
	}
	for _, j := range jobs {
		b.Run(j.name, func(b *testing.B) {
			m, err := onnxio.Load(j.model)
			if err != nil {
				b.Fatal(err)
			}
			var calib *dataset.Set
			if j.data != "" {
				if calib, err = dataset.Load(j.data); err != nil {
					b.Fatal(err)
				}
			} else {
				calib = randomImages(b, j.samples, 3, 96, 96)
			}
			cfg := shrink.Config{Target: j.target, Samples: j.samples, Seed: 1, RoundChannels: ort.ConvBlock("cpu"), Runtime: rt}
			small, rep, err := shrink.Run(m, calib, cfg)
			if err != nil {
				b.Fatal(err)
			}
			var secs, cpu float64
			var n int
			for b.Loop() {
				start, c0 := time.Now(), cpuSeconds()
				_, fits, err := recover.LSQ(m, small, rep.Kept(), calib, recover.LSQOptions{Samples: j.samples, Seed: 1, Runtime: rt, Log: b.Logf})
				if err != nil {
					b.Fatal(err)
				}
				secs += time.Since(start).Seconds()
				cpu += cpuSeconds() - c0
				n = len(fits)
			}
			b.ReportMetric(secs/float64(b.N), "refit-s")
			b.ReportMetric(cpu/float64(b.N), "refit-cpu-s")
			b.ReportMetric(float64(n), "layers")
		})
	}
}

// cpuSeconds is the process's user and system time so far: on a machine
// shared with other work it varies far less than the wall time.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// randomImages is n standard normal images named "input".
func randomImages(b *testing.B, n int, dims ...int) *dataset.Set {
	shape := append([]int{n}, dims...)
	size := n
	for _, d := range dims {
		size *= d
	}
	v := make([]float32, size)
	s := uint64(1)
	for i := range v {
		// A fixed sequence: xorshift, mapped to a sum of uniforms (about normal).
		var u float32
		for k := 0; k < 4; k++ {
			s ^= s << 13
			s ^= s >> 7
			s ^= s << 17
			u += float32(s>>40) / float32(1<<24)
		}
		v[i] = (u - 2) * 1.732
	}
	a, err := dataset.New("input", shape, v)
	if err != nil {
		b.Fatal(err)
	}
	return &dataset.Set{Arrays: []*dataset.Array{a}}
}
