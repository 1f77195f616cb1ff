package finetune

import (
	"math"
	"sort"
	"syscall"
	"testing"
	"time"

	"github.com/onnx-cria/onnx-cria/autodiff"
	"github.com/onnx-cria/onnx-cria/dataset"
	"github.com/onnx-cria/onnx-cria/onnxio"
	"github.com/onnx-cria/onnx-cria/ort"
)

// BenchmarkTrainStep times one training step (forward, loss, backward in
// ORT with one intra-op thread, then Adam in Go; BatchNormalization with
// batch statistics, as Run trains by default and PyTorch in train mode) at
// batch 64 on the Fashion-MNIST fixtures; bench/torchstep/torchstep.py
// times the same model and batch in PyTorch.
//
//	go test ./finetune -run '^$' -bench TrainStep -benchtime 200x
func BenchmarkTrainStep(b *testing.B) {
	needORT(b)
	for _, name := range []string{"mlp", "cnn"} {
		b.Run(name, func(b *testing.B) {
			m, data := loadFixture(b, name, "fmnist_calib.npz")
			tg, err := autodiff.BuildTraining(m, autodiff.TrainSpec{Objective: autodiff.Objective{CE: 1}, BatchNorm: autodiff.BNBatch})
			if err != nil {
				b.Fatal(err)
			}
			st, err := autodiff.NewStepper(tg, ort.Config{Threads: 1})
			if err != nil {
				b.Fatal(err)
			}
			st.Reuse = true // as finetune.Run steps
			defer st.Destroy()
			batch, params := firstBatch(b, m, data, tg)
			opt := NewAdam(0)
			first, err := st.Run(params, batch)
			if err != nil {
				b.Fatal(err)
			}
			grads := first.Grads
			var norm float64
			for _, g := range grads {
				for _, x := range g {
					norm += float64(x) * float64(x)
				}
			}
			// The same numbers torchstep.py prints for its first step.
			b.Logf("first step: loss %.6f, gradient norm %.6f (%d tensors)", first.Loss, math.Sqrt(norm), len(grads))
			b.Run("step", func(b *testing.B) {
				// Median and minimum as well as the mean: machines shared
				// with other work make the mean noisy (torchstep.py prints
				// the same statistics).
				times := make([]float64, 0, b.N)
				cpu0 := cpuSeconds()
				for i := 0; i < b.N; i++ {
					t0 := time.Now()
					res, err := st.Run(params, batch)
					if err != nil {
						b.Fatal(err)
					}
					opt.Step(params, res.Grads, 1e-5)
					times = append(times, float64(time.Since(t0).Microseconds())/1000)
				}
				cpu := (cpuSeconds() - cpu0) / float64(b.N)
				sort.Float64s(times)
				b.ReportMetric(times[len(times)/2], "median-ms/step")
				b.ReportMetric(times[0], "min-ms/step")
				// The process's CPU time per step (every thread, Go's
				// included) moves far less than wall time when other work
				// shares the machine.
				b.ReportMetric(1000*cpu, "cpu-ms/step")
			})
			b.Run("graph", func(b *testing.B) {
				for i := 0; i < b.N; i++ {
					if _, err := st.Run(params, batch); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run("adam", func(b *testing.B) {
				for i := 0; i < b.N; i++ {
					opt.Step(params, grads, 1e-5)
				}
			})
		})
	}
}

// cpuSeconds is the process's user and system time so far.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// firstBatch is a batch of data's first 64 rows and m's trainable values,
// the inputs of one training step.
func firstBatch(b *testing.B, m *onnxio.Model, data *dataset.Set, tg *autodiff.TrainGraph) (autodiff.Batch, [][]float32) {
	b.Helper()
	bound, err := autodiff.BindData(m, data, 0, 0)
	if err != nil {
		b.Fatal(err)
	}
	rows := make([]int, 64)
	for i := range rows {
		rows[i] = i
	}
	batch, err := autodiff.MakeBatch(bound, rows)
	if err != nil {
		b.Fatal(err)
	}
	params, err := autodiff.ParamValues(m, tg.Params)
	if err != nil {
		b.Fatal(err)
	}
	return batch, params
}
