package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/onnx-cria/onnx-cria/bench/internal/fixture"
	"github.com/onnx-cria/onnx-cria/dataset"
	"github.com/onnx-cria/onnx-cria/evaluate"
	"github.com/onnx-cria/onnx-cria/onnxio"
	"github.com/onnx-cria/onnx-cria/ort"
	"github.com/onnx-cria/onnx-cria/recover"
	"github.com/onnx-cria/onnx-cria/rewrite"
	"github.com/onnx-cria/onnx-cria/shrink"
)

// Results is everything one experiment measured.
type Results struct {
	Config    Config           `json:"config"`
	Machine   Machine          `json:"machine"`
	Originals []Original       `json:"originals"`
	Records   []Record         `json:"records"`
	Ablations []AblationRecord `json:"ablations"`
	Seconds   float64          `json:"seconds"`
	// Added lists later runs whose records were merged in (--merge).
	Added []Addition `json:"added,omitempty"`
	// Finding is the plain-language finding written over the tables
	// (--finding), Markdown.
	Finding string `json:"finding,omitempty"`
}

// Addition is a later run merged into the results: its settings and where
// it ran. Its records replace any of the same fixture, target, criterion
// and seed.
type Addition struct {
	Command   string    `json:"command"`
	Criteria  []string  `json:"criteria"`
	Fixtures  []string  `json:"fixtures"`
	Machine   Machine   `json:"machine"`
	StartedAt time.Time `json:"started_at"`
	Seconds   float64   `json:"seconds"`
}

// Merge adds the records of a later run to res: the criteria it ran join
// res's, and res keeps its originals and ablations.
func (res *Results) Merge(later *Results) {
	key := func(r Record) string {
		return fmt.Sprintf("%s|%g|%s|%d|%s", r.Fixture, r.Target, r.Criterion, r.Seed, r.rounding())
	}
	replaced := map[string]bool{}
	for _, r := range later.Records {
		replaced[key(r)] = true
	}
	var recs []Record
	for _, r := range res.Records {
		if !replaced[key(r)] {
			recs = append(recs, r)
		}
	}
	res.Records = append(recs, later.Records...)
	for _, a := range later.Ablations {
		kept := res.Ablations[:0]
		for k, e := range res.Ablations {
			if f := res.ablationFixture(k); f != a.Fixture || e.Criterion != a.Criterion {
				e.Fixture = f
				kept = append(kept, e)
			}
		}
		res.Ablations = append(kept, a)
	}
	for _, c := range later.Config.Criteria {
		if !slices.Contains(res.Config.Criteria, c) {
			res.Config.Criteria = append(res.Config.Criteria, c)
		}
	}
	res.Added = append(res.Added, Addition{Command: later.Config.Command, Criteria: later.Config.Criteria, Fixtures: later.Config.Fixtures,
		Machine: later.Machine, StartedAt: later.Config.StartedAt, Seconds: later.Seconds})
}

// AblationRecord is one fixture's ablation by one criterion (Fixture is
// empty in results written before it was recorded: the ablations then
// follow the fixtures' order).
type AblationRecord struct {
	Fixture string `json:"fixture,omitempty"`
	*shrink.Ablation
}

// ablationFixture is the fixture of ablation k.
func (res *Results) ablationFixture(k int) string {
	if f := res.Ablations[k].Fixture; f != "" || len(res.Originals) == 0 {
		return f
	}
	return res.Originals[min(k, len(res.Originals)-1)].Fixture
}

// Machine says where the numbers come from.
type Machine struct {
	CPU    string `json:"cpu"`
	Cores  int    `json:"cores"`
	Go     string `json:"go"`
	ORT    string `json:"onnxruntime"`
	OS     string `json:"os"`
	Date   string `json:"date"`
	Commit string `json:"commit,omitempty"`
}

// Original is a fixture before pruning.
type Original struct {
	Fixture string           `json:"fixture"`
	Model   string           `json:"model"`
	Metric  *evaluate.Result `json:"metric"`
	Params  int64            `json:"params"`
	FLOPs   int64            `json:"flops"`
	Latency []shrink.Latency `json:"latency"`
}

// Record is one shrink run.
type Record struct {
	Fixture   string  `json:"fixture"`
	Target    float64 `json:"target"`
	Criterion string  `json:"criterion"`
	Seed      int64   `json:"seed"`
	Metric    string  `json:"metric"`
	Reduction float64 `json:"effective_reduction"`
	Params    int64   `json:"params"`
	FLOPs     int64   `json:"flops"`
	Bytes     int64   `json:"bytes"`
	Rounds    int     `json:"rounds"`
	Pruned    float64 `json:"metric_pruned"`
	Recovered float64 `json:"metric_recovered"`
	// ValidPruned and ValidRecovered are the metric on the calibration
	// rows the run did not use: the validation split that chooses
	// settings (the evaluation set only reports).
	ValidPruned    float64          `json:"valid_pruned,omitempty"`
	ValidRecovered float64          `json:"valid_recovered,omitempty"`
	Recovery       string           `json:"recovery"`
	Latency        []shrink.Latency `json:"latency,omitempty"`
	// Rounding is the width rounding: "1" (exact widths; "" in older
	// records) or "auto" (the command line's default). LatencyRef is the
	// original's latency timed in turns with this record's model.
	Rounding   string             `json:"rounding,omitempty"`
	LatencyRef []shrink.Latency   `json:"latency_original,omitempty"`
	Stages     map[string]float64 `json:"seconds_per_stage"`
	Error      string             `json:"error,omitempty"`
	ShrinkSecs float64            `json:"seconds"`
}

