package capture

import (
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/onnx-cria/onnx-cria/dataset"
	"github.com/onnx-cria/onnx-cria/onnxio"
	"github.com/onnx-cria/onnx-cria/onnxio/onnxpb"
	"github.com/onnx-cria/onnx-cria/ort"
	"google.golang.org/protobuf/proto"
)

// Point is one observed tensor.
type Point struct {
	Tensor string
	Axis   int  // the unit axis (not 0, the sample axis)
	R, B   int  // unit u owns positions r*n*B + u*B + j; 0 means 1
	RMS    bool // root-mean-square instead of mean
	// Project, when set, observes Tensor times columns of a constant
	// weight (plus a bias) instead of Tensor itself: values that a fused
	// op computes inside, such as the heads' values of ONNX Runtime's
	// Attention. Axis is then the product's last axis.
	Project *Projection
	// Samples, when set, says that Tensor holds the samples elsewhere than
	// on axis 0 (Axis may then be 0; see Samples).
	Samples *Samples
}

// Samples places the samples in a tensor: sample n of N at the positions
// (o*N + n)*Inner + j of Axis, for o < Outer and j < Inner. When Axis is
// also the point's unit axis (heads folded into the batch, [N*H, T, D]),
// the units fill the Inner positions, R and B laying them out there.
type Samples struct {
	Axis, Outer, Inner int
}

// Projection is the product of a point's tensor [..., Din] with columns
// [Lo, Hi) of the constant Weight [Din, Dout], plus the same columns of
// the constant Bias [Dout] when it is named.
type Projection struct {
	Weight, Bias string
	Lo, Hi       int
}

// Options control a capture run.
type Options struct {
	Batch     int    // rows per ORT run; default 64
	TokenMask string // dataset array that marks real tokens; default "attention_mask"
	Runtime   ort.Config
	Progress  func(done, total int)
	Buffers   *Buffers // memory to reuse for the result; nil allocates
}

// Result holds one M x n matrix per point, rows in dataset order.
type Result struct {
	Points  []Point
	Data    []*Matrix
	Samples int
	Seconds float64
}

// maskInput is the graph input that capture adds to feed the token mask to
// the reductions when the model does not take it itself.
const maskInput = "onnx_cria_capture_token_mask"

// plan is how one point is reduced: inside the graph, a sum over every axis
// but the sample and unit axes (of the squares for RMS, weighted by the token
// mask), declared as an output of shape [N, length]; in Go, the division by
// the number of positions summed and the averaging of each unit's blocks.
type plan struct {
	output    string
	length    int
	n         int
	tokenAxes int     // how many reduced axes are token axes
	plainSize int64   // product of the other reduced axes
	dims      []int64 // the output's shape, -1 for the samples; nil means [N, length]
}

// outDims is the shape of the output, -1 standing for the samples.
func (pl plan) outDims() []int64 {
	if pl.dims != nil {
		return pl.dims
	}
	return []int64{-1, int64(pl.length)}
}

// identity reports a plan whose output already holds the unit values:
// nothing summed, no blocks, no square root.
func (pl plan) identity(p Point) bool {
	return pl.length == pl.n && pl.plainSize == 1 && pl.tokenAxes == 0 && !p.RMS
}

// Run captures the points over every row of data.
func Run(m *onnxio.Model, points []Point, data *dataset.Set, opts Options) (*Result, error) {
	if opts.Batch <= 0 {
		opts.Batch = 64
	}
	if opts.TokenMask == "" {
		opts.TokenMask = "attention_mask"
	}
	var mask *dataset.Array
	if a := data.Get(opts.TokenMask); a != nil && a.Rank() == 2 {
		mask = a
	}
	c, plans, useMask, err := instrument(m, points, data, mask)
	if err != nil {
		return nil, err
	}
	rc := opts.Runtime
	// Many short runs in a row: threads that spin between them only take
	// CPU from the other (a refit, a second process) on small machines.
	rc.ShortLived, rc.NoSpin = true, true
	s, err := ort.NewSessionForModel(c, nil, rc) // its outputs: each plan's, once
	if err != nil {
		return nil, err
	}
	defer s.Destroy()
	var inputs []ort.Info
	for _, in := range s.Inputs() {
		if in.Name != maskInput {
			inputs = append(inputs, in)
		}
	}
	specs, err := ort.SpecsOf(inputs)
	if err != nil {
		return nil, err
	}
	b, err := data.Match(specs, "")
	if err != nil {
		return nil, err
	}
	res := &Result{Points: points, Data: make([]*Matrix, len(points))}
	for k, p := range plans {
		// finish writes every value, so recycled memory needs no zeroing.
		res.Data[k] = NewMatrix(b.N, p.n, opts.Buffers.get(b.N*p.n))
	}
	var maskVals []float64
	var tokLen int
	if mask != nil {
		maskVals = mask.AsFloat64()
		tokLen = mask.Shape[1]
	}
	outs := newOutputs(s.Outputs(), plans, points, opts.Batch)
	start := time.Now()
	if opts.Progress != nil {
		opts.Progress(0, b.N) // the stage starts now, not at its first batch's end
	}
	for batch := range b.Batches(opts.Batch) {
		in, err := ort.Feed(b, batch)
		if err != nil {
			return nil, err
		}
		if useMask {
			in = append(in, maskTensor(maskVals, tokLen, batch.Range))
		}
		bufs := outs.tensors(res, plans, batch.Range)
		if err := s.RunInto(bufs, in...); err != nil {
			return nil, fmt.Errorf("rows %d-%d: %w", batch.Start, batch.End, err)
		}
		for k, p := range plans {
			if err := finish(res.Data[k], points[k], p, bufs[outs.index[p.output]], batch.Start, maskVals, tokLen); err != nil {
				return nil, err
			}
		}
		res.Samples = batch.End
		if opts.Progress != nil {
			opts.Progress(batch.End, b.N)
		}
	}
	res.Seconds = time.Since(start).Seconds()
	return res, nil
}

