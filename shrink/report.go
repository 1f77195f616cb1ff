package shrink

import (
	"fmt"
	"strings"

	"github.com/onnx-cria/onnx-cria/dataset"
	"github.com/onnx-cria/onnx-cria/evaluate"
	"github.com/onnx-cria/onnx-cria/onnxio"
	"github.com/onnx-cria/onnx-cria/recover"
	"github.com/onnx-cria/onnx-cria/rewrite"
)

// Report is everything a shrink run did and measured.
type Report struct {
	Input       ModelStats `json:"input"`
	Output      ModelStats `json:"output"`
	Calibration string     `json:"calibration"`
	CalibSHA256 string     `json:"calibration_sha256"`
	Samples     int        `json:"samples"`
	Options     Options    `json:"options"`
	Target      float64    `json:"target"`
	Reduction   float64    `json:"effective_reduction"`
	// TargetKind is what the target reduces (params, flops or latency);
	// Landed is the reduction of that reached (for latency, 1 minus the
	// measured ratio at the latency batch).
	TargetKind string        `json:"target_kind"`
	Landed     float64       `json:"landed"`
	Rounds     []RoundReport `json:"rounds"`
	// Landing is how the last round chose block-aligned widths (with the
	// automatic channel block).
	Landing    *Landing           `json:"landing,omitempty"`
	Groups     []GroupSummary     `json:"groups"`
	OpsWithout []rewrite.OpReport `json:"ops_without_rule,omitempty"`
	// EvalBefore is the input's metric, EvalPruned the pruned model's
	// before recovery, EvalAfter the written model's (after recovery when
	// there was one).
	EvalBefore    *evaluate.Result `json:"eval_before,omitempty"`
	EvalPruned    *evaluate.Result `json:"eval_pruned,omitempty"`
	EvalAfter     *evaluate.Result `json:"eval_after,omitempty"`
	Recovery      *recover.Report  `json:"recovery,omitempty"`
	LatencyBefore []Latency        `json:"latency_before,omitempty"`
	LatencyAfter  []Latency        `json:"latency_after,omitempty"`
	// Timings are the measurements a latency target made: the input's and
	// a candidate's median latency, timed in turns.
	Timings []Timing `json:"latency_timings,omitempty"`
	// CacheIO lists the graph inputs and outputs (KV caches) whose shapes
	// the pruning changed, with Config.PruneCache: "name: before -> after".
	CacheIO  []string           `json:"cache_io,omitempty"`
	Stages   map[string]float64 `json:"seconds_per_stage"`
	Seconds  float64            `json:"seconds"` // wall time of the whole run
	Warnings []string           `json:"warnings,omitempty"`

	// PeakRSS is the process's peak resident memory in each stage (with
	// Config.TrackMemory), PeakRSSMax over the run: Go's heap, ONNX
	// Runtime's allocations and mapped weight files together.
	PeakRSS    map[string]int64 `json:"peak_rss_bytes_per_stage,omitempty"`
	PeakRSSMax int64            `json:"peak_rss_bytes,omitempty"`
	// Agreement compares the written model's next-token distributions
	// with the input's on the evaluation data (language models), a
	// measure that needs no trained model.
	Agreement *evaluate.Agreement `json:"agreement,omitempty"`
	// Memory is the estimate of the peak memory made before the run.
	Memory *MemoryPlan `json:"memory_estimate,omitempty"`
}

// Timing is one latency measurement of a candidate model against the
// input, in milliseconds at the latency batch.
// The times are each model's fastest run of the timing.
type Timing struct {
	Params      int64   `json:"params"`
	InputMS     float64 `json:"input_ms"`
	CandidateMS float64 `json:"candidate_ms"`
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
	// PruneCache: heads carried by KV cache inputs and outputs may go.
	PruneCache bool   `json:"prune_cache_heads,omitempty"`
	Samples    int    `json:"samples"`
	Seed       int64  `json:"seed"`
	Batch      int    `json:"batch"`
	Threads    int    `json:"threads"`
	Provider   string `json:"provider"`
	// LatencyBatch is the batch a latency target was timed at.
	LatencyBatch int `json:"latency_batch,omitempty"`
}

