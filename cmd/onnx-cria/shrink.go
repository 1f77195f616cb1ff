package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/onnx-cria/onnx-cria/autodiff"
	"github.com/onnx-cria/onnx-cria/internal/memstat"

	"github.com/onnx-cria/onnx-cria/dataset"
	"github.com/onnx-cria/onnx-cria/onnxio"
	"github.com/onnx-cria/onnx-cria/ort"
	"github.com/onnx-cria/onnx-cria/shrink"
)

const noCalibHelp = `no calibration data: pass --calib DATA.npz, an .npz whose arrays are named
after the model's inputs (1024 rows of real inputs is the default sample).
From PyTorch/NumPy, for a model with one input called "input":

    import numpy as np
    x = torch.cat([batch for batch, _ in loader])[:1024].numpy()
    np.savez_compressed("calib.npz", input=x.astype(np.float32))

(--random-calib shrinks with random inputs instead; the scores then say
little about real data, and the report carries a warning.)`

// shrinkFlags are the shrink command's settings.
type shrinkFlags struct {
	*common
	target, targetFLOPs, targetLat *float64
	latBatch                       *int
	calib, roundTo, ranking        *string
	crit                           critFlags
	perRound, minFrac              *float64
	minWidth, samples              *int
	seed                           *int64
	exclude                        multiFlag
	allGroups, randomCalib, noLat  *bool
	pruneCache                     *bool
	rec                            *recoverFlags
	evalPath, task                 *string
	report, external               *string
	maxMemory                      sizeValue
}

func addShrinkFlags(fs *flagSet) *shrinkFlags {
	f := &shrinkFlags{}
	fs.section("Pruning")
	f.target = fs.Float("target", 0, fraction01, "effective parameter reduction to reach, e.g. 0.5 (one of --target, --target-flops, --target-latency is required)")
	f.targetFLOPs = fs.Float("target-flops", 0, fraction01, "FLOPs reduction to reach instead, e.g. 0.5")
	f.targetLat = fs.Float("target-latency", 0, fraction01, "reach this ratio of the input's measured ONNX Runtime latency instead, e.g. 0.6 (timed at --latency-batch on this machine)")
	f.latBatch = fs.Int("latency-batch", 64, 1, "the batch a latency target is timed at")
	f.calib = fs.String("calib", "", "calibration data (.npz with arrays named after the model inputs)")
	f.crit = addCritFlags(fs)
	f.perRound = fs.Float("per-round", 0.10, fraction01c, "at most this fraction of a group's width removed per round")
	f.minWidth = fs.Int("min-width", 4, 1, "never leave a group narrower than this many units")
	f.minFrac = fs.Float("min-width-frac", 0.05, span{0, 1, false, true}, "never leave a group narrower than this fraction of its original width")
	f.ranking = fs.String("ranking", "per-group", "per-group: each round takes every group's lowest-scored units alike; global: by normalised score across groups; cost: by normalised score per unit of the target's cost (parameters or FLOPs per unit)")
	f.roundTo = fs.String("round-to", "auto", "keep widths multiples of N; auto: Conv channel counts in multiples of ONNX Runtime's blocked-kernel width on this CPU (16 with AVX-512, 8 with AVX2), so that a pruned CNN runs faster rather than slower; 1 for the exact per-unit budget of docs/METHOD.md")
	fs.Var(&f.exclude, "exclude", "leave groups whose name matches this glob pattern alone (repeatable)")
	f.allGroups = fs.Bool("all-groups", false, "also prune groups that no rule can observe, such as heads whose samples cannot be placed (with criteria that need no hidden states: magnitude, magnitude-l1, random, taylor); linear bottlenecks are observed and pruned by default, except by spectral")
	f.pruneCache = fs.Bool("prune-cache-heads", false, "also prune attention heads and KV groups that a KV cache carries through the model's inputs and outputs (past and present keys and values): the written model then takes and returns a smaller cache, and the report lists the changed inputs and outputs")
	f.samples = fs.Int("samples", 1024, 1, "calibration samples M, a seeded subset, fixed across rounds")
	f.seed = fs.Int64("seed", 0, "seed for sampling, random scores and solver start vectors")
	f.randomCalib = fs.Bool("random-calib", false, "calibrate on random inputs (not recommended; the report warns)")
	f.rec = addRecoverFlags(fs)
	fs.section("Evaluation and output")
	f.evalPath = fs.String("eval", "", "evaluation data: the metric before, after pruning and after recovery")
	f.task = fs.String("task", "", "classification or lm (default: classification when the data has labels)")
	f.noLat = fs.Bool("no-latency", false, "skip measuring ORT latency before and after")
	fs.Var(&f.maxMemory, "max-memory", "refuse, before any work, a run whose estimated peak memory exceeds this size, e.g. 6G (the report gives the estimate by part; docs/SCALE.md its formula); 0: no limit")
	f.report = fs.String("report", "", "write the report as JSON to this file")
	f.external = fs.String("external-data", "", "write the tensors of OUT to this data file beside it")
	f.common = addCommon(fs)
	return f
}

