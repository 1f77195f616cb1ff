package shrink

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math"
	"os"
	"path"
	"sort"
	"time"

	"github.com/onnx-cria/onnx-cria/capture"
	"github.com/onnx-cria/onnx-cria/dataset"
	"github.com/onnx-cria/onnx-cria/evaluate"
	"github.com/onnx-cria/onnx-cria/onnxio"
	"github.com/onnx-cria/onnx-cria/rewrite"
	"github.com/onnx-cria/onnx-cria/ort"
)

// Config holds every setting of a run; the report records all of them.
type Config struct {
	Target    float64   // effective parameter reduction to reach, in (0, 1)
	Criterion Criterion // default spectral
	PerRound  float64   // at most this fraction of a group's width per round (0.10)
	MinWidth  int       // never below max(MinWidth, MinFrac * original width) (4)
	MinFrac   float64   // (0.05)
	Ranking   string    // "per-group" (default) or "global"
	RoundTo   int       // widths in multiples of this (1)
	// RoundChannels, when above 1, overrides RoundTo for Conv channel
	// groups (see ort.ConvBlock: --round-to auto).
	RoundChannels int
	Exclude       []string // glob patterns of group names left alone
	AllGroups     bool     // also prune groups without a nonlinearity to observe (not with spectral)
	Samples       int      // calibration samples M, fixed across rounds (1024)
	Seed          int64
	Batch         int // rows per ORT run (64)
	Runtime       ort.Config
	Eval          *dataset.Set // if set, the metric before and after
	EvalTask      string
	Latency       bool // measure ORT latency at batch 1 and 64 before and after
	// Log receives one line per event; Progress tracks long steps.
	Log      func(format string, args ...any)
	Progress func(label string, done, total int)

	buffers capture.Buffers // the last round's capture memory, reused
}

func (c *Config) defaults() error {
	if c.Criterion == nil {
		c.Criterion = NewSpectral(DefaultSpectralOptions())
	}
	if c.PerRound == 0 {
		c.PerRound = 0.10
	}
	if c.MinWidth == 0 {
		c.MinWidth = 4
	}
	if c.MinFrac == 0 {
		c.MinFrac = 0.05
	}
	if c.Ranking == "" {
		c.Ranking = "per-group"
	}
	if c.RoundTo <= 0 {
		c.RoundTo = 1
	}
	if c.Samples <= 0 {
		c.Samples = 1024
	}
	if c.Batch <= 0 {
		c.Batch = 64
	}
	if c.Log == nil {
		c.Log = func(string, ...any) {}
	}
	switch {
	case !(c.Target > 0 && c.Target < 1):
		return fmt.Errorf("target %v: want a fraction in (0, 1), e.g. 0.5 for half the parameters", c.Target)
	case c.PerRound <= 0 || c.PerRound > 1:
		return fmt.Errorf("per-round fraction %v: want (0, 1]", c.PerRound)
	case c.MinFrac < 0 || c.MinFrac >= 1:
		return fmt.Errorf("minimum width fraction %v: want [0, 1)", c.MinFrac)
	case c.Ranking != "per-group" && c.Ranking != "global":
		return fmt.Errorf("ranking %q: want per-group or global", c.Ranking)
	case c.AllGroups && c.Criterion.NeedsStates():
		return fmt.Errorf("criterion %s needs hidden states, which groups without a nonlinearity do not have: drop --all-groups", c.Criterion.Name())
	}
	for _, p := range c.Exclude {
		if _, err := path.Match(p, ""); err != nil {
			return fmt.Errorf("exclude pattern %q: %v", p, err)
		}
	}
	return nil
}

