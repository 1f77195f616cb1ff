package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/onnx-cria/onnx-cria/autodiff"
	"github.com/onnx-cria/onnx-cria/dataset"
	"github.com/onnx-cria/onnx-cria/evaluate"
	"github.com/onnx-cria/onnx-cria/finetune"
	"github.com/onnx-cria/onnx-cria/onnxio"
	"github.com/onnx-cria/onnx-cria/ort"
	"github.com/onnx-cria/onnx-cria/recover"
	"github.com/onnx-cria/onnx-cria/shrink"
)

// trainFlags are the fine-tuning settings shared by finetune and shrink
// (where they carry the prefix "ft-").
type trainFlags struct {
	epochs, batch, maxSamples, maxSteps, every *int
	lr, momentum, wd, clip, temp, alpha        *float64
	optimizer, schedule, loss, bn              *string
	freeze                                     *multiFlag
}

func addTrainFlags(fs *flag.FlagSet, prefix string) *trainFlags {
	f := &trainFlags{freeze: &multiFlag{}}
	f.epochs = fs.Int(prefix+"epochs", 1, "passes over the training data")
	f.lr = fs.Float64(prefix+"lr", 0, "learning rate (default 1e-4 for adam, 1e-3 for sgd: recovery of a trained model)")
	f.batch = fs.Int(prefix+"batch", 64, "rows per training step")
	f.optimizer = fs.String(prefix+"optimizer", "adam", "adam (bias-corrected, decoupled weight decay) or sgd (momentum)")
	f.momentum = fs.Float64(prefix+"momentum", 0.9, "sgd momentum")
	f.wd = fs.Float64(prefix+"weight-decay", 0, "weight decay (decoupled for adam, L2 for sgd)")
	f.schedule = fs.String(prefix+"schedule", "cosine", "learning rate schedule: cosine (to 0 at the end) or constant")
	f.clip = fs.Float64(prefix+"clip", 0, "clip the global gradient norm to this (0: off)")
	f.temp = fs.Float64(prefix+"temperature", 2, "distillation temperature")
	f.alpha = fs.Float64(prefix+"alpha", 0.5, "with labels and a teacher: weight of distillation (the labels get 1-alpha)")
	f.bn = fs.String(prefix+"bn", "batch", "BatchNormalization while training: batch (batch statistics, running statistics updated, as PyTorch's train mode) or frozen (running statistics fixed)")
	f.loss = fs.String(prefix+"loss", "auto", "auto, ce (labels), lm (next token), kd (teacher's logits) or mse (teacher's outputs)")
	f.maxSamples = fs.Int(prefix+"max-samples", 0, "train on a seeded subset of this many rows (0: all)")
	f.maxSteps = fs.Int(prefix+"max-steps", 0, "stop after this many steps in total, writing the checkpoint (0: no limit)")
	f.every = fs.Int(prefix+"checkpoint-every", 0, "also write the checkpoint every N steps")
	fs.Var(f.freeze, prefix+"freeze", "leave initializers matching this glob pattern untrained (repeatable)")
	return f
}

// config turns the flags into a finetune.Config; m is the student.
func (f *trainFlags) config(m *onnxio.Model) (finetune.Config, error) {
	c := finetune.Config{
		Epochs: *f.epochs, LR: *f.lr, Batch: *f.batch, Optimizer: *f.optimizer, Momentum: *f.momentum,
		WeightDecay: *f.wd, Schedule: *f.schedule, ClipNorm: *f.clip, Temperature: *f.temp, Alpha: *f.alpha,
		MaxSamples: *f.maxSamples, MaxSteps: *f.maxSteps, CheckpointEvery: *f.every, Freeze: *f.freeze,
		BatchNorm: *f.bn,
	}
	switch {
	case c.Epochs < 1:
		return c, usagef("--epochs %d: want at least 1", c.Epochs)
	case c.Optimizer != "adam" && c.Optimizer != "sgd":
		return c, usagef("--optimizer %q: want adam or sgd", c.Optimizer)
	case c.Schedule != "constant" && c.Schedule != "cosine":
		return c, usagef("--schedule %q: want constant or cosine", c.Schedule)
	case c.BatchNorm != autodiff.BNBatch && c.BatchNorm != autodiff.BNFrozen:
		return c, usagef("--bn %q: want batch or frozen", c.BatchNorm)
	case c.Alpha < 0 || c.Alpha > 1:
		return c, usagef("--alpha %v: want a weight between 0 and 1", c.Alpha)
	}
	temp := *f.temp
	switch *f.loss {
	case "auto":
	case "ce":
		c.Objective = autodiff.Objective{CE: 1}
	case "kd":
		c.Objective = autodiff.Objective{KD: 1, Temperature: temp}
	case "mse":
		c.Objective = autodiff.Objective{MSE: 1}
	case "lm":
		ids, mask := autodiff.LMInputs(m)
		if ids == "" {
			return c, errors.New("--loss lm: the model has no 2-D integer token id input")
		}
		c.Objective = autodiff.Objective{LM: 1, IDs: ids, Mask: mask}
	default:
		return c, usagef("--loss %q: want auto, ce, lm, kd or mse", *f.loss)
	}
	return c, nil
}

