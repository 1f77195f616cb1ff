package shrink

import (
	"errors"
	"fmt"
	"math"
	"path"
	"slices"
	"sort"
	"time"

	"github.com/onnx-cria/onnx-cria/capture"
	"github.com/onnx-cria/onnx-cria/dataset"
	"github.com/onnx-cria/onnx-cria/evaluate"
	"github.com/onnx-cria/onnx-cria/internal/memstat"
	"github.com/onnx-cria/onnx-cria/onnxio"
	"github.com/onnx-cria/onnx-cria/ort"
	"github.com/onnx-cria/onnx-cria/recover"
	"github.com/onnx-cria/onnx-cria/rewrite"
)

// Config holds every setting of a run; the report records all of them.
type Config struct {
	// Target is the reduction to reach, in (0, 1): 1 - after/before of
	// what Kind counts (a latency target of ratio 0.6 is Target 0.4).
	Target    float64
	Kind      string    // TargetParams (default), TargetFLOPs or TargetLatency
	Criterion Criterion // default Output{Kind: DefaultCriterion} (obs)
	PerRound  float64   // at most this fraction of a group's width per round (0.10)
	MinWidth  int       // never below max(MinWidth, MinFrac * original width) (4)
	MinFrac   float64   // (0.05)
	Ranking   string    // "per-group" (default) or "global"
	RoundTo   int       // widths in multiples of this (1)
	// RoundChannels, when above 1, overrides RoundTo for Conv channel
	// groups (see ort.ConvBlock).
	RoundChannels int
	Exclude       []string // glob patterns of group names left alone
	AllGroups     bool     // also prune groups whose states cannot be observed (criteria without states)
	// PruneCache lets heads and KV groups that a KV cache carries through
	// graph inputs and outputs be pruned (rewrite.Options.PruneCache): the
	// written model's cache inputs and outputs lose them, and the report
	// says so (Report.CacheIO). Data for those inputs is sliced to match.
	PruneCache bool
	Samples    int // calibration samples M, fixed across rounds (1024)
	Seed       int64
	Batch      int // rows per ORT run (64)
	Runtime    ort.Config
	Eval       *dataset.Set // if set, the metric before, after pruning and after recovery
	EvalTask   string
	Latency    bool // measure ORT latency at batch 1 and 64 before and after
	// LatencyBatch is the batch a latency target is timed at (64), and
	// LatencyBudget about how long each timing runs (1 s).
	LatencyBatch  int
	LatencyBudget time.Duration
	// LatencyLimit bounds the report's latency measurement (Latency) in
	// wall time, 15 s: a model too slow to time at batch 64 within it is
	// timed at the largest smaller batch that fits (see
	// MeasureLatenciesWithin).
	LatencyLimit time.Duration
	// Recover, if set, runs after the last round (least-squares refit
	// and/or fine-tuning); its time and results are part of the report.
	Recover *recover.Options
	// Log receives one line per event; Progress tracks long steps.
	Log      func(format string, args ...any)
	Progress func(label string, done, total int)
	// TrackMemory records the peak resident memory of every stage in the
	// report (Linux; see internal/memstat), sampling it in a goroutine.
	TrackMemory bool
	// MaxMemory, if positive, refuses before any work a run whose
	// estimated peak memory (see MemoryPlan) exceeds it, in bytes. During
	// the run it also bounds Go's heap (runtime/debug.SetMemoryLimit) to
	// what the estimate leaves besides ONNX Runtime's part, so that the
	// collector returns garbage before the total goes over; the previous
	// limit is restored at the end.
	MaxMemory int64

	buffers capture.Buffers // the last round's capture memory, reused
}

// analysis is the rewriter's options for the settings.
func (c *Config) analysis() rewrite.Options { return rewrite.Options{PruneCache: c.PruneCache} }

// minCalibRows is the fewest calibration rows a data-driven criterion
// accepts: below it, k-nearest-neighbour graphs over the units' signals
// and mean activations are noise.
const minCalibRows = 16