// Run shrinks m and returns the smaller model and the report. m is not
// modified.
func Run(m *onnxio.Model, calib *dataset.Set, cfg Config) (*onnxio.Model, *Report, error) {
	if err := cfg.defaults(); err != nil {
		return nil, nil, err
	}
	rep := newReport(m, calib, &cfg)
	stage := func(name string, t0 time.Time) { rep.Stages[name] += time.Since(t0).Seconds() }
	if calib != nil && cfg.Criterion.NeedsStates() {
		n, err := calib.N()
		if err != nil {
			return nil, nil, err
		}
		if n > cfg.Samples {
			t0 := time.Now()
			if calib, err = calib.Subset(cfg.Samples, cfg.Seed); err != nil {
				return nil, nil, err
			}
			stage("subset", t0)
		}
		rep.Samples, _ = calib.N()
	} else if cfg.Criterion.NeedsStates() {
		return nil, nil, fmt.Errorf("criterion %s needs calibration data", cfg.Criterion.Name())
	}
	if cfg.Eval != nil {
		t0 := time.Now()
		cfg.Log("evaluating the input model")
		r, err := evaluate.Run(m, cfg.Eval, evaluate.Options{Task: cfg.EvalTask, Batch: cfg.Batch, Runtime: cfg.Runtime, Progress: cfg.progress("eval before")})
		if err != nil {
			return nil, nil, fmt.Errorf("evaluating the input model: %w", err)
		}
		rep.EvalBefore = r
		stage("eval", t0)
	}
	p0, _ := m.ParamCount()
	goal := int64(math.Floor((1 - cfg.Target) * float64(p0)))
	cur := m
	if names := onnxio.InputInitializers(m); len(names) > 0 {
		// Old exporters list every initializer as a graph input too, which
		// makes the weights overridable and so not constants. Nobody feeds
		// them; treat them as the weights they are.
		cur = m.Clone()
		onnxio.DetachInputInitializers(cur)
		rep.Warnings = append(rep.Warnings, fmt.Sprintf("%d initializers were also listed as graph inputs (an old exporter's habit); the output lists them as initializers only", len(names)))
	}
	orig := map[string][]int{} // original index of every current unit
	origW := map[string]int{}  // original widths
	for round := 1; ; round++ {
		params, _ := cur.ParamCount()
		if params <= goal {
			break
		}
		t0 := time.Now()
		a, err := rewrite.Analyze(cur, rewrite.Options{})
		if err != nil {
			return nil, nil, err
		}
		stage("analyze", t0)
		if round == 1 {
			rep.noteGroups(a, &cfg)
		}
		// Groups that can still lose units this round, and how many.
		var groups []*rewrite.Group
		steps := map[string][]int{}
		for _, g := range a.Groups {
			if _, ok := origW[g.Name]; !ok {
				origW[g.Name] = g.Width
				orig[g.Name] = seq(g.Width)
			}
			if !cfg.eligible(g) {
				continue
			}
			minW := cfg.minWidth(g.Kind, origW[g.Name])
			if st := removalSteps(g.Width, minW, cfg.PerRound, cfg.roundFor(g.Kind)); len(st) > 0 {
				steps[g.Name] = st
				groups = append(groups, g)
			}
		}
		if len(groups) == 0 {
			return nil, nil, fmt.Errorf("cannot reach the target %.3g: stopped at an effective reduction of %.4f because every eligible group is at its minimum width (lower --min-width, or exclude fewer groups)", cfg.Target, 1-float64(params)/float64(p0))
		}
		// Candidates: each group's cheapest units, within the round's cap.
		var items []item
		scored, err := scoreGroups(cur, a, groups, calib, &cfg, round, stage)
		if err != nil {
			return nil, nil, err
		}
		for gi, g := range groups {
			s := scored[g.Name]
			steps := steps[g.Name]
			order := ascending(s.Scores)
			maxScore := 0.0
			for _, v := range s.Scores {
				maxScore = math.Max(maxScore, math.Abs(v))
			}
			done := 0
			for k, upto := range steps {
				chunk := order[done:upto]
				key := float64(k+1) / float64(len(steps))
				if cfg.Ranking == "global" {
					worst := math.Inf(-1)
					for _, u := range chunk {
						worst = math.Max(worst, s.Scores[u])
					}
					if maxScore > 0 {
						worst /= maxScore
					}
					key = worst
				}
				items = append(items, item{g: g, units: chunk, key: key, order: gi, step: k})
				done = upto
			}
		}
		sort.SliceStable(items, func(i, j int) bool {
			if items[i].key != items[j].key {
				return items[i].key < items[j].key
			}
			return items[i].order < items[j].order
		})
		planOf := func(its []item) rewrite.Plan {
			p := rewrite.Plan{}
			for _, it := range its {
				p[it.g.Name] = append(p[it.g.Name], it.units...)
			}
			return p
		}
		t0 = time.Now()
		take := items
		after, err := a.ParamsAfter(planOf(take))
		if err != nil {
			return nil, nil, err
		}
		if after <= goal {
			// The last round: the shortest prefix that reaches the goal.
			lo, hi := 1, len(items)
			for lo < hi {
				mid := (lo + hi) / 2
				pa, err := a.ParamsAfter(planOf(items[:mid]))
				if err != nil {
					return nil, nil, err
				}
				if pa <= goal {
					hi = mid
				} else {
					lo = mid + 1
				}
			}
			if take, err = closest(a, items[:lo-1], items[lo-1:], goal, planOf); err != nil {
				return nil, nil, err
			}
		}
		plan := planOf(take)
		stage("select", t0)
		t0 = time.Now()
		next, err := a.Apply(plan)
		if err != nil {
			return nil, nil, fmt.Errorf("round %d: %w", round, err)
		}
		stage("apply", t0)
		pAfter, _ := next.ParamCount()
		rr := Round{Index: round, ParamsBefore: params, ParamsAfter: pAfter, Reduction: 1 - float64(pAfter)/float64(p0)}
		for _, g := range groups {
			rm := plan[g.Name]
			gr := GroupRound{Name: g.Name, Kind: g.Kind, WidthBefore: g.Width, WidthAfter: g.Width - len(rm)}
			if s := scored[g.Name]; s != nil {
				gr.Detail = s.Detail
			}
			sorted := append([]int(nil), rm...)
			sort.Ints(sorted)
			drop := map[int]bool{}
			for _, u := range sorted {
				gr.Removed = append(gr.Removed, orig[g.Name][u])
				drop[u] = true
			}
			var kept []int
			for u, o := range orig[g.Name] {
				if !drop[u] {
					kept = append(kept, o)
				}
			}
			orig[g.Name] = kept
			rr.Groups = append(rr.Groups, gr)
		}
		rep.Rounds = append(rep.Rounds, rr)
		cfg.Log("round %d: %s -> %s parameters, effective reduction %.4f", round, commas(params), commas(pAfter), rr.Reduction)
		cur = next
	}
	rep.finishGroups(cur, orig, origW, &cfg)
	if cfg.Eval != nil {
		t0 := time.Now()
		cfg.Log("evaluating the shrunk model")
		r, err := evaluate.Run(cur, cfg.Eval, evaluate.Options{Task: cfg.EvalTask, Batch: cfg.Batch, Runtime: cfg.Runtime, Progress: cfg.progress("eval after")})
		if err != nil {
			return nil, nil, fmt.Errorf("evaluating the shrunk model: %w", err)
		}
		rep.EvalAfter = r
		stage("eval", t0)
	}
	if cfg.Latency && calib != nil {
		t0 := time.Now()
		cfg.Log("measuring ORT latency at batch 1 and 64")
		var err error
		if rep.LatencyBefore, err = MeasureLatency(m, calib, []int{1, 64}, time.Second, cfg.Runtime); err != nil {
			return nil, nil, err
		}
		if rep.LatencyAfter, err = MeasureLatency(cur, calib, []int{1, 64}, time.Second, cfg.Runtime); err != nil {
			return nil, nil, err
		}
		stage("latency", t0)
		for k := range rep.LatencyAfter {
			b, a := rep.LatencyBefore[k], rep.LatencyAfter[k]
			if k < len(rep.LatencyBefore) && a.Median > 0.95*b.Median && cfg.RoundTo < 8 && cfg.RoundChannels <= 1 {
				rep.Warnings = append(rep.Warnings, fmt.Sprintf("ORT latency at batch %d did not fall (%.3f -> %.3f ms): Conv channel counts that are not multiples of 8 or 16 defeat ONNX Runtime's blocked convolution kernels; try --round-to auto", b.Batch, b.Median, a.Median))
				break
			}
		}
	}
	if err := rep.setOutput(cur); err != nil {
		return nil, nil, err
	}
	return cur, rep, nil
}