// RoundReport is one pass of the loop.
type RoundReport struct {
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
	Name          string `json:"name"`
	Kind          string `json:"kind"`
	WidthBefore   int    `json:"width_before"`
	WidthAfter    int    `json:"width_after"`
	ParamsPerUnit int64  `json:"params_per_unit"`
	ConvChannels  bool   `json:"conv_channels,omitempty"`
	Pruned        bool   `json:"pruned"`
	// Reason says why a group was not pruned (one of the Not* constants),
	// Why in words (for blocked groups, what blocks them).
	Reason   string   `json:"not_pruned,omitempty"`
	Why      string   `json:"not_pruned_because,omitempty"`
	Warnings []string `json:"warnings,omitempty"`
	Kept     []int    `json:"kept,omitempty"`
	// Removed is the fraction of the units removed; the shares are the
	// fractions of the model's parameters and FLOPs that the group's
	// units account for (at first order: units times the cost of one),
	// in the input and in the output.
	Removed           float64 `json:"fraction_removed"`
	ParamsShareBefore float64 `json:"params_share_before,omitempty"`
	ParamsShareAfter  float64 `json:"params_share_after,omitempty"`
	FLOPsShareBefore  float64 `json:"flops_share_before,omitempty"`
	FLOPsShareAfter   float64 `json:"flops_share_after,omitempty"`
}

// Why a group was not pruned.
const (
	NotBlocked     = "blocked"         // the analysis found no safe way to remove its units
	NotExcluded    = "excluded"        // matched an exclude pattern
	NotObservable  = "no-nonlinearity" // no pre/post-activation states for a criterion that needs them
	NotLinear      = "linear"          // observed without a nonlinearity, which the criterion needs (spectral)
	NotMinWidth    = "min-width"       // at its minimum width
	NotTargetFirst = "target-reached"  // the target was reached before its turn
)

type optionsDetail interface{ Options() any }

func newReport(m *onnxio.Model, calib *dataset.Set, c *Config) *Report {
	p, _ := m.ParamCount()
	size, err := m.DiskBytes() // the model file and its data files
	if err != nil {
		size = m.Size
	}
	r := &Report{
		Input:  ModelStats{Path: m.Path, SHA256: m.Hash, Params: p, Bytes: size, FLOPs: onnxio.FLOPs(m)},
		Target: c.Target,
		Stages: map[string]float64{},
		Options: Options{
			Criterion: c.Criterion.Name(), PerRound: c.PerRound, MinWidth: c.MinWidth, MinFrac: c.MinFrac,
			Ranking: c.Ranking, RoundTo: c.RoundTo, RoundCh: c.RoundChannels, Exclude: c.Exclude, AllGroups: c.AllGroups, PruneCache: c.PruneCache,
			Samples: c.Samples, Seed: c.Seed, Batch: c.Batch, Threads: c.Runtime.Threads, Provider: c.Runtime.Provider,
		},
		TargetKind: c.Kind,
	}
	if c.Kind == TargetLatency {
		r.Options.LatencyBatch = c.LatencyBatch
	}
	if d, ok := c.Criterion.(optionsDetail); ok {
		r.Options.Detail = d.Options()
	}
	if calib != nil {
		r.Calibration = calib.Path
		r.CalibSHA256, _ = onnxio.HashFile(calib.Path)
	}
	return r
}