// outputs places each batch's outputs: ORT writes the reductions into Go
// memory we own, an [N, n] tensor that needs no reduction straight into its
// result rows, the rest into one scratch buffer per output that every batch
// reuses.
type outputs struct {
	index   map[string]int // output name to position
	direct  []int          // point whose rows receive the output, or -1
	scratch [][]float32
	length  []int
	shape   [][]int64
	bufs    []ort.Tensor
}

// newOutputs lays out the session's outputs for batches of up to batch rows.
func newOutputs(infos []ort.Info, plans []plan, points []Point, batch int) *outputs {
	n := len(infos)
	o := &outputs{index: map[string]int{}, direct: make([]int, n), scratch: make([][]float32, n),
		length: make([]int, n), shape: make([][]int64, n), bufs: make([]ort.Tensor, n)}
	for j, info := range infos {
		o.index[info.Name] = j
		o.direct[j] = -1
		users := 0
		for k, p := range plans {
			if p.output == info.Name {
				users++
				o.length[j] = p.length
				o.shape[j] = p.outDims()
				if p.identity(points[k]) {
					o.direct[j] = k
				}
			}
		}
		if users > 1 || o.direct[j] < 0 {
			o.direct[j] = -1
			o.scratch[j] = make([]float32, batch*o.length[j])
		}
	}
	return o
}

// tensors returns the buffers that ORT fills with the outputs of rows r.
func (o *outputs) tensors(res *Result, plans []plan, r dataset.Range) []ort.Tensor {
	for j := range o.bufs {
		data := o.scratch[j]
		if k := o.direct[j]; k >= 0 {
			data = res.Data[k].data[r.Start*plans[k].n:]
		}
		sh := append([]int64{int64(r.Len())}, o.shape[j][1:]...)
		o.bufs[j] = ort.Tensor{DType: onnxio.Float, Shape: sh, Data: data[:r.Len()*o.length[j]]}
	}
	return o.bufs
}

// maskTensor is the token mask of rows r as the float input maskInput.
func maskTensor(vals []float64, tokLen int, r dataset.Range) ort.Tensor {
	mv := make([]float32, r.Len()*tokLen)
	for k := range mv {
		mv[k] = float32(vals[r.Start*tokLen+k])
	}
	return ort.Tensor{Name: maskInput, DType: onnxio.Float, Shape: []int64{int64(r.Len()), int64(tokLen)}, Data: mv}
}

// instrumenter builds the copy of a model that capture runs: the model's
// nodes plus, for each point, the nodes that reduce it to one value per
// sample and unit, declared as the copy's only outputs.
type instrumenter struct {
	m     *onnxio.Model
	g     *onnxpb.GraphProto // the copy's graph
	sh    *onnxio.Shapes
	ix    *onnxio.Index
	opset int64
	mask  *dataset.Array
	// Reductions go right after the node that makes the tensor they read,
	// so that ONNX Runtime runs them early and can reuse the tensor's
	// memory; appended at the end they would keep every observed tensor
	// alive through the whole run. front runs before every node.
	front    []*onnxpb.NodeProto
	after    map[int][]*onnxpb.NodeProto
	producer map[string]int
	inputs   map[string]bool
	maskName string // the mask as float [N, T], once made
	useMask  bool   // the mask is an input the copy adds
	tokLen   int64  // the mask's token count, -1 without one
}