func (c *Config) progress(label string) func(done, total int) {
	if c.Progress == nil {
		return nil
	}
	return func(done, total int) { c.Progress(label, done, total) }
}

// item is one step of one group: units removed together in a round.
type item struct {
	g     *rewrite.Group
	units []int   // current indices, in removal order
	key   float64 // ordering for a partial last round
	order int
	step  int // index among its group's steps
}

// closest completes a last round: prefix alone stays above the goal, and of
// the remaining steps that may follow it (a group's steps in their order),
// it adds the one that reaches the goal with the fewest parameters removed,
// so that the overshoot is the smallest single step rather than whichever
// step happened to come next.
func closest(a *rewrite.Analysis, prefix, rest []item, goal int64, planOf func([]item) rewrite.Plan) ([]item, error) {
	taken := map[string]int{}
	for _, it := range prefix {
		taken[it.g.Name]++
	}
	best, bestPA := -1, int64(-1)
	try := append([]item(nil), prefix...)
	for j, it := range rest {
		if it.step != taken[it.g.Name] {
			continue
		}
		pa, err := a.ParamsAfter(planOf(append(try, it)))
		if err != nil {
			return nil, err
		}
		if pa <= goal && pa > bestPA {
			best, bestPA = j, pa
		}
	}
	return append(try, rest[best]), nil
}

