package autodiff

import (
	"errors"
	"fmt"
	"math"
	"path"

	"github.com/onnx-cria/onnx-cria/onnxio"
	"github.com/onnx-cria/onnx-cria/onnxio/onnxpb"
	"github.com/onnx-cria/onnx-cria/ort"
)

// TrainSpec says what a training graph computes.
type TrainSpec struct {
	Objective Objective
	// Params names the initializers to train; nil means the default set
	// (see DefaultParams).
	Params []string
	// Freeze lists glob patterns (path.Match) of initializer names to
	// leave out of the default set.
	Freeze []string
	// Hidden names tensors whose gradients dL/dt the graph also returns
	// (for first-order Taylor scores of activations).
	Hidden []string
	// Outputs makes the graph return the model's own outputs too.
	Outputs bool
	// BatchNorm is BNFrozen (the default) or BNBatch.
	BatchNorm string
}

// Param is a trainable tensor.
type Param struct {
	Name  string
	DType onnxio.DataType
	Dims  []int64
}

// TrainGraph is a model whose graph computes the loss and its gradients.
type TrainGraph struct {
	Model       *onnxio.Model
	Params      []Param  // graph inputs fed with the weights, in order
	Inputs      []string // the model's own data inputs
	Labels      string   // LabelsInput when the objective reads labels, else ""
	Teacher     string   // TeacherInput when it reads the teacher's output, else ""
	Output      string   // the model output the loss reads
	Loss        string   // LossOutput: the scalar loss
	Grads       []string // gradient outputs, one per Params entry
	Hidden      []string // gradient outputs of TrainSpec.Hidden, in order
	ModelOutput []string // the model's outputs, when TrainSpec.Outputs
	Objective   Objective
	BNStats     []BNStat      // batch-mode BatchNormalizations; their statistics follow Hidden among the outputs
	OutputDims  []int64       // static shape of Output (-1 for unknown sizes)
	Model0      *onnxio.Model // the inference model it was built from
}

// frozenSlots are inputs that hold hyper-parameters or statistics, not
// weights: an initializer read there (directly or through Identity nodes,
// which exporters use to share equal tensors) is never trained by default,
// since training it would change those uses too.
var frozenSlots = map[string][]int{
	"BatchNormalization": {3, 4}, "Pow": {1}, "Clip": {1, 2}, "Dropout": {1, 2},
	"Reshape": {1}, "Expand": {1}, "Slice": {1, 2, 3, 4}, "Pad": {1, 2, 3},
}

// nondiffSlots are inputs no gradient flows into.
var nondiffSlots = map[string][]int{
	"BatchNormalization": {3, 4}, "Clip": {1, 2}, "Dropout": {1, 2}, "Reshape": {1},
	"Expand": {1}, "Slice": {1, 2, 3, 4}, "Pad": {1, 2, 3}, "Gather": {1}, "Where": {0},
	"Tile": {1}, "Split": {1}, "Squeeze": {1}, "Unsqueeze": {1}, "ReduceSum": {1},
	"ReduceMean": {1}, "MaxPool": {}, "Resize": {1, 2, 3}, "TopK": {1},
}

func inSlots(slots []int, k int) bool {
	for _, s := range slots {
		if s == k {
			return true
		}
	}
	return false
}