func runShrink(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("shrink", "IN.onnx OUT.onnx --target R --calib DATA.npz [flags]",
		`Prune IN to an effective parameter reduction of R (1 - params(OUT)/params(IN))
by the iterative loop of docs/METHOD.md: capture hidden states on the calibration
set, score every unit, remove the lowest-scored ones (at most --per-round of each
group per round), rewrite the model physically, repeat; then recover (by default a
least-squares refit of the narrowed layers). Writes OUT atomically, prints the
report, and with --report writes it as JSON. IN is never modified.`, stderr)
	f := addShrinkFlags(fs)
	pos, err := parse(fs, args, 2, 2)
	if err != nil {
		return err
	}
	kind, target, err := f.targetOf(fs)
	if err != nil {
		return err
	}
	in, out := pos[0], pos[1]
	if err := checkDataName(*f.external); err != nil {
		return err
	}
	round, err := parseRoundTo(*f.roundTo, f.rt.Provider)
	if err != nil {
		return err
	}
	crit, err := f.crit.criterion()
	if err != nil {
		return err
	}
	if err := f.rec.check(); err != nil {
		return err
	}
	if *f.calib == "" && !*f.randomCalib && crit.NeedsStates() {
		return errors.New(noCalibHelp)
	}
	m, err := onnxio.Load(in)
	if err != nil {
		return err
	}
	var files runFiles
	if err := files.readModel("input model", m); err != nil {
		return err
	}
	files.read("calibration data", *f.calib)
	files.read("evaluation data", *f.evalPath)
	files.read("training data", *f.rec.train)
	files.writeModel("output", out, *f.external, m)
	files.write("report", *f.report)
	if err := files.check(); err != nil {
		return err
	}
	u := newUI(stderr, *f.quiet)
	cfg, warnings, err := f.config(m, crit, round, u)
	if err == nil {
		cfg.Kind, cfg.Target, cfg.LatencyBatch = kind, target, *f.latBatch
	}
	if err != nil {
		return err
	}
	work, done, err := workingCopy(m, u)
	if err != nil {
		return err
	}
	defer done()
	cfg.TrackMemory, cfg.MaxMemory = true, int64(f.maxMemory)
	small, rep, err := shrink.Run(work, cfg.calib, cfg.Config)
	u.end()
	if err != nil {
		return shrinkError(err, in)
	}
	rep.Warnings = append(warnings, rep.Warnings...)
	t0, mem := time.Now(), memstat.NewStages(10*time.Millisecond)
	so := &onnxio.SaveOptions{ExternalData: *f.external, Keep: files.keep()}
	err = small.Save(out, so)
	mem.Mark("save")
	mem.Stop()
	if err != nil {
		return err
	}
	rep.Stages["save"] = time.Since(t0).Seconds()
	rep.Seconds += rep.Stages["save"]
	if rep.PeakRSS != nil {
		rep.PeakRSS["save"], rep.PeakRSSMax = mem.Peaks["save"], max(rep.PeakRSSMax, mem.Max)
	}
	rep.Output.Path = out
	if n, err := onnxio.FileBytes(out); err == nil {
		rep.Output.Bytes = n // the model file and its data files, as the input's
	}
	rep.Output.SHA256, _ = onnxio.HashFile(out)
	if *f.report != "" {
		b, err := json.MarshalIndent(rep, "", "  ")
		if err != nil {
			return err
		}
		if err := onnxio.WriteFileAtomic(*f.report, append(b, '\n')); err != nil {
			return err
		}
	}
	if *f.json {
		return writeJSON(stdout, rep)
	}
	writeReport(stdout, rep)
	return nil
}

