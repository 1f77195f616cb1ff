package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"sort"

	"github.com/onnx-cria/onnx-cria/dataset"
	"github.com/onnx-cria/onnx-cria/evaluate"
	"github.com/onnx-cria/onnx-cria/onnxio"
	"github.com/onnx-cria/onnx-cria/rewrite"
	"github.com/onnx-cria/onnx-cria/runtime"
	"github.com/onnx-cria/onnx-cria/shrink"
)

type ablateJSON struct {
	Model     string           `json:"model"`
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

func runAblate(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("ablate", "MODEL --group G --fraction X --calib DATA.npz --eval DATA.npz [flags]",
		"The direct ablation of METHOD.md §7: on one group, with no recovery, remove the\nlowest-scored X of its units, then (from the original) the highest-scored X, then\nrandom X (several seeded trials), and report the metric after each against the\noriginal's.", stderr)
	rt := rtFlags(fs)
	group := fs.String("group", "", "the group (see inspect --groups); required")
	fraction := fs.Float64("fraction", 0.25, "fraction of the group's units to remove")
	calibPath := fs.String("calib", "", "calibration data for scoring (.npz)")
	evalPath := fs.String("eval", "", "evaluation data (.npz); required")
	cf := addCritFlags(fs)
	trials := fs.Int("random-trials", 5, "random removals to average")
	samples := fs.Int("samples", 1024, "calibration samples M")
	seed := fs.Int64("seed", 0, "seed")
	asJSON := fs.Bool("json", false, "print JSON")
	pos, err := parse(fs, args, 1, 1)
	if err != nil {
		return err
	}
	if *group == "" || *evalPath == "" {
		return usagef("--group and --eval are required")
	}
	if *fraction <= 0 || *fraction >= 1 {
		return usagef("--fraction %v: want a fraction in (0, 1)", *fraction)
	}
	crit, err := cf.criterion()
	if err != nil {
		return err
	}
	m, err := onnxio.Load(pos[0])
	if err != nil {
		return err
	}
	var calib *dataset.Set
	if *calibPath != "" {
		if calib, err = dataset.Load(*calibPath); err != nil {
			return err
		}
	}
	ev, err := dataset.Load(*evalPath)
	if err != nil {
		return err
	}
	if err := startRuntime(rt); err != nil {
		return err
	}
	res, err := ablate(m, calib, ev, *group, *fraction, crit, *trials, *samples, *seed, *rt)
	if err != nil {
		return err
	}
	res.Model = pos[0]
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}
	fmt.Fprintf(stdout, "%s, group %s: remove %d of %d units (%s scores), no recovery\n", res.Model, res.Group, res.Removed, res.Width, res.Criterion)
	fmt.Fprintf(stdout, "  original           %s\n", res.Original)
	fmt.Fprintf(stdout, "  lowest-scored      %s\n", res.Lowest)
	fmt.Fprintf(stdout, "  highest-scored     %s\n", res.Highest)
	fmt.Fprintf(stdout, "  random (%d trials)  %s %.4f ± %.4f\n", len(res.Random), res.Original.Metric, res.RandMean, res.RandStd)
	return nil
}

func ablate(m *onnxio.Model, calib, ev *dataset.Set, group string, fraction float64, crit shrink.Criterion, trials, samples int, seed int64, rt runtime.Config) (*ablateJSON, error) {
	cfg := shrink.Config{Criterion: crit, Samples: samples, Seed: seed, Runtime: rt, AllGroups: !crit.NeedsStates()}
	a, scored, err := shrink.Score(m, calib, cfg)
	if err != nil {
		return nil, err
	}
	var g *rewrite.Group
	var scores []float64
	for _, gs := range scored {
		if gs.Group.Name == group {
			g, scores = gs.Group, gs.Scored.Scores
		}
	}
	if g == nil {
		var names []string
		for _, gs := range scored {
			names = append(names, gs.Group.Name)
		}
		return nil, fmt.Errorf("no scorable group %q; the model has: %v", group, names)
	}
	k := int(math.Round(fraction * float64(g.Width)))
	if k < 1 || k >= g.Width {
		return nil, fmt.Errorf("removing %.3g of %d units leaves %d", fraction, g.Width, g.Width-k)
	}
	order := make([]int, g.Width)
	for u := range order {
		order[u] = u
	}
	sort.SliceStable(order, func(i, j int) bool { return scores[order[i]] < scores[order[j]] })
	evalPlan := func(units []int) (*evaluate.Result, error) {
		pruned, err := a.Apply(rewrite.Plan{g.Name: units})
		if err != nil {
			return nil, err
		}
		return evaluate.Run(pruned, ev, evaluate.Options{Runtime: rt})
	}
	res := &ablateJSON{Group: g.Name, Width: g.Width, Removed: k, Criterion: crit.Name(), Seed: seed}
	if res.Original, err = evaluate.Run(m, ev, evaluate.Options{Runtime: rt}); err != nil {
		return nil, err
	}
	if res.Lowest, err = evalPlan(append([]int(nil), order[:k]...)); err != nil {
		return nil, err
	}
	if res.Highest, err = evalPlan(append([]int(nil), order[g.Width-k:]...)); err != nil {
		return nil, err
	}
	r := rand.New(rand.NewPCG(uint64(seed), 0xab1a7e))
	for t := 0; t < trials; t++ {
		perm := r.Perm(g.Width)[:k]
		e, err := evalPlan(perm)
		if err != nil {
			return nil, err
		}
		res.Random = append(res.Random, e.Value)
	}
	for _, v := range res.Random {
		res.RandMean += v
	}
	if n := float64(len(res.Random)); n > 0 {
		res.RandMean /= n
		for _, v := range res.Random {
			res.RandStd += (v - res.RandMean) * (v - res.RandMean)
		}
		if n > 1 {
			res.RandStd = math.Sqrt(res.RandStd / (n - 1))
		}
	}
	return res, nil
}
