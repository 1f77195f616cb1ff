package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/onnx-cria/onnx-cria/capture"
	"github.com/onnx-cria/onnx-cria/dataset"
	"github.com/onnx-cria/onnx-cria/onnxio"
	"github.com/onnx-cria/onnx-cria/ort"
	"github.com/onnx-cria/onnx-cria/rewrite"
	"github.com/onnx-cria/onnx-cria/shrink"
)

// Study is everything one run measured; the tables are computed from it.
type Study struct {
	Config   Config           `json:"config"`
	Merged   []Config         `json:"merged_runs,omitempty"` // later runs rendered with this one
	Fixtures []*FixtureResult `json:"fixtures"`
}

// FixtureResult is one fixture's groups and, optionally, loop runs.
type FixtureResult struct {
	Name       string         `json:"name"`
	Task       string         `json:"task"`
	Scoring    int            `json:"scoring_rows"`
	Validation int            `json:"validation_rows"`
	BaseLoss   float64        `json:"base_loss"` // mean loss on the validation rows
	Groups     []*GroupResult `json:"groups"`
	Loop       []LoopResult   `json:"loop,omitempty"`
	Seconds    float64        `json:"seconds"`
}

// GroupResult holds, for one group, every score and every damage measured.
type GroupResult struct {
	Name   string               `json:"name"`
	Kind   string               `json:"kind"`
	Op     string               `json:"op"` // the observed nonlinearity
	Width  int                  `json:"width"`
	Scores map[string][]float64 `json:"scores"` // per unit, higher: more important
	Single []Damage             `json:"single"` // one unit removed
	Sets   []Damage             `json:"sets"`   // random sets removed
	Bottom []Bottom             `json:"bottom"` // the lowest-scored fraction removed
}

// Damage is the effect of removing Units from the original model, measured
// on the validation rows: DLoss is the increase of the mean loss (labels,
// or next-token), KL the mean KL divergence from the original outputs.
type Damage struct {
	Units []int   `json:"units"`
	DLoss float64 `json:"dloss"`
	KL    float64 `json:"kl"`
}

// Bottom is the damage of removing the lowest-scored Frac of a group by
// Score, before and after the least-squares refit.
type Bottom struct {
	Score    string  `json:"score"`
	Frac     float64 `json:"frac"`
	DLoss    float64 `json:"dloss"`
	KL       float64 `json:"kl"`
	DLossLSQ float64 `json:"dloss_lsq"`
	KLLSQ    float64 `json:"kl_lsq"`
}

// criteria are the shrink package's scores, computed as a round of the loop
// would; the other scores are computed here (scores.go).
var criteria = []string{"spectral", "magnitude", "magnitude-l1", "activation", "taylor", "random"}

// bottomScores are the scores whose lowest-scored fractions are removed.
var bottomScores = []string{"spectral", "spectral-live", "magnitude", "activation", "taylor", "flap", "wanda-out",
	"spectral*flap", "spectral-std", "spectral-out", "spectral-contrib", "nbr-recon", "obs"}

// randomDraws is how many random removals stand for "random" in Bottom.
const randomDraws = 3