// DefaultParams lists the initializers a training run updates: every
// floating-point initializer with at least two elements that the output
// depends on, that is not overridable by a graph input, and that no node
// reads as a hyper-parameter or statistic (BatchNormalization running
// statistics, a Pow exponent, Clip bounds; see frozenSlots). Constant
// nodes are never trained: exporters put buffers such as rotary tables and
// masks there.
func DefaultParams(m *onnxio.Model, output string, freeze []string) ([]string, error) {
	g := m.Graph()
	if output == "" {
		if len(g.GetOutput()) == 0 {
			return nil, fmt.Errorf("%s: the graph has no outputs", m.Name())
		}
		output = g.GetOutput()[0].GetName()
	}
	inputs := map[string]bool{}
	for _, v := range g.GetInput() {
		inputs[v.GetName()] = true
	}
	frozen := map[string]bool{}
	nodes := g.GetNode()
	for _, n := range nodes {
		for k, in := range n.GetInput() {
			if inSlots(frozenSlots[n.GetOpType()], k) {
				frozen[in] = true
			}
		}
	}
	for i := len(nodes) - 1; i >= 0; i-- {
		if n := nodes[i]; n.GetOpType() == "Identity" && len(n.Input) == 1 && len(n.Output) == 1 && frozen[n.Output[0]] {
			frozen[n.Input[0]] = true
		}
	}
	var cands []string
	for _, t := range g.GetInitializer() {
		name := t.GetName()
		if inputs[name] || !onnxio.DataType(t.GetDataType()).IsFloat() || onnxio.NumElements(t.GetDims()) < 2 || frozen[name] {
			continue
		}
		skip := false
		for _, p := range freeze {
			if ok, err := path.Match(p, name); err != nil {
				return nil, fmt.Errorf("freeze pattern %q: %v", p, err)
			} else if ok {
				skip = true
			}
		}
		if !skip {
			cands = append(cands, name)
		}
	}
	sh := onnxio.InferShapes(m, true)
	_, live := pathSets(m, sh.DTypes, []string{output}, cands)
	var out []string
	for _, c := range cands {
		if live[c] {
			out = append(out, c)
		}
	}
	return out, nil
}

// pathSets returns the tensors that depend on wrt through floating-point
// values (active) and, among those, the ones some seed depends on (live).
func pathSets(m *onnxio.Model, dtypes map[string]onnxio.DataType, seeds, wrt []string) (active, live map[string]bool) {
	g := m.Graph()
	active = map[string]bool{}
	for _, t := range wrt {
		active[t] = true
	}
	for _, n := range g.GetNode() {
		dep := false
		for _, in := range n.GetInput() {
			dep = dep || (in != "" && active[in] && isFloatish(dtypes[in]))
		}
		if r, _ := lookupRule(m, n); !dep || r.noGradient {
			continue
		}
		for _, o := range n.GetOutput() {
			if o != "" && isFloatish(dtypes[o]) {
				active[o] = true
			}
		}
	}
	live = map[string]bool{}
	for _, t := range seeds {
		live[t] = true
	}
	nodes := g.GetNode()
	for i := len(nodes) - 1; i >= 0; i-- {
		reach := false
		for _, o := range nodes[i].GetOutput() {
			reach = reach || live[o]
		}
		if !reach {
			continue
		}
		slots := nondiffSlots[nodes[i].GetOpType()]
		for k, in := range nodes[i].GetInput() {
			if in != "" && active[in] && !inSlots(slots, k) {
				live[in] = true
			}
		}
	}
	return active, live
}

