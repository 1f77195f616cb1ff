package shrink

import (
	"fmt"

	"github.com/onnx-cria/onnx-cria/autodiff"
	"github.com/onnx-cria/onnx-cria/onnxio"
	"github.com/onnx-cria/onnx-cria/rewrite"
)

// Taylor scores a unit by the first-order Taylor estimate of the change in
// the loss when its incoming weights are removed (Molchanov et al., 2019):
// the square of sum(w * dL/dw) over those weights, averaged over calibration
// batches. The loss is cross-entropy on the calibration data's "labels",
// or next-token cross-entropy for a language model; gradients come from the
// training graph that finetune builds and ONNX Runtime runs.
type Taylor struct{}

func (Taylor) Name() string      { return "taylor" }
func (Taylor) NeedsStates() bool { return false }

func (Taylor) Score(r *Round) (map[string]*Scored, error) {
	a, groups, calib := r.Analysis, r.Groups, r.Calib
	if calib == nil {
		return nil, fmt.Errorf("the taylor criterion needs calibration data with labels (or a language model)")
	}
	m := a.Model
	ix := onnxio.NewIndex(m.Graph())
	type use struct {
		g    *rewrite.Group
		p    rewrite.ParamRef
		w    int // index into names
		dims []int64
	}
	var names []string
	at := map[string]int{}
	var uses []use
	for _, g := range groups {
		ws, err := incomingWeights(ix, g)
		if err != nil {
			return nil, err
		}
		for _, w := range ws {
			name := w.t.GetName()
			if _, ok := at[name]; !ok {
				at[name] = len(names)
				names = append(names, name)
			}
			uses = append(uses, use{g, w.p, at[name], w.t.GetDims()})
		}
	}
	sums := map[string][]float64{} // per group, per unit: sum of squares over batches
	for _, g := range groups {
		sums[g.Name] = make([]float64, g.Width)
	}
	batches := 0
	fcfg := autodiff.GradOptions{Batch: r.Batch, Seed: r.Seed, Runtime: r.Runtime}
	if r.Progress != nil {
		fcfg.Progress = func(_ string, done, total int) { r.Progress(done, total) }
	}
	step := make(map[string][]float64, len(groups))
	err := autodiff.GradientPass(m, calib, names, fcfg, func(values, grads [][]float32) error {
		for _, g := range groups {
			step[g.Name] = make([]float64, g.Width)
		}
		for _, us := range uses {
			w, gr := values[us.w], grads[us.w]
			acc := step[us.g.Name]
			rewrite.UnitRuns(us.dims, us.p, us.g.Width, func(u, lo, hi int) {
				for k := lo; k < hi; k++ {
					acc[u] += float64(w[k]) * float64(gr[k])
				}
			})
		}
		for name, st := range step {
			for u, v := range st {
				sums[name][u] += v * v
			}
		}
		batches++
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("taylor: %w", err)
	}
	out := map[string]*Scored{}
	for _, g := range groups {
		s := sums[g.Name]
		for u := range s {
			s[u] /= float64(batches)
		}
		out[g.Name] = &Scored{Scores: s}
	}
	return out, nil
}