// instrument returns a copy of m with the reduction nodes and outputs.
// Shapes come from m with its inputs' dynamic axes (all but the samples)
// set to the sizes of data's arrays, so that a dynamic sequence axis has
// the calibration data's length.
func instrument(m *onnxio.Model, points []Point, data *dataset.Set, mask *dataset.Array) (*onnxio.Model, []plan, bool, error) {
	c := m.Derive()
	in := &instrumenter{m: m, g: c.Graph(), sh: onnxio.InferShapes(withDataShapes(m, data), true), ix: onnxio.NewIndex(m.Graph()),
		opset: m.Opset(""), mask: mask, after: map[int][]*onnxpb.NodeProto{}, producer: map[string]int{}, inputs: map[string]bool{}, tokLen: -1}
	for _, v := range in.g.GetInput() {
		in.inputs[v.GetName()] = true
	}
	if mask != nil {
		in.tokLen = int64(mask.Shape[1])
	}
	for i, n := range in.g.GetNode() {
		for _, o := range n.GetOutput() {
			in.producer[o] = i
		}
	}
	plans := make([]plan, len(points))
	for k, p := range points {
		var err error
		if plans[k], err = in.point(k, p); err != nil {
			return nil, nil, false, err
		}
	}
	in.assemble(plans)
	return c, plans, in.useMask, nil
}

// withDataShapes is a view of m whose graph inputs have data's sizes on
// their dynamic axes other than the first.
func withDataShapes(m *onnxio.Model, data *dataset.Set) *onnxio.Model {
	if data == nil {
		return m
	}
	v := m.Derive()
	g := v.Graph()
	for k, in := range g.GetInput() {
		a := data.Get(in.GetName())
		dt, shape, ok := onnxio.TensorType(in)
		if a == nil || !ok || len(shape) != a.Rank() {
			continue
		}
		fixed := append([]onnxio.Dim(nil), shape...)
		changed := false
		for ax := 1; ax < len(fixed); ax++ {
			if !fixed[ax].Known {
				fixed[ax] = onnxio.Dim{Value: int64(a.Shape[ax]), Known: true}
				changed = true
			}
		}
		if changed {
			g.Input[k] = onnxio.NewValueInfo(in.GetName(), dt, fixed)
		}
	}
	return v
}

// ensureMask makes the float [N, T] mask available to the reductions, from
// the model's own input or an added one.
func (in *instrumenter) ensureMask() string {
	if in.maskName != "" {
		return in.maskName
	}
	if in.inputs[in.mask.Name] {
		in.maskName = "onnx_cria_capture_mask_f"
		in.front = append(in.front, node("Cast", []string{in.mask.Name}, in.maskName, intAttr("to", int64(onnxio.Float))))
	} else {
		in.maskName = maskInput
		in.useMask = true
		in.g.Input = append(in.g.Input, onnxio.NewValueInfo(maskInput, onnxio.Float, []onnxio.Dim{{Param: "N"}, {Value: in.tokLen, Known: true}}))
	}
	return in.maskName
}

// point plans the reduction of point k and emits its nodes.
func (in *instrumenter) point(k int, p Point) (plan, error) {
	if p.Axis <= 0 && p.Samples == nil {
		return plan{}, fmt.Errorf("point %q: unit axis %d (axis 0 holds the samples)", p.Tensor, p.Axis)
	}
	dims, ok := in.sh.Shape(p.Tensor)
	if !ok {
		return plan{}, fmt.Errorf("tensor %q: shape unknown, cannot capture it", p.Tensor)
	}
	if dt := in.sh.DTypes[p.Tensor]; dt != onnxio.Float {
		return plan{}, fmt.Errorf("tensor %q is %s; capture reads float32 activations", p.Tensor, dt)
	}
	if p.Project != nil && p.Samples != nil {
		return plan{}, fmt.Errorf("point %q: a projection of a tensor whose samples are off axis 0", p.Tensor)
	}
	if p.Project != nil {
		var err error
		if p, dims, err = in.project(k, p, dims); err != nil {
			return plan{}, err
		}
	}
	if p.Samples != nil {
		var err error
		if p, dims, err = in.sampleView(k, p, dims); err != nil {
			return plan{}, err
		}
	}
	if p.Axis >= len(dims) || dims[p.Axis] <= 0 {
		return plan{}, fmt.Errorf("tensor %q has shape %v: no static unit axis %d", p.Tensor, dims, p.Axis)
	}
	r, bl := max(p.R, 1), max(p.B, 1)
	if dims[p.Axis]%int64(r*bl) != 0 {
		return plan{}, fmt.Errorf("tensor %q: axis %d has %d positions, not a multiple of %d x %d", p.Tensor, p.Axis, dims[p.Axis], r, bl)
	}
	pl := plan{output: fmt.Sprintf("onnx_cria_capture_%d", k), length: int(dims[p.Axis]), n: int(dims[p.Axis]) / (r * bl), plainSize: 1}
	pre := fmt.Sprintf("onnx_cria_capture_%d_", k)
	at, ok := in.producer[p.Tensor]
	if !ok {
		at = -1
	}
	switch {
	case spatialChannels(dims, p, in.mask != nil && hasLen(dims, in.tokLen, p.Axis)):
		return in.spatialPoint(p, pl, dims, pre, at)
	case len(dims) == 3 && p.Axis == 2 && !p.RMS && dims[1] > 0:
		return in.tokenPoint(pl, dims, pre, p.Tensor, at), nil
	}
	return in.reducePoint(p, pl, dims, pre, at)
}

