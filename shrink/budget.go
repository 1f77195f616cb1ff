package shrink

import (
	"fmt"
	"math"
	"sort"
	"strings"
	"time"

	"github.com/onnx-cria/onnx-cria/dataset"
	"github.com/onnx-cria/onnx-cria/onnxio"
	"github.com/onnx-cria/onnx-cria/rewrite"
)

// What a target reduces.
const (
	TargetParams  = "params"  // parameters (onnxio.Model.ParamCount)
	TargetFLOPs   = "flops"   // FLOPs per sample (onnxio.FLOPs)
	TargetLatency = "latency" // ORT latency at Config.LatencyBatch, measured
)

// budget is what the loop must bring down, and how to count it for the
// widths the model would be written with.
type budget struct {
	kind string
	base float64 // the input's
	goal float64 // reach at most this
	// For latency: measured medians (ms) by widths, so that no widths are
	// timed twice.
	timed map[string]float64
}

func newBudget(r *run) (*budget, error) {
	b := &budget{kind: r.cfg.Kind, timed: map[string]float64{}}
	switch b.kind {
	case TargetParams:
		p, _ := r.in.ParamCount()
		b.base = float64(p)
		b.goal = math.Floor((1 - r.cfg.Target) * b.base)
	case TargetFLOPs:
		b.base = float64(onnxio.FLOPs(r.cur))
		if b.base == 0 {
			return nil, fmt.Errorf("the model has no Conv, Gemm or MatMul FLOPs to reduce")
		}
		b.goal = math.Floor((1 - r.cfg.Target) * b.base)
	case TargetLatency:
		if r.calib == nil {
			return nil, fmt.Errorf("a latency target needs calibration data to time the model on")
		}
		// Latency is counted as the ratio to the input's, timed in turns.
		b.base = 1
		b.goal = 1 - r.cfg.Target
	default:
		return nil, &SettingError{"target kind", b.kind, "want params, flops or latency"}
	}
	return b, nil
}

// cost counts the model that widths w would write.
func (b *budget) cost(r *run, w widths) (float64, error) {
	p := r.planFor(w)
	switch b.kind {
	case TargetParams:
		n, err := r.orig.ParamsAfter(p)
		return float64(n), err
	case TargetFLOPs:
		n, err := r.orig.FLOPsAfter(p)
		return float64(n), err
	}
	key := widthsKey(w)
	if ms, ok := b.timed[key]; ok {
		return ms, nil
	}
	m, err := r.orig.Apply(p)
	if err != nil {
		return 0, err
	}
	ratio, err := r.latencyRatio(m, p)
	if err != nil {
		return 0, err
	}
	b.timed[key] = ratio
	return ratio, nil
}

// reduction is 1 - cost/base.
func (b *budget) reduction(c float64) float64 { return 1 - c/b.base }

// latencyRatio is m's median ORT latency at the latency batch over the
// input's, the two timed in turns on calibration rows.
func (r *run) latencyRatio(m *onnxio.Model, p rewrite.Plan) (float64, error) {
	defer r.stage("latency", time.Now())
	data := r.calib
	if r.cfg.PruneCache {
		keep, err := r.orig.IOKeep(p)
		if err != nil {
			return 0, err
		}
		if data, err = adapt(r.calib, keep); err != nil {
			return 0, err
		}
	}
	lat, err := measureLatencies([]*onnxio.Model{r.in, m}, []*dataset.Set{r.calib, data}, []int{r.cfg.LatencyBatch}, r.cfg.LatencyBudget, 0, r.cfg.Runtime)
	if err != nil {
		return 0, err
	}
	if len(lat[0]) == 0 {
		return 0, fmt.Errorf("the model takes a fixed batch; time it at that batch (latency batch %d)", r.cfg.LatencyBatch)
	}
	params, _ := m.ParamCount()
	r.rep.Timings = append(r.rep.Timings, Timing{Params: params, InputMS: lat[0][0].Min, CandidateMS: lat[1][0].Min})
	return lat[1][0].Min / lat[0][0].Min, nil
}

func widthsKey(w widths) string {
	var b strings.Builder
	for _, k := range sortedNames(w) {
		fmt.Fprintf(&b, "%s=%d;", k, w[k])
	}
	return b.String()
}

func sortedNames[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// unitCosts is each group's cost per unit in the current model, for the
// cost ranking: parameters per unit, or for FLOPs and latency targets the
// FLOPs one unit removes.
func unitCosts(a *rewrite.Analysis, groups []*rewrite.Group, kind string) (map[string]float64, error) {
	out := map[string]float64{}
	var f0 int64
	if kind != TargetParams {
		f0 = onnxio.FLOPs(a.Model)
	}
	for _, g := range groups {
		if kind == TargetParams {
			out[g.Name] = float64(g.ParamsPerUnit)
			continue
		}
		f, err := a.FLOPsAfter(rewrite.Plan{g.Name: {0}})
		if err != nil {
			return nil, err
		}
		out[g.Name] = float64(f0 - f)
	}
	return out, nil
}
