package finetune

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"github.com/onnx-cria/onnx-cria/autodiff"

	"github.com/onnx-cria/onnx-cria/dataset"
	"github.com/onnx-cria/onnx-cria/evaluate"
	"github.com/onnx-cria/onnx-cria/onnxio"
	"github.com/onnx-cria/onnx-cria/ort"
)

// Config holds every setting of a fine-tuning run.
type Config struct {
	Epochs      int     // passes over the training data (1)
	LR          float64 // learning rate (1e-4 for adam, 1e-3 for sgd: recovery, not training from scratch)
	Batch       int     // rows per step (64)
	Optimizer   string  // "adam" (default; decoupled weight decay) or "sgd"
	Momentum    float64 // sgd momentum (0.9)
	WeightDecay float64
	Schedule    string  // "cosine" (default: decay to 0 over the run) or "constant"
	ClipNorm    float64 // clip the global gradient norm to this (0: off)

	// Objective is the loss; its zero value chooses one (see Run).
	Objective   autodiff.Objective
	Teacher     *onnxio.Model // the original model, for distillation
	Temperature float64       // distillation temperature (2)
	Alpha       float64       // with labels and a teacher: weight of distillation (0.5)

	Params []string // initializers to train; nil: DefaultParams
	Freeze []string // glob patterns left out of the default set
	// BatchNorm is autodiff.BNBatch (the default: batch statistics while training,
	// running statistics updated, as PyTorch's train mode) or autodiff.BNFrozen.
	BatchNorm string

	Eval     *dataset.Set // if set, the metric before training and after every epoch
	EvalTask string

	Seed       int64 // shuffling and the training subset
	MaxSamples int   // train on a seeded subset of this many rows (0: all)
	MaxSteps   int   // stop after this many steps in total (0: no limit)

	// Checkpoint, if set, is written atomically after every epoch, every
	// CheckpointEvery steps if that is positive, and when MaxSteps stops
	// the run. With Resume the run continues from it and ends exactly as
	// an uninterrupted run would.
	Checkpoint      string
	CheckpointEvery int
	Resume          bool

	Runtime  ort.Config
	Log      func(format string, args ...any)
	Progress func(label string, done, total int)
}

func (c *Config) defaults() error {
	if c.Epochs == 0 {
		c.Epochs = 1
	}
	if c.Batch <= 0 {
		c.Batch = 64
	}
	if c.Optimizer == "" {
		c.Optimizer = "adam"
	}
	if c.LR == 0 {
		c.LR = 1e-4
		if c.Optimizer == "sgd" {
			c.LR = 1e-3
		}
	}
	if c.Momentum == 0 && c.Optimizer == "sgd" {
		c.Momentum = 0.9
	}
	if c.Schedule == "" {
		c.Schedule = "cosine"
	}
	if c.Temperature == 0 {
		c.Temperature = 2
	}
	if c.Alpha == 0 {
		c.Alpha = 0.5
	}
	if c.BatchNorm == "" {
		c.BatchNorm = autodiff.BNBatch
	}
	if c.Log == nil {
		c.Log = func(string, ...any) {}
	}
	switch {
	case c.Epochs < 0:
		return fmt.Errorf("epochs %d: want at least 1", c.Epochs)
	case c.LR < 0 || math.IsNaN(c.LR):
		return fmt.Errorf("learning rate %v: want a positive number", c.LR)
	case c.Optimizer != "adam" && c.Optimizer != "sgd":
		return fmt.Errorf("optimizer %q: want adam or sgd", c.Optimizer)
	case c.Schedule != "constant" && c.Schedule != "cosine":
		return fmt.Errorf("schedule %q: want constant or cosine", c.Schedule)
	case c.Alpha < 0 || c.Alpha > 1:
		return fmt.Errorf("alpha %v: want a weight in [0, 1]", c.Alpha)
	case c.BatchNorm != autodiff.BNBatch && c.BatchNorm != autodiff.BNFrozen:
		return fmt.Errorf("batch norm mode %q: want %s or %s", c.BatchNorm, autodiff.BNBatch, autodiff.BNFrozen)
	case c.Resume && c.Checkpoint == "":
		return errors.New("resume needs a checkpoint file")
	}
	return nil
}

