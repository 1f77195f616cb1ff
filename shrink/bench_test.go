package shrink

import (
	"testing"
	"time"

	"github.com/onnx-cria/onnx-cria/dataset"
	"github.com/onnx-cria/onnx-cria/onnxio"
	"github.com/onnx-cria/onnx-cria/ort"
	"github.com/onnx-cria/onnx-cria/rewrite"
)

// The targets on the 2-core machine: the CNN to 50% with 1024
// calibration samples in at most 30 s, and the 50% MLP and CNN at batch 64
// in at most 0.6x the original's ORT latency.
//
//	go test -run '^$' -bench . -benchtime 1x ./shrink

func loadBench(b *testing.B, name string) (*onnxio.Model, *dataset.Set) {
	b.Helper()
	m, err := onnxio.Load("../testdata/models/" + name + "/model.onnx")
	if err != nil {
		b.Fatal(err)
	}
	calib, err := dataset.Load("../testdata/data/fmnist_calib.npz")
	if err != nil {
		b.Fatal(err)
	}
	return m, calib
}

// BenchmarkShrinkCNN50 times the whole loop (capture, scoring, rewriting),
// without recovery or latency measurement, as `shrink --recover none
// --no-latency` runs it.
func BenchmarkShrinkCNN50(b *testing.B) {
	m, calib := loadBench(b, "cnn")
	for b.Loop() {
		if _, _, err := Run(m, calib, Config{Target: 0.5, Samples: 1024, RoundChannels: ort.ConvBlock("cpu")}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLatency50 reports the pruned model's ORT latency at batch 64 as
// a fraction of the original's (latency-ratio), with the command line's
// default widths (--round-to auto).
func BenchmarkLatency50(b *testing.B) {
	for _, name := range []string{"mlp", "cnn", "dwcnn"} {
		b.Run(name, func(b *testing.B) {
			m, calib := loadBench(b, name)
			small, rep, err := Run(m, calib, Config{Target: 0.5, RoundChannels: ort.ConvBlock("cpu")})
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(latencyRatio(b, m, small, calib), "latency-ratio")
			b.ReportMetric(rep.Reduction, "reduction")
		})
	}
}

// BenchmarkCNNWidths measures chosen channel widths of the CNN (stem, res1,
// down, res2, expand; the original is 16/16/32/32/64) to show where its
// latency floor lies: widths in ORT's 16-channel blocks cannot go below 16,
// and widths off the block leave the blocked kernels and run slower.
//
//	go test -run '^$' -bench CNNWidths -benchtime 1x -count 3 ./shrink
func BenchmarkCNNWidths(b *testing.B) {
	groups := []string{"stem/stem.0:channels", "res1/a/a.0:channels", "down/down.0:channels", "res2/a/a.0:channels", "expand/expand.0:channels"}
	for _, c := range []struct {
		name   string
		widths []int
	}{
		{"16-16-16-16-64", []int{16, 16, 16, 16, 64}}, // --round-to auto at 50%
		{"16-16-16-16-32", []int{16, 16, 16, 16, 32}},
		{"16-16-16-16-16", []int{16, 16, 16, 16, 16}}, // every group at one block
		{"8-8-24-16-56", []int{8, 8, 24, 16, 56}},     // --round-to 8 at 50%
	} {
		b.Run(c.name, func(b *testing.B) {
			m, calib := loadBench(b, "cnn")
			a, err := rewrite.Analyze(m, rewrite.Options{})
			if err != nil {
				b.Fatal(err)
			}
			plan := rewrite.Plan{}
			for k, name := range groups {
				g := a.Group(name)
				if g == nil {
					b.Fatalf("no group %s", name)
				}
				for u := c.widths[k]; u < g.Width; u++ {
					plan[name] = append(plan[name], u)
				}
			}
			small, err := a.Apply(plan)
			if err != nil {
				b.Fatal(err)
			}
			p0, _ := m.ParamCount()
			p1, _ := small.ParamCount()
			b.ReportMetric(latencyRatio(b, m, small, calib), "latency-ratio")
			b.ReportMetric(1-float64(p1)/float64(p0), "reduction")
		})
	}
}

// latencyRatio is small's median ORT latency at batch 64 over m's.
func latencyRatio(b *testing.B, m, small *onnxio.Model, calib *dataset.Set) float64 {
	var ratio float64
	for b.Loop() {
		before, err := MeasureLatency(m, calib, []int{64}, 2*time.Second, ort.Config{})
		if err != nil {
			b.Fatal(err)
		}
		after, err := MeasureLatency(small, calib, []int{64}, 2*time.Second, ort.Config{})
		if err != nil {
			b.Fatal(err)
		}
		ratio = after[0].Median / before[0].Median
	}
	return ratio
}