// project emits the product of p's tensor with columns of a constant
// weight (and bias) right after the tensor's producer, and returns the
// point and dims of the product.
func (in *instrumenter) project(k int, p Point, dims []int64) (Point, []int64, error) {
	pr := p.Project
	pre := fmt.Sprintf("onnx_cria_capture_%d_proj", k)
	cols := func(name string, rank int) (string, error) {
		t := in.ix.Const(name)
		if t == nil || len(t.GetDims()) != rank || t.GetDims()[rank-1] < int64(pr.Hi) || pr.Lo < 0 || pr.Lo >= pr.Hi {
			return "", fmt.Errorf("tensor %q: projection by %q: not a constant of rank %d with columns [%d, %d)", p.Tensor, name, rank, pr.Lo, pr.Hi)
		}
		vals, err := in.m.Float64s(t)
		if err != nil {
			return "", err
		}
		d := t.GetDims()
		rows, width := int(onnxio.NumElements(d[:rank-1])), int(d[rank-1])
		out := make([]float64, 0, rows*(pr.Hi-pr.Lo))
		for r := 0; r < rows; r++ {
			out = append(out, vals[r*width+pr.Lo:r*width+pr.Hi]...)
		}
		raw, err := onnxio.EncodeFloat64s(onnxio.Float, out)
		if err != nil {
			return "", err
		}
		nd := append(append([]int64(nil), d[:rank-1]...), int64(pr.Hi-pr.Lo))
		c, err := onnxio.NewTensor(pre+"_"+fmt.Sprint(rank), onnxio.Float, nd, raw)
		if err != nil {
			return "", err
		}
		in.g.Initializer = append(in.g.Initializer, c)
		return c.GetName(), nil
	}
	w, err := cols(pr.Weight, 2)
	if err != nil {
		return p, nil, err
	}
	if len(dims) == 0 || dims[len(dims)-1] != in.ix.Const(pr.Weight).GetDims()[0] {
		return p, nil, fmt.Errorf("tensor %q of shape %v does not meet the weight %q", p.Tensor, dims, pr.Weight)
	}
	at, ok := in.producer[p.Tensor]
	if !ok {
		at = -1
	}
	out := pre + "_mm"
	ns := []*onnxpb.NodeProto{node("MatMul", []string{p.Tensor, w}, out)}
	if pr.Bias != "" {
		b, err := cols(pr.Bias, 1)
		if err != nil {
			return p, nil, err
		}
		ns = append(ns, node("Add", []string{out, b}, pre))
		out = pre
	}
	in.after[at] = append(in.after[at], ns...)
	in.producer[out] = at
	nd := append([]int64(nil), dims...)
	nd[len(nd)-1] = int64(pr.Hi - pr.Lo)
	p.Tensor, p.Axis, p.Project = out, len(nd)-1, nil
	return p, nd, nil
}

// spatialPoint averages a feature map's channels. GlobalAveragePool works
// on ONNX Runtime's blocked (NCHWc) layout directly, where a ReduceSum
// would first need the map reordered back to NCHW.
func (in *instrumenter) spatialPoint(p Point, pl plan, dims []int64, pre string, at int) (plan, error) {
	if onnxio.NumElements(dims[2:]) == 1 {
		// Already one value per channel (a squeeze-excite branch): the
		// tensor itself.
		pl.output = p.Tensor
	} else if chain := linearChain(in.ix, p.Tensor, len(dims)); chain != nil {
		if i, ok := in.producer[chain[0].GetInput()[0]]; ok {
			at = i
		} else {
			at = -1
		}
		ns, err := replay(in.m, in.ix, chain, pre, pl.output, in.g)
		if err != nil {
			return plan{}, fmt.Errorf("tensor %q: %w", p.Tensor, err)
		}
		in.after[at] = append(in.after[at], ns...)
	} else {
		in.after[at] = append(in.after[at], spatialMean(p.Tensor, pl.output))
	}
	// [N, C, 1, 1] as it is: a Flatten would be one more node per point and
	// batch, and the blocked layout makes ORT reorder the pooled map before
	// any NCHW consumer anyway.
	pl.dims = append([]int64{-1}, dims[1:]...)
	for ax := 2; ax < len(dims); ax++ {
		pl.dims[ax] = 1
	}
	return pl, nil // a mean already: plainSize stays 1
}

