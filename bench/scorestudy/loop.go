package main

import (
	"fmt"
	"io"
	"math"
	"time"

	"github.com/onnx-cria/onnx-cria/dataset"
	"github.com/onnx-cria/onnx-cria/evaluate"
	"github.com/onnx-cria/onnx-cria/onnxio"
	"github.com/onnx-cria/onnx-cria/ort"
	"github.com/onnx-cria/onnx-cria/recover"
	"github.com/onnx-cria/onnx-cria/shrink"
	"github.com/onnx-cria/onnx-cria/spectral"
)

// LoopResult is one run of the whole shrink loop with one score, measured
// on the validation rows (accuracy or perplexity).
type LoopResult struct {
	Score     string  `json:"score"`
	Target    float64 `json:"target"`
	Reduction float64 `json:"reduction"`
	Metric    string  `json:"metric"`
	Original  float64 `json:"original"`
	Pruned    float64 `json:"pruned"`
	LSQ       float64 `json:"lsq"`
	Seconds   float64 `json:"seconds"`
	Error     string  `json:"error,omitempty"`
}

// proto adapts a score of this study to shrink.Criterion, so that the
// prototype runs in the same loop as the real criteria.
type proto struct{ name string }

func (p proto) Name() string    { return p.name }
func (proto) NeedsStates() bool { return true }
func (p proto) Score(r *shrink.Round) (map[string]*shrink.Scored, error) {
	return shrink.EachGroup(r, p.group)
}

func (p proto) group(in shrink.Input) (*shrink.Scored, error) {
	r, err := spectral.Score(in.Z, in.A, spectral.Options{Seed: uint64(in.Seed)})
	if err != nil {
		return nil, err
	}
	rows, n := in.A.Dims()
	act := make([]float64, n)
	for u := 0; u < n; u++ {
		for s := 0; s < rows; s++ {
			act[u] += math.Abs(in.A.At(s, u))
		}
		act[u] /= float64(rows)
	}
	out := map[string][]float64{"spectral": r.Scores, "activation": act}
	if err := derivedScores(out, in.Analysis.Model, in.Group, in.Z, in.A, in.Seed, p.name); err != nil {
		return nil, fmt.Errorf("group %s: %w", in.Group.Name, err)
	}
	s, ok := out[p.name]
	if !ok {
		return nil, fmt.Errorf("unknown score %q", p.name)
	}
	return &shrink.Scored{Scores: s}, nil
}

func criterion(name string) (shrink.Criterion, error) {
	if c, err := shrink.NewCriterion(name); err == nil {
		return c, nil
	}
	for _, d := range derivedNames {
		if d == name {
			return proto{name}, nil
		}
	}
	return nil, fmt.Errorf("unknown score %q", name)
}

// loopRuns shrinks the model to cfg.Loop with every score of cfg.LoopCrit
// (exact per-unit widths, seed cfg.Seed) and measures the metric on the
// validation rows before and after the least-squares refit.
func loopRuns(m *onnxio.Model, calib, valid *dataset.Set, task string, cfg *Config, rt ort.Config, log io.Writer) ([]LoopResult, error) {
	opts := evaluate.Options{Task: task, Runtime: rt}
	if task != "lm" {
		opts.Task = evaluate.Classification
	}
	base, err := evaluate.Run(m, valid, opts)
	if err != nil {
		return nil, err
	}
	var out []LoopResult
	for _, name := range cfg.LoopCrit {
		t0 := time.Now()
		lr := LoopResult{Score: name, Target: cfg.Loop, Metric: base.Metric, Original: base.Value}
		crit, err := criterion(name)
		if err != nil {
			return nil, err
		}
		small, rep, err := shrink.Run(m, calib, shrink.Config{Target: cfg.Loop, Criterion: crit, Samples: cfg.Samples, Seed: cfg.Seed, Runtime: rt})
		if err != nil {
			lr.Error = err.Error()
			out = append(out, lr)
			fmt.Fprintf(log, "loop %s: %v\n", name, err)
			continue
		}
		lr.Reduction = rep.Reduction
		r, err := evaluate.Run(small, valid, opts)
		if err != nil {
			return nil, err
		}
		lr.Pruned = r.Value
		_, rr, err := recover.Run(m, small, rep.Kept(), calib, recover.Options{LSQ: true, LSQOpts: recover.LSQOptions{Samples: cfg.lsqSamples(calib), Seed: cfg.Seed}, Eval: valid, EvalTask: opts.Task, Runtime: rt})
		if err != nil {
			return nil, err
		}
		lr.LSQ = rr.EvalAfter.Value
		lr.Seconds = time.Since(t0).Seconds()
		fmt.Fprintf(log, "loop %-16s reduction %.3f: %s %.4f -> %.4f pruned, %.4f after lsq (%.0fs)\n", name, lr.Reduction, lr.Metric, lr.Original, lr.Pruned, lr.LSQ, lr.Seconds)
		out = append(out, lr)
	}
	return out, nil
}
