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
	tr, err := newTrainer(m, train, &cfg)
	if err != nil {
		return nil, nil, err
	}
	defer tr.destroy()
	if err := tr.prepare(); err != nil {
		return nil, nil, err
	}
	for tr.pos.Epoch < cfg.Epochs {
		stopped, err := tr.epoch()
		if err != nil {
			return nil, nil, err
		}
		if stopped {
			return tr.finish(true)
		}
	}
	return tr.finish(false)
}

// trainer is the state of one Run.
type trainer struct {
	m       *onnxio.Model
	cfg     *Config
	bound   *dataset.Bound
	tg      *autodiff.TrainGraph
	st      *autodiff.Stepper
	teacher *teacherRun
	params  [][]float32
	bufs    []autodiff.Param // running statistics of batch-mode BatchNormalizations
	buffers [][]float32
	opt     Optimizer
	res     *Result
	ck      *checkpoint
	pos     position
	batch   int
	perEp   int // steps per epoch
	t0      time.Time
	// Time spent in steps, and their number, for the mean step time.
	stepTime time.Duration
	steps    int
}

// newTrainer binds the data, chooses the loss and builds the training
// graph, its session and the teacher's.
func newTrainer(m *onnxio.Model, train *dataset.Set, cfg *Config) (*trainer, error) {
	tr := &trainer{m: m, cfg: cfg, t0: time.Now()}
	var err error
	if tr.bound, err = autodiff.BindData(m, train, cfg.MaxSamples, cfg.Seed); err != nil {
		return nil, fmt.Errorf("training data: %w", err)
	}
	obj := cfg.Objective
	if obj == (autodiff.Objective{}) {
		if obj, err = chooseObjective(m, tr.bound.Labels != nil, cfg); err != nil {
			return nil, err
		}
	}
	if obj.CE != 0 && tr.bound.Labels == nil {
		return nil, fmt.Errorf("%s: the objective needs class labels and the data has no \"labels\" array", train.Path)
	}
	if obj.NeedsTeacher() && cfg.Teacher == nil {
		return nil, errors.New("the objective distills from a teacher and none was given")
	}
	if tr.tg, err = autodiff.BuildTraining(m, autodiff.TrainSpec{Objective: obj, Params: cfg.Params, Freeze: cfg.Freeze, BatchNorm: cfg.BatchNorm}); err != nil {
		return nil, err
	}
	if tr.st, err = autodiff.NewStepper(tr.tg, cfg.Runtime); err != nil {
		return nil, fmt.Errorf("training graph: %w", err)
	}
	tr.st.Reuse = true // each step's gradients are consumed before the next
	if obj.NeedsTeacher() {
		if tr.teacher, err = newTeacherRun(cfg.Teacher, tr.tg.Output, cfg.Runtime); err != nil {
			tr.destroy()
			return nil, err
		}
	}
	tr.res = &Result{Objective: obj, Optimizer: cfg.Optimizer, LR: cfg.LR, Batch: cfg.Batch, Samples: tr.bound.N, Tensors: len(tr.tg.Params)}
	return tr, nil
}

func (tr *trainer) destroy() {
	tr.st.Destroy()
	if tr.teacher != nil {
		tr.teacher.sess.Destroy()
	}
}

