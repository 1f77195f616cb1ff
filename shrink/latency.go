package shrink

import (
	"fmt"
	"sort"
	"time"

	"github.com/onnx-cria/onnx-cria/dataset"
	"github.com/onnx-cria/onnx-cria/onnxio"
	"github.com/onnx-cria/onnx-cria/ort"
)

// Latency is the median wall time of one ORT run at a batch size.
type Latency struct {
	Batch   int     `json:"batch"`
	Median  float64 `json:"median_ms"`
	Runs    int     `json:"runs"`
	Samples float64 `json:"samples_per_second"`
}

// MeasureLatency runs m on batches of real rows (cycled when data has
// fewer) after two warm-up runs, repeating for about budget or at least
// five times, and returns the median per batch size. A model with a fixed
// batch is timed at that batch only.
func MeasureLatency(m *onnxio.Model, data *dataset.Set, batches []int, budget time.Duration, cfg ort.Config) ([]Latency, error) {
	out, err := MeasureLatencies([]*onnxio.Model{m}, data, batches, budget, cfg)
	if err != nil {
		return nil, err
	}
	return out[0], nil
}

// MeasureLatencies times several models as MeasureLatency does, taking
// turns run by run, so that a machine whose load changes during the
// measurement slows every model alike and their ratios stay meaningful.
func MeasureLatencies(models []*onnxio.Model, data *dataset.Set, batches []int, budget time.Duration, cfg ort.Config) ([][]Latency, error) {
	type timed struct {
		s  *ort.Session
		b  *dataset.Bound
		in []ort.Tensor
		t  []float64
	}
	ts := make([]*timed, len(models))
	for k, m := range models {
		s, err := ort.NewSessionForModel(m, nil, cfg)
		if err != nil {
			return nil, err
		}
		defer s.Destroy()
		b, err := s.Bind(data, "")
		if err != nil {
			return nil, err
		}
		ts[k] = &timed{s: s, b: b}
	}
	out := make([][]Latency, len(models))
	for _, size := range batches {
		if fb := ts[0].b.FixedBatch; fb > 0 && size != fb {
			continue
		}
		for _, x := range ts {
			var err error
			if x.in, err = rows(x.b, size); err != nil {
				return nil, err
			}
			x.t = x.t[:0]
			for k := 0; k < 2; k++ {
				if _, err := x.s.Run(x.in...); err != nil {
					return nil, fmt.Errorf("latency at batch %d: %w", size, err)
				}
			}
		}
		start := time.Now()
		for n := 0; n < 5 || (time.Since(start) < budget && n < 200); n++ {
			for _, x := range ts {
				t0 := time.Now()
				if _, err := x.s.Run(x.in...); err != nil {
					return nil, fmt.Errorf("latency at batch %d: %w", size, err)
				}
				x.t = append(x.t, float64(time.Since(t0).Microseconds())/1000)
			}
		}
		for k, x := range ts {
			med := median(x.t)
			out[k] = append(out[k], Latency{Batch: size, Median: med, Runs: len(x.t), Samples: float64(size) / med * 1000})
		}
	}
	return out, nil
}

// rows is a batch of size rows of b, cycling through its rows.
func rows(b *dataset.Bound, size int) ([]ort.Tensor, error) {
	idx := make([]int, size)
	for k := range idx {
		idx[k] = k % b.N
	}
	in := make([]ort.Tensor, len(b.Inputs))
	for k, a := range b.Inputs {
		t, err := a.Take(idx)
		if err != nil {
			return nil, err
		}
		if in[k], err = ort.FromArray(b.Specs[k].Name, t); err != nil {
			return nil, err
		}
	}
	return in, nil
}

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s)%2 == 0 {
		return (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return s[len(s)/2]
}
