package shrink

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/onnx-cria/onnx-cria/dataset"
	"github.com/onnx-cria/onnx-cria/evaluate"
	"github.com/onnx-cria/onnx-cria/onnxio"
	"github.com/onnx-cria/onnx-cria/rewrite"
)

// Ablation is the direct ablation of docs/METHOD.md §7 on one group: the metric
// after removing the lowest-scored, the highest-scored and random units,
// with no recovery.
type Ablation struct {
	Group     string           `json:"group"`
	Width     int              `json:"width"`
	Removed   int              `json:"removed"`
	Criterion string           `json:"criterion"`
	Seed      int64            `json:"seed"`
	Original  *evaluate.Result `json:"original"`
	Lowest    *evaluate.Result `json:"lowest_removed"`
	Highest   *evaluate.Result `json:"highest_removed"`
	Random    []float64        `json:"random_removed"`
	RandMean  float64          `json:"random_mean"`
	RandStd   float64          `json:"random_std"`
}

// Ablate scores group (named as inspect --groups names it) with cfg's
// criterion and evaluates the three removals of fraction of its units on
// ev; random removal is repeated trials times with seeded choices.
func Ablate(m *onnxio.Model, calib, ev *dataset.Set, group string, fraction float64, trials int, cfg Config) (*Ablation, error) {
	if cfg.Criterion != nil && !cfg.Criterion.NeedsStates() {
		cfg.AllGroups = true
	}
	a, scored, err := Score(m, calib, cfg)
	if err != nil {
		return nil, err
	}
	var g *rewrite.Group
	var scores []float64
	var names []string
	for _, gs := range scored {
		names = append(names, gs.Group.Name)
		if gs.Group.Name == group {
			g, scores = gs.Group, gs.Scored.Scores
		}
	}
	if g == nil {
		return nil, fmt.Errorf("no scorable group %q; the model has: %v", group, names)
	}
	k := int(math.Round(fraction * float64(g.Width)))
	if k < 1 || k >= g.Width {
		return nil, fmt.Errorf("removing %.3g of %d units leaves %d", fraction, g.Width, g.Width-k)
	}
	order := ascending(scores)
	opts := evaluate.Options{Task: cfg.EvalTask, Batch: cfg.Batch, Runtime: cfg.Runtime}
	evalPlan := func(units []int) (*evaluate.Result, error) {
		pruned, err := a.Apply(rewrite.Plan{g.Name: units})
		if err != nil {
			return nil, err
		}
		return evaluate.Run(pruned, ev, opts)
	}
	res := &Ablation{Group: g.Name, Width: g.Width, Removed: k, Criterion: cfg.Criterion.Name(), Seed: cfg.Seed}
	if res.Original, err = evaluate.Run(m, ev, opts); err != nil {
		return nil, err
	}
	if res.Lowest, err = evalPlan(append([]int(nil), order[:k]...)); err != nil {
		return nil, err
	}
	if res.Highest, err = evalPlan(append([]int(nil), order[g.Width-k:]...)); err != nil {
		return nil, err
	}
	r := rand.New(rand.NewPCG(uint64(cfg.Seed), 0xab1a7e))
	for t := 0; t < trials; t++ {
		e, err := evalPlan(r.Perm(g.Width)[:k])
		if err != nil {
			return nil, err
		}
		res.Random = append(res.Random, e.Value)
	}
	res.RandMean, res.RandStd = MeanStd(res.Random)
	return res, nil
}

// MeanStd returns the mean and the sample standard deviation.
func MeanStd(v []float64) (mean, std float64) {
	if len(v) == 0 {
		return 0, 0
	}
	for _, x := range v {
		mean += x
	}
	mean /= float64(len(v))
	if len(v) > 1 {
		for _, x := range v {
			std += (x - mean) * (x - mean)
		}
		std = math.Sqrt(std / float64(len(v)-1))
	}
	return mean, std
}