// minWidth is the narrowest a group of this kind and original width may get.
func (c *Config) minWidth(kind string, orig int) int {
	w := max(c.MinWidth, int(math.Ceil(c.MinFrac*float64(orig))))
	if kind == "heads" || kind == "kv-groups" {
		// One head left makes its axes look like broadcasts to the next
		// analysis; keep two.
		w = max(w, 2)
	}
	return w
}

// roundFor is the step of a group of this kind's widths.
func (c *Config) roundFor(kind string) int {
	if c.RoundChannels > 1 && kind == "channels" {
		return c.RoundChannels
	}
	return c.RoundTo
}

// eligible reports whether g takes part in the loop.
func (c *Config) eligible(g *rewrite.Group) bool {
	if !g.Prunable() || c.excluded(g.Name) {
		return false
	}
	return g.Observe != nil || c.AllGroups
}

func (c *Config) excluded(name string) bool {
	for _, p := range c.Exclude {
		if ok, _ := path.Match(p, name); ok {
			return true
		}
	}
	return false
}

// removalSteps lists the cumulative unit counts a group may lose this round,
// one entry per step: single units, or steps that keep the width a multiple
// of roundTo. The cap is the per-round fraction of the width (at least one
// step while the group is above its minimum).
func removalSteps(width, minW int, perRound float64, roundTo int) []int {
	limit := width - minW
	if limit <= 0 {
		return nil
	}
	capN := max(1, int(math.Floor(perRound*float64(width))))
	capN = min(capN, limit)
	var steps []int
	if roundTo <= 1 {
		for k := 1; k <= capN; k++ {
			steps = append(steps, k)
		}
		return steps
	}
	first := width % roundTo
	if first == 0 {
		first = roundTo
	}
	for r := first; r <= limit; r += roundTo {
		if r > capN && len(steps) > 0 {
			break
		}
		steps = append(steps, r)
	}
	return steps
}

func seq(n int) []int {
	out := make([]int, n)
	for k := range out {
		out[k] = k
	}
	return out
}