// sampleView emits, right after the producer of p's tensor, a view of it
// with the samples on axis 0: a Reshape that splits the sample axis into
// [Outer, N, Inner] (sizes of 1 left out) and, unless the samples then come
// first, a Transpose that moves them there. It returns the point and dims
// of the view; a unit axis that was the sample axis is the Inner axis.
func (in *instrumenter) sampleView(k int, p Point, dims []int64) (Point, []int64, error) {
	s := *p.Samples
	bad := func(why string) (Point, []int64, error) {
		return p, nil, fmt.Errorf("tensor %q of shape %v, samples at axis %d (outer %d, inner %d): %s", p.Tensor, dims, s.Axis, s.Outer, s.Inner, why)
	}
	if s.Axis < 0 || s.Axis >= len(dims) || s.Outer < 1 || s.Inner < 1 {
		return bad("no such sample axis")
	}
	for ax, d := range dims {
		if ax != s.Axis && d <= 0 {
			return bad(fmt.Sprintf("axis %d has no static size", ax))
		}
	}
	if d := dims[s.Axis]; d > 0 && d%int64(s.Outer*s.Inner) != 0 {
		return bad("the sample axis is not a multiple of outer x inner")
	}
	if p.Axis == s.Axis && s.Inner == 1 {
		return bad("the unit axis holds the samples and nothing else")
	}
	shape := append([]int64(nil), dims[:s.Axis]...)
	if s.Outer > 1 {
		shape = append(shape, int64(s.Outer))
	}
	n := len(shape) // the samples' axis in the view
	shape = append(shape, -1)
	if s.Inner > 1 {
		shape = append(shape, int64(s.Inner))
	}
	shape = append(shape, dims[s.Axis+1:]...)
	switch {
	case p.Axis == s.Axis:
		p.Axis = n + 1
	case p.Axis > s.Axis:
		p.Axis += len(shape) - len(dims)
	}
	at, ok := in.producer[p.Tensor]
	if !ok {
		at = -1
	}
	pre := fmt.Sprintf("onnx_cria_capture_%d_view", k)
	in.g.Initializer = append(in.g.Initializer, onnxio.NewInt64Tensor(pre+"_shape", []int64{int64(len(shape))}, shape))
	ns := []*onnxpb.NodeProto{node("Reshape", []string{p.Tensor, pre + "_shape"}, pre)}
	out := pre
	if n > 0 {
		perm := []int64{int64(n)}
		for ax := range shape {
			if ax != n {
				perm = append(perm, int64(ax))
			}
		}
		out = pre + "_t"
		ns = append(ns, node("Transpose", []string{pre}, out, intsAttr("perm", perm)))
		shape = append([]int64{-1}, slices.Delete(shape, n, n+1)...)
		if p.Axis < n {
			p.Axis++
		}
	}
	in.after[at] = append(in.after[at], ns...)
	in.producer[out] = at
	p.Tensor, p.Samples = out, nil
	return p, shape, nil
}

// tokenPoint sums token states [N, T, D] over the real tokens with one
// batched product by the mask row (or a row of ones): ONNX Runtime's GEMM
// does this far faster than a masked ReduceSum.
func (in *instrumenter) tokenPoint(pl plan, dims []int64, pre, tensor string, at int) plan {
	w := ""
	if in.mask != nil && dims[1] == in.tokLen {
		w = pre + "w"
		in.front = append(in.front, unsqueeze(in.opset, in.ensureMask(), w, []int64{1}, in.g)...)
		pl.tokenAxes = 1
	} else {
		w = pre + "ones"
		ones := make([]float64, dims[1])
		for i := range ones {
			ones[i] = 1
		}
		raw, _ := onnxio.EncodeFloat64s(onnxio.Float, ones)
		t, _ := onnxio.NewTensor(w, onnxio.Float, []int64{1, 1, dims[1]}, raw)
		in.g.Initializer = append(in.g.Initializer, t)
		pl.plainSize = dims[1]
	}
	in.after[at] = append(in.after[at], node("MatMul", []string{w, tensor}, pl.output))
	pl.dims = []int64{-1, 1, dims[2]}
	return pl
}

// reducePoint sums (for RMS, sums the squares of) every axis but the
// samples and the units, weighting token axes by the mask.
func (in *instrumenter) reducePoint(p Point, pl plan, dims []int64, pre string, at int) (plan, error) {
	emit := func(ns ...*onnxpb.NodeProto) { in.after[at] = append(in.after[at], ns...) }
	cur := p.Tensor
	var axes []int64
	for ax := 1; ax < len(dims); ax++ {
		if ax == p.Axis {
			continue
		}
		axes = append(axes, int64(ax))
		if in.mask != nil && dims[ax] == in.tokLen {
			// Broadcast the [N, T] mask onto this axis.
			var un []int64
			for a2 := 1; a2 < len(dims); a2++ {
				if a2 != ax {
					un = append(un, int64(a2))
				}
			}
			mname := fmt.Sprintf("%smask%d", pre, ax)
			mul := fmt.Sprintf("%sm%d", pre, ax)
			if ax != len(dims)-1 || len(un) > 0 {
				in.front = append(in.front, unsqueeze(in.opset, in.ensureMask(), mname, un, in.g)...)
			} else {
				mname = in.ensureMask()
			}
			emit(node("Mul", []string{cur, mname}, mul))
			cur = mul
			pl.tokenAxes++
			continue
		}
		if dims[ax] < 0 {
			return plan{}, fmt.Errorf("tensor %q: axis %d has no size that the model or the calibration data's shapes fix, so its positions cannot be counted", p.Tensor, ax)
		}
		pl.plainSize *= dims[ax]
	}
	switch {
	case len(axes) == 0 && p.RMS:
		emit(node("Mul", []string{cur, cur}, pl.output))
	case len(axes) == 0:
		// Already [N, n]: ask for the tensor itself. An Identity node would
		// copy it on every run for nothing.
		pl.output = cur
	default:
		// For RMS, ReduceSumSquare squares on the fly; the mask, applied
		// before, is 0 or 1, so masking commutes with squaring.
		op := "ReduceSum"
		if p.RMS {
			op = "ReduceSumSquare"
		}
		emit(reduceOp(op, in.opset, cur, pl.output, axes, in.g)...)
	}
	return pl, nil
}