// prepare reads the weights, makes the optimizer, sizes the epochs,
// resumes from the checkpoint or evaluates the starting point.
func (tr *trainer) prepare() error {
	cfg, tg, res := tr.cfg, tr.tg, tr.res
	var err error
	if tr.params, err = autodiff.ParamValues(tr.m, tg.Params); err != nil {
		return err
	}
	for _, st := range tg.BNStats {
		tr.bufs = append(tr.bufs, autodiff.Param{Name: st.Mean, DType: st.DType, Dims: st.Dims}, autodiff.Param{Name: st.Var, DType: st.DType, Dims: st.Dims})
	}
	if tr.buffers, err = autodiff.ParamValues(tr.m, tr.bufs); err != nil {
		return err
	}
	if cfg.Optimizer == "sgd" {
		tr.opt = &SGD{Momentum: cfg.Momentum, WeightDecay: cfg.WeightDecay}
	} else {
		tr.opt = NewAdam(cfg.WeightDecay)
	}
	if len(tg.BNStats) > 0 || cfg.BatchNorm == autodiff.BNFrozen && hasOp(tr.m, "BatchNormalization") {
		res.BatchNorm = cfg.BatchNorm
	}
	for _, p := range tg.Params {
		res.Params += onnxio.NumElements(p.Dims)
	}
	tr.batch, tr.perEp = cfg.Batch, (tr.bound.N+cfg.Batch-1)/cfg.Batch
	if fb := tr.bound.FixedBatch; fb > 0 {
		tr.batch, tr.perEp = fb, tr.bound.N/fb
	}
	if err := tr.newCheckpoint(); err != nil {
		return err
	}
	if cfg.Resume {
		return tr.resume()
	}
	if res.EvalBefore, err = tr.evaluate(); err != nil {
		return fmt.Errorf("evaluating the input model: %w", err)
	}
	if res.EvalBefore != nil {
		cfg.Log("before fine-tuning: %s", res.EvalBefore)
	}
	cfg.Log("fine-tuning %d tensors (%d parameters) on %d samples: %s, %s lr %g, batch %d, %d epochs of %d steps",
		res.Tensors, res.Params, tr.bound.N, res.Objective, cfg.Optimizer, cfg.LR, tr.batch, cfg.Epochs, tr.perEp)
	return nil
}

// newCheckpoint describes the run for its checkpoints.
func (tr *trainer) newCheckpoint() error {
	fp, err := fingerprint(tr.m)
	if err != nil {
		return err
	}
	cfg := tr.cfg
	tr.ck = &checkpoint{Meta: ckMeta{
		Format: ckFormat, Model: fp, Optimizer: cfg.Optimizer, Objective: tr.res.Objective.String(), Batch: tr.batch,
		Seed: cfg.Seed, Samples: tr.bound.N, BatchNorm: tr.res.BatchNorm,
	}}
	for _, p := range tr.tg.Params {
		tr.ck.Meta.Params = append(tr.ck.Meta.Params, p.Name)
	}
	for _, p := range tr.bufs {
		tr.ck.Meta.Buffers = append(tr.ck.Meta.Buffers, p.Name)
	}
	return nil
}

func (tr *trainer) resume() error {
	cfg := tr.cfg
	prev, err := loadCheckpoint(cfg.Checkpoint)
	if err != nil {
		return err
	}
	if err := prev.compatible(&tr.ck.Meta); err != nil {
		return fmt.Errorf("cannot resume from %s: %w", cfg.Checkpoint, err)
	}
	if err := prev.restore(tr.params, tr.buffers, tr.opt); err != nil {
		return fmt.Errorf("cannot resume from %s: %w", cfg.Checkpoint, err)
	}
	tr.pos = prev.Meta.Pos
	tr.res.Epochs, tr.res.EvalBefore, tr.res.Resumed = prev.Meta.History, prev.Meta.EvalBefore, true
	cfg.Log("resuming from %s at epoch %d, step %d (%d steps done)", cfg.Checkpoint, tr.pos.Epoch+1, tr.pos.Step, tr.pos.Global)
	return nil
}

// weights is a copy of the model with the current weights and statistics.
func (tr *trainer) weights() (*onnxio.Model, error) {
	return autodiff.WithParams(tr.m, append(append([]autodiff.Param{}, tr.tg.Params...), tr.bufs...), append(append([][]float32{}, tr.params...), tr.buffers...))
}

func (tr *trainer) evaluate() (*evaluate.Result, error) {
	if tr.cfg.Eval == nil {
		return nil, nil
	}
	cur, err := tr.weights()
	if err != nil {
		return nil, err
	}
	return evaluate.Run(cur, tr.cfg.Eval, evaluate.Options{Task: tr.cfg.EvalTask, Batch: max(tr.cfg.Batch, 64), Runtime: tr.cfg.Runtime})
}

func (tr *trainer) save() error {
	if tr.cfg.Checkpoint == "" {
		return nil
	}
	tr.ck.Meta.Pos, tr.ck.Meta.History, tr.ck.Meta.EvalBefore = tr.pos, tr.res.Epochs, tr.res.EvalBefore
	return tr.ck.save(tr.cfg.Checkpoint, tr.params, tr.buffers, tr.opt)
}