func runFinetune(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("finetune", "IN.onnx OUT.onnx --data TRAIN.npz [flags]",
		`Recover accuracy by training IN and write OUT atomically. The training step is an
ONNX graph (forward pass, loss, backward pass) built from IN and run by ONNX
Runtime; the optimizer runs in Go. The loss is cross-entropy on the "labels"
array, next-token cross-entropy for a language model, or with --teacher the
original model's outputs (distillation, mixed with the labels when there are
any). Progress per epoch goes to stderr, the summary to stdout.

With --recover lsq, the layers pruning narrowed are refit by least squares to
the original model's outputs on --calib (needs --teacher ORIGINAL.onnx and
--shrink-report, shrink's JSON report); with --data as well, fine-tuning follows.`, stderr)
	rt := rtFlags(fs)
	dataPath := fs.String("data", "", "training data (.npz with arrays named after the model inputs, and \"labels\")")
	teacherPath := fs.String("teacher", "", "the original model: distill from its outputs")
	evalPath := fs.String("eval", "", "evaluation data: the metric before training and after every epoch")
	evalTask := fs.String("eval-task", "", "classification or lm (default: classification when labels exist)")
	seed := fs.Int64("seed", 0, "seed for shuffling and subsets")
	ckpt := fs.String("checkpoint", "", "write weights, optimizer state and position here after every epoch (atomically)")
	resume := fs.Bool("resume", false, "continue from --checkpoint")
	recov := fs.String("recover", "", "lsq: least-squares refit of the pruned layers before (or instead of) training")
	calibPath := fs.String("calib", "", "calibration data for --recover lsq")
	reportPath := fs.String("shrink-report", "", "shrink's JSON report, for --recover lsq (which units were kept)")
	samples := fs.Int("samples", 1024, "calibration samples for --recover lsq")
	ridge := fs.Float64("ridge", 1e-3, "--recover lsq: ridge penalty relative to the mean squared input feature")
	external := fs.String("external-data", "", "write tensors of OUT to this data file beside it")
	quiet := fs.Bool("quiet", false, "no progress on stderr")
	asJSON := fs.Bool("json", false, "print the summary as JSON on stdout")
	tf := addTrainFlags(fs, "")
	pos, err := parse(fs, args, 2, 2)
	if err != nil {
		return err
	}
	in, out := pos[0], pos[1]
	if err := checkDataName(*external); err != nil {
		return err
	}
	if *recov != "" && *recov != "lsq" && *recov != "none" {
		return usagef("--recover %q: want lsq or none", *recov)
	}
	lsq := *recov == "lsq"
	if *dataPath == "" && !lsq {
		return usagef("no training data: pass --data TRAIN.npz (arrays named after the model inputs, plus \"labels\" or --teacher ORIGINAL.onnx), or --recover lsq")
	}
	if lsq && (*teacherPath == "" || *calibPath == "" || *reportPath == "") {
		return usagef("--recover lsq needs --teacher ORIGINAL.onnx, --calib DATA.npz and --shrink-report REPORT.json")
	}
	if *resume && *ckpt == "" {
		return usagef("--resume needs --checkpoint FILE")
	}
	m, err := onnxio.Load(in)
	if err != nil {
		return err
	}
	cfg, err := tf.config(m)
	if err != nil {
		return err
	}
	var teacher *onnxio.Model
	if *teacherPath != "" {
		if teacher, err = onnxio.Load(*teacherPath); err != nil {
			return err
		}
	}
	var files runFiles
	if err := files.readModel("input model", m); err != nil {
		return err
	}
	if teacher != nil {
		if err := files.readModel("teacher", teacher); err != nil {
			return err
		}
	}
	files.read("training data", *dataPath)
	files.read("evaluation data", *evalPath)
	files.read("calibration data", *calibPath)
	files.read("shrink report", *reportPath)
	files.writeModel("output", out, *external, m)
	// A checkpoint being resumed is read and then rewritten: it is an
	// output that must not be any other file of the run.
	files.write("checkpoint", *ckpt)
	if err := files.check(); err != nil {
		return err
	}
	load := func(p string) (*dataset.Set, error) {
		if p == "" {
			return nil, nil
		}
		return dataset.Load(p)
	}
	train, err := load(*dataPath)
	if err != nil {
		return err
	}
	evalSet, err := load(*evalPath)
	if err != nil {
		return err
	}
	calib, err := load(*calibPath)
	if err != nil {
		return err
	}
	if err := startRuntime(rt); err != nil {
		return err
	}
	bar := newProgress(stderr, "")
	logf := func(format string, args ...any) {}
	var progress func(string, int, int)
	if !*quiet {
		logf = func(format string, args ...any) {
			bar.done()
			fmt.Fprintf(stderr, format+"\n", args...)
		}
		progress = func(label string, done, total int) {
			bar.setLabel(label)
			bar.update(done, total)
			if done >= total {
				bar.done()
			}
		}
	}
	summary := &finetuneSummary{Input: in, Output: out}
	cur := m
	if lsq {
		kept, err := readKept(*reportPath)
		if err != nil {
			return err
		}
		o := recover.LSQOptions{Ridge: *ridge, Samples: *samples, Seed: *seed, Runtime: *rt, Log: logf}
		if cur, summary.LSQ, err = recover.LSQ(teacher, cur, kept, calib, o); err != nil {
			return err
		}
		if evalSet != nil {
			if summary.EvalLSQ, err = evaluate.Run(cur, evalSet, evaluate.Options{Task: *evalTask, Runtime: *rt}); err != nil {
				return err
			}
			logf("after least squares: %s", summary.EvalLSQ)
		}
	}
	if train != nil {
		cfg.Teacher, cfg.Eval, cfg.EvalTask, cfg.Seed = teacher, evalSet, *evalTask, *seed
		cfg.Checkpoint, cfg.Resume, cfg.Runtime = *ckpt, *resume, *rt
		cfg.Log, cfg.Progress = logf, progress
		if cur, summary.Finetune, err = finetune.Run(cur, train, cfg); err != nil {
			bar.done()
			return err
		}
		bar.done()
	}
	var so *onnxio.SaveOptions
	if *external != "" {
		so = &onnxio.SaveOptions{ExternalData: *external}
	}
	if err := cur.Save(out, so); err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(summary)
	}
	summary.write(stdout)
	return nil
}

