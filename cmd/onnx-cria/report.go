package main

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	"github.com/onnx-cria/onnx-cria/evaluate"
	"github.com/onnx-cria/onnx-cria/finetune"
	"github.com/onnx-cria/onnx-cria/recover"
	"github.com/onnx-cria/onnx-cria/shrink"
)

// writeReport prints shrink's report for people. The first lines describe
// the file that was written: its parameters and its metric (after
// recovery when there was one).
func writeReport(w io.Writer, r *shrink.Report) {
	fmt.Fprintf(w, "shrink %s -> %s: %s -> %s parameters, effective reduction %.4f%s\n",
		r.Input.Path, orDash(r.Output.Path), commasInt(r.Input.Params), commasInt(r.Output.Params), r.Reduction, targetText(r))
	if r.EvalBefore != nil && r.EvalAfter != nil {
		how := "pruned, no recovery"
		if r.Recovery != nil && r.Recovery.EvalAfter != nil {
			how = "after " + strings.Join(r.Recovery.Methods, " and ") + " recovery"
		}
		fmt.Fprintf(w, "%s %.4f -> %.4f (%s)\n", r.EvalBefore.Metric, r.EvalBefore.Value, r.EvalAfter.Value, how)
	}
	fmt.Fprintf(w, "criterion %s, ranking %s, %d calibration samples (seed %d)\n",
		r.Options.Criterion, r.Options.Ranking, r.Samples, r.Options.Seed)
	switch {
	case r.Options.RoundCh > 1 && hasConvChannels(r):
		fmt.Fprintf(w, "Conv channels removed in steps of %d (ONNX Runtime's kernel block on this CPU; --round-to 1 for single units)\n", r.Options.RoundCh)
		if l := r.Landing; l != nil && l.Kind == "balanced" {
			fmt.Fprintf(w, "last round balanced across groups: importance removed %.3f, against %.3f with each group at its nearest block\n", l.Damage, l.NearestDamage)
		}
	case r.Options.RoundTo > 1:
		fmt.Fprintf(w, "widths in multiples of %d (--round-to)\n", r.Options.RoundTo)
	}
	fmt.Fprintf(w, "\n%-22s %14s %14s %8s\n", "", "input", "output", "ratio")
	row := func(name string, a, b int64) {
		ratio := 0.0
		if a > 0 {
			ratio = float64(b) / float64(a)
		}
		fmt.Fprintf(w, "%-22s %14s %14s %8.3f\n", name, commasInt(a), commasInt(b), ratio)
	}
	row("parameters", r.Input.Params, r.Output.Params)
	row("FLOPs per sample", r.Input.FLOPs, r.Output.FLOPs)
	row("file bytes", r.Input.Bytes, r.Output.Bytes)
	for k := range r.LatencyBefore {
		if k < len(r.LatencyAfter) {
			b, a := r.LatencyBefore[k], r.LatencyAfter[k]
			fmt.Fprintf(w, "%-22s %11.3f ms %11.3f ms %8.3f\n", fmt.Sprintf("ORT latency batch %d", b.Batch), b.Median, a.Median, a.Median/b.Median)
		}
	}
	if r.EvalBefore != nil {
		writeMetrics(w, r)
	}
	if a := r.Agreement; a != nil {
		fmt.Fprintf(w, "agreement with the input: %s\n", a)
	}
	writeRounds(w, r)
	writeGroups(w, r)
	if len(r.CacheIO) > 0 {
		fmt.Fprintf(w, "\nKV cache inputs and outputs changed (--prune-cache-heads): feed the written model a cache without the pruned heads\n")
		for _, c := range r.CacheIO {
			fmt.Fprintf(w, "  %s\n", c)
		}
	}
	for _, wm := range r.Warnings {
		fmt.Fprintf(w, "warning: %s\n", wm)
	}
	if rr := r.Recovery; rr != nil {
		fmt.Fprintf(w, "\nrecovery: %s\n", strings.Join(rr.Methods, ", then "))
		writeLSQ(w, rr.LSQ)
		if rr.Finetune != nil {
			writeFinetune(w, rr.Finetune)
		}
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(r.Stages)) {
		parts = append(parts, fmt.Sprintf("%s %.2fs", k, r.Stages[k]))
	}
	fmt.Fprintf(w, "\ntime: %.2fs (%s)\n", r.Seconds, strings.Join(parts, ", "))
	if r.PeakRSSMax > 0 {
		parts = parts[:0]
		for _, k := range slices.Sorted(maps.Keys(r.PeakRSS)) {
			parts = append(parts, fmt.Sprintf("%s %s", k, humanBytes(r.PeakRSS[k])))
		}
		fmt.Fprintf(w, "peak resident memory: %s (%s)\n", humanBytes(r.PeakRSSMax), strings.Join(parts, ", "))
	}
}

// writeMetrics prints the metric of the input, of the pruned model before
// recovery, and of the written file.
func writeMetrics(w io.Writer, r *shrink.Report) {
	cell := func(e *evaluate.Result) string {
		if e == nil {
			return "-"
		}
		return fmt.Sprintf("%.4f", e.Value)
	}
	fmt.Fprintf(w, "\n%-22s %14s %14s %14s\n", "", "input", "pruned", "written")
	fmt.Fprintf(w, "%-22s %14s %14s %14s\n", r.EvalBefore.Metric, cell(r.EvalBefore), cell(r.EvalPruned), cell(r.EvalAfter))
}

func writeRounds(w io.Writer, r *shrink.Report) {
	fmt.Fprintf(w, "\nrounds: %d\n", len(r.Rounds))
	for _, rd := range r.Rounds {
		removed := 0
		for _, g := range rd.Groups {
			removed += len(g.Removed)
		}
		fmt.Fprintf(w, "  %2d  %s -> %s params  reduction %.4f  %d units removed\n", rd.Index, commasInt(rd.ParamsBefore), commasInt(rd.ParamsAfter), rd.Reduction, removed)
	}
}

