package shrink

import (
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/onnx-cria/onnx-cria/dataset"
	"github.com/onnx-cria/onnx-cria/evaluate"
	"github.com/onnx-cria/onnx-cria/onnxio"
	"github.com/onnx-cria/onnx-cria/rewrite"
)

// Report is everything a shrink run did and measured.
type Report struct {
	Input         ModelStats         `json:"input"`
	Output        ModelStats         `json:"output"`
	Calibration   string             `json:"calibration"`
	CalibSHA256   string             `json:"calibration_sha256"`
	Samples       int                `json:"samples"`
	Options       Options            `json:"options"`
	Target        float64            `json:"target"`
	Reduction     float64            `json:"effective_reduction"`
	Rounds        []Round            `json:"rounds"`
	Groups        []GroupSummary     `json:"groups"`
	OpsWithout    []rewrite.OpReport `json:"ops_without_rule,omitempty"`
	EvalBefore    *evaluate.Result   `json:"eval_before,omitempty"`
	EvalAfter     *evaluate.Result   `json:"eval_after,omitempty"`
	LatencyBefore []Latency          `json:"latency_before,omitempty"`
	LatencyAfter  []Latency          `json:"latency_after,omitempty"`
	Stages        map[string]float64 `json:"seconds_per_stage"`
	Warnings      []string           `json:"warnings,omitempty"`
}

// ModelStats describes one model file.
type ModelStats struct {
	Path   string `json:"path,omitempty"`
	SHA256 string `json:"sha256,omitempty"`
	Params int64  `json:"params"`
	Bytes  int64  `json:"bytes"`
	FLOPs  int64  `json:"flops_per_sample"`
}

// Options are the settings of the run, as recorded.
type Options struct {
	Criterion string   `json:"criterion"`
	Detail    any      `json:"criterion_options,omitempty"`
	PerRound  float64  `json:"per_round"`
	MinWidth  int      `json:"min_width"`
	MinFrac   float64  `json:"min_width_fraction"`
	Ranking   string   `json:"ranking"`
	RoundTo   int      `json:"round_to"`
	RoundCh   int      `json:"round_channels,omitempty"`
	Exclude   []string `json:"exclude,omitempty"`
	AllGroups bool     `json:"all_groups"`
	Samples   int      `json:"samples"`
	Seed      int64    `json:"seed"`
	Batch     int      `json:"batch"`
	Threads   int      `json:"threads"`
	Provider  string   `json:"provider"`
}

// Round is one pass of the loop.
type Round struct {
	Index        int          `json:"round"`
	ParamsBefore int64        `json:"params_before"`
	ParamsAfter  int64        `json:"params_after"`
	Reduction    float64      `json:"effective_reduction"`
	Groups       []GroupRound `json:"groups"`
}

// GroupRound is what one round did to one group. Removed holds indices into
// the group's original units.
type GroupRound struct {
	Name        string         `json:"name"`
	Kind        string         `json:"kind"`
	WidthBefore int            `json:"width_before"`
	WidthAfter  int            `json:"width_after"`
	Removed     []int          `json:"removed"`
	Detail      map[string]any `json:"detail,omitempty"`
}

// GroupSummary is a group's fate over the whole run.
type GroupSummary struct {
	Name          string   `json:"name"`
	Kind          string   `json:"kind"`
	WidthBefore   int      `json:"width_before"`
	WidthAfter    int      `json:"width_after"`
	ParamsPerUnit int64    `json:"params_per_unit"`
	Pruned        bool     `json:"pruned"`
	Why           string   `json:"not_pruned_because,omitempty"`
	Warnings      []string `json:"warnings,omitempty"`
	Kept          []int    `json:"kept,omitempty"`
}

type optionsDetail interface{ Options() any }

func newReport(m *onnxio.Model, calib *dataset.Set, c *Config) *Report {
	p, _ := m.ParamCount()
	r := &Report{
		Input:  ModelStats{Path: m.Path, SHA256: m.Hash, Params: p, Bytes: m.Size, FLOPs: FLOPs(m)},
		Target: c.Target,
		Stages: map[string]float64{},
		Options: Options{
			Criterion: c.Criterion.Name(), PerRound: c.PerRound, MinWidth: c.MinWidth, MinFrac: c.MinFrac,
			Ranking: c.Ranking, RoundTo: c.RoundTo, RoundCh: c.RoundChannels, Exclude: c.Exclude, AllGroups: c.AllGroups,
			Samples: c.Samples, Seed: c.Seed, Batch: c.Batch, Threads: c.Runtime.Threads, Provider: c.Runtime.Provider,
		},
	}
	if d, ok := c.Criterion.(optionsDetail); ok {
		r.Options.Detail = d.Options()
	}
	if calib != nil {
		r.Calibration = calib.Path
		r.CalibSHA256 = fileHash(calib.Path)
	}
	return r
}

// noteGroups records every group of the input model and why any is left out.
func (r *Report) noteGroups(a *rewrite.Analysis, c *Config) {
	r.OpsWithout = a.Skipped
	for _, g := range a.Groups {
		s := GroupSummary{Name: g.Name, Kind: g.Kind, WidthBefore: g.Width, WidthAfter: g.Width, ParamsPerUnit: g.ParamsPerUnit, Warnings: g.Warnings}
		switch {
		case !g.Prunable():
			s.Why = strings.Join(g.Blocked, "; ")
		case c.excluded(g.Name):
			s.Why = "excluded by --exclude"
		case g.Observe == nil && !c.AllGroups:
			s.Why = "no nonlinearity to observe (use --all-groups with a criterion that needs no hidden states)"
		}
		r.Groups = append(r.Groups, s)
		if s.Why == "" && len(g.Warnings) > 0 {
			r.Warnings = append(r.Warnings, fmt.Sprintf("%s: %s", g.Name, g.Warnings[0]))
		}
	}
}