// Experiment runs every setting of cfg, logging progress to log.
func Experiment(cfg Config, log io.Writer) (*Results, error) {
	start := time.Now()
	if len(cfg.Roundings) == 0 {
		cfg.Roundings = []string{"1"}
	}
	res := &Results{Config: cfg, Machine: machine()}
	rt := ort.Config{Threads: cfg.Threads}
	for _, name := range cfg.Fixtures {
		f, err := fixture.Load(cfg.Root, name)
		if err != nil {
			fmt.Fprintf(log, "skipping fixture %s: %v\n", name, err)
			continue
		}
		m, err := onnxio.Load(f.Model)
		if err != nil {
			return nil, err
		}
		calib, err := dataset.Load(f.Calib)
		if err != nil {
			return nil, err
		}
		ev, err := dataset.Load(f.Eval)
		if err != nil {
			return nil, err
		}
		evOpts := evaluate.Options{Task: f.Task, Runtime: rt}
		base, err := evaluate.Run(m, ev, evOpts)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		p0, _ := m.ParamCount()
		lat, err := shrink.MeasureLatency(m, calib, []int{1, 64}, time.Second, rt)
		if err != nil {
			return nil, err
		}
		// Paths relative to the repository, so that results.json names no
		// directory of the machine that ran it.
		model := f.Model
		if rel, err := filepath.Rel(cfg.Root, f.Model); err == nil {
			model = filepath.ToSlash(rel)
		}
		res.Originals = append(res.Originals, Original{Fixture: name, Model: model, Metric: base, Params: p0, FLOPs: onnxio.FLOPs(m), Latency: lat})
		fmt.Fprintf(log, "%s: %s, %d parameters\n", name, base, p0)

		for _, cname := range cfg.AblationCriteria {
			g := ablationGroup(m)
			if g == "" || cfg.NoAblation {
				break
			}
			crit, err := shrink.NewCriterion(cname)
			if err != nil {
				return nil, err
			}
			ab, err := shrink.Ablate(m, calib, ev, g, cfg.Ablation, cfg.Trials, shrink.Config{Criterion: crit, Samples: cfg.Samples, Runtime: rt, EvalTask: f.Task})
			if err != nil {
				return nil, fmt.Errorf("%s ablation: %w", name, err)
			}
			res.Ablations = append(res.Ablations, AblationRecord{Fixture: name, Ablation: ab})
			fmt.Fprintf(log, "%s ablation of %s by %s: lowest %.4f highest %.4f random %.4f±%.4f\n", name, g, cname, ab.Lowest.Value, ab.Highest.Value, ab.RandMean, ab.RandStd)
		}

		for _, target := range cfg.Targets {
			for _, cname := range cfg.Criteria {
				for _, rounding := range cfg.Roundings {
					for _, seed := range cfg.Seeds {
						rec := runOne(m, calib, ev, f, target, cname, rounding, seed, cfg, rt, cfg.LatencyAll || seed == cfg.Seeds[0])
						res.Records = append(res.Records, rec)
						if rec.Error != "" {
							fmt.Fprintf(log, "%s %.2f %s rounding %s seed %d: %s\n", name, target, cname, rounding, seed, rec.Error)
							continue
						}
						fmt.Fprintf(log, "%s %.2f %-10s rounding %-4s seed %d: reduction %.4f, %s %.4f pruned, %.4f recovered (%.1fs)\n",
							name, target, cname, rounding, seed, rec.Reduction, rec.Metric, rec.Pruned, rec.Recovered, rec.ShrinkSecs)
					}
				}
			}
		}
	}
	res.Seconds = time.Since(start).Seconds()
	return res, nil
}

