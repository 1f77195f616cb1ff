package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/onnx-cria/onnx-cria/autodiff"
	"github.com/onnx-cria/onnx-cria/dataset"
	"github.com/onnx-cria/onnx-cria/evaluate"
	"github.com/onnx-cria/onnx-cria/finetune"
	"github.com/onnx-cria/onnx-cria/onnxio"
	"github.com/onnx-cria/onnx-cria/recover"
	"github.com/onnx-cria/onnx-cria/shrink"
)

// trainFlags are the fine-tuning settings shared by finetune and shrink,
// where they carry the prefix "ft-". The training batch is shrink's
// --ft-batch; finetune's is its common --batch (the caller sets batch).
type trainFlags struct {
	epochs, batch, maxSamples, maxSteps *int
	lr, momentum, wd, clip, temp, alpha *float64
	optimizer, schedule, loss, bn       *string
	freeze                              *multiFlag
}

func addTrainFlags(fs *flagSet, prefix string, withBatch bool) *trainFlags {
	f := &trainFlags{freeze: &multiFlag{}}
	f.epochs = fs.Int(prefix+"epochs", 1, 1, "passes over the training data")
	f.lr = fs.Float(prefix+"lr", 0, span{0, 10, false, false}, "learning rate (0: 1e-4 for adam, 1e-3 for sgd: recovery of a trained model)")
	if withBatch {
		f.batch = fs.Int(prefix+"batch", 64, 1, "rows per training step")
	}
	f.optimizer = fs.String(prefix+"optimizer", "adam", "adam (bias-corrected, decoupled weight decay) or sgd (momentum)")
	f.momentum = fs.Float(prefix+"momentum", 0.9, span{0, 1, false, true}, "sgd momentum")
	f.wd = fs.Float(prefix+"weight-decay", 0, span{0, 1, false, false}, "weight decay (decoupled for adam, L2 for sgd)")
	f.schedule = fs.String(prefix+"schedule", "cosine", "learning rate schedule: cosine (to 0 at the end) or constant")
	f.clip = fs.Float(prefix+"clip", 0, nonNegative, "clip the global gradient norm to this (0: off)")
	f.temp = fs.Float(prefix+"temperature", 2, span{0, 100, true, false}, "distillation temperature")
	f.alpha = fs.Float(prefix+"alpha", 0.5, unitInterval, "with labels and a teacher: weight of distillation (the labels get 1-alpha)")
	f.bn = fs.String(prefix+"bn", "batch", "BatchNormalization while training: batch (batch statistics, running statistics updated, as PyTorch's train mode) or frozen (running statistics fixed)")
	f.loss = fs.String(prefix+"loss", "auto", "auto, ce (labels), lm (next token), kd (teacher's logits) or mse (teacher's outputs)")
	f.maxSamples = fs.Int(prefix+"max-samples", 0, 0, "train on a seeded subset of this many rows (0: all)")
	f.maxSteps = fs.Int(prefix+"max-steps", 0, 0, "stop after this many steps in total (0: no limit)")
	fs.Var(f.freeze, prefix+"freeze", "leave initializers matching this glob pattern untrained (repeatable)")
	return f
}