// BuildTraining builds the training graph of m: m's forward pass, the
// objective's loss on one output and the backward pass, with the trainable
// initializers as graph inputs and their gradients (and those of
// spec.Hidden) as outputs. m is not modified.
func BuildTraining(m *onnxio.Model, spec TrainSpec) (*TrainGraph, error) {
	g := m.Graph()
	if g == nil || len(g.GetOutput()) == 0 {
		return nil, fmt.Errorf("%s: the model has no graph outputs", m.Name())
	}
	o := spec.Objective
	if o.Output == "" {
		o.Output = g.GetOutput()[0].GetName()
	}
	found := false
	for _, v := range g.GetOutput() {
		found = found || v.GetName() == o.Output
	}
	if !found {
		return nil, fmt.Errorf("%s: no graph output %q", m.Name(), o.Output)
	}
	params := spec.Params
	if params == nil {
		var err error
		if params, err = DefaultParams(m, o.Output, spec.Freeze); err != nil {
			return nil, err
		}
	}
	if len(params) == 0 {
		return nil, fmt.Errorf("%s: nothing to train: no floating-point initializer feeds output %q", m.Name(), o.Output)
	}
	wrt := append(append([]string{}, params...), spec.Hidden...)
	src := m
	var stats []BNStat
	switch spec.BatchNorm {
	case "", BNFrozen:
	case BNBatch:
		var err error
		if src, stats, err = batchModeBN(m); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("batch norm mode %q: want %s or %s", spec.BatchNorm, BNFrozen, BNBatch)
	}
	c, b, err := prepare(src, wrt)
	if err != nil {
		return nil, err
	}
	for _, st := range stats {
		if b.bnBatch == nil {
			b.bnBatch = map[string]bnBatch{}
		}
		b.bnBatch[st.bn.out] = st.bn
	}
	tg := &TrainGraph{Model: c, Model0: m, Output: o.Output, Loss: LossOutput, Objective: o, BNStats: stats}
	tg.OutputDims, _ = b.dims(o.Output)
	cg := c.Graph()
	for _, v := range g.GetInput() {
		if _, isInit := b.ix.Init[v.GetName()]; !isInit {
			tg.Inputs = append(tg.Inputs, v.GetName())
		}
	}
	zdt := b.dtype(o.Output)
	if o.CE != 0 {
		cg.Input = append(cg.Input, onnxio.NewValueInfo(LabelsInput, onnxio.Int64, []onnxio.Dim{{}}))
		tg.Labels = LabelsInput
	}
	if o.NeedsTeacher() {
		var shape []onnxio.Dim
		if d, ok := b.dims(o.Output); ok {
			for _, v := range d {
				shape = append(shape, onnxio.Dim{Value: v, Known: v >= 0})
			}
		}
		cg.Input = append(cg.Input, onnxio.NewValueInfo(TeacherInput, zdt, shape))
		tg.Teacher = TeacherInput
	}
	if o.LM != 0 && o.IDs == "" {
		return nil, fmt.Errorf("%s: next-token loss needs the name of the token id input", m.Name())
	}
	loss, dz, err := b.lossTerms(o, o.Output)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", m.Name(), err)
	}
	grads, err := b.backward(map[string]string{o.Output: dz}, wrt)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", m.Name(), err)
	}
	var outs []*onnxpb.ValueInfoProto
	if spec.Outputs {
		outs = append(outs, cg.Output...)
		for _, v := range cg.Output {
			tg.ModelOutput = append(tg.ModelOutput, v.GetName())
		}
	}
	cg.Output = nil
	id := "Identity"
	cg.Node = append(cg.Node, &onnxpb.NodeProto{Name: ptr(b.fresh("loss")), OpType: &id, Input: []string{loss}, Output: []string{LossOutput}})
	cg.Output = append(cg.Output, onnxio.NewValueInfo(LossOutput, zdt, []onnxio.Dim{}))
	for _, p := range params {
		dims, _ := b.dims(p)
		tg.Params = append(tg.Params, Param{Name: p, DType: b.dtype(p), Dims: dims})
		tg.Grads = append(tg.Grads, GradName(p))
		b.output(GradName(p), grads[p], p)
	}
	for _, h := range spec.Hidden {
		tg.Hidden = append(tg.Hidden, GradName(h))
		b.output(GradName(h), grads[h], h)
	}
	b.outputBNStats(tg, cg)
	cg.Output = append(cg.Output, outs...)
	return tg, nil
}

// outputBNStats makes the batch statistics of tg's batch-mode
// BatchNormalizations graph outputs named "bnstat:" and the running
// statistic's name, and points tg.BNStats at them.
func (b *builder) outputBNStats(tg *TrainGraph, cg *onnxpb.GraphProto) {
	id := "Identity"
	for k := range tg.BNStats {
		st := &tg.BNStats[k]
		for j, p := range []*string{&st.MeanOut, &st.VarOut} {
			name := "bnstat:" + st.Mean
			if j == 1 {
				name = "bnstat:" + st.Var
			}
			cg.Node = append(cg.Node, &onnxpb.NodeProto{Name: ptr(b.fresh("stat")), OpType: &id, Input: []string{*p}, Output: []string{name}})
			shape := make([]onnxio.Dim, len(st.Dims))
			for i, d := range st.Dims {
				shape[i] = onnxio.Dim{Value: d, Known: true}
			}
			cg.Output = append(cg.Output, onnxio.NewValueInfo(name, st.DType, shape))
			*p = name
		}
	}
}

// ErrNonFiniteLoss: a step's loss is NaN or infinite (Run returns the
// result too, with the loss).
var ErrNonFiniteLoss = errors.New("the loss is not finite")