// notPrunedHint tells which setting to change for each reason a group was
// left alone.
var notPrunedHint = map[string]string{
	shrink.NotExcluded:   "excluded by --exclude",
	shrink.NotObservable: "no place to observe its states (use --all-groups with a criterion that needs no hidden states)",
	shrink.NotLinear:     "no nonlinearity, which the criterion needs (obs, the default, scores it)",
	shrink.NotMinWidth:   "at its minimum width (see --min-width, --min-width-frac, --round-to)",
}

func writeGroups(w io.Writer, r *shrink.Report) {
	fmt.Fprintf(w, "\ngroups (touched: the share of the model's parameters and FLOPs that involve the group's units, input -> output):\n  %-34s %-10s %7s %7s %8s  %-15s %-15s %s\n", "name", "kind", "before", "after", "removed", "params touched", "FLOPs touched", "")
	pct := func(a, b float64) string {
		if a == 0 && b == 0 {
			return ""
		}
		return fmt.Sprintf("%.1f%%->%.1f%%", 100*a, 100*b)
	}
	for _, g := range r.Groups {
		note := ""
		if g.Reason != "" {
			why := g.Why
			if h, ok := notPrunedHint[g.Reason]; ok {
				why = h
			}
			note = "not pruned: " + why
		}
		fmt.Fprintf(w, "  %-34s %-10s %7d %7d %7.1f%%  %-15s %-15s %s\n", g.Name, g.Kind, g.WidthBefore, g.WidthAfter, 100*g.Removed,
			pct(g.ParamsShareBefore, g.ParamsShareAfter), pct(g.FLOPsShareBefore, g.FLOPsShareAfter), note)
	}
	if len(r.OpsWithout) > 0 {
		fmt.Fprintf(w, "\nops without a pruning rule (units stop there):\n")
		for _, o := range r.OpsWithout {
			fmt.Fprintf(w, "  %s at %s\n", o.Op, strings.Join(o.Nodes, ", "))
		}
	}
}

// targetText says what the target was and where the run landed.
func targetText(r *shrink.Report) string {
	switch r.TargetKind {
	case shrink.TargetFLOPs:
		return fmt.Sprintf("; FLOPs reduction %.4f (target %v)", r.Landed, r.Target)
	case shrink.TargetLatency:
		return fmt.Sprintf("; ORT latency ratio %.3f at batch %d (target %.3g)", 1-r.Landed, r.Options.LatencyBatch, 1-r.Target)
	}
	return fmt.Sprintf(" (target %v)", r.Target)
}

func hasConvChannels(r *shrink.Report) bool {
	for _, g := range r.Groups {
		if g.ConvChannels {
			return true
		}
	}
	return false
}

func writeLSQ(w io.Writer, fits []recover.LayerFit) {
	if len(fits) == 0 {
		return
	}
	fmt.Fprintf(w, "least-squares refit (relative error of each layer's output on the calibration rows it was fit on, and on held-out rows):\n")
	var warns []string
	for _, f := range fits {
		if f.Note != "" && f.Rows == 0 {
			fmt.Fprintf(w, "  %-36s %-6s skipped: %s\n", f.Node, f.Op, f.Note)
			continue
		}
		state := "refit"
		if !f.Applied {
			state = "kept the old weights"
		}
		if f.Flag != "" {
			state += " (" + f.Flag + ")"
			if f.Warning != "" {
				warns = append(warns, f.Node+": "+f.Warning)
			}
		}
		held := ""
		if f.HeldOutRows > 0 {
			held = fmt.Sprintf("held out %.4f -> %.4f", f.HeldOutBefore, f.HeldOutAfter)
		}
		fmt.Fprintf(w, "  %-36s %-6s %5d in %5d out %7d rows  %.4f -> %.4f  %-28s %5.2fs  %s\n", f.Node, f.Op, f.Inputs, f.Outputs, f.Rows, f.Before, f.After, held, f.Seconds, state)
	}
	for _, m := range warns {
		fmt.Fprintf(w, "  warning: %s\n", m)
	}
}

func writeFinetune(w io.Writer, r *finetune.Result) {
	bn := ""
	if r.BatchNorm != "" {
		bn = ", batch norm " + r.BatchNorm
	}
	fmt.Fprintf(w, "objective: %s; %s lr %g, batch %d%s, %d samples, %d tensors (%s parameters) trained\n",
		r.Objective, r.Optimizer, r.LR, r.Batch, bn, r.Samples, r.Tensors, commasInt(r.Params))
	if r.EvalBefore != nil {
		fmt.Fprintf(w, "  before          %s\n", r.EvalBefore)
	}
	for _, e := range r.Epochs {
		line := fmt.Sprintf("  epoch %-3d       train loss %.4f, %d steps, %.1fs", e.Epoch, e.Loss, e.Steps, e.Seconds)
		if e.Eval != nil {
			line += ", eval " + e.Eval.String()
		}
		fmt.Fprintln(w, line)
	}
	if r.Stopped && r.EvalAfter != nil {
		fmt.Fprintf(w, "  after           %s\n", r.EvalAfter)
	}
	note := ""
	if r.Resumed {
		note += " (resumed)"
	}
	if r.Stopped {
		note += " (stopped at --max-steps)"
	}
	fmt.Fprintf(w, "  %d steps, %.2f ms per step, %.1fs in all%s\n", r.Steps, 1000*r.StepSeconds, r.Seconds, note)
}

func commasInt(n int64) string {
	s := fmt.Sprint(n)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 && s[i-1] != '-' {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