// assemble orders the nodes and declares the plans' outputs as the copy's
// only outputs, so the session returns them without editing the graph
// again; nodes that only fed the model's own outputs (a classifier head,
// say) are left out, since ONNX Runtime would still run them.
func (in *instrumenter) assemble(plans []plan) {
	g := in.g
	nodes := append(in.front, in.after[-1]...)
	for i, n := range g.GetNode() {
		nodes = append(nodes, n)
		nodes = append(nodes, in.after[i]...)
	}
	g.Output = nil
	for _, p := range plans {
		if !slices.ContainsFunc(g.Output, func(v *onnxpb.ValueInfoProto) bool { return v.GetName() == p.output }) {
			shape := []onnxio.Dim{{Param: "N"}}
			for _, d := range p.outDims()[1:] {
				shape = append(shape, onnxio.Dim{Value: d, Known: true})
			}
			g.Output = append(g.Output, onnxio.NewValueInfo(p.output, onnxio.Float, shape))
		}
	}
	g.Node = live(nodes, g.GetOutput())
}

// live returns the nodes that outputs depend on, in their order.
func live(nodes []*onnxpb.NodeProto, outputs []*onnxpb.ValueInfoProto) []*onnxpb.NodeProto {
	need := map[string]bool{}
	for _, o := range outputs {
		need[o.GetName()] = true
	}
	keep := make([]bool, len(nodes))
	for i := len(nodes) - 1; i >= 0; i-- {
		n := nodes[i]
		if !slices.ContainsFunc(n.GetOutput(), func(o string) bool { return need[o] }) {
			continue
		}
		keep[i] = true
		for _, in := range slices.Concat(n.GetInput(), onnxio.SubgraphReads(n)) {
			need[in] = true
		}
	}
	var out []*onnxpb.NodeProto
	for i, n := range nodes {
		if keep[i] {
			out = append(out, n)
		}
	}
	return out
}

// linearChain finds a Conv that is pointwise or shiftable, followed only by
// per-channel affine nodes with constant operands (BatchNormalization, or
// Add, Sub, Mul, Div by a constant), that makes tensor, a feature map of the
// given rank, and returns the nodes, Conv first. The spatial mean of such a
// tensor follows from spatial means of the Conv's input (see replay), so
// capture need not read the tensor at all: another reader would stop ONNX
// Runtime from fusing the activation that follows into the Conv.
func linearChain(ix *onnxio.Index, tensor string, rank int) []*onnxpb.NodeProto {
	var chain []*onnxpb.NodeProto
	for {
		n := ix.ProducerNode(tensor)
		if n == nil || n.GetDomain() != "" || len(n.GetOutput()) != 1 {
			return nil
		}
		chain = append([]*onnxpb.NodeProto{n}, chain...)
		in := n.GetInput()
		switch n.GetOpType() {
		case "Conv":
			if !pointwise(ix, n) && !shiftable(ix, n) {
				return nil
			}
			return chain
		case "BatchNormalization":
			for _, a := range n.GetAttribute() {
				if a.GetName() == "training_mode" && a.GetI() != 0 {
					return nil
				}
			}
			for _, c := range in[1:] {
				if !ix.IsConst(c) {
					return nil
				}
			}
		case "Add", "Sub", "Mul", "Div":
			if len(in) != 2 || ix.IsConst(in[0]) || !perChannel(ix.Const(in[1]), rank) {
				return nil
			}
		default:
			return nil
		}
		tensor = in[0]
	}
}

// pointwise reports a Conv whose every output position reads one input
// position: 1x1 kernel, stride 1, no padding.
func pointwise(ix *onnxio.Index, n *onnxpb.NodeProto) bool {
	if len(n.GetInput()) < 2 {
		return false
	}
	w := ix.Const(n.GetInput()[1])
	if w == nil || len(w.GetDims()) < 3 || (len(n.GetInput()) > 2 && n.GetInput()[2] != "" && !ix.IsConst(n.GetInput()[2])) {
		return false
	}
	for _, d := range w.GetDims()[2:] {
		if d != 1 {
			return false
		}
	}
	for _, a := range n.GetAttribute() {
		want := int64(-1)
		switch a.GetName() {
		case "strides":
			want = 1
		case "pads":
			want = 0
		}
		for _, v := range a.GetInts() {
			if want >= 0 && v != want {
				return false
			}
		}
	}
	return true
}