// config turns the flags into a finetune.Config; m is the student.
func (f *trainFlags) config(m *onnxio.Model, prefix string) (finetune.Config, error) {
	c := finetune.Config{
		Epochs: *f.epochs, LR: *f.lr, Batch: *f.batch, Optimizer: *f.optimizer, Momentum: *f.momentum,
		WeightDecay: *f.wd, Schedule: *f.schedule, ClipNorm: *f.clip, Temperature: *f.temp, Alpha: *f.alpha,
		MaxSamples: *f.maxSamples, MaxSteps: *f.maxSteps, Freeze: *f.freeze, BatchNorm: *f.bn,
	}
	switch {
	case c.Optimizer != "adam" && c.Optimizer != "sgd":
		return c, usagef("--%soptimizer %q: want adam or sgd", prefix, c.Optimizer)
	case c.Schedule != "constant" && c.Schedule != "cosine":
		return c, usagef("--%sschedule %q: want constant or cosine", prefix, c.Schedule)
	case c.BatchNorm != autodiff.BNBatch && c.BatchNorm != autodiff.BNFrozen:
		return c, usagef("--%sbn %q: want batch or frozen", prefix, c.BatchNorm)
	}
	switch *f.loss {
	case "auto":
	case "ce":
		c.Objective = autodiff.Objective{CE: 1}
	case "kd":
		c.Objective = autodiff.Objective{KD: 1, Temperature: c.Temperature}
	case "mse":
		c.Objective = autodiff.Objective{MSE: 1}
	case "lm":
		ids, mask := autodiff.LMInputs(m)
		if ids == "" {
			return c, fmt.Errorf("--%sloss lm: %s has no 2-D integer token id input", prefix, m.Name())
		}
		c.Objective = autodiff.Objective{LM: 1, IDs: ids, Mask: mask}
	default:
		return c, usagef("--%sloss %q: want auto, ce, lm, kd or mse", prefix, *f.loss)
	}
	return c, nil
}

// finetuneFlags are the finetune command's settings.
type finetuneFlags struct {
	*common
	data, teacher, ckpt, calib, shrinkReport, eval, task, external *string
	seed                                                           *int64
	every, samples                                                 *int
	resume                                                         *bool
	tf                                                             *trainFlags
	lsq                                                            *lsqFlags
}

func addFinetuneFlags(fs *flagSet) *finetuneFlags {
	f := &finetuneFlags{}
	fs.section("Training")
	f.data = fs.String("data", "", "training data (.npz with arrays named after the model inputs, and \"labels\")")
	f.teacher = fs.String("teacher", "", "the original model: distill from its outputs (and the lsq refit's targets)")
	f.seed = fs.Int64("seed", 0, "seed for shuffling and subsets")
	f.tf = addTrainFlags(fs, "", false)
	fs.section("Checkpoints")
	f.ckpt = fs.String("checkpoint", "", "write weights, optimizer state and position here after every epoch (atomically)")
	f.every = fs.Int("checkpoint-every", 0, 0, "also write the checkpoint every N steps")
	f.resume = fs.Bool("resume", false, "continue from --checkpoint")
	f.lsq = addLSQFlags(fs, "auto")
	f.calib = fs.String("calib", "", "calibration data for the lsq refit")
	f.shrinkReport = fs.String("shrink-report", "", "shrink's JSON report, for the lsq refit (which units were kept)")
	f.samples = fs.Int("samples", 1024, 1, "calibration samples for the lsq refit")
	fs.section("Evaluation and output")
	f.eval = fs.String("eval", "", "evaluation data: the metric before training and after every epoch")
	f.task = fs.String("task", "", "classification or lm (default: classification when the data has labels)")
	f.external = fs.String("external-data", "", "write the tensors of OUT to this data file beside it")
	f.common = addCommon(fs)
	f.tf.batch = f.batch
	return f
}

func runFinetune(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("finetune", "IN.onnx OUT.onnx --data TRAIN.npz [flags]",
		`Recover accuracy by training IN and write OUT atomically. The training step is an
ONNX graph (forward pass, loss, backward pass) built from IN and run by ONNX
Runtime; the optimizer runs in Go. The loss is cross-entropy on the "labels"
array, next-token cross-entropy for a language model, or with --teacher the
original model's outputs (distillation, mixed with the labels when there are
any). Progress goes to stderr, the summary to stdout.

With --recover lsq (the default when --teacher, --calib and --shrink-report are
all given), the layers pruning narrowed are first refit by least squares to the
teacher's outputs on --calib; --data is then optional.`, stderr)
	f := addFinetuneFlags(fs)
	pos, err := parse(fs, args, 2, 2)
	if err != nil {
		return err
	}
	j, err := f.load(pos[0], pos[1])
	if err != nil {
		return err
	}
	u := newUI(stderr, *f.quiet)
	defer u.end()
	summary, cur, err := f.run(j, u)
	if err != nil {
		return err
	}
	so := &onnxio.SaveOptions{ExternalData: *f.external, Keep: j.files.keep()}
	if err := cur.Save(pos[1], so); err != nil {
		return err
	}
	if *f.json {
		return writeJSON(stdout, summary)
	}
	summary.write(stdout)
	return nil
}