func runOne(m *onnxio.Model, calib, ev *dataset.Set, f *fixture.Fixture, target float64, cname, rounding string, seed int64, cfg Config, rt ort.Config, latency bool) Record {
	rec := Record{Fixture: f.Name, Target: target, Criterion: cname, Seed: seed, Recovery: cfg.Recovery, Rounding: rounding}
	crit, err := shrink.NewCriterion(cname)
	if err != nil {
		rec.Error = err.Error()
		return rec
	}
	t0 := time.Now()
	sc := shrink.Config{Target: target, Criterion: crit, Samples: cfg.Samples, Seed: seed, Runtime: rt}
	switch rounding {
	case "auto":
		sc.RoundChannels = ort.ConvBlock(rt.Provider)
	case "", "1":
	default:
		if _, err := fmt.Sscan(rounding, &sc.RoundTo); err != nil {
			rec.Error = fmt.Sprintf("rounding %q: want auto or a positive integer", rounding)
			return rec
		}
	}
	small, rep, err := shrink.Run(m, calib, sc)
	if err != nil {
		rec.Error = err.Error()
		return rec
	}
	rec.ShrinkSecs = time.Since(t0).Seconds()
	rec.Reduction, rec.Params, rec.FLOPs, rec.Bytes = rep.Reduction, rep.Output.Params, rep.Output.FLOPs, rep.Output.Bytes
	rec.Rounds, rec.Stages = len(rep.Rounds), rep.Stages
	valid, err := validation(calib, cfg.Samples, seed)
	if err != nil {
		rec.Error = err.Error()
		return rec
	}
	evOpts := evaluate.Options{Task: f.Task, Runtime: rt}
	metric := func(mm *onnxio.Model, d *dataset.Set) (*evaluate.Result, error) {
		if d == nil {
			return &evaluate.Result{}, nil
		}
		return evaluate.Run(mm, d, evOpts)
	}
	r, err := metric(small, ev)
	if err == nil {
		rec.Metric, rec.Pruned = r.Metric, r.Value
		if r, err = metric(small, valid); err == nil {
			rec.ValidPruned = r.Value
		}
	}
	if err != nil {
		rec.Error = err.Error()
		return rec
	}
	fixed, err := recoverModel(small, m, calib, cfg, rt, rep)
	if err == nil {
		if r, err = metric(fixed, ev); err == nil {
			rec.Recovered = r.Value
			if r, err = metric(fixed, valid); err == nil {
				rec.ValidRecovered = r.Value
			}
		}
	}
	if err != nil {
		rec.Error = err.Error()
		return rec
	}
	if latency {
		lat, err := shrink.MeasureLatencies([]*onnxio.Model{m, small}, calib, []int{1, 64}, time.Second, rt)
		if err != nil {
			rec.Error = err.Error()
			return rec
		}
		rec.LatencyRef, rec.Latency = lat[0], lat[1]
	}
	return rec
}

// rounding is the record's width rounding, "1" for records from before
// the field existed.
func (r Record) rounding() string {
	if r.Rounding == "" {
		return "1"
	}
	return r.Rounding
}

// recoverModel applies the experiment's recovery budget: none, or the
// least-squares refit of every narrowed layer on the calibration set
// (label-free, the same for every criterion).
func recoverModel(small, orig *onnxio.Model, calib *dataset.Set, cfg Config, rt ort.Config, rep *shrink.Report) (*onnxio.Model, error) {
	switch cfg.Recovery {
	case "none", "":
		return small, nil
	case "lsq":
		fixed, _, err := recover.Run(orig, small, rep.Kept(), calib, recover.Options{
			LSQ: true, LSQOpts: recover.LSQOptions{Samples: cfg.Samples}, Runtime: rt,
		})
		return fixed, err
	}
	return nil, fmt.Errorf("recovery %q is not available (none or lsq)", cfg.Recovery)
}

// validation is the calibration rows a run with this sample count and
// seed does not use, or nil when it uses them all: shrink and the refit
// take the seeded subset dataset.SubsetIndices picks.
func validation(calib *dataset.Set, samples int, seed int64) (*dataset.Set, error) {
	n, err := calib.N()
	if err != nil || n <= samples {
		return nil, err
	}
	used, err := dataset.SubsetIndices(n, samples, seed)
	if err != nil {
		return nil, err
	}
	in := map[int]bool{}
	for _, u := range used {
		in[u] = true
	}
	var rest []int
	for i := 0; i < n; i++ {
		if !in[i] {
			rest = append(rest, i)
		}
	}
	out := &dataset.Set{Path: calib.Path + " (held out)"}
	for _, a := range calib.Arrays {
		t, err := a.Take(rest)
		if err != nil {
			return nil, err
		}
		out.Arrays = append(out.Arrays, t)
	}
	return out, nil
}

// ablationGroup picks the widest prunable group with observation points.
func ablationGroup(m *onnxio.Model) string {
	a, err := rewrite.Analyze(m, rewrite.Options{})
	if err != nil {
		return ""
	}
	best, width := "", 0
	for _, g := range a.Prunable() {
		if g.Observe != nil && g.Width > width {
			best, width = g.Name, g.Width
		}
	}
	return best
}

func machine() Machine {
	mc := Machine{Cores: runtime.NumCPU(), Go: runtime.Version(), ORT: ort.Version(), OS: runtime.GOOS + "/" + runtime.GOARCH, Date: time.Now().UTC().Format("2006-01-02")}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(line, "model name") {
				if k := strings.Index(line, ":"); k > 0 {
					mc.CPU = strings.TrimSpace(line[k+1:])
					break
				}
			}
		}
	}
	return mc
}

// keys returns map keys in order.
func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