// EpochStat is one epoch's summary.
type EpochStat struct {
	Epoch   int              `json:"epoch"`
	Steps   int              `json:"steps"`
	Loss    float64          `json:"train_loss"` // mean over the epoch's steps
	Eval    *evaluate.Result `json:"eval,omitempty"`
	Seconds float64          `json:"seconds"`
}

// Result is what a run did.
type Result struct {
	Objective   autodiff.Objective `json:"objective"`
	Optimizer   string             `json:"optimizer"`
	BatchNorm   string             `json:"batch_norm,omitempty"` // the mode, when the model has BatchNormalization nodes that train
	LR          float64            `json:"lr"`
	Batch       int                `json:"batch"`
	Samples     int                `json:"samples"`
	Tensors     int                `json:"trained_tensors"`
	Params      int64              `json:"trained_params"`
	Steps       int                `json:"steps"` // in all, including those before a resume
	Epochs      []EpochStat        `json:"epochs"`
	EvalBefore  *evaluate.Result   `json:"eval_before,omitempty"`
	EvalAfter   *evaluate.Result   `json:"eval_after,omitempty"`
	Resumed     bool               `json:"resumed,omitempty"`
	Stopped     bool               `json:"stopped_early,omitempty"`
	Seconds     float64            `json:"seconds"`
	StepSeconds float64            `json:"seconds_per_step"`
}

// chooseObjective picks the loss when the caller did not: distillation
// with a teacher, mixed with the hard-label loss (class labels, or next
// tokens for a language model) when there is one; without a teacher the
// hard-label loss alone.
func chooseObjective(m *onnxio.Model, hasLabels bool, c *Config) (autodiff.Objective, error) {
	o, err := autodiff.HardObjective(m, hasLabels)
	switch {
	case err != nil && c.Teacher == nil:
		return o, fmt.Errorf("%w, and no teacher was given to distill from", err)
	case err != nil:
		return autodiff.Objective{KD: 1, Temperature: c.Temperature}, nil
	case c.Teacher != nil:
		o.CE, o.LM = o.CE*(1-c.Alpha), o.LM*(1-c.Alpha)
		o.KD, o.Temperature = c.Alpha, c.Temperature
	}
	return o, nil
}