// Batch is one training batch.
type Batch struct {
	Inputs  []ort.Tensor // the model's data inputs
	Labels  []int64      // class labels, when the objective has CE
	Teacher *ort.Tensor  // the teacher's output, when it has KD or MSE
}

// Stepper runs a training graph in ONNX Runtime.
type Stepper struct {
	// Reuse makes Run write the loss, gradients and statistics into
	// buffers it keeps: each StepResult is then valid only until the next
	// Run. It spares the garbage collector a copy of every gradient per
	// step.
	Reuse  bool
	bufs   []ort.Tensor
	TG     *TrainGraph
	sess   *ort.Session
	nclass int64 // classes of the CE output, for checking labels
}

// NewStepper creates the ORT session of a training graph.
func NewStepper(tg *TrainGraph, rt ort.Config) (*Stepper, error) {
	s, err := ort.NewSessionForModel(tg.Model, nil, rt)
	if err != nil {
		return nil, err
	}
	st := &Stepper{TG: tg, sess: s, nclass: -1}
	if d := tg.OutputDims; len(d) > 0 {
		st.nclass = d[len(d)-1]
	}
	return st, nil
}

// run runs the session, into the reused buffers when Reuse is set and
// every output's shape is known without the batch.
func (s *Stepper) run(feed []ort.Tensor) ([]ort.Tensor, error) {
	tg := s.TG
	if !s.Reuse || len(tg.Hidden) > 0 || len(tg.ModelOutput) > 0 {
		return s.sess.Run(feed...)
	}
	if s.bufs == nil {
		buf := func(name string, dims []int64) ort.Tensor {
			return ort.Tensor{Name: name, DType: onnxio.Float, Shape: dims, Data: make([]float32, max(1, onnxio.NumElements(dims)))}
		}
		bufs := []ort.Tensor{buf(tg.Loss, []int64{})}
		for k, p := range tg.Params {
			bufs = append(bufs, buf(tg.Grads[k], p.Dims))
		}
		for _, st := range tg.BNStats {
			bufs = append(bufs, buf(st.MeanOut, st.Dims), buf(st.VarOut, st.Dims))
		}
		outs := s.sess.Outputs()
		if len(bufs) != len(outs) {
			return s.sess.Run(feed...)
		}
		for i, o := range outs {
			if o.Name != bufs[i].Name || o.DType != onnxio.Float {
				return s.sess.Run(feed...)
			}
		}
		s.bufs = bufs
	}
	if err := s.sess.RunInto(s.bufs, feed...); err != nil {
		return nil, err
	}
	return s.bufs, nil
}

// Destroy releases the session.
func (s *Stepper) Destroy() error { return s.sess.Destroy() }

// StepResult is what one forward and backward pass gives.
type StepResult struct {
	Loss    float64
	Grads   [][]float32  // per parameter, in TG.Params order
	Hidden  []ort.Tensor // gradients of TrainSpec.Hidden
	Stats   [][]float32  // batch mean and variance of each TG.BNStats entry, in turn
	Outputs []ort.Tensor // model outputs, when built with Outputs
}