func studyFixture(name string, cfg *Config, log io.Writer) (*FixtureResult, error) {
	f, err := loadFixture(cfg.Root, name)
	if err != nil {
		return nil, err
	}
	m, err := onnxio.Load(f.Model)
	if err != nil {
		return nil, err
	}
	all, err := dataset.Load(f.Calib)
	if err != nil {
		return nil, err
	}
	score, valid, err := splitSet(all, cfg.Samples, cfg.Seed)
	if err != nil {
		return nil, err
	}
	rt := ort.Config{Threads: cfg.Threads}
	ev, err := newEvaluator(m, valid, f.Task, rt)
	if err != nil {
		return nil, err
	}
	fr := &FixtureResult{Name: name, Task: f.Task, BaseLoss: ev.baseLoss}
	fr.Scoring, _ = score.N()
	fr.Validation, _ = valid.N()
	fmt.Fprintf(log, "%s: %d scoring rows, %d validation rows, validation loss %.4f\n", name, fr.Scoring, fr.Validation, ev.baseLoss)

	a, err := rewrite.Analyze(m, rewrite.Options{})
	if err != nil {
		return nil, err
	}
	var groups []*rewrite.Group
	for _, g := range a.Prunable() {
		if g.Observe != nil && g.Width >= cfg.MinWidth {
			groups = append(groups, g)
		}
	}
	scores, err := allScores(m, a, groups, score, cfg, rt)
	if err != nil {
		return nil, err
	}
	for _, g := range groups {
		t0 := time.Now()
		gr := &GroupResult{Name: g.Name, Kind: g.Kind, Op: g.Observe.Op, Width: g.Width, Scores: scores[g.Name]}
		if err := damages(gr, m, a, g, score, ev, cfg, rt); err != nil {
			return nil, fmt.Errorf("%s: %w", g.Name, err)
		}
		fr.Groups = append(fr.Groups, gr)
		fmt.Fprintf(log, "%s %s: %d single, %d sets, %d bottom removals (%.0fs)\n", name, g.Name, len(gr.Single), len(gr.Sets), len(gr.Bottom), time.Since(t0).Seconds())
	}
	if cfg.Loop > 0 {
		if fr.Loop, err = loopRuns(m, score, valid, f.Task, cfg, rt, log); err != nil {
			return nil, err
		}
	}
	return fr, nil
}

// splitSet splits a calibration set into n seeded scoring rows and the
// validation rows that remain.
func splitSet(s *dataset.Set, n int, seed int64) (*dataset.Set, *dataset.Set, error) {
	total, err := s.N()
	if err != nil {
		return nil, nil, err
	}
	if n >= total {
		return nil, nil, fmt.Errorf("%s has %d rows; --samples %d leaves none to validate on", s.Path, total, n)
	}
	rows, err := dataset.SubsetIndices(total, n, seed)
	if err != nil {
		return nil, nil, err
	}
	in := map[int]bool{}
	for _, r := range rows {
		in[r] = true
	}
	var rest []int
	for r := 0; r < total; r++ {
		if !in[r] {
			rest = append(rest, r)
		}
	}
	take := func(idx []int) (*dataset.Set, error) {
		out := &dataset.Set{Path: s.Path}
		for _, a := range s.Arrays {
			t, err := a.Take(idx)
			if err != nil {
				return nil, err
			}
			out.Arrays = append(out.Arrays, t)
		}
		return out, nil
	}
	a, err := take(rows)
	if err != nil {
		return nil, nil, err
	}
	b, err := take(rest)
	return a, b, err
}

// allScores computes every score of every group on the scoring rows.
func allScores(m *onnxio.Model, a *rewrite.Analysis, groups []*rewrite.Group, calib *dataset.Set, cfg *Config, rt ort.Config) (map[string]map[string][]float64, error) {
	out := map[string]map[string][]float64{}
	if len(groups) == 0 {
		return out, nil
	}
	for _, g := range groups {
		out[g.Name] = map[string][]float64{}
	}
	for _, c := range criteria {
		crit, err := shrink.NewCriterion(c)
		if err != nil {
			return nil, err
		}
		_, scored, err := shrink.Score(m, calib, shrink.Config{Criterion: crit, Samples: cfg.Samples, Seed: cfg.Seed, Runtime: rt})
		if err != nil {
			return nil, fmt.Errorf("criterion %s: %w", c, err)
		}
		for _, gs := range scored {
			if s, ok := out[gs.Group.Name]; ok {
				s[c] = gs.Scored.Scores
			}
		}
	}
	var points []capture.Point
	for _, g := range groups {
		o := g.Observe
		points = append(points,
			capture.Point{Tensor: o.Pre, Axis: o.PreAxis, R: o.PreR, B: o.PreB, RMS: o.RMS},
			capture.Point{Tensor: o.Post, Axis: o.PostAxis, R: o.PostR, B: o.PostB, RMS: o.RMS})
	}
	res, err := capture.Run(m, points, calib, capture.Options{Runtime: rt})
	if err != nil {
		return nil, err
	}
	for k, g := range groups {
		if err := derivedScores(out[g.Name], m, g, res.Data[2*k], res.Data[2*k+1], cfg.Seed, ""); err != nil {
			return nil, fmt.Errorf("%s: %w", g.Name, err)
		}
	}
	return out, nil
}