// perChannel reports a constant that, broadcast against a feature map of
// the given rank (channels on axis 1), holds one value per channel or one
// value for all.
func perChannel(t *onnxpb.TensorProto, rank int) bool {
	if t == nil {
		return false
	}
	d := t.GetDims()
	if len(d) > rank {
		return false // it would add axes
	}
	ch := len(d) - (rank - 1) // the constant's axis that meets axis 1
	for k, v := range d {
		if v != 1 && k != ch {
			return false
		}
	}
	return true
}

// shiftable reports an ungrouped Conv with constant float weights whose
// kernel area times input channels is at most its output channels, such as
// a network's first convolution. The mean of its output over all positions
// is a 1x1 Conv of the means of its input shifted by every kernel offset,
// which a Conv with one-hot kernels produces: Cin x area channels, no more
// than the Conv's own output.
func shiftable(ix *onnxio.Index, n *onnxpb.NodeProto) bool {
	in := n.GetInput()
	if len(in) < 2 || (len(in) > 2 && in[2] != "" && !ix.IsConst(in[2])) {
		return false
	}
	w := ix.Const(in[1])
	if w == nil || w.GetDataType() != int32(onnxio.Float) || len(w.GetDims()) < 3 {
		return false
	}
	for _, a := range n.GetAttribute() {
		if a.GetName() == "group" && a.GetI() != 1 {
			return false
		}
	}
	d := w.GetDims()
	return onnxio.NumElements(d[1:]) <= d[0]
}

// replay computes the spatial mean of chain's last output from the Conv's
// input and writes it to output. For a pointwise Conv the chain runs as it is
// on the input's mean; for a shiftable one, a Conv with one-hot kernels (and
// the Conv's strides, pads and dilations) lays out every input value that
// each kernel offset meets, its mean feeds the Conv's weights reshaped to a
// 1x1 kernel, and the rest of the chain follows.
func replay(m *onnxio.Model, ix *onnxio.Index, chain []*onnxpb.NodeProto, pre, output string, g *onnxpb.GraphProto) ([]*onnxpb.NodeProto, error) {
	conv := chain[0]
	x := conv.GetInput()[0]
	if pointwise(ix, conv) {
		return append([]*onnxpb.NodeProto{spatialMean(x, pre+"in")}, replayOn(chain, pre, pre+"in", output)...), nil
	}
	w := ix.Const(conv.GetInput()[1])
	raw, err := m.RawData(w)
	if err != nil {
		return nil, err
	}
	d := w.GetDims()
	cin, area := d[1], onnxio.NumElements(d[2:])
	ones := make([]int64, len(d)-2)
	for i := range ones {
		ones[i] = 1
	}
	onehot := make([]float64, cin*area*cin*area)
	for c := int64(0); c < cin; c++ {
		for k := int64(0); k < area; k++ {
			onehot[((c*area+k)*cin+c)*area+k] = 1
		}
	}
	eraw, err := onnxio.EncodeFloat64s(onnxio.Float, onehot)
	if err != nil {
		return nil, err
	}
	e, err := onnxio.NewTensor(pre+"onehot", onnxio.Float, append([]int64{cin * area, cin}, d[2:]...), eraw)
	if err != nil {
		return nil, err
	}
	flat, err := onnxio.NewTensor(pre+"w", onnxio.Float, append([]int64{d[0], cin * area}, ones...), raw)
	if err != nil {
		return nil, err
	}
	g.Initializer = append(g.Initializer, e, flat)
	shift := proto.Clone(conv).(*onnxpb.NodeProto)
	shift.Input = []string{x, pre + "onehot"}
	shift.Output = []string{pre + "shift"}
	shift.Name = strPtr(pre + "shift")
	mix := proto.Clone(conv).(*onnxpb.NodeProto)
	mix.Input = append([]string{conv.GetInput()[0], pre + "w"}, conv.GetInput()[2:]...)
	mix.Attribute = nil // 1x1, stride 1, no padding
	out := []*onnxpb.NodeProto{shift, spatialMean(pre+"shift", pre+"in")}
	return append(out, replayOn(append([]*onnxpb.NodeProto{mix}, chain[1:]...), pre, pre+"in", output)...), nil
}

// replayOn copies chain onto input, the first node's data input replaced,
// and names the last node's output output.
func replayOn(chain []*onnxpb.NodeProto, pre, input, output string) []*onnxpb.NodeProto {
	var out []*onnxpb.NodeProto
	cur := input
	for i, n := range chain {
		c := proto.Clone(n).(*onnxpb.NodeProto)
		c.Input = append([]string{cur}, c.GetInput()[1:]...)
		cur = fmt.Sprintf("%sc%d", pre, i)
		if i == len(chain)-1 {
			cur = output
		}
		c.Output = []string{cur}
		c.Name = strPtr(cur)
		out = append(out, c)
	}
	return out
}

