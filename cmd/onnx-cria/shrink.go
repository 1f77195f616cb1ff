package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"

	"github.com/onnx-cria/onnx-cria/dataset"
	"github.com/onnx-cria/onnx-cria/onnxio"
	"github.com/onnx-cria/onnx-cria/ort"
	"github.com/onnx-cria/onnx-cria/recover"
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

func runShrink(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("shrink", "IN.onnx OUT.onnx --target R --calib DATA.npz [flags]",
		"Prune IN to an effective parameter reduction of R (1 - params(OUT)/params(IN))\nby the iterative loop of METHOD.md: capture hidden states on the calibration set,\nscore every unit, remove the lowest-scored ones (at most --per-round of each group\nper round), rewrite the model physically, repeat. Writes OUT atomically, prints the\nreport, and with --report writes it as JSON. IN is never modified.", stderr)
	rt := rtFlags(fs)
	target := fs.Float64("target", 0, "effective parameter reduction to reach, e.g. 0.5 (required)")
	calibPath := fs.String("calib", "", "calibration data (.npz with arrays named after the model inputs)")
	cf := addCritFlags(fs)
	perRound := fs.Float64("per-round", 0.10, "at most this fraction of a group's width removed per round")
	minWidth := fs.Int("min-width", 4, "never leave a group narrower than this many units")
	minFrac := fs.Float64("min-width-frac", 0.05, "never leave a group narrower than this fraction of its original width")
	ranking := fs.String("ranking", "per-group", "per-group: rank units within each group; global: rank normalised scores across groups")
	roundTo := fs.String("round-to", "auto", "keep widths multiples of N; auto: Conv channel counts in multiples of ONNX Runtime's blocked-kernel width on this CPU (16 with AVX-512, 8 with AVX2), so that a pruned CNN runs faster rather than slower; 1 for the exact budget of METHOD.md")
	var exclude multiFlag
	fs.Var(&exclude, "exclude", "leave groups whose name matches this glob pattern alone (repeatable)")
	allGroups := fs.Bool("all-groups", false, "also prune groups without a nonlinearity (not with spectral or activation)")
	samples := fs.Int("samples", 1024, "calibration samples M, a seeded subset, fixed across rounds")
	seed := fs.Int64("seed", 0, "seed for sampling, random scores and solver start vectors")
	batch := fs.Int("batch", 64, "rows per ORT run")
	reportPath := fs.String("report", "", "write the report as JSON to this file")
	evalPath := fs.String("eval", "", "evaluation data: report the metric before and after")
	evalTask := fs.String("eval-task", "", "classification or lm (default: classification when labels exist)")
	noLatency := fs.Bool("no-latency", false, "skip measuring ORT latency before and after")
	randomCalib := fs.Bool("random-calib", false, "calibrate on random inputs (not recommended; the report warns)")
	external := fs.String("external-data", "", "write tensors of OUT to this data file beside it")
	quiet := fs.Bool("quiet", false, "no progress on stderr")
	asJSON := fs.Bool("json", false, "print the report as JSON on stdout")
	rf := addRecoverFlags(fs) // recovery after the last round: finetune.go
	pos, err := parse(fs, args, 2, 2)
	if err != nil {
		return err
	}
	in, out := pos[0], pos[1]
	if *target <= 0 || *target >= 1 {
		return usagef("--target %v: want a fraction between 0 and 1, e.g. --target 0.5", *target)
	}
	if err := checkDataName(*external); err != nil {
		return err
	}
	round, err := parseRoundTo(*roundTo, rt.Provider)
	if err != nil {
		return err
	}
	crit, err := cf.criterion()
	if err != nil {
		return err
	}
	if *calibPath == "" && !*randomCalib && crit.NeedsStates() {
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
	files.read("calibration data", *calibPath)
	files.read("evaluation data", *evalPath)
	files.read("training data", *rf.train)
	files.writeModel("output", out, *external, m)
	files.write("report", *reportPath)
	if err := files.check(); err != nil {
		return err
	}
	var calib *dataset.Set
	var warnings []string
	if *calibPath != "" {
		if calib, err = dataset.Load(*calibPath); err != nil {
			return err
		}
	}
	var evalSet *dataset.Set
	if *evalPath != "" {
		if evalSet, err = dataset.Load(*evalPath); err != nil {
			return err
		}
	}
	if err := startRuntime(rt); err != nil {
		return err
	}
	if calib == nil && *randomCalib {
		if calib, err = randomCalibration(m, *samples, *seed); err != nil {
			return err
		}
		warnings = append(warnings, "calibration data was random (--random-calib): scores reflect random inputs, not real data")
	}
	cfg := shrink.Config{
		Target: *target, Criterion: crit, PerRound: *perRound, MinWidth: *minWidth, MinFrac: *minFrac,
		Ranking: *ranking, RoundTo: round.all, RoundChannels: round.channels, Exclude: exclude, AllGroups: *allGroups, Samples: *samples,
		Seed: *seed, Batch: *batch, Runtime: *rt, Eval: evalSet, EvalTask: *evalTask, Latency: !*noLatency,
	}
	bar := newProgress(stderr, "")
	if !*quiet {
		cfg.Log = func(format string, args ...any) {
			bar.done()
			fmt.Fprintf(stderr, format+"\n", args...)
		}
		cfg.Progress = func(label string, done, total int) {
			bar.setLabel(label)
			bar.update(done, total)
			if done >= total {
				bar.done()
			}
		}
	}
	small, rep, err := shrink.Run(m, calib, cfg)
	bar.done()
	if err != nil {
		return err
	}
	rep.Warnings = append(warnings, rep.Warnings...)
	small, rrep, err := rf.apply(m, small, rep, calib, &cfg, evalSet, *evalTask, rt, stderr, *quiet)
	if err != nil {
		return err
	}
	var full any = rep
	if rrep != nil {
		full = struct {
			*shrink.Report
			Recovery *recover.Report `json:"recovery"`
		}{rep, rrep}
	}
	var so *onnxio.SaveOptions
	if *external != "" {
		so = &onnxio.SaveOptions{ExternalData: *external}
	}
	if err := small.Save(out, so); err != nil {
		return err
	}
	rep.Output.Path = out
	if st, err := os.Stat(out); err == nil {
		rep.Output.Bytes = st.Size()
	}
	rep.Output.SHA256 = fileSHA(out)
	if *reportPath != "" {
		b, err := json.MarshalIndent(full, "", "  ")
		if err != nil {
			return err
		}
		if err := onnxio.WriteFileAtomic(*reportPath, append(b, '\n')); err != nil {
			return err
		}
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(full)
	}
	rep.WriteText(stdout)
	writeRecovery(stdout, rrep)
	return nil
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