// Run fine-tunes m on train and returns the model with the trained weights.
// m is not modified.
//
// Without an explicit Objective the loss is cross-entropy on the
// "labels" array; for a language model without labels (first output
// [N, T, vocab], a 2-D integer id input) next-token cross-entropy; with
// a Teacher, distillation KL(softmax(t/T) || softmax(z/T)) T^2, mixed
// 1-Alpha : Alpha with the hard-label loss when there is one. Without
// labels, language model or teacher it is an error.
func Run(m *onnxio.Model, train *dataset.Set, cfg Config) (*onnxio.Model, *Result, error) {
	if err := cfg.defaults(); err != nil {
		return nil, nil, err
	}
	t0 := time.Now()
	bound, err := autodiff.BindData(m, train, cfg.MaxSamples, cfg.Seed)
	if err != nil {
		return nil, nil, fmt.Errorf("training data: %w", err)
	}
	obj := cfg.Objective
	if obj == (autodiff.Objective{}) {
		if obj, err = chooseObjective(m, bound.Labels != nil, &cfg); err != nil {
			return nil, nil, err
		}
	}
	if obj.CE != 0 && bound.Labels == nil {
		return nil, nil, fmt.Errorf("%s: the objective needs class labels and the data has no \"labels\" array", train.Path)
	}
	if obj.NeedsTeacher() && cfg.Teacher == nil {
		return nil, nil, errors.New("the objective distills from a teacher and none was given")
	}
	tg, err := autodiff.BuildTraining(m, autodiff.TrainSpec{Objective: obj, Params: cfg.Params, Freeze: cfg.Freeze, BatchNorm: cfg.BatchNorm})
	if err != nil {
		return nil, nil, err
	}
	st, err := autodiff.NewStepper(tg, cfg.Runtime)
	if err != nil {
		return nil, nil, fmt.Errorf("training graph: %w", err)
	}
	defer st.Destroy()
	var teacher *teacherRun
	if obj.NeedsTeacher() {
		if teacher, err = newTeacherRun(cfg.Teacher, tg.Output, cfg.Runtime); err != nil {
			return nil, nil, err
		}
		defer teacher.sess.Destroy()
	}
	params, err := autodiff.ParamValues(m, tg.Params)
	if err != nil {
		return nil, nil, err
	}
	// Running statistics of batch-mode BatchNormalizations.
	var bufs []autodiff.Param
	for _, st := range tg.BNStats {
		bufs = append(bufs, autodiff.Param{Name: st.Mean, DType: st.DType, Dims: st.Dims}, autodiff.Param{Name: st.Var, DType: st.DType, Dims: st.Dims})
	}
	buffers, err := autodiff.ParamValues(m, bufs)
	if err != nil {
		return nil, nil, err
	}
	weights := func() (*onnxio.Model, error) {
		return autodiff.WithParams(m, append(append([]autodiff.Param{}, tg.Params...), bufs...), append(append([][]float32{}, params...), buffers...))
	}
	var opt Optimizer
	if cfg.Optimizer == "sgd" {
		opt = &SGD{Momentum: cfg.Momentum, WeightDecay: cfg.WeightDecay}
	} else {
		opt = NewAdam(cfg.WeightDecay)
	}
	res := &Result{Objective: obj, Optimizer: cfg.Optimizer, LR: cfg.LR, Batch: cfg.Batch, Samples: bound.N, Tensors: len(tg.Params)}
	if len(tg.BNStats) > 0 || cfg.BatchNorm == autodiff.BNFrozen && hasOp(m, "BatchNormalization") {
		res.BatchNorm = cfg.BatchNorm
	}
	for _, p := range tg.Params {
		res.Params += onnxio.NumElements(p.Dims)
	}
	batch := cfg.Batch
	if bound.FixedBatch > 0 {
		batch = bound.FixedBatch
	}
	perEpoch := (bound.N + batch - 1) / batch
	if bound.FixedBatch > 0 {
		perEpoch = bound.N / batch
	}
	total := perEpoch * cfg.Epochs
	fp, err := fingerprint(m)
	if err != nil {
		return nil, nil, err
	}
	pos := position{}
	ck := &checkpoint{Meta: ckMeta{
		Format: ckFormat, Model: fp, Optimizer: cfg.Optimizer, Objective: obj.String(), Batch: batch,
		Seed: cfg.Seed, Samples: bound.N, BatchNorm: res.BatchNorm,
	}}
	for _, p := range tg.Params {
		ck.Meta.Params = append(ck.Meta.Params, p.Name)
	}
	for _, p := range bufs {
		ck.Meta.Buffers = append(ck.Meta.Buffers, p.Name)
	}
	if cfg.Resume {
		prev, err := loadCheckpoint(cfg.Checkpoint)
		if err != nil {
			return nil, nil, err
		}
		if err := prev.compatible(&ck.Meta); err != nil {
			return nil, nil, fmt.Errorf("cannot resume from %s: %w", cfg.Checkpoint, err)
		}
		if err := prev.restore(params, buffers, opt); err != nil {
			return nil, nil, fmt.Errorf("cannot resume from %s: %w", cfg.Checkpoint, err)
		}
		pos = prev.Meta.Pos
		res.Epochs = prev.Meta.History
		res.EvalBefore = prev.Meta.EvalBefore
		res.Resumed = true
		cfg.Log("resuming from %s at epoch %d, step %d (%d steps done)", cfg.Checkpoint, pos.Epoch+1, pos.Step, pos.Global)
	}
	evalNow := func(label string) (*evaluate.Result, error) {
		if cfg.Eval == nil {
			return nil, nil
		}
		cur, err := weights()
		if err != nil {
			return nil, err
		}
		return evaluate.Run(cur, cfg.Eval, evaluate.Options{Task: cfg.EvalTask, Batch: max(cfg.Batch, 64), Runtime: cfg.Runtime})
	}
	if !cfg.Resume {
		if res.EvalBefore, err = evalNow("before"); err != nil {
			return nil, nil, fmt.Errorf("evaluating the input model: %w", err)
		}
		if res.EvalBefore != nil {
			cfg.Log("before fine-tuning: %s", res.EvalBefore)
		}
	}
	cfg.Log("fine-tuning %d tensors (%d parameters) on %d samples: %s, %s lr %g, batch %d, %d epochs of %d steps",
		res.Tensors, res.Params, bound.N, obj, cfg.Optimizer, cfg.LR, batch, cfg.Epochs, perEpoch)
	save := func() error {
		if cfg.Checkpoint == "" {
			return nil
		}
		ck.Meta.Pos, ck.Meta.History, ck.Meta.EvalBefore = pos, res.Epochs, res.EvalBefore
		return ck.save(cfg.Checkpoint, params, buffers, opt)
	}
	var stepTime time.Duration
	steps := 0
	for pos.Epoch < cfg.Epochs {
		e0 := time.Now()
		perm := epochOrder(bound.N, cfg.Seed, pos.Epoch)
		label := fmt.Sprintf("epoch %d/%d", pos.Epoch+1, cfg.Epochs)
		for pos.Step < perEpoch {
			if cfg.MaxSteps > 0 && pos.Global >= cfg.MaxSteps {
				res.Stopped = true
				if err := save(); err != nil {
					return nil, nil, err
				}
				cfg.Log("stopped after %d steps (max steps); checkpoint %s", pos.Global, orNone(cfg.Checkpoint))
				return finish(weights, res, pos.Global, t0, stepTime, steps, evalNow)
			}
			lo := pos.Step * batch
			rows := perm[lo:min(lo+batch, bound.N)]
			b, err := autodiff.MakeBatch(bound, rows)
			if err != nil {
				return nil, nil, err
			}
			if teacher != nil {
				if b.Teacher, err = teacher.run(b.Inputs); err != nil {
					return nil, nil, err
				}
			}
			s0 := time.Now()
			out, err := st.Run(params, b)
			where := fmt.Sprintf("epoch %d, step %d", pos.Epoch+1, pos.Step+1)
			if errors.Is(err, autodiff.ErrNonFiniteLoss) {
				return nil, nil, &DivergedError{Where: where, What: "the loss", Value: out.Loss, Checkpoint: cfg.Checkpoint}
			}
			if err != nil {
				return nil, nil, fmt.Errorf("%s: %w", where, err)
			}
			if cfg.ClipNorm > 0 {
				clipNorm(out.Grads, cfg.ClipNorm)
			}
			opt.Step(params, out.Grads, lrAt(&cfg, pos.Global, total))
			updateRunning(tg.BNStats, buffers, out.Stats)
			if k, v, bad := firstNonFinite(params); bad {
				return nil, nil, &DivergedError{Where: where, What: "weight " + tg.Params[k].Name, Value: v, Checkpoint: cfg.Checkpoint}
			}
			stepTime += time.Since(s0)
			steps++
			pos.LossSum += out.Loss
			pos.Step++
			pos.Global++
			if cfg.Progress != nil {
				cfg.Progress(label, pos.Step, perEpoch)
			}
			if cfg.CheckpointEvery > 0 && pos.Global%cfg.CheckpointEvery == 0 && pos.Step < perEpoch {
				if err := save(); err != nil {
					return nil, nil, err
				}
			}
		}
		es := EpochStat{Epoch: pos.Epoch + 1, Steps: pos.Step, Loss: pos.LossSum / float64(pos.Step), Seconds: time.Since(e0).Seconds()}
		if es.Eval, err = evalNow(label); err != nil {
			return nil, nil, err
		}
		res.Epochs = append(res.Epochs, es)
		if es.Eval != nil {
			cfg.Log("%s: train loss %.4f, eval %s, %.1fs", label, es.Loss, es.Eval, es.Seconds)
		} else {
			cfg.Log("%s: train loss %.4f, %.1fs", label, es.Loss, es.Seconds)
		}
		pos = position{Epoch: pos.Epoch + 1, Global: pos.Global}
		if err := save(); err != nil {
			return nil, nil, err
		}
	}
	return finish(weights, res, pos.Global, t0, stepTime, steps, nil)
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// finish writes the weights into a copy of the model and completes the
// result.
func finish(weights func() (*onnxio.Model, error), res *Result, global int, t0 time.Time, stepTime time.Duration, steps int, evalNow func(string) (*evaluate.Result, error)) (*onnxio.Model, *Result, error) {
	out, err := weights()
	if err != nil {
		return nil, nil, err
	}
	res.Steps = global
	if n := len(res.Epochs); n > 0 && res.Epochs[n-1].Eval != nil && !res.Stopped {
		res.EvalAfter = res.Epochs[n-1].Eval
	} else if evalNow != nil {
		if res.EvalAfter, err = evalNow("after"); err != nil {
			return nil, nil, err
		}
	}
	res.Seconds = time.Since(t0).Seconds()
	if steps > 0 {
		res.StepSeconds = stepTime.Seconds() / float64(steps)
	}
	return out, res, nil
}

// lrAt is the learning rate of step k of total.
func lrAt(c *Config, k, total int) float64 {
	if c.Schedule == "cosine" && total > 0 {
		return c.LR * 0.5 * (1 + math.Cos(math.Pi*float64(k)/float64(total)))
	}
	return c.LR
}

// epochOrder is the row order of an epoch: a Fisher-Yates shuffle driven
// by a PCG generator seeded with (seed, epoch), so any epoch's order can
// be recomputed without replaying the ones before it.
func epochOrder(n int, seed int64, epoch int) []int {
	r := rand.New(rand.NewPCG(uint64(seed), uint64(epoch)))
	p := make([]int, n)
	for i := range p {
		p[i] = i
	}
	for i := n - 1; i > 0; i-- {
		j := r.IntN(i + 1)
		p[i], p[j] = p[j], p[i]
	}
	return p
}

// teacherRun computes the teacher's output on training batches.
type teacherRun struct {
	sess *ort.Session
	out  int
}

func newTeacherRun(t *onnxio.Model, output string, rt ort.Config) (*teacherRun, error) {
	s, err := ort.NewSessionForModel(t, nil, rt)
	if err != nil {
		return nil, fmt.Errorf("teacher: %w", err)
	}
	tr := &teacherRun{sess: s}
	for k, o := range s.Outputs() {
		if o.Name == output {
			tr.out = k
		}
	}
	return tr, nil
}

func (t *teacherRun) run(in []ort.Tensor) (*ort.Tensor, error) {
	outs, err := t.sess.Run(in...)
	if err != nil {
		return nil, fmt.Errorf("teacher: %w", err)
	}
	o := outs[t.out]
	return &o, nil
}

// fingerprint identifies the model a checkpoint belongs to.
func fingerprint(m *onnxio.Model) (string, error) {
	if m.Hash != "" {
		return m.Hash, nil
	}
	b, err := m.Encode()
	if err != nil {
		return "", err
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:]), nil
}

func hasOp(m *onnxio.Model, op string) bool {
	for _, n := range m.Graph().GetNode() {
		if n.GetOpType() == op {
			return true
		}
	}
	return false
}

// DivergedError: training produced a NaN or infinite loss or weight. The
// run stops before writing anything, so the last checkpoint (if any) is
// the last good state.
type DivergedError struct {
	Where, What string
	Value       float64
	Checkpoint  string
}

func (e *DivergedError) Error() string {
	s := fmt.Sprintf("training diverged at %s: %s became %v (a learning rate or weight decay too large?)", e.Where, e.What, e.Value)
	if e.Checkpoint != "" {
		s += "; the checkpoint " + e.Checkpoint + " keeps the last good state"
	}
	return s
}

// firstNonFinite finds the first tensor holding a NaN or infinity.
func firstNonFinite(ts [][]float32) (int, float64, bool) {
	for k, t := range ts {
		for _, v := range t {
			if f := float64(v); math.IsNaN(f) || math.IsInf(f, 0) {
				return k, f, true
			}
		}
	}
	return 0, 0, false
}
