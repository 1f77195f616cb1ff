package shrink

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"time"

	"github.com/onnx-cria/onnx-cria/dataset"
	"github.com/onnx-cria/onnx-cria/onnxio"
	"github.com/onnx-cria/onnx-cria/ort"
)

// Latency is the median wall time of one ORT run at a batch size.
type Latency struct {
	Batch  int     `json:"batch"`
	Median float64 `json:"median_ms"`
	// Min is the fastest timed run: what other work on the machine slows
	// least, so ratios of minima are what latency targets compare.
	Min     float64 `json:"min_ms,omitempty"`
	Runs    int     `json:"runs"`
	Samples float64 `json:"samples_per_second"`
}

// MeasureLatency runs m on batches of real rows (cycled when data has
// fewer) after up to two warm-up runs, repeating for about budget or at
// least five times (fewer for a model whose single run is longer than the
// budget, but always once), and returns the median per batch size. A model
// with a fixed batch is timed at that batch only.
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
	return MeasureLatenciesWithin(models, data, batches, budget, 0, cfg)
}

// MeasureLatenciesWithin is MeasureLatencies bounded by limit (0: no
// bound) for the whole measurement: before each batch size it estimates,
// from the batches timed so far, what a warm-up and one timed run of every
// model would take, and when that would pass the limit it halves the batch
// until it fits (never below the largest batch already timed, which it
// then skips). A big model is so timed at batch 1 and the largest batch
// the limit allows; each Latency records the batch it was timed at.
func MeasureLatenciesWithin(models []*onnxio.Model, data *dataset.Set, batches []int, budget, limit time.Duration, cfg ort.Config) ([][]Latency, error) {
	datas := make([]*dataset.Set, len(models))
	for k := range datas {
		datas[k] = data
	}
	return measureLatencies(models, datas, batches, budget, limit, cfg)
}

// measureLatencies is MeasureLatenciesWithin with each model's own data
// (models whose KV cache inputs differ).
func measureLatencies(models []*onnxio.Model, datas []*dataset.Set, batches []int, budget, limit time.Duration, cfg ort.Config) ([][]Latency, error) {
	ts := make([]*timed, len(models))
	for k, m := range models {
		s, err := ort.NewSessionForModel(m, nil, cfg)
		if err != nil {
			return nil, err
		}
		defer s.Destroy()
		b, err := s.Bind(datas[k], "")
		if err != nil {
			return nil, err
		}
		ts[k] = &timed{s: s, b: b}
	}
	start := time.Now()
	out := make([][]Latency, len(models))
	perRow, done := 0.0, 0 // seconds per row and run of all models, largest batch timed
	for _, size := range batches {
		if fb := ts[0].b.FixedBatch; fb > 0 && size != fb {
			continue
		}
		if limit > 0 && perRow > 0 {
			left := (limit - time.Since(start)).Seconds()
			for size > done && 2*perRow*float64(size) > left {
				size /= 2
			}
			if size <= done {
				continue
			}
		}
		if err := timeBatch(ts, size, budget); err != nil {
			return nil, err
		}
		run := 0.0
		for k, x := range ts {
			med := median(x.t)
			out[k] = append(out[k], Latency{Batch: size, Median: med, Min: slices.Min(x.t), Runs: len(x.t), Samples: float64(size) / med * 1000})
			run += med / 1000
		}
		perRow, done = math.Max(perRow, run/float64(size)), size
	}
	return out, nil
}

// timed is one model's session, its bound data, and its timings (ms) at
// the current batch.
type timed struct {
	s  *ort.Session
	b  *dataset.Bound
	in []ort.Tensor
	t  []float64
}

// timeBatch warms up and times every model at one batch size, in turns:
// two warm-up runs (one when a run takes more than a quarter of budget),
// then timed runs for about budget, at least five (at least one when five
// turns would take more than twice the budget).
func timeBatch(ts []*timed, size int, budget time.Duration) error {
	var warm time.Duration // one turn of every model
	for _, x := range ts {
		var err error
		if x.in, err = rows(x.b, size); err != nil {
			return err
		}
		x.t = x.t[:0]
		t0 := time.Now()
		if _, err := x.s.Run(x.in...); err != nil {
			return fmt.Errorf("latency at batch %d: %w", size, err)
		}
		warm += time.Since(t0)
	}
	if warm < budget/4 {
		for _, x := range ts {
			if _, err := x.s.Run(x.in...); err != nil {
				return fmt.Errorf("latency at batch %d: %w", size, err)
			}
		}
	}
	least := 5
	if warm > 0 {
		least = max(1, min(5, int(2*budget/warm)))
	}
	start := time.Now()
	for n := 0; n < least || (time.Since(start) < budget && n < 200); n++ {
		for _, x := range ts {
			t0 := time.Now()
			if _, err := x.s.Run(x.in...); err != nil {
				return fmt.Errorf("latency at batch %d: %w", size, err)
			}
			x.t = append(x.t, float64(time.Since(t0).Microseconds())/1000)
		}
	}
	return nil
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