// scoreGroups scores every group, capturing hidden states first when the
// criterion needs them.
func scoreGroups(m *onnxio.Model, a *rewrite.Analysis, groups []*rewrite.Group, calib *dataset.Set, cfg *Config, round int, stage func(string, time.Time)) (map[string]*Scored, error) {
	scored := map[string]*Scored{}
	if len(groups) == 0 {
		return scored, nil
	}
	var states map[string][2]*capture.Matrix
	if cfg.Criterion.NeedsStates() {
		t0 := time.Now()
		res, err := captureStates(m, groups, calib, cfg, round)
		if err != nil {
			return nil, err
		}
		// Scores keep nothing of the states: the next round may write
		// into their memory.
		defer cfg.buffers.Release(res)
		states = map[string][2]*capture.Matrix{}
		for k, g := range groups {
			states[g.Name] = [2]*capture.Matrix{res.Data[2*k], res.Data[2*k+1]}
		}
		stage("capture", t0)
	}
	t0 := time.Now()
	if rs, ok := cfg.Criterion.(roundScorer); ok {
		all, err := rs.ScoreRound(a, groups, calib, cfg, round)
		if err != nil {
			return nil, fmt.Errorf("round %d: %w", round, err)
		}
		for _, g := range groups {
			if s := all[g.Name]; s == nil || len(s.Scores) != g.Width {
				return nil, fmt.Errorf("criterion %s gave no scores for the %d units of %s", cfg.Criterion.Name(), g.Width, g.Name)
			}
		}
		stage("score", t0)
		return all, nil
	}
	for _, g := range groups {
		in := Input{Group: g, Analysis: a, Seed: cfg.Seed, Round: round}
		if st, ok := states[g.Name]; ok {
			in.Z, in.A = st[0], st[1]
		}
		s, err := cfg.Criterion.Score(in)
		if err != nil {
			return nil, fmt.Errorf("round %d: scoring %s: %w", round, g.Name, err)
		}
		if len(s.Scores) != g.Width {
			return nil, fmt.Errorf("criterion %s gave %d scores for %d units of %s", cfg.Criterion.Name(), len(s.Scores), g.Width, g.Name)
		}
		scored[g.Name] = s
	}
	stage("score", t0)
	return scored, nil
}

// GroupScores is one group's scores as Score reports them.
type GroupScores struct {
	Group  *rewrite.Group
	Scored *Scored
}

// Score analyses m and scores every eligible group once, as the first round
// of Run would. Only the criterion, samples, seed, batch, exclusions and
// runtime settings of cfg matter.
func Score(m *onnxio.Model, calib *dataset.Set, cfg Config) (*rewrite.Analysis, []GroupScores, error) {
	if cfg.Target == 0 {
		cfg.Target = 0.5 // unused; keeps defaults() checks simple
	}
	if err := cfg.defaults(); err != nil {
		return nil, nil, err
	}
	if cfg.Criterion.NeedsStates() {
		if calib == nil {
			return nil, nil, fmt.Errorf("criterion %s needs calibration data", cfg.Criterion.Name())
		}
		n, err := calib.N()
		if err != nil {
			return nil, nil, err
		}
		if n > cfg.Samples {
			if calib, err = calib.Subset(cfg.Samples, cfg.Seed); err != nil {
				return nil, nil, err
			}
		}
	}
	a, err := rewrite.Analyze(m, rewrite.Options{})
	if err != nil {
		return nil, nil, err
	}
	var groups []*rewrite.Group
	for _, g := range a.Groups {
		if cfg.eligible(g) {
			groups = append(groups, g)
		}
	}
	scored, err := scoreGroups(m, a, groups, calib, &cfg, 1, func(string, time.Time) {})
	if err != nil {
		return nil, nil, err
	}
	var out []GroupScores
	for _, g := range groups {
		out = append(out, GroupScores{Group: g, Scored: scored[g.Name]})
	}
	return a, out, nil
}

// captureStates records Z and A of every group on the calibration set: for
// group k, Data[2k] and Data[2k+1].
func captureStates(m *onnxio.Model, groups []*rewrite.Group, calib *dataset.Set, cfg *Config, round int) (*capture.Result, error) {
	var points []capture.Point
	for _, g := range groups {
		o := g.Observe
		points = append(points,
			capture.Point{Tensor: o.Pre, Axis: o.PreAxis, R: o.PreR, B: o.PreB, RMS: o.RMS},
			capture.Point{Tensor: o.Post, Axis: o.PostAxis, R: o.PostR, B: o.PostB, RMS: o.RMS})
	}
	return capture.Run(m, points, calib, capture.Options{Batch: cfg.Batch, Runtime: cfg.Runtime, Buffers: &cfg.buffers,
		Progress: cfg.progress(fmt.Sprintf("capture round %d", round))})
}

// fileHash is the hex SHA-256 of a file, or "" if it cannot be read.
func fileHash(p string) string {
	f, err := os.Open(p)
	if err != nil {
		return ""
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return ""
	}
	return hex.EncodeToString(h.Sum(nil))
}

func commas(n int64) string {
	s := fmt.Sprint(n)
	var out []byte
	for i := range s {
		if i > 0 && (len(s)-i)%3 == 0 && s[i-1] != '-' {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	return string(out)
}