// noteGroups records every group of the input model and why any is left out.
func (r *Report) noteGroups(a *rewrite.Analysis, c *Config) {
	r.OpsWithout = a.Skipped
	for _, g := range a.Groups {
		s := GroupSummary{Name: g.Name, Kind: g.Kind, WidthBefore: g.Width, WidthAfter: g.Width, ParamsPerUnit: g.ParamsPerUnit, ConvChannels: g.Conv, Warnings: g.Warnings}
		switch {
		case !g.Prunable():
			s.Reason, s.Why = NotBlocked, strings.Join(g.Blocked, "; ")
		case c.excluded(g.Name):
			s.Reason, s.Why = NotExcluded, "excluded"
		case g.Observe != nil && g.Observe.Linear && needsNonlinearity(c.Criterion):
			s.Reason, s.Why = NotLinear, fmt.Sprintf("no nonlinearity to observe, which %s needs", c.Criterion.Name())
		case g.Observe == nil && !c.AllGroups && g.Unobserved != "":
			s.Reason, s.Why = NotObservable, g.Unobserved
		case g.Observe == nil && !c.AllGroups:
			s.Reason, s.Why = NotObservable, "no place to observe its states"
		}
		r.Groups = append(r.Groups, s)
		if s.Why == "" && len(g.Warnings) > 0 {
			r.Warnings = append(r.Warnings, fmt.Sprintf("%s: %s", g.Name, g.Warnings[0]))
		}
	}
}

func (r *Report) finishGroups(units []*unitState, plan rewrite.Plan) {
	states := map[string]*unitState{}
	for _, s := range units {
		states[s.name] = s
	}
	for k := range r.Groups {
		g := &r.Groups[k]
		s := states[g.Name]
		if rm := plan[g.Name]; len(rm) > 0 {
			g.WidthAfter = g.WidthBefore - len(rm)
			g.Pruned = true
			gone := map[int]bool{}
			for _, u := range rm {
				gone[u] = true
			}
			for u := 0; u < g.WidthBefore; u++ {
				if !gone[u] {
					g.Kept = append(g.Kept, u)
				}
			}
			g.Removed = float64(len(rm)) / float64(g.WidthBefore)
		} else if g.Reason == "" {
			if s != nil && s.eligible {
				g.Reason, g.Why = NotTargetFirst, "the target was reached before its turn"
			} else {
				g.Reason, g.Why = NotMinWidth, "at its minimum width"
			}
		}
	}
}

// setOutput describes the result; its Bytes is the encoded size, which a
// caller that saves the model replaces by the files' sizes.
func (r *Report) setOutput(m *onnxio.Model) error {
	p, _ := m.ParamCount()
	r.Output = ModelStats{Params: p, Bytes: m.EncodedBytes(), FLOPs: onnxio.FLOPs(m)}
	r.Reduction = 1 - float64(p)/float64(r.Input.Params)
	return nil
}

// noteShares records every group's share of the parameters and FLOPs in
// the input (before: groupShares of its analysis) and in the output (b,
// whose groups keep their names).
func (r *Report) noteShares(before map[string][2]float64, b *rewrite.Analysis) {
	after := groupShares(b)
	for k := range r.Groups {
		g := &r.Groups[k]
		if s, ok := before[g.Name]; ok {
			g.ParamsShareBefore, g.FLOPsShareBefore = s[0], s[1]
		}
		if s, ok := after[g.Name]; ok {
			g.ParamsShareAfter, g.FLOPsShareAfter = s[0], s[1]
		}
	}
}

// groupShares is each prunable group's share of a model's parameters and
// FLOPs: its width times what removing one of its units saves.
func groupShares(a *rewrite.Analysis) map[string][2]float64 {
	out := map[string][2]float64{}
	p, _ := a.Model.ParamCount()
	f := onnxio.FLOPs(a.Model)
	for _, g := range a.Groups {
		if !g.Prunable() || p == 0 {
			continue
		}
		s := [2]float64{float64(g.ParamsPerUnit) * float64(g.Width) / float64(p), 0}
		if f1, err := a.FLOPsAfter(rewrite.Plan{g.Name: {0}}); err == nil && f > 0 {
			s[1] = float64(f-f1) * float64(g.Width) / float64(f)
		}
		out[g.Name] = s
	}
	return out
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

// Landing records the last round's choice between writing each blocked
// group at its nearest block multiple and the balanced landing
// (docs/METHOD.md §5). Damage is the importance the widths remove: the
// removed units' scores as a share of their group's, summed over groups.
type Landing struct {
	Kind          string  `json:"kind"` // "nearest" or "balanced"
	Damage        float64 `json:"damage"`
	NearestDamage float64 `json:"nearest_damage"`
}