// damages measures single-unit, random-set and lowest-fraction removals.
func damages(gr *GroupResult, m *onnxio.Model, a *rewrite.Analysis, g *rewrite.Group, calib *dataset.Set, ev *evaluator, cfg *Config, rt ort.Config) error {
	rng := rand.New(rand.NewPCG(uint64(cfg.Seed), hashName(g.Name)))
	remove := func(units []int) (Damage, *onnxio.Model, error) {
		units = slices.Clone(units)
		slices.Sort(units)
		pm, err := a.Apply(rewrite.Plan{g.Name: units})
		if err != nil {
			return Damage{}, nil, err
		}
		l, kl, err := ev.eval(pm)
		return Damage{Units: units, DLoss: l - ev.baseLoss, KL: kl}, pm, err
	}
	singles := rng.Perm(g.Width)
	if len(singles) > cfg.Single {
		singles = singles[:cfg.Single]
	}
	slices.Sort(singles)
	for _, u := range singles {
		d, _, err := remove([]int{u})
		if err != nil {
			return err
		}
		gr.Single = append(gr.Single, d)
	}
	size := max(2, int(cfg.SetFrac*float64(g.Width)+0.5))
	for range cfg.Sets {
		d, _, err := remove(rng.Perm(g.Width)[:size])
		if err != nil {
			return err
		}
		gr.Sets = append(gr.Sets, d)
	}
	orders := map[string][]int{}
	for _, s := range bottomScores {
		if v, ok := gr.Scores[s]; ok {
			orders[s] = ascending(v)
		}
	}
	for k := range randomDraws {
		orders[fmt.Sprintf("random-%d", k)] = rng.Perm(g.Width)
	}
	names := make([]string, 0, len(orders))
	for _, s := range bottomScores {
		if _, ok := orders[s]; ok {
			names = append(names, s)
		}
	}
	for k := range randomDraws {
		names = append(names, fmt.Sprintf("random-%d", k))
	}
	for _, frac := range cfg.Fractions {
		n := int(frac*float64(g.Width) + 0.5)
		if n < 1 || n >= g.Width {
			continue
		}
		for _, s := range names {
			units := orders[s][:n]
			d, pm, err := remove(units)
			if err != nil {
				return err
			}
			b := Bottom{Score: s, Frac: frac, DLoss: d.DLoss, KL: d.KL}
			kept := complement(units, g.Width)
			if b.DLossLSQ, b.KLLSQ, err = ev.afterLSQ(m, pm, map[string][]int{g.Name: kept}, calib, cfg, rt); err != nil {
				return err
			}
			gr.Bottom = append(gr.Bottom, b)
		}
	}
	return nil
}

func complement(units []int, width int) []int {
	drop := map[int]bool{}
	for _, u := range units {
		drop[u] = true
	}
	var out []int
	for u := 0; u < width; u++ {
		if !drop[u] {
			out = append(out, u)
		}
	}
	return out
}

// ascending orders units from least to most important, ties by index.
func ascending(s []float64) []int {
	idx := make([]int, len(s))
	for k := range idx {
		idx[k] = k
	}
	slices.SortStableFunc(idx, func(a, b int) int {
		switch {
		case s[a] < s[b]:
			return -1
		case s[a] > s[b]:
			return 1
		}
		return 0
	})
	return idx
}

func hashName(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}

// fixture is a model with its data, from testdata/models/NAME/meta.json.
type fixture struct {
	Model, Calib, Task string
}

func loadFixture(root, name string) (*fixture, error) {
	dir := filepath.Join(root, "testdata", "models", name)
	b, err := os.ReadFile(filepath.Join(dir, "meta.json"))
	if err != nil {
		return nil, err
	}
	var meta struct {
		Task  string `json:"task"`
		Calib string `json:"calib"`
	}
	if err := json.Unmarshal(b, &meta); err != nil {
		return nil, fmt.Errorf("%s/meta.json: %v", dir, err)
	}
	task := "classification"
	if meta.Task == "lm" {
		task = "lm"
	}
	return &fixture{Model: filepath.Join(dir, "model.onnx"), Calib: filepath.Join(dir, meta.Calib), Task: task}, nil
}