// finetuneJob is what a finetune run reads.
type finetuneJob struct {
	in, out            string
	m, teacher         *onnxio.Model
	train, eval, calib *dataset.Set
	cfg                finetune.Config
	lsq                bool
	files              runFiles
}

// load checks the settings and the files, then reads the models and data.
func (f *finetuneFlags) load(in, out string) (*finetuneJob, error) {
	j := &finetuneJob{in: in, out: out}
	if err := checkDataName(*f.external); err != nil {
		return nil, err
	}
	if err := f.lsq.check(); err != nil {
		return nil, err
	}
	j.lsq = *f.lsq.method == "lsq" || (*f.lsq.method == "auto" && *f.teacher != "" && *f.calib != "" && *f.shrinkReport != "")
	switch {
	case *f.data == "" && !j.lsq:
		return nil, usagef("no training data: pass --data TRAIN.npz (arrays named after the model inputs, plus \"labels\" or --teacher ORIGINAL.onnx), or --recover lsq")
	case j.lsq && (*f.teacher == "" || *f.calib == "" || *f.shrinkReport == ""):
		return nil, usagef("--recover lsq needs --teacher ORIGINAL.onnx, --calib DATA.npz and --shrink-report REPORT.json")
	case *f.resume && *f.ckpt == "":
		return nil, usagef("--resume needs --checkpoint FILE")
	}
	var err error
	if j.m, err = onnxio.Load(in); err != nil {
		return nil, err
	}
	if j.cfg, err = f.tf.config(j.m, ""); err != nil {
		return nil, err
	}
	if *f.teacher != "" {
		if j.teacher, err = onnxio.Load(*f.teacher); err != nil {
			return nil, err
		}
	}
	if err := f.checkFiles(j); err != nil {
		return nil, err
	}
	if j.train, err = loadData(*f.data); err != nil {
		return nil, err
	}
	if j.eval, err = loadData(*f.eval); err != nil {
		return nil, err
	}
	if j.calib, err = loadData(*f.calib); err != nil {
		return nil, err
	}
	return j, f.start()
}

// checkFiles refuses outputs that would overwrite what the run reads.
func (f *finetuneFlags) checkFiles(j *finetuneJob) error {
	files := &j.files
	if err := files.readModel("input model", j.m); err != nil {
		return err
	}
	if j.teacher != nil {
		if err := files.readModel("teacher", j.teacher); err != nil {
			return err
		}
	}
	files.read("training data", *f.data)
	files.read("evaluation data", *f.eval)
	files.read("calibration data", *f.calib)
	files.read("shrink report", *f.shrinkReport)
	files.writeModel("output", j.out, *f.external, j.m)
	// A checkpoint being resumed is read and then rewritten: it is an
	// output that must not be any other file of the run.
	files.write("checkpoint", *f.ckpt)
	return files.check()
}