// finetuneSummary is the finetune command's result.
type finetuneSummary struct {
	Input    string             `json:"input"`
	Output   string             `json:"output"`
	LSQ      []recover.LayerFit `json:"lsq_layers,omitempty"`
	EvalLSQ  *evaluate.Result   `json:"eval_after_lsq,omitempty"`
	Finetune *finetune.Result   `json:"finetune,omitempty"`
}

func (s *finetuneSummary) write(w io.Writer) {
	fmt.Fprintf(w, "finetune %s -> %s\n", s.Input, s.Output)
	writeLSQ(w, s.LSQ)
	if s.EvalLSQ != nil {
		fmt.Fprintf(w, "after least squares: %s\n", s.EvalLSQ)
	}
	if r := s.Finetune; r != nil {
		writeFinetune(w, r)
	}
}

func writeLSQ(w io.Writer, fits []recover.LayerFit) {
	if len(fits) == 0 {
		return
	}
	fmt.Fprintf(w, "least-squares refit (relative error of each layer's output on the calibration set):\n")
	for _, f := range fits {
		if f.Note != "" {
			fmt.Fprintf(w, "  %-36s %-6s skipped: %s\n", f.Node, f.Op, f.Note)
			continue
		}
		state := "refit"
		if !f.Applied {
			state = "kept the old weights"
		}
		fmt.Fprintf(w, "  %-36s %-6s %5d in %5d out %7d rows  %.4f -> %.4f  %s\n", f.Node, f.Op, f.Inputs, f.Outputs, f.Rows, f.Before, f.After, state)
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
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// readKept reads the kept units of every pruned group from shrink's JSON
// report.
func readKept(path string) (map[string][]int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var rep shrink.Report
	if err := json.Unmarshal(b, &rep); err != nil {
		return nil, fmt.Errorf("%s: not a shrink report: %v", path, err)
	}
	if len(rep.Groups) == 0 {
		return nil, fmt.Errorf("%s: the report lists no groups", path)
	}
	return rep.Kept(), nil
}

// recoverFlags are shrink's recovery flags.
type recoverFlags struct {
	method  *string
	train   *string
	distill *bool
	ridge   *float64
	tf      *trainFlags
}

func addRecoverFlags(fs *flag.FlagSet) *recoverFlags {
	return &recoverFlags{
		method:  fs.String("recover", "lsq", "recovery after the last round: lsq (least-squares refit of the narrowed layers on the calibration set) or none"),
		train:   fs.String("finetune", "", "fine-tune on this training data after the last round, after the lsq refit (see the ft- flags)"),
		distill: fs.Bool("distill", false, "fine-tune against the original model as teacher (automatic when the training data has no labels)"),
		ridge:   fs.Float64("ridge", 1e-3, "lsq: ridge penalty relative to the mean squared input feature"),
		tf:      addTrainFlags(fs, "ft-"),
	}
}

// apply runs the recovery on shrink's result and prints nothing; the
// caller reports it. It returns small unchanged when there is nothing to do.
func (f *recoverFlags) apply(orig, small *onnxio.Model, rep *shrink.Report, calib *dataset.Set, cfg *shrink.Config, evalSet *dataset.Set, evalTask string, rt *ort.Config, stderr io.Writer, quiet bool) (*onnxio.Model, *recover.Report, error) {
	method := *f.method
	if method != "lsq" && method != "none" {
		return nil, nil, usagef("--recover %q: want lsq or none", method)
	}
	r := recover.Options{LSQ: method == "lsq", Distill: *f.distill, Eval: evalSet, EvalTask: evalTask, Runtime: *rt}
	if r.LSQ && calib == nil {
		r.LSQ = false // magnitude or random criteria without data: nothing to refit on
		if !quiet {
			fmt.Fprintln(stderr, "no calibration data: skipping the least-squares recovery")
		}
	}
	r.LSQOpts = recover.LSQOptions{Ridge: *f.ridge, Samples: cfg.Samples, Seed: cfg.Seed, Batch: cfg.Batch}
	if !quiet {
		r.LSQOpts.Log = func(format string, args ...any) { fmt.Fprintf(stderr, format+"\n", args...) }
	}
	if *f.train != "" {
		var err error
		if r.Train, err = dataset.Load(*f.train); err != nil {
			return nil, nil, err
		}
		if r.Finetune, err = f.tf.config(small); err != nil {
			return nil, nil, err
		}
		r.Finetune.Seed, r.Finetune.Eval, r.Finetune.EvalTask = cfg.Seed, evalSet, evalTask
		if !quiet {
			bar := newProgress(stderr, "")
			r.Finetune.Log = func(format string, args ...any) { bar.done(); fmt.Fprintf(stderr, format+"\n", args...) }
			r.Finetune.Progress = func(label string, done, total int) {
				bar.setLabel(label)
				bar.update(done, total)
				if done >= total {
					bar.done()
				}
			}
		}
	}
	if !r.LSQ && r.Train == nil {
		return small, nil, nil
	}
	return recover.Run(orig, small, rep.Kept(), calib, r)
}

// writeRecovery prints what the recovery did.
func writeRecovery(w io.Writer, rr *recover.Report) {
	if rr == nil {
		return
	}
	fmt.Fprintf(w, "\nrecovery: %s\n", strings.Join(rr.Methods, ", then "))
	writeLSQ(w, rr.LSQ)
	if rr.Finetune != nil {
		writeFinetune(w, rr.Finetune)
	}
	if rr.EvalAfter != nil {
		fmt.Fprintf(w, "after recovery: %s\n", rr.EvalAfter)
	}
}