func (c *Config) defaults() error {
	if c.Criterion == nil {
		c.Criterion = Output{Kind: DefaultCriterion}
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
	if c.Kind == "" {
		c.Kind = TargetParams
	}
	if c.LatencyBatch <= 0 {
		c.LatencyBatch = 64
	}
	if c.LatencyBudget <= 0 {
		c.LatencyBudget = time.Second
	}
	if c.LatencyLimit <= 0 {
		c.LatencyLimit = 15 * time.Second
	}
	if c.Log == nil {
		c.Log = func(string, ...any) {}
	}
	switch {
	case !(c.Target > 0 && c.Target < 1):
		return &SettingError{"target", c.Target, "want a fraction in (0, 1), e.g. 0.5 for half the parameters"}
	case !(c.PerRound > 0 && c.PerRound <= 1):
		return &SettingError{"per-round", c.PerRound, "want a fraction in (0, 1]"}
	case !(c.MinFrac >= 0 && c.MinFrac < 1):
		return &SettingError{"min-width-frac", c.MinFrac, "want a fraction in [0, 1)"}
	case c.MinWidth < 1:
		return &SettingError{"min-width", c.MinWidth, "want at least 1"}
	case c.Ranking != "per-group" && c.Ranking != "global" && c.Ranking != "cost":
		return &SettingError{"ranking", c.Ranking, "want per-group, global or cost"}
	case c.AllGroups && c.Criterion.NeedsStates():
		return &SettingError{"all-groups", true, fmt.Sprintf("criterion %s needs hidden states, which groups without a nonlinearity do not have", c.Criterion.Name())}
	}
	for _, p := range c.Exclude {
		if _, err := path.Match(p, ""); err != nil {
			return &SettingError{"exclude", p, err.Error()}
		}
	}
	return nil
}

// SettingError is a setting out of its range. Setting is the name of the
// Config field as the command line spells it.
type SettingError struct {
	Setting string
	Value   any
	Want    string
}

func (e *SettingError) Error() string {
	return fmt.Sprintf("%s %v: %s", e.Setting, e.Value, e.Want)
}

// UnreachableError says why the loop cannot reach the target: nothing in
// the model is prunable (Blocking lists the ops that stop the units), or
// every eligible group is at its minimum width at Reached.
type UnreachableError struct {
	Kind            string // what the target reduces
	Target, Reached float64
	Nothing         bool               // no eligible group at all
	Blocking        []rewrite.OpReport // ops without a rule that carried units
	Excluded        int                // prunable groups left out by the settings
	AtMinimum       int                // prunable groups already at their minimum width
	Upfront         bool               // known before any capture
	// Unblocked is what single-unit widths would reach when the
	// automatic channel block is what stops the loop short (else 0).
	Unblocked float64
}

func (e *UnreachableError) Error() string {
	if e.Nothing {
		return "nothing is prunable: no group of units can be removed"
	}
	when := "stopped"
	if e.Upfront {
		when = "would stop"
	}
	what := "an effective reduction"
	switch e.Kind {
	case TargetFLOPs:
		what = "a FLOPs reduction"
	case TargetLatency:
		return fmt.Sprintf("cannot reach the latency ratio %v: the loop %s at a measured ratio of %.4f, with every eligible group at its minimum width", 1-e.Target, when, 1-e.Reached)
	}
	return fmt.Sprintf("cannot reach the target %v: the loop %s at %s of %.4f, with every eligible group at its minimum width", e.Target, when, what, e.Reached)
}

// run is the state of one Run.
type run struct {
	cfg    Config
	calib  *dataset.Set
	rep    *Report
	in     *onnxio.Model // the model as given
	cur    *onnxio.Model
	orig   *rewrite.Analysis // of the input (initializers detached from the inputs)
	units  []*unitState      // the input's groups, in graph order
	byName map[string]*unitState
	// shares caches groupShares of the input (origShares).
	shares map[string][2]float64
	budget *budget
	plan   rewrite.Plan // of the current model, in the input's units
	// calibCur and evalCur feed the current model: calib and the eval set,
	// with KV cache inputs sliced as the model's (PruneCache).
	calibCur, evalCur *dataset.Set
	mem               *memstat.Stages
	// restoreLimit puts back Go's memory limit as it was before the run.
	restoreLimit func()
}

// Run shrinks m and returns the smaller model and the report. m is not
// modified. With cfg.Recover set, the returned model is the recovered one.
func Run(m *onnxio.Model, calib *dataset.Set, cfg Config) (*onnxio.Model, *Report, error) {
	r, err := start(m, calib, cfg)
	if err != nil {
		return nil, nil, err
	}
	if cfg.TrackMemory {
		r.mem = memstat.NewStages(10 * time.Millisecond)
		defer r.mem.Stop()
	}
	defer r.restoreLimit()
	t0 := time.Now()
	steps := []func() error{r.analyze, r.evalInput, r.prune, r.evalPruned, r.recover, r.agree, r.latency}
	for _, step := range steps {
		if err := step(); err != nil {
			return nil, nil, err
		}
	}
	if err := r.rep.setOutput(r.cur); err != nil {
		return nil, nil, err
	}
	r.rep.Seconds = time.Since(t0).Seconds() + r.rep.Stages["subset"]
	if r.mem != nil {
		r.mem.Stop()
		r.mem.Mark("output")
		r.rep.PeakRSS, r.rep.PeakRSSMax = r.mem.Peaks, r.mem.Max
	}
	return r.cur, r.rep, nil
}

// start checks the settings and the data and prepares the run.
func start(m *onnxio.Model, calib *dataset.Set, cfg Config) (*run, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	r := &run{cfg: cfg, in: m, cur: m, byName: map[string]*unitState{}, evalCur: cfg.Eval, restoreLimit: func() {}}
	r.rep = newReport(m, calib, &r.cfg)
	if err := r.subset(calib); err != nil {
		return nil, err
	}
	if p0, _ := m.ParamCount(); p0 == 0 {
		return nil, errors.New("the model has no floating-point parameters to remove")
	}
	if names := onnxio.InputInitializers(m); len(names) > 0 {
		// Old exporters list every initializer as a graph input too, which
		// makes the weights overridable and so not constants. Nobody feeds
		// them; treat them as the weights they are.
		r.cur = m.Clone()
		onnxio.DetachInputInitializers(r.cur)
		r.rep.Warnings = append(r.rep.Warnings, fmt.Sprintf("%d initializers were also listed as graph inputs (an old exporter's habit); the output lists them as initializers only", len(names)))
	}
	return r, nil
}

// subset takes the seeded subset of cfg.Samples calibration rows, which
// every stage (capture, gradients, refit, latency) then shares.
func (r *run) subset(calib *dataset.Set) error {
	if calib == nil {
		if r.cfg.Criterion.NeedsStates() {
			return fmt.Errorf("criterion %s needs calibration data", r.cfg.Criterion.Name())
		}
		return nil
	}
	specs, err := ort.ModelInputs(r.in)
	if err != nil {
		return err
	}
	// Data that does not fit the model fails here, before any work.
	bound, err := calib.Match(specs, "")
	if err != nil {
		return err
	}
	n := bound.N
	if n > r.cfg.Samples {
		t0 := time.Now()
		if calib, err = calib.Subset(r.cfg.Samples, r.cfg.Seed); err != nil {
			return err
		}
		r.stage("subset", t0)
		n = r.cfg.Samples
	}
	if r.cfg.Criterion.NeedsStates() {
		if n < minCalibRows {
			return fmt.Errorf("%s: %d calibration rows; criterion %s needs at least %d (1024 is the default sample)", calib.Path, n, r.cfg.Criterion.Name(), minCalibRows)
		}
		if !varies(bound) {
			return fmt.Errorf("%s: all %d calibration rows are the same input; scores need varied real inputs", calib.Path, bound.N)
		}
	}
	r.calib, r.calibCur = calib, calib
	r.rep.Samples = n
	return nil
}

// varies reports whether any input array's rows differ.
func varies(b *dataset.Bound) bool {
	for _, a := range b.Inputs {
		if a.RowsVary() {
			return true
		}
	}
	return false
}

func (r *run) stage(name string, t0 time.Time) {
	r.rep.Stages[name] += time.Since(t0).Seconds()
	r.mem.Mark(name)
}

func (r *run) evaluate(m *onnxio.Model, data *dataset.Set, label string) (*evaluate.Result, error) {
	if data == nil {
		return nil, nil
	}
	defer r.stage("eval", time.Now())
	res, err := evaluate.Run(m, data, evaluate.Options{Task: r.cfg.EvalTask, Batch: r.cfg.Batch, Runtime: r.cfg.Runtime, Progress: r.cfg.progress("eval " + label)})
	if err != nil {
		return nil, fmt.Errorf("evaluating the %s model: %w", label, err)
	}
	return res, nil
}

func (r *run) evalInput() (err error) {
	if r.cfg.Eval != nil {
		r.cfg.Log("evaluating the input model")
	}
	r.rep.EvalBefore, err = r.evaluate(r.in, r.cfg.Eval, "input")
	return err
}

func (r *run) evalPruned() (err error) {
	if r.cfg.Eval != nil {
		r.cfg.Log("evaluating the pruned model")
	}
	r.rep.EvalPruned, err = r.evaluate(r.cur, r.evalCur, "pruned")
	r.rep.EvalAfter = r.rep.EvalPruned
	return err
}

// analyze analyses the input and checks, before any work, that the run's
// estimated memory fits.
func (r *run) analyze() error {
	t0 := time.Now()
	var err error
	if r.orig, err = rewrite.Analyze(r.cur, r.cfg.analysis()); err != nil {
		return err
	}
	r.stage("analyze", t0)
	return r.checkMemory(r.orig)
}

// prune checks that the target is reachable and runs rounds until it is
// met; r.cur is then the model with the written widths.
func (r *run) prune() error {
	var err error
	r.rep.noteGroups(r.orig, &r.cfg)
	r.initUnits()
	if r.budget, err = newBudget(r); err != nil {
		return err
	}
	if err := r.reachable(); err != nil {
		return err
	}
	for round := 1; ; round++ {
		done, err := r.round(round)
		if err != nil {
			return err
		}
		if done {
			break
		}
	}
	r.rep.finishGroups(r.units, r.plan)
	if r.cfg.PruneCache {
		r.noteCache()
	}
	return r.landed()
}

// landed records how close the run came to its target, and the groups'
// shares of the cost in the input and the output.
func (r *run) landed() error {
	c, err := r.budget.cost(r, r.widths())
	if err != nil {
		return err
	}
	r.rep.Landed = r.budget.reduction(c)
	a, err := rewrite.Analyze(r.cur, r.cfg.analysis())
	if err != nil {
		return err
	}
	r.rep.noteShares(r.origShares(), a)
	return nil
}

// widths are the current model's widths.
func (r *run) widths() widths {
	w := widths{}
	for _, s := range r.units {
		w[s.name] = s.width - len(r.plan[s.name])
	}
	return w
}

// initUnits records every group of the input and whether it may lose units.
func (r *run) initUnits() {
	for _, g := range r.orig.Groups {
		s := &unitState{name: g.Name, width: g.Width, kind: g.Kind, block: r.cfg.roundFor(g),
			minW: r.cfg.minWidth(g.Kind, g.Width), eligible: r.cfg.eligible(g), rest: seq(g.Width)}
		s.eligible = s.eligible && s.floor() < s.width
		r.units = append(r.units, s)
		r.byName[g.Name] = s
	}
}

// reachable refuses, before any capture, a target that no run could reach:
// with every eligible group at its narrowest written width the model would
// still cost more than the goal.
func (r *run) reachable() error {
	any := false
	for _, s := range r.units {
		any = any || s.eligible
	}
	if !any {
		e := &UnreachableError{Kind: r.cfg.Kind, Target: r.cfg.Target, Nothing: true, Blocking: r.orig.Skipped, Upfront: true}
		for _, g := range r.orig.Groups {
			switch {
			case !g.Prunable():
			case r.cfg.eligible(g):
				e.AtMinimum++
			default:
				e.Excluded++
			}
		}
		return e
	}
	least, err := r.budget.cost(r, r.floors())
	if err != nil {
		return err
	}
	if least <= r.budget.goal {
		return nil
	}
	e := &UnreachableError{Kind: r.cfg.Kind, Target: r.cfg.Target, Reached: r.budget.reduction(least), Upfront: true}
	if r.cfg.RoundChannels > 1 && r.budget.kind != TargetLatency {
		w := widths{}
		for _, g := range r.orig.Groups {
			s := r.byName[g.Name]
			w[s.name] = s.width
			if r.cfg.eligible(g) {
				w[s.name] = min(s.minW, s.width)
			}
		}
		c, err := r.budget.cost(r, w)
		if err != nil {
			return err
		}
		if c < least {
			e.Unblocked = r.budget.reduction(c)
		}
	}
	return e
}

// round analyses the current model (the input less the units removed so
// far), scores its eligible groups and removes the lowest-scored units
// within the round's share; it reports whether the target is met.
func (r *run) round(round int) (bool, error) {
	t0 := time.Now()
	a := r.orig
	if round > 1 {
		var err error
		if a, err = rewrite.Analyze(r.cur, r.cfg.analysis()); err != nil {
			return false, err
		}
	}
	r.stage("analyze", t0)
	groups, states, err := r.eligible(a)
	if err != nil {
		return false, err
	}
	if len(groups) == 0 {
		c, err := r.budget.cost(r, r.snapped(nil))
		if err != nil {
			return false, err
		}
		return false, &UnreachableError{Kind: r.cfg.Kind, Target: r.cfg.Target, Reached: r.budget.reduction(c)}
	}
	scored, err := r.score(a, groups, round)
	if err != nil {
		return false, err
	}
	t0 = time.Now()
	sorted := r.rank(groups, states, scored)
	var unitCost map[string]float64
	if r.cfg.Ranking == "cost" {
		if unitCost, err = unitCosts(a, groups, r.cfg.Kind); err != nil {
			return false, err
		}
	}
	items := r.candidates(states, sorted, unitCost)
	final, err := r.budget.cost(r, r.snapped(naturalAfter(items)))
	if err != nil {
		return false, err
	}
	var written widths
	if final <= r.budget.goal {
		if items, written, err = r.land(items); err != nil {
			return false, err
		}
	}
	r.stage("select", t0)
	params, _ := r.cur.ParamCount()
	for _, it := range items {
		it.s.order = append(it.s.order, it.unit)
		it.s.rest = slices.DeleteFunc(it.s.rest, func(u int) bool { return u == it.unit })
	}
	t0 = time.Now()
	plan := r.naturalPlan()
	if written != nil {
		plan = r.planFor(written)
	}
	next, err := r.orig.Apply(plan)
	if err != nil {
		return false, fmt.Errorf("round %d: %w", round, err)
	}
	r.record(round, params, states, scored, next, plan)
	r.cur, r.plan = next, plan
	if err := r.cacheData(plan); err != nil {
		return false, err
	}
	if s := r.cur.Scratch; s != nil {
		// The previous round's edits on disk are no longer read.
		if err := s.Prune(r.in, r.cur); err != nil {
			return false, err
		}
	}
	r.stage("apply", t0)
	return written != nil, nil
}

// eligible lists the groups of a that can still lose units, with their
// states; a group's current units must be the input's less those removed.
func (r *run) eligible(a *rewrite.Analysis) ([]*rewrite.Group, []*unitState, error) {
	var groups []*rewrite.Group
	var states []*unitState
	for _, g := range a.Groups {
		s := r.byName[g.Name]
		if s == nil || !s.eligible || !g.Prunable() || s.natural() <= s.floor() {
			continue
		}
		if g.Width != s.natural() {
			return nil, nil, fmt.Errorf("group %s has %d units, %d expected (a bug in onnx-cria)", g.Name, g.Width, s.natural())
		}
		groups = append(groups, g)
		states = append(states, s)
	}
	return groups, states, nil
}

// rank orders each group's remaining units by score, least important
// first, in the input's indices, and returns the scores in that order.
func (r *run) rank(groups []*rewrite.Group, states []*unitState, scored map[string]*Scored) map[string][]float64 {
	out := map[string][]float64{}
	for k, g := range groups {
		s := states[k]
		cur := s.current()
		sc := scored[g.Name].Scores
		order := ascending(sc)
		s.rest = s.rest[:0]
		vals := make([]float64, len(order))
		if s.score == nil {
			s.score = map[int]float64{}
		}
		for i, u := range order {
			s.rest = append(s.rest, cur[u])
			vals[i] = sc[u]
			s.score[cur[u]] = math.Abs(sc[u])
		}
		out[g.Name] = vals
	}
	return out
}

// current lists the input's units that remain, in index order: unit k of
// the current model is current()[k].
func (s *unitState) current() []int {
	gone := map[int]bool{}
	for _, u := range s.order {
		gone[u] = true
	}
	out := make([]int, 0, s.natural())
	for u := 0; u < s.width; u++ {
		if !gone[u] {
			out = append(out, u)
		}
	}
	return out
}

// record notes a round in the report: plan is the new model's, r.plan
// the previous one's.
func (r *run) record(round int, params int64, states []*unitState, scored map[string]*Scored, next *onnxio.Model, plan rewrite.Plan) {
	pAfter, _ := next.ParamCount()
	p0 := r.rep.Input.Params
	rr := RoundReport{Index: round, ParamsBefore: params, ParamsAfter: pAfter, Reduction: 1 - float64(pAfter)/float64(p0)}
	for _, s := range states {
		gr := GroupRound{Name: s.name, Kind: s.kind, WidthBefore: s.width - len(r.plan[s.name]), WidthAfter: s.width - len(plan[s.name])}
		if sc := scored[s.name]; sc != nil {
			gr.Detail = sc.Detail
		}
		for _, u := range plan[s.name] {
			if !slices.Contains(r.plan[s.name], u) {
				gr.Removed = append(gr.Removed, u)
			}
		}
		sort.Ints(gr.Removed)
		rr.Groups = append(rr.Groups, gr)
	}
	r.rep.Rounds = append(r.rep.Rounds, rr)
	r.cfg.Log("round %d: %s -> %s parameters, effective reduction %.4f", round, commas(params), commas(pAfter), rr.Reduction)
}

// agree compares the result's next-token distributions with the input's
// on the evaluation data, for language models.
func (r *run) agree() (err error) {
	if r.cfg.Eval == nil || r.rep.EvalBefore == nil || r.rep.EvalBefore.Task != evaluate.LanguageModel {
		return nil
	}
	if len(r.rep.CacheIO) > 0 {
		// Agree feeds both models the same rows; their cache inputs differ.
		return nil
	}
	defer r.stage("agreement", time.Now())
	r.cfg.Log("comparing the output's next-token distributions with the input's")
	r.rep.Agreement, err = evaluate.Agree(r.in, r.cur, r.cfg.Eval, evaluate.Options{Task: r.cfg.EvalTask, Batch: r.cfg.Batch,
		Runtime: r.cfg.Runtime, Progress: r.cfg.progress("agreement")})
	return err
}

// recover runs the configured recovery on the pruned model.
func (r *run) recover() error {
	o := r.cfg.Recover
	if o == nil || (!o.LSQ && o.Train == nil) {
		return nil
	}
	if o.LSQ && r.calib == nil {
		return errors.New("least-squares recovery needs calibration data")
	}
	if len(r.rep.CacheIO) > 0 {
		// The refit runs the input and the pruned model on the same rows,
		// which their different cache inputs do not allow.
		r.rep.Warnings = append(r.rep.Warnings, "recovery skipped: it does not yet run a model whose KV cache inputs were pruned")
		return nil
	}
	opts := *o
	opts.Runtime = r.cfg.Runtime
	opts.LSQOpts.Samples, opts.LSQOpts.Seed = r.cfg.Samples, r.cfg.Seed
	if opts.LSQOpts.Batch == 0 {
		opts.LSQOpts.Batch = r.cfg.Batch
	}
	t0 := time.Now()
	out, rep, err := recover.Run(r.in, r.cur, r.rep.Kept(), r.calib, opts)
	if err != nil {
		return err
	}
	// Refit weights go to the scratch directory, if the model has one.
	if err := out.Spill(); err != nil {
		return err
	}
	if s := out.Scratch; s != nil {
		if err := s.Prune(r.in, out); err != nil {
			return err
		}
	}
	r.stage("recover", t0)
	// The recovered model's metric, measured here rather than by recover
	// (unless the caller gave it evaluation data of its own): with the
	// run's batch, and after the refit weights left memory.
	if o.Eval == nil && r.cfg.Eval != nil && len(rep.Methods) > 0 {
		r.cfg.Log("evaluating the recovered model")
		if rep.EvalAfter, err = r.evaluate(out, r.evalCur, "recovered"); err != nil {
			return err
		}
	}
	r.cur, r.rep.Recovery = out, rep
	if rep.EvalAfter != nil {
		r.rep.EvalAfter = rep.EvalAfter
	}
	return nil
}

// latencyNoise is how far the final timing of a latency target may land
// above the goal before the report says the timings disagree.
const latencyNoise = 0.05

// checkLatencyTarget compares the final timing at the latency batch (two
// seconds per model, longer than the search's; fastest runs, as the
// search compares) with the goal the search met: on a busy machine the
// two disagree, and the report says so.
func (r *run) checkLatencyTarget() {
	if r.cfg.Kind != TargetLatency {
		return
	}
	for k, a := range r.rep.LatencyAfter {
		b := r.rep.LatencyBefore[k]
		if a.Batch != r.cfg.LatencyBatch || b.Min <= 0 {
			continue
		}
		if ratio := a.Min / b.Min; ratio > 1-r.cfg.Target+latencyNoise {
			r.rep.Warnings = append(r.rep.Warnings, fmt.Sprintf("the final timing at batch %d measured a latency ratio of %.3f, above the target %.3f that the search's timings met (%.3f): timings this far apart mean the machine is busy; latency targets need an otherwise idle machine", a.Batch, ratio, 1-r.cfg.Target, 1-r.rep.Landed))
		}
	}
}

// latency times ORT on the input and the output at batch 1 and 64.
func (r *run) latency() error {
	if !r.cfg.Latency || r.calib == nil {
		return nil
	}
	defer r.stage("latency", time.Now())
	r.cfg.Log("measuring ORT latency at batch 1 and 64 (at most %s)", r.cfg.LatencyLimit)
	lat, err := measureLatencies([]*onnxio.Model{r.in, r.cur}, []*dataset.Set{r.calib, r.calibCur}, []int{1, 64}, 2*time.Second, r.cfg.LatencyLimit, r.cfg.Runtime)
	if err != nil {
		return err
	}
	if n := len(lat[0]); n > 0 && lat[0][n-1].Batch < 64 && lat[0][n-1].Batch > 1 {
		r.rep.Warnings = append(r.rep.Warnings, fmt.Sprintf("ORT latency timed at batch %d instead of 64: one run of both models at batch 64 would not fit the %s latency limit", lat[0][n-1].Batch, r.cfg.LatencyLimit))
	}
	r.rep.LatencyBefore, r.rep.LatencyAfter = lat[0], lat[1]
	r.checkLatencyTarget()
	for k := range r.rep.LatencyAfter {
		b, a := r.rep.LatencyBefore[k], r.rep.LatencyAfter[k]
		if k < len(r.rep.LatencyBefore) && a.Median > 0.95*b.Median && r.cfg.RoundTo < 8 && r.cfg.RoundChannels <= 1 && hasConv(r.in) {
			r.rep.Warnings = append(r.rep.Warnings, fmt.Sprintf("ORT latency at batch %d did not fall (%.3f -> %.3f ms): Conv channel counts that are not multiples of 8 or 16 defeat ONNX Runtime's blocked convolution kernels", b.Batch, b.Median, a.Median))
			break
		}
	}
	return nil
}

func hasConv(m *onnxio.Model) bool {
	for _, n := range m.Graph().GetNode() {
		if n.GetOpType() == "Conv" {
			return true
		}
	}
	return false
}

func (c *Config) progress(label string) func(done, total int) {
	if c.Progress == nil {
		return nil
	}
	return func(done, total int) { c.Progress(label, done, total) }
}

// minWidth is the narrowest a group of this kind and original width may get.
func (c *Config) minWidth(kind string, orig int) int {
	w := max(c.MinWidth, int(math.Ceil(c.MinFrac*float64(orig))))
	if kind == "blocks" {
		// A unit is a whole quantization block of neurons (MatMulNBits):
		// the minimum width in blocks would keep several blocks' worth.
		return max(1, int(math.Ceil(c.MinFrac*float64(orig))))
	}
	if kind == "heads" || kind == "kv-groups" {
		// One head left makes its axes look like broadcasts to the next
		// analysis; keep two.
		w = max(w, 2)
	}
	return w
}

// roundFor is the step of a group's widths: RoundChannels for Conv
// channels (also when Linear layers read them, as ConvNeXt's residual
// stream), RoundTo otherwise.
func (c *Config) roundFor(g *rewrite.Group) int {
	if c.RoundChannels > 1 && g.Conv {
		return c.RoundChannels
	}
	return c.RoundTo
}

// eligible reports whether g takes part in the loop.
func (c *Config) eligible(g *rewrite.Group) bool {
	if !g.Prunable() || c.excluded(g.Name) {
		return false
	}
	if g.Observe != nil && g.Observe.Linear && needsNonlinearity(c.Criterion) {
		return false
	}
	return g.Observe != nil || c.AllGroups
}

// needsNonlinearity reports whether criterion c scores what a nonlinearity
// does (spectral), so that groups observed without one (Observation.Linear)
// cannot be scored by it.
func needsNonlinearity(c Criterion) bool {
	n, ok := c.(interface{ NeedsNonlinearity() bool })
	return ok && n.NeedsNonlinearity()
}

func (c *Config) excluded(name string) bool {
	for _, p := range c.Exclude {
		if ok, _ := path.Match(p, name); ok {
			return true
		}
	}
	return false
}

func seq(n int) []int {
	out := make([]int, max(n, 0))
	for k := range out {
		out[k] = k
	}
	return out
}

// score scores every group of a round, capturing hidden states first when
// the criterion needs them.
func (r *run) score(a *rewrite.Analysis, groups []*rewrite.Group, round int) (map[string]*Scored, error) {
	cfg := &r.cfg
	in := &Round{Analysis: a, Groups: groups, Calib: r.calibCur, Index: round, Seed: cfg.Seed, Batch: cfg.Batch,
		Runtime: cfg.Runtime, Progress: cfg.progress(fmt.Sprintf("round %d scores", round))}
	if cfg.Criterion.NeedsStates() {
		t0 := time.Now()
		res, err := captureStates(r.cur, groups, r.calibCur, cfg, round)
		if err != nil {
			return nil, err
		}
		// Scores keep nothing of the states: the next round may write
		// into their memory.
		defer cfg.buffers.Release(res)
		in.States = map[string][2]*capture.Matrix{}
		for k, g := range groups {
			in.States[g.Name] = [2]*capture.Matrix{res.Data[2*k], res.Data[2*k+1]}
		}
		r.stage("capture", t0)
	}
	defer r.stage("score", time.Now())
	return scoreRound(cfg.Criterion, in)
}

// scoreRound runs the criterion and checks that it scored every unit.
func scoreRound(c Criterion, in *Round) (map[string]*Scored, error) {
	scored, err := c.Score(in)
	if err != nil {
		return nil, fmt.Errorf("round %d: %w", in.Index, err)
	}
	for _, g := range in.Groups {
		s := scored[g.Name]
		if s == nil || len(s.Scores) != g.Width {
			return nil, fmt.Errorf("criterion %s gave no scores for the %d units of %s", c.Name(), g.Width, g.Name)
		}
		for u, v := range s.Scores {
			if math.IsNaN(v) {
				return nil, fmt.Errorf("criterion %s: the score of unit %d of %s is NaN (NaN or infinite activations?)", c.Name(), u, g.Name)
			}
		}
	}
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
	r, err := start(m, calib, cfg)
	if err != nil {
		return nil, nil, err
	}
	a, err := rewrite.Analyze(r.cur, r.cfg.analysis())
	if err != nil {
		return nil, nil, err
	}
	var groups []*rewrite.Group
	for _, g := range a.Groups {
		if r.cfg.eligible(g) {
			groups = append(groups, g)
		}
	}
	scored, err := r.score(a, groups, 1)
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
		var proj *capture.Projection
		if p := o.PreProject; p != nil {
			proj = &capture.Projection{Weight: p.Weight, Bias: p.Bias, Lo: p.Lo, Hi: p.Hi}
		}
		points = append(points,
			capture.Point{Tensor: o.Pre, Axis: o.PreAxis, R: o.PreR, B: o.PreB, RMS: o.RMS, Project: proj, Samples: samplesOf(o.PreSamples)},
			capture.Point{Tensor: o.Post, Axis: o.PostAxis, R: o.PostR, B: o.PostB, RMS: o.RMS, Samples: samplesOf(o.PostSamples)})
	}
	return capture.Run(m, points, calib, capture.Options{Batch: cfg.Batch, Runtime: cfg.Runtime, Buffers: &cfg.buffers,
		Progress: cfg.progress(fmt.Sprintf("capture round %d", round))})
}

// samplesOf is where an observed tensor holds the samples, nil for axis 0.
func samplesOf(s *rewrite.SampleAxis) *capture.Samples {
	if s == nil {
		return nil
	}
	return &capture.Samples{Axis: s.Axis, Outer: s.Outer, Inner: s.Inner}
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