// run refits and/or trains, and returns the summary and the result.
func (f *finetuneFlags) run(j *finetuneJob, u *ui) (*finetuneSummary, *onnxio.Model, error) {
	summary := &finetuneSummary{Input: j.in, Output: j.out}
	cur := j.m
	if j.lsq {
		kept, err := readKept(*f.shrinkReport)
		if err != nil {
			return nil, nil, err
		}
		o := recover.LSQOptions{Ridge: *f.lsq.ridge, Samples: *f.samples, Seed: *f.seed, Batch: *f.batch, Runtime: f.rt, Log: u.logFunc(), Progress: u.progressFunc()}
		if cur, summary.LSQ, err = recover.LSQ(j.teacher, cur, kept, j.calib, o); err != nil {
			return nil, nil, err
		}
		if j.eval != nil {
			if summary.EvalLSQ, err = evaluate.Run(cur, j.eval, evaluate.Options{Task: *f.task, Batch: *f.batch, Runtime: f.rt}); err != nil {
				return nil, nil, err
			}
			u.logf("after least squares: %s", summary.EvalLSQ)
		}
	}
	if j.train != nil {
		cfg := j.cfg
		cfg.Teacher, cfg.Eval, cfg.EvalTask, cfg.Seed = j.teacher, j.eval, *f.task, *f.seed
		cfg.Checkpoint, cfg.CheckpointEvery, cfg.Resume, cfg.Runtime = *f.ckpt, *f.every, *f.resume, f.rt
		cfg.Log, cfg.Progress = u.logFunc(), u.progressFunc()
		var err error
		if cur, summary.Finetune, err = finetune.Run(cur, j.train, cfg); err != nil {
			return nil, nil, finetuneError(err)
		}
	}
	return summary, cur, nil
}

// finetuneError phrases the library's errors in terms of the flags.
func finetuneError(err error) error {
	if errors.Is(err, autodiff.ErrNoLabels) {
		return fmt.Errorf("%w: pass --teacher ORIGINAL.onnx to distill from the original model, or add integer class labels named \"labels\"", err)
	}
	return err
}

func loadData(p string) (*dataset.Set, error) {
	if p == "" {
		return nil, nil
	}
	return dataset.Load(p)
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

// lsqFlags are the refit flags of shrink and finetune.
type lsqFlags struct {
	method *string
	ridge  *float64
}

func addLSQFlags(fs *flagSet, def string) *lsqFlags {
	fs.section("Recovery")
	return &lsqFlags{
		method: fs.String("recover", def, "lsq: least-squares refit of the narrowed layers on the calibration set; none; auto: lsq when the data it needs is there"),
		ridge:  fs.Float("ridge", 1e-3, span{0, 1e6, true, false}, "lsq: ridge penalty relative to the mean squared input feature"),
	}
}

func (f *lsqFlags) check() error {
	switch *f.method {
	case "auto", "lsq", "none":
		return nil
	}
	return usagef("--recover %q: want auto, lsq or none", *f.method)
}

// recoverFlags are shrink's recovery flags: the refit, then optional
// fine-tuning with the ft- flags.
type recoverFlags struct {
	*lsqFlags
	train   *string
	distill *bool
	tf      *trainFlags
}

func addRecoverFlags(fs *flagSet) *recoverFlags {
	f := &recoverFlags{lsqFlags: addLSQFlags(fs, "auto")}
	fs.section("Fine-tuning after pruning")
	f.train = fs.String("finetune", "", "fine-tune on this training data after the refit (see the ft- flags)")
	f.distill = fs.Bool("ft-distill", false, "fine-tune against the input model as teacher (automatic when the training data has no labels)")
	f.tf = addTrainFlags(fs, "ft-", true)
	return f
}

// options turns the flags into shrink's recovery settings; nil when there
// is nothing to do.
func (f *recoverFlags) options(m *onnxio.Model, calib *dataset.Set, u *ui) (*recover.Options, error) {
	o := &recover.Options{LSQ: *f.method == "lsq" || (*f.method == "auto" && calib != nil), Distill: *f.distill}
	if *f.method == "lsq" && calib == nil {
		return nil, usagef("--recover lsq needs calibration data (--calib)")
	}
	o.LSQOpts = recover.LSQOptions{Ridge: *f.ridge, Log: u.logFunc(), Progress: u.progressFunc()}
	if *f.train != "" {
		var err error
		if o.Train, err = dataset.Load(*f.train); err != nil {
			return nil, err
		}
		if o.Finetune, err = f.tf.config(m, "ft-"); err != nil {
			return nil, err
		}
		o.Finetune.Log, o.Finetune.Progress = u.logFunc(), u.progressFunc()
	}
	if !o.LSQ && o.Train == nil {
		return nil, nil
	}
	return o, nil
}