// spatialMean averages a feature map over its spatial dims.
func spatialMean(in, out string) *onnxpb.NodeProto {
	return node("GlobalAveragePool", []string{in}, out)
}

func node(op string, in []string, out string, attrs ...*onnxpb.AttributeProto) *onnxpb.NodeProto {
	return &onnxpb.NodeProto{OpType: &op, Input: in, Output: []string{out}, Name: strPtr(out), Attribute: attrs}
}

func strPtr(s string) *string { return &s }

func intAttr(name string, v int64) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: &name, Type: onnxpb.AttributeProto_INT.Enum(), I: &v}
}

func intsAttr(name string, v []int64) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: &name, Type: onnxpb.AttributeProto_INTS.Enum(), Ints: v}
}

// unsqueeze and reduceSum build the node in the form the opset wants
// (axes as an attribute before opset 13, as an input since).
func unsqueeze(opset int64, in, out string, axes []int64, g *onnxpb.GraphProto) []*onnxpb.NodeProto {
	if opset < 13 {
		return []*onnxpb.NodeProto{node("Unsqueeze", []string{in}, out, intsAttr("axes", axes))}
	}
	c := out + "_axes"
	g.Initializer = append(g.Initializer, onnxio.NewInt64Tensor(c, []int64{int64(len(axes))}, axes))
	return []*onnxpb.NodeProto{node("Unsqueeze", []string{in, c}, out)}
}

func reduceOp(op string, opset int64, in, out string, axes []int64, g *onnxpb.GraphProto) []*onnxpb.NodeProto {
	keep := intAttr("keepdims", 0)
	// ReduceSum takes axes as an input from opset 13, the others from 18.
	since := int64(18)
	if op == "ReduceSum" {
		since = 13
	}
	if opset < since {
		return []*onnxpb.NodeProto{node(op, []string{in}, out, intsAttr("axes", axes), keep)}
	}
	c := out + "_axes"
	g.Initializer = append(g.Initializer, onnxio.NewInt64Tensor(c, []int64{int64(len(axes))}, axes))
	return []*onnxpb.NodeProto{node(op, []string{in, c}, out, keep)}
}

// finish turns the [b, length] sums of one batch into unit means.
func finish(dst *Matrix, p Point, pl plan, t ort.Tensor, first int, mask []float64, tokLen int) error {
	x, ok := t.Data.([]float32)
	if !ok || len(t.Shape) < 2 || onnxio.NumElements(t.Shape[1:]) != int64(pl.length) {
		return fmt.Errorf("capture of %q: unexpected reduced output %s %v", p.Tensor, t.DType, t.Shape)
	}
	ns := int(t.Shape[0])
	if pl.identity(p) {
		// The values as they are (often already in place): only check them.
		for s := 0; s < ns; s++ {
			out := dst.Row(first + s)
			copy(out, x[s*pl.length:(s+1)*pl.length])
			for u, v := range out {
				if v-v != 0 {
					return fmt.Errorf("tensor %q holds NaN or infinite values for sample %d (unit %d)", p.Tensor, first+s, u)
				}
			}
		}
		return nil
	}
	bl := max(p.B, 1)
	per := float64(pl.length / pl.n) // positions per unit
	sum := make([]float64, pl.n)     // a unit's blocks add up in float64
	for s := 0; s < ns; s++ {
		row := first + s
		count := float64(pl.plainSize)
		if pl.tokenAxes > 0 {
			var real float64
			for _, v := range mask[row*tokLen : (row+1)*tokLen] {
				real += v
			}
			count *= math.Pow(real, float64(pl.tokenAxes))
		}
		in := x[s*pl.length : (s+1)*pl.length]
		if bl == 1 && pl.length == pl.n {
			for u, f := range in {
				sum[u] = float64(f)
			}
		} else {
			clear(sum)
			for pos, f := range in {
				sum[(pos%(pl.n*bl))/bl] += float64(f)
			}
		}
		out := dst.Row(row)
		for u, v := range sum {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				return fmt.Errorf("tensor %q holds NaN or infinite values for sample %d (unit %d)", p.Tensor, row, u)
			}
			if count > 0 {
				v /= count * per
			} else {
				v = 0
			}
			if p.RMS {
				v = math.Sqrt(math.Max(v, 0))
			}
			out[u] = float32(v)
		}
	}
	return nil
}

// spatialChannels reports an NCHW-style feature map observed on its channel
// axis with nothing masked: a global average pool computes its means.
func spatialChannels(dims []int64, p Point, masked bool) bool {
	if p.Axis != 1 || p.RMS || masked || len(dims) < 3 {
		return false
	}
	for _, d := range dims[2:] {
		if d <= 0 {
			return false
		}
	}
	return true
}

// hasLen reports whether an axis other than 0 and skip has length n.
func hasLen(dims []int64, n int64, skip int) bool {
	for ax := 1; ax < len(dims); ax++ {
		if ax != skip && dims[ax] == n {
			return true
		}
	}
	return false
}
