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
// five times, and returns the median per batch size.
func MeasureLatency(m *onnxio.Model, data *dataset.Set, batches []int, budget time.Duration, cfg ort.Config) ([]Latency, error) {
	s, err := ort.NewSessionForModel(m, nil, cfg)
	if err != nil {
		return nil, err
	}
	defer s.Destroy()
	b, err := s.Bind(data, "")
	if err != nil {
		return nil, err
	}
	var out []Latency
	for _, size := range batches {
		if b.FixedBatch > 0 && size != b.FixedBatch {
			continue
		}
		rows := make([]int, size)
		for k := range rows {
			rows[k] = k % b.N
		}
		in := make([]ort.Tensor, len(b.Inputs))
		for k, a := range b.Inputs {
			t, err := a.Take(rows)
			if err != nil {
				return nil, err
			}
			if in[k], err = ort.FromArray(b.Specs[k].Name, t); err != nil {
				return nil, err
			}
		}
		for k := 0; k < 2; k++ {
			if _, err := s.Run(in...); err != nil {
				return nil, fmt.Errorf("latency at batch %d: %w", size, err)
			}
		}
		var times []float64
		start := time.Now()
		for len(times) < 5 || (time.Since(start) < budget && len(times) < 200) {
			t0 := time.Now()
			if _, err := s.Run(in...); err != nil {
				return nil, fmt.Errorf("latency at batch %d: %w", size, err)
			}
			times = append(times, float64(time.Since(t0).Microseconds())/1000)
		}
		sort.Float64s(times)
		med := times[len(times)/2]
		if len(times)%2 == 0 {
			med = (times[len(times)/2-1] + times[len(times)/2]) / 2
		}
		out = append(out, Latency{Batch: size, Median: med, Runs: len(times), Samples: float64(size) / med * 1000})
	}
	return out, nil
}