func (r *Report) finishGroups(m *onnxio.Model, orig map[string][]int, origW map[string]int, cfg *Config) {
	for k := range r.Groups {
		g := &r.Groups[k]
		if kept, ok := orig[g.Name]; ok && len(kept) < origW[g.Name] {
			g.WidthAfter = len(kept)
			g.Pruned = true
			g.Kept = kept
		} else if g.Why == "" {
			if len(removalSteps(g.WidthBefore, cfg.minWidth(g.Kind, g.WidthBefore), cfg.PerRound, cfg.roundFor(g.Kind))) > 0 {
				g.Why = "the target was reached before its turn"
			} else {
				g.Why = "at its minimum width (see --min-width, --min-width-frac, --round-to)"
			}
		}
	}
}

func (r *Report) setOutput(m *onnxio.Model) error {
	b, err := m.Encode()
	if err != nil {
		return err
	}
	p, _ := m.ParamCount()
	r.Output = ModelStats{Params: p, Bytes: int64(len(b)), FLOPs: FLOPs(m)}
	r.Reduction = 1 - float64(p)/float64(r.Input.Params)
	return nil
}

// WriteText prints the report for people.
func (r *Report) WriteText(w io.Writer) {
	fmt.Fprintf(w, "shrink %s -> %s\n", r.Input.Path, orDash(r.Output.Path))
	fmt.Fprintf(w, "criterion %s, target %.3g, ranking %s, %d calibration samples (seed %d)\n",
		r.Options.Criterion, r.Target, r.Options.Ranking, r.Samples, r.Options.Seed)
	switch {
	case r.Options.RoundCh > 1:
		fmt.Fprintf(w, "Conv channels removed in steps of %d (ONNX Runtime's kernel block on this CPU; --round-to 1 for single units)\n", r.Options.RoundCh)
	case r.Options.RoundTo > 1:
		fmt.Fprintf(w, "widths in multiples of %d (--round-to)\n", r.Options.RoundTo)
	}
	fmt.Fprintf(w, "\n%-22s %14s %14s %8s\n", "", "before", "after", "ratio")
	row := func(name string, a, b int64, f func(int64) string) {
		ratio := 0.0
		if a > 0 {
			ratio = float64(b) / float64(a)
		}
		fmt.Fprintf(w, "%-22s %14s %14s %8.3f\n", name, f(a), f(b), ratio)
	}
	row("parameters", r.Input.Params, r.Output.Params, commas)
	row("FLOPs per sample", r.Input.FLOPs, r.Output.FLOPs, commas)
	row("file bytes", r.Input.Bytes, r.Output.Bytes, commas)
	fmt.Fprintf(w, "effective reduction    %.4f (target %.4f)\n", r.Reduction, r.Target)
	if r.EvalBefore != nil && r.EvalAfter != nil {
		fmt.Fprintf(w, "%-22s %14.4f %14.4f\n", r.EvalBefore.Metric, r.EvalBefore.Value, r.EvalAfter.Value)
	}
	for k := range r.LatencyBefore {
		if k < len(r.LatencyAfter) {
			b, a := r.LatencyBefore[k], r.LatencyAfter[k]
			fmt.Fprintf(w, "%-22s %11.3f ms %11.3f ms %8.3f\n", fmt.Sprintf("ORT latency batch %d", b.Batch), b.Median, a.Median, a.Median/b.Median)
		}
	}
	fmt.Fprintf(w, "\nrounds: %d\n", len(r.Rounds))
	for _, rd := range r.Rounds {
		removed := 0
		for _, g := range rd.Groups {
			removed += len(g.Removed)
		}
		fmt.Fprintf(w, "  %2d  %s -> %s params  reduction %.4f  %d units removed\n", rd.Index, commas(rd.ParamsBefore), commas(rd.ParamsAfter), rd.Reduction, removed)
	}
	fmt.Fprintf(w, "\ngroups:\n  %-34s %-10s %7s %7s  %s\n", "name", "kind", "before", "after", "")
	for _, g := range r.Groups {
		note := ""
		if g.Why != "" {
			note = "not pruned: " + g.Why
		}
		fmt.Fprintf(w, "  %-34s %-10s %7d %7d  %s\n", g.Name, g.Kind, g.WidthBefore, g.WidthAfter, note)
	}
	if len(r.OpsWithout) > 0 {
		fmt.Fprintf(w, "\nops without a pruning rule (units stop there):\n")
		for _, o := range r.OpsWithout {
			fmt.Fprintf(w, "  %s at %s\n", o.Op, strings.Join(o.Nodes, ", "))
		}
	}
	for _, wm := range r.Warnings {
		fmt.Fprintf(w, "warning: %s\n", wm)
	}
	var stages []string
	for k := range r.Stages {
		stages = append(stages, k)
	}
	sort.Strings(stages)
	var parts []string
	total := 0.0
	for _, k := range stages {
		parts = append(parts, fmt.Sprintf("%s %.2fs", k, r.Stages[k]))
		total += r.Stages[k]
	}
	fmt.Fprintf(w, "\ntime: %.2fs (%s)\n", total, strings.Join(parts, ", "))
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// Kept returns the original units that remain of every pruned group, as
// recover.LSQ wants them.
func (r *Report) Kept() map[string][]int {
	kept := map[string][]int{}
	for _, g := range r.Groups {
		if g.Pruned {
			kept[g.Name] = g.Kept
		}
	}
	return kept
}