// workingCopy is the model shrink works on: for a model with external
// data, a copy whose large edited tensors go to a scratch directory
// instead of memory (see onnxio.NewScratch); done removes that directory.
func workingCopy(m *onnxio.Model, u *ui) (*onnxio.Model, func(), error) {
	if !m.HasExternalData() {
		return m, func() {}, nil
	}
	work, s, err := onnxio.NewScratch(m, "")
	if err != nil {
		return nil, nil, err
	}
	if log := u.logFunc(); log != nil {
		log("edited tensors go to the scratch directory %s (removed at the end)", s.Dir)
	}
	return work, func() { s.Close() }, nil
}

type shrinkConfig struct {
	shrink.Config
	calib *dataset.Set
}

// config loads the data and turns the flags into shrink's configuration.
func (f *shrinkFlags) config(m *onnxio.Model, crit shrink.Criterion, round rounding, u *ui) (*shrinkConfig, []string, error) {
	var calib, evalSet *dataset.Set
	var warnings []string
	var err error
	if *f.calib != "" {
		if calib, err = dataset.Load(*f.calib); err != nil {
			return nil, nil, err
		}
	}
	if *f.evalPath != "" {
		if evalSet, err = dataset.Load(*f.evalPath); err != nil {
			return nil, nil, err
		}
	}
	if err := f.start(); err != nil {
		return nil, nil, err
	}
	if calib == nil && *f.randomCalib {
		if calib, err = randomCalibration(m, *f.samples, *f.seed); err != nil {
			return nil, nil, err
		}
		warnings = append(warnings, "calibration data was random (--random-calib): scores reflect random inputs, not real data")
	}
	cfg := &shrinkConfig{calib: calib, Config: shrink.Config{
		Target: *f.target, Criterion: crit, PerRound: *f.perRound, MinWidth: *f.minWidth, MinFrac: *f.minFrac,
		Ranking: *f.ranking, RoundTo: round.all, RoundChannels: round.channels, Exclude: f.exclude, AllGroups: *f.allGroups,
		PruneCache: *f.pruneCache, Samples: *f.samples, Seed: *f.seed, Batch: *f.batch, Runtime: f.rt, Eval: evalSet, EvalTask: *f.task,
		Latency: !*f.noLat, Log: u.logFunc(), Progress: u.progressFunc(),
	}}
	if cfg.Recover, err = f.rec.options(m, calib, u); err != nil {
		return nil, nil, err
	}
	if cfg.Recover == nil && *f.rec.method == "auto" && calib == nil {
		warnings = append(warnings, "no calibration data: the least-squares recovery was skipped")
	}
	return cfg, warnings, nil
}

// targetOf reads the one target flag given: the kind and the reduction.
func (f *shrinkFlags) targetOf(fs *flagSet) (string, float64, error) {
	var kinds []string
	kind, target := "", 0.0
	for _, t := range []struct {
		flag, kind string
		v          float64
	}{{"target", shrink.TargetParams, *f.target}, {"target-flops", shrink.TargetFLOPs, *f.targetFLOPs}, {"target-latency", shrink.TargetLatency, 1 - *f.targetLat}} {
		if isSet(fs, t.flag) {
			kinds = append(kinds, "--"+t.flag)
			kind, target = t.kind, t.v
		}
	}
	switch {
	case len(kinds) == 0:
		return "", 0, usagef("--target is required: the effective parameter reduction to reach, e.g. --target 0.5 (or --target-flops R, or --target-latency RATIO)")
	case len(kinds) > 1:
		return "", 0, usagef("%s: give one target", strings.Join(kinds, " and "))
	}
	return kind, target, nil
}