// epoch runs the rest of the current epoch; it reports whether MaxSteps
// stopped the run.
func (tr *trainer) epoch() (bool, error) {
	cfg := tr.cfg
	e0 := time.Now()
	perm := epochOrder(tr.bound.N, cfg.Seed, tr.pos.Epoch)
	label := fmt.Sprintf("epoch %d/%d", tr.pos.Epoch+1, cfg.Epochs)
	for tr.pos.Step < tr.perEp {
		if cfg.MaxSteps > 0 && tr.pos.Global >= cfg.MaxSteps {
			if err := tr.save(); err != nil {
				return false, err
			}
			cfg.Log("stopped after %d steps (max steps); checkpoint %s", tr.pos.Global, orNone(cfg.Checkpoint))
			return true, nil
		}
		lo := tr.pos.Step * tr.batch
		if err := tr.step(perm[lo:min(lo+tr.batch, tr.bound.N)]); err != nil {
			return false, err
		}
		if cfg.Progress != nil {
			cfg.Progress(label, tr.pos.Step, tr.perEp)
		}
		if cfg.CheckpointEvery > 0 && tr.pos.Global%cfg.CheckpointEvery == 0 && tr.pos.Step < tr.perEp {
			if err := tr.save(); err != nil {
				return false, err
			}
		}
	}
	es := EpochStat{Epoch: tr.pos.Epoch + 1, Steps: tr.pos.Step, Loss: tr.pos.LossSum / float64(tr.pos.Step), Seconds: time.Since(e0).Seconds()}
	var err error
	if es.Eval, err = tr.evaluate(); err != nil {
		return false, err
	}
	tr.res.Epochs = append(tr.res.Epochs, es)
	if es.Eval != nil {
		cfg.Log("%s: train loss %.4f, eval %s, %.1fs", label, es.Loss, es.Eval, es.Seconds)
	} else {
		cfg.Log("%s: train loss %.4f, %.1fs", label, es.Loss, es.Seconds)
	}
	tr.pos = position{Epoch: tr.pos.Epoch + 1, Global: tr.pos.Global}
	return false, tr.save()
}

// step trains on one batch of rows and checks that the loss and the
// weights stay finite.
func (tr *trainer) step(rows []int) error {
	cfg := tr.cfg
	b, err := autodiff.MakeBatch(tr.bound, rows)
	if err != nil {
		return err
	}
	if tr.teacher != nil {
		if b.Teacher, err = tr.teacher.run(b.Inputs); err != nil {
			return err
		}
	}
	s0 := time.Now()
	out, err := tr.st.Run(tr.params, b)
	where := fmt.Sprintf("epoch %d, step %d", tr.pos.Epoch+1, tr.pos.Step+1)
	if errors.Is(err, autodiff.ErrNonFiniteLoss) {
		return &DivergedError{Where: where, What: "the loss", Value: out.Loss, Checkpoint: cfg.Checkpoint}
	}
	if err != nil {
		return fmt.Errorf("%s: %w", where, err)
	}
	if cfg.ClipNorm > 0 {
		clipNorm(out.Grads, cfg.ClipNorm)
	}
	tr.opt.Step(tr.params, out.Grads, lrAt(cfg, tr.pos.Global, tr.perEp*cfg.Epochs))
	updateRunning(tr.tg.BNStats, tr.buffers, out.Stats)
	if k, v, bad := firstNonFinite(tr.params); bad {
		return &DivergedError{Where: where, What: "weight " + tr.tg.Params[k].Name, Value: v, Checkpoint: cfg.Checkpoint}
	}
	tr.stepTime += time.Since(s0)
	tr.steps++
	tr.pos.LossSum += out.Loss
	tr.pos.Step++
	tr.pos.Global++
	return nil
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// finish writes the weights into a copy of the model and completes the
// result; a stopped run is evaluated where it stopped.
func (tr *trainer) finish(stopped bool) (*onnxio.Model, *Result, error) {
	res := tr.res
	res.Stopped = stopped
	out, err := tr.weights()
	if err != nil {
		return nil, nil, err
	}
	res.Steps = tr.pos.Global
	if n := len(res.Epochs); n > 0 && res.Epochs[n-1].Eval != nil && !stopped {
		res.EvalAfter = res.Epochs[n-1].Eval
	} else if stopped {
		if res.EvalAfter, err = tr.evaluate(); err != nil {
			return nil, nil, err
		}
	}
	res.Seconds = time.Since(tr.t0).Seconds()
	if tr.steps > 0 {
		res.StepSeconds = tr.stepTime.Seconds() / float64(tr.steps)
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