// Run computes the loss and gradients at the given weights (float32, in
// TG.Params order) on one batch.
func (s *Stepper) Run(params [][]float32, b Batch) (*StepResult, error) {
	tg := s.TG
	feed := append([]ort.Tensor{}, b.Inputs...)
	if tg.Labels != "" {
		if b.Labels == nil {
			return nil, fmt.Errorf("the objective needs class labels and the batch has none")
		}
		for i, l := range b.Labels {
			if l < 0 || (s.nclass > 0 && l >= s.nclass) {
				return nil, fmt.Errorf("label %d of batch row %d is outside the model's %d classes", l, i, s.nclass)
			}
		}
		feed = append(feed, ort.Tensor{Name: tg.Labels, DType: onnxio.Int64, Shape: []int64{int64(len(b.Labels))}, Data: b.Labels})
	}
	if tg.Objective.LM != 0 {
		for _, in := range b.Inputs {
			if in.Name != tg.Objective.IDs {
				continue
			}
			ids, ok := in.Data.([]int64)
			if !ok {
				break
			}
			for i, id := range ids {
				if id < 0 || (s.nclass > 0 && id >= s.nclass) {
					return nil, fmt.Errorf("token id %d at position %d of the batch is outside the vocabulary of %d", id, i, s.nclass)
				}
			}
		}
	}
	if tg.Teacher != "" {
		if b.Teacher == nil {
			return nil, fmt.Errorf("the objective needs the teacher's output and the batch has none")
		}
		t := *b.Teacher
		t.Name = tg.Teacher
		feed = append(feed, t)
	}
	if len(params) != len(tg.Params) {
		return nil, fmt.Errorf("%d weight tensors for %d parameters", len(params), len(tg.Params))
	}
	for k, p := range tg.Params {
		if p.DType != onnxio.Float {
			return nil, fmt.Errorf("parameter %q is %s; training runs float32 weights", p.Name, p.DType)
		}
		feed = append(feed, ort.Tensor{Name: p.Name, DType: onnxio.Float, Shape: p.Dims, Data: params[k]})
	}
	outs, err := s.run(feed)
	if err != nil {
		return nil, err
	}
	res := &StepResult{}
	lv, ok := outs[0].Data.([]float32)
	if !ok || len(lv) != 1 {
		return nil, fmt.Errorf("loss output is %T of shape %v", outs[0].Data, outs[0].Shape)
	}
	res.Loss = float64(lv[0])
	if math.IsNaN(res.Loss) || math.IsInf(res.Loss, 0) {
		return res, fmt.Errorf("%w: %v", ErrNonFiniteLoss, res.Loss)
	}
	k := 1
	for range tg.Params {
		g, ok := outs[k].Data.([]float32)
		if !ok {
			return nil, fmt.Errorf("gradient %s is %T", outs[k].Name, outs[k].Data)
		}
		res.Grads = append(res.Grads, g)
		k++
	}
	res.Hidden = outs[k : k+len(tg.Hidden)]
	k += len(tg.Hidden)
	for range tg.BNStats {
		for j := 0; j < 2; j++ {
			v, ok := outs[k].Data.([]float32)
			if !ok {
				return nil, fmt.Errorf("batch statistic %s is %T", outs[k].Name, outs[k].Data)
			}
			res.Stats = append(res.Stats, v)
			k++
		}
	}
	res.Outputs = outs[k:]
	return res, nil
}

// ParamValues reads the current values of the named initializers of m as
// float32.
func ParamValues(m *onnxio.Model, params []Param) ([][]float32, error) {
	ix := onnxio.NewIndex(m.Graph())
	out := make([][]float32, len(params))
	for k, p := range params {
		t := ix.Init[p.Name]
		if t == nil {
			return nil, fmt.Errorf("%s: no initializer %q", m.Name(), p.Name)
		}
		v, err := m.Float64s(t)
		if err != nil {
			return nil, err
		}
		out[k] = make([]float32, len(v))
		for i, x := range v {
			out[k][i] = float32(x)
		}
	}
	return out, nil
}

// WithParams returns a copy of m whose named initializers hold values.
func WithParams(m *onnxio.Model, params []Param, values [][]float32) (*onnxio.Model, error) {
	c := m.Clone()
	ix := onnxio.NewIndex(c.Graph())
	for k, p := range params {
		t := ix.Init[p.Name]
		if t == nil {
			return nil, fmt.Errorf("%s: no initializer %q", m.Name(), p.Name)
		}
		if int64(len(values[k])) != onnxio.NumElements(t.GetDims()) {
			return nil, fmt.Errorf("%d values for initializer %q of shape %v", len(values[k]), p.Name, t.GetDims())
		}
		v := make([]float64, len(values[k]))
		for i, x := range values[k] {
			v[i] = float64(x)
		}
		raw, err := onnxio.EncodeFloat64s(onnxio.DataType(t.GetDataType()), v)
		if err != nil {
			return nil, err
		}
		if err := onnxio.SetRawData(t, t.GetDims(), raw); err != nil {
			return nil, err
		}
	}
	c.Path, c.Size, c.Hash = "", 0, ""
	return c, nil
}