// shrinkError phrases the library's errors in terms of the command's flags.
func shrinkError(err error, in string) error {
	var se *shrink.SettingError
	if errors.As(err, &se) {
		return usagef("--%s %v: %s", se.Setting, se.Value, se.Want)
	}
	if errors.Is(err, autodiff.ErrNoLabels) {
		return fmt.Errorf("%w: the taylor criterion needs integer class labels named \"labels\" in --calib (or a language model); another --criterion needs none", err)
	}
	var me *shrink.MemoryError
	if errors.As(err, &me) {
		if me.FitBatch > 0 {
			return fmt.Errorf("%w (--max-memory): lower --batch to %d or less, which the estimate fits, or allow more memory", me, me.FitBatch)
		}
		if me.Plan.Weights > me.Max {
			return fmt.Errorf("%w (--max-memory): the model's weights alone take more; this model needs a machine with more memory (docs/SCALE.md)", me)
		}
		return fmt.Errorf("%w (--max-memory): no batch size fits; use fewer --samples, --no-latency or --recover none (docs/SCALE.md)", me)
	}
	var ue *shrink.UnreachableError
	if !errors.As(err, &ue) {
		return err
	}
	if ue.Nothing {
		var b strings.Builder
		fmt.Fprintf(&b, "%s: nothing is prunable", in)
		if ue.Excluded > 0 {
			fmt.Fprintf(&b, "; %d prunable groups were left out by --exclude or have no place to observe their states (--all-groups with a criterion that needs no hidden states)", ue.Excluded)
		}
		if ue.AtMinimum > 0 {
			fmt.Fprintf(&b, "; %d prunable groups are already at their minimum width (--min-width, --min-width-frac)", ue.AtMinimum)
		}
		if len(ue.Blocking) > 0 {
			var ops []string
			for _, o := range ue.Blocking {
				ops = append(ops, fmt.Sprintf("%s (at %s)", o.Op, strings.Join(o.Nodes, ", ")))
			}
			fmt.Fprintf(&b, "; units stop at ops onnx-cria has no rule for: %s", strings.Join(ops, "; "))
		}
		b.WriteString("; `onnx-cria inspect --groups` shows every group and what blocks it")
		return errors.New(b.String())
	}
	if ue.Kind == shrink.TargetLatency {
		return fmt.Errorf("%w; lower --min-width or --min-width-frac, exclude fewer groups, or choose --target-latency of at least %.4f", ue, 1-ue.Reached)
	}
	flag := "--target"
	if ue.Kind == shrink.TargetFLOPs {
		flag = "--target-flops"
	}
	if ue.Unblocked > ue.Reached {
		return fmt.Errorf("%w: Conv channels go in blocks of ONNX Runtime's kernel width (--round-to auto); choose %s of at most %.4f, or --round-to 1 for single channels, which reaches %.4f (their Convs may run on ONNX Runtime's slower path)", ue, flag, ue.Reached, ue.Unblocked)
	}
	return fmt.Errorf("%w; lower --min-width or --min-width-frac, exclude fewer groups, or choose %s of at most %.4f", ue, flag, ue.Reached)
}

type rounding struct{ all, channels int }

// parseRoundTo reads --round-to: a positive count for every group, or auto
// for Conv channel groups only (other units have no such kernel cliff).
func parseRoundTo(v, provider string) (rounding, error) {
	if v == "auto" {
		return rounding{all: 1, channels: ort.ConvBlock(provider)}, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		return rounding{}, usagef("--round-to %q: want a positive integer or auto", v)
	}
	return rounding{all: n}, nil
}

// isSet reports whether the flag was given on the command line.
func isSet(fs *flagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) {
		if f.Name == name {
			set = true
		}
	})
	return set
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
