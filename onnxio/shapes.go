package onnxio

import (
	"fmt"
	"math"

	"github.com/onnx-cria/onnx-cria/onnxio/onnxpb"
)

// Unknown marks an element of a statically known integer value (see
// Shapes.Values) whose value is only known at run time, such as the batch
// size read by a Shape node. It is not -1 because -1 is a meaningful value in
// Reshape shapes.
const Unknown = math.MinInt64

// Shapes is the result of static shape inference over one graph.
//
// Dims[t] is the shape of tensor t with -1 for a dimension that is not known
// statically; a missing entry means the rank is unknown. Values[t] holds the
// elements of small integer tensors that can be computed without running the
// model (shape arithmetic: Shape, Gather, Concat, ... over constants), with
// Unknown for elements that depend on run-time sizes.
type Shapes struct {
	Dims   map[string][]int64
	DTypes map[string]DataType
	Values map[string][]int64
	Errors ErrorList // inconsistencies found: shapes that cannot fit together
}

// Shape returns the inferred dims of t and whether its rank is known.
func (s *Shapes) Shape(t string) ([]int64, bool) {
	d, ok := s.Dims[t]
	return d, ok
}

// maxValueElems bounds the integer tensors tracked as known values.
const maxValueElems = 64

// InferShapes propagates shapes through the main graph of m, from its
// inputs and constants, using ONNX operator semantics for the ops that
// models exported from PyTorch use. Declared value_info is used only when
// useValueInfo is true, and only where inference knows nothing.
func InferShapes(m *Model, useValueInfo bool) *Shapes {
	g := m.Graph()
	s := &Shapes{Dims: map[string][]int64{}, DTypes: map[string]DataType{}, Values: map[string][]int64{}}
	isInput := map[string]bool{}
	for _, v := range g.GetInput() {
		isInput[v.GetName()] = true
		if dt, shape, ok := TensorType(v); ok {
			s.DTypes[v.GetName()] = dt
			if shape != nil {
				s.Dims[v.GetName()] = StaticDims(shape)
			}
		}
	}
	for _, t := range g.GetInitializer() {
		if isInput[t.GetName()] {
			// A graph input of that name can replace the initializer at run
			// time: its contents are only a default, not known values, and
			// the input's declared shape is the contract.
			if _, ok := s.Dims[t.GetName()]; !ok {
				s.Dims[t.GetName()] = append([]int64{}, t.GetDims()...)
			}
			if _, ok := s.DTypes[t.GetName()]; !ok {
				s.DTypes[t.GetName()] = DataType(t.GetDataType())
			}
			continue
		}
		s.setConst(m, t.GetName(), t)
	}
	declared := map[string]*onnxpb.ValueInfoProto{}
	if useValueInfo {
		for _, v := range g.GetValueInfo() {
			declared[v.GetName()] = v
		}
	}
	opset := m.Opset("")
	for i, n := range g.GetNode() {
		s.inferNode(m, n, i, opset)
		for _, o := range n.GetOutput() {
			if _, ok := s.Dims[o]; ok || o == "" {
				continue
			}
			if v, ok := declared[o]; ok {
				if dt, shape, ok := TensorType(v); ok && shape != nil {
					s.Dims[o] = StaticDims(shape)
					if _, ok := s.DTypes[o]; !ok {
						s.DTypes[o] = dt
					}
				}
			}
		}
	}
	return s
}

func (s *Shapes) setConst(m *Model, name string, t *onnxpb.TensorProto) {
	delete(s.Values, name)
	dt := DataType(t.GetDataType())
	s.DTypes[name] = dt
	s.Dims[name] = append([]int64{}, t.GetDims()...)
	if dt.IsInt() && NumElements(t.GetDims()) <= maxValueElems && t.GetDataLocation() != onnxpb.TensorProto_EXTERNAL {
		if v, err := m.Int64s(t); err == nil {
			s.Values[name] = v
		}
	}
}

func (s *Shapes) fail(n *onnxpb.NodeProto, i int, tensor, format string, args ...any) {
	s.Errors.Add(&Error{Node: NodeLabel(n, i), Op: n.GetOpType(), Tensor: tensor, Msg: fmt.Sprintf(format, args...)})
}

// in returns the dims of input k of n, and whether they are known.
func (s *Shapes) in(n *onnxpb.NodeProto, k int) ([]int64, bool) {
	if k >= len(n.Input) || n.Input[k] == "" {
		return nil, false
	}
	d, ok := s.Dims[n.Input[k]]
	return d, ok
}

// val returns the known value of input k of n.
func (s *Shapes) val(n *onnxpb.NodeProto, k int) ([]int64, bool) {
	if k >= len(n.Input) || n.Input[k] == "" {
		return nil, false
	}
	v, ok := s.Values[n.Input[k]]
	return v, ok
}

func (s *Shapes) set(n *onnxpb.NodeProto, k int, dims []int64, dt DataType) {
	if k >= len(n.Output) || n.Output[k] == "" {
		return
	}
	// Values recorded for an earlier definition of the name (invalid, but
	// possible in a corrupt model) must not outlive it.
	delete(s.Values, n.Output[k])
	if dims != nil {
		s.Dims[n.Output[k]] = dims
	}
	if dt != Undefined {
		s.DTypes[n.Output[k]] = dt
	}
}

func (s *Shapes) setVal(n *onnxpb.NodeProto, k int, v []int64) {
	if k < len(n.Output) && v != nil && len(v) <= maxValueElems {
		s.Values[n.Output[k]] = v
	}
}

func (s *Shapes) dt(n *onnxpb.NodeProto, k int) DataType {
	if k >= len(n.Input) {
		return Undefined
	}
	return s.DTypes[n.Input[k]]
}

var unaryOps = map[string]bool{
	"Relu": true, "Sigmoid": true, "Tanh": true, "Erf": true, "Sqrt": true, "Exp": true,
	"Log": true, "Neg": true, "Abs": true, "Reciprocal": true, "Identity": true, "Clip": true,
	"LeakyRelu": true, "HardSigmoid": true, "HardSwish": true, "Gelu": true, "Softplus": true,
	"Softsign": true, "Floor": true, "Ceil": true, "Round": true, "Sign": true, "Sin": true,
	"Cos": true, "Elu": true, "Selu": true, "Celu": true, "Mish": true, "Softmax": true,
	"LogSoftmax": true, "Hardmax": true, "Dropout": true, "Trilu": true, "CumSum": true,
	"Not": true, "IsNaN": true, "IsInf": true, "BatchNormalization": true,
	"InstanceNormalization": true, "LpNormalization": true, "LRN": true, "ThresholdedRelu": true,
	"Shrink": true, "Bernoulli": true, "GroupNormalization": true,
}

var binaryOps = map[string]bool{
	"Add": true, "Sub": true, "Mul": true, "Div": true, "Pow": true, "Max": true, "Min": true,
	"Sum": true, "Mean": true, "Equal": true, "Less": true, "Greater": true, "LessOrEqual": true,
	"GreaterOrEqual": true, "And": true, "Or": true, "Xor": true, "Mod": true, "PRelu": true,
	"BitShift": true, "Where": true,
}

var boolOut = map[string]bool{
	"Equal": true, "Less": true, "Greater": true, "LessOrEqual": true, "GreaterOrEqual": true,
	"And": true, "Or": true, "Xor": true, "Not": true, "IsNaN": true, "IsInf": true,
}

func (s *Shapes) inferNode(m *Model, n *onnxpb.NodeProto, i int, opset int64) {
	if n.GetDomain() != "" && n.GetDomain() != "ai.onnx" {
		return
	}
	op := n.GetOpType()
	switch {
	case op == "Constant":
		if t := ConstantValue(n); t != nil && len(n.Output) > 0 {
			s.setConst(m, n.Output[0], t)
		}
		return
	case unaryOps[op]:
		x, ok := s.in(n, 0)
		dt := s.dt(n, 0)
		if boolOut[op] {
			dt = Bool
		}
		if ok {
			s.set(n, 0, clone(x), dt)
		} else {
			s.set(n, 0, nil, dt)
		}
		if op == "Identity" {
			if v, ok := s.val(n, 0); ok {
				s.setVal(n, 0, v)
			}
		}
		return
	case binaryOps[op]:
		s.inferBroadcast(n, i, op)
		return
	}
	switch op {
	case "Cast", "CastLike":
		x, ok := s.in(n, 0)
		dt := DataType(AttrInt(n, "to", 0))
		if op == "CastLike" {
			dt = s.dt(n, 1)
		}
		if ok {
			s.set(n, 0, clone(x), dt)
		} else {
			s.set(n, 0, nil, dt)
		}
		if v, ok := s.val(n, 0); ok && dt.IsInt() {
			s.setVal(n, 0, v)
		}
	case "Shape":
		x, ok := s.in(n, 0)
		if !ok {
			s.set(n, 0, []int64{-1}, Int64)
			return
		}
		start, end := AttrInt(n, "start", 0), AttrInt(n, "end", int64(len(x)))
		start, end = clampRange(start, end, int64(len(x)))
		v := make([]int64, 0, end-start)
		for _, d := range x[start:end] {
			if d < 0 {
				d = Unknown
			}
			v = append(v, d)
		}
		s.set(n, 0, []int64{int64(len(v))}, Int64)
		s.setVal(n, 0, v)
	case "Size":
		s.set(n, 0, []int64{}, Int64)
	case "Conv", "ConvInteger":
		s.inferConv(n, i)
	case "ConvTranspose":
		s.inferConvTranspose(n, i)
	case "MaxPool", "AveragePool", "LpPool":
		s.inferPool(n, i)
	case "GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool":
		if x, ok := s.in(n, 0); ok && len(x) >= 2 {
			out := clone(x)
			for k := 2; k < len(out); k++ {
				out[k] = 1
			}
			s.set(n, 0, out, s.dt(n, 0))
		}
	case "Gemm":
		s.inferGemm(n, i)
	case "MatMul", "MatMulInteger":
		s.inferMatMul(n, i)
	case "Flatten":
		x, ok := s.in(n, 0)
		if !ok {
			return
		}
		axis := AttrInt(n, "axis", 1)
		if axis < 0 {
			axis += int64(len(x))
		}
		if axis < 0 || axis > int64(len(x)) {
			s.fail(n, i, n.Input[0], "axis %d out of range for rank %d", AttrInt(n, "axis", 1), len(x))
			return
		}
		s.set(n, 0, []int64{prod(x[:axis]), prod(x[axis:])}, s.dt(n, 0))
	case "Reshape":
		s.inferReshape(n, i)
	case "Transpose":
		x, ok := s.in(n, 0)
		if !ok {
			return
		}
		perm := AttrInts(n, "perm")
		if perm == nil {
			for k := len(x) - 1; k >= 0; k-- {
				perm = append(perm, int64(k))
			}
		}
		if len(perm) != len(x) {
			s.fail(n, i, n.Input[0], "perm %v does not match rank %d", perm, len(x))
			return
		}
		out := make([]int64, len(x))
		for k, p := range perm {
			if p < 0 || p >= int64(len(x)) {
				s.fail(n, i, n.Input[0], "perm %v out of range", perm)
				return
			}
			out[k] = x[p]
		}
		s.set(n, 0, out, s.dt(n, 0))
		if v, ok := s.val(n, 0); ok {
			s.setVal(n, 0, stridedValues(v, x, out, func(_ int, j int64) int64 { return j }, perm...))
		}
	case "Concat":
		s.inferConcat(n, i)
	case "Split":
		s.inferSplit(n, i, opset)
	case "Slice":
		s.inferSlice(n, i)
	case "Gather":
		s.inferGather(n, i)
	case "Unsqueeze":
		s.inferUnsqueeze(n, i, opset)
	case "Squeeze":
		s.inferSqueeze(n, i, opset)
	case "ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
		"ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare", "ArgMax", "ArgMin":
		s.inferReduce(n, i, opset)
	case "LayerNormalization", "SimplifiedLayerNormalization", "RMSNormalization":
		if x, ok := s.in(n, 0); ok {
			s.set(n, 0, clone(x), s.dt(n, 0))
		}
	case "Expand":
		x, ok1 := s.in(n, 0)
		v, ok2 := s.val(n, 1)
		if ok1 && ok2 {
			out, err := broadcast(x, valueDims(v))
			if err != nil {
				s.fail(n, i, n.Input[0], "%v", err)
				return
			}
			s.set(n, 0, out, s.dt(n, 0))
		} else {
			s.set(n, 0, nil, s.dt(n, 0))
		}
	case "ConstantOfShape":
		v, ok := s.val(n, 0)
		dt := Float
		if a := Attr(n, "value"); a != nil && a.T != nil {
			dt = DataType(a.T.GetDataType())
		}
		if !ok {
			s.set(n, 0, nil, dt)
			return
		}
		dims := valueDims(v)
		s.set(n, 0, dims, dt)
		if dt.IsInt() && a1(n) {
			if total := prod(dims); total >= 0 && total <= maxValueElems {
				fill := int64(0)
				if a := Attr(n, "value"); a != nil && a.T != nil {
					if iv, err := m.Int64s(a.T); err == nil && len(iv) == 1 {
						fill = iv[0]
					}
				}
				vals := make([]int64, total)
				for k := range vals {
					vals[k] = fill
				}
				s.setVal(n, 0, vals)
			}
		}
	case "Range":
		start, ok1 := s.val(n, 0)
		limit, ok2 := s.val(n, 1)
		delta, ok3 := s.val(n, 2)
		if ok1 && ok2 && ok3 && len(start) == 1 && len(limit) == 1 && len(delta) == 1 &&
			start[0] != Unknown && limit[0] != Unknown && delta[0] != Unknown && delta[0] != 0 {
			cnt := int64(math.Ceil(float64(limit[0]-start[0]) / float64(delta[0])))
			if cnt < 0 {
				cnt = 0
			}
			s.set(n, 0, []int64{cnt}, s.dt(n, 0))
			if cnt <= maxValueElems {
				vals := make([]int64, cnt)
				for k := range vals {
					vals[k] = start[0] + int64(k)*delta[0]
				}
				s.setVal(n, 0, vals)
			}
		} else {
			s.set(n, 0, []int64{-1}, s.dt(n, 0))
		}
	case "Tile":
		x, ok1 := s.in(n, 0)
		r, ok2 := s.val(n, 1)
		if ok1 && ok2 && len(r) == len(x) {
			out := make([]int64, len(x))
			for k := range x {
				if x[k] < 0 || r[k] == Unknown {
					out[k] = -1
				} else {
					out[k] = x[k] * r[k]
				}
			}
			s.set(n, 0, out, s.dt(n, 0))
		}
	case "Pad":
		s.inferPad(n, i, opset)
	case "Einsum", "Resize", "Upsample", "NonZero", "TopK", "Compress", "NonMaxSuppression",
		"If", "Loop", "Scan", "GatherND", "ScatterND", "ScatterElements", "GatherElements", "OneHot":
		// Output shapes depend on data or subgraphs: left unknown.
		if op == "GatherElements" || op == "ScatterElements" || op == "ScatterND" {
			k := 0
			if op == "GatherElements" {
				k = 1
			}
			if x, ok := s.in(n, k); ok {
				s.set(n, 0, clone(x), s.dt(n, 0))
			}
		}
	}
}

func a1(n *onnxpb.NodeProto) bool { return len(n.Output) > 0 }

func clone(d []int64) []int64 { return append(make([]int64, 0, len(d)), d...) }

// prod multiplies dims, -1 if any is unknown.
func prod(d []int64) int64 {
	p := int64(1)
	for _, v := range d {
		if v < 0 {
			return -1
		}
		p *= v
	}
	return p
}

// valueDims turns a known shape value into dims, -1 for Unknown elements.
func valueDims(v []int64) []int64 {
	out := make([]int64, len(v))
	for k, d := range v {
		if d == Unknown || d < 0 {
			out[k] = -1
		} else {
			out[k] = d
		}
	}
	return out
}

func clampRange(start, end, r int64) (int64, int64) {
	if start < 0 {
		start += r
	}
	if end < 0 {
		end += r
	}
	start = max(0, min(start, r))
	end = max(start, min(end, r))
	return start, end
}

// broadcast applies NumPy's multidirectional broadcasting to two shapes.
func broadcast(a, b []int64) ([]int64, error) {
	r := max(len(a), len(b))
	out := make([]int64, r)
	for k := 0; k < r; k++ {
		x, y := int64(1), int64(1)
		if j := k - (r - len(a)); j >= 0 {
			x = a[j]
		}
		if j := k - (r - len(b)); j >= 0 {
			y = b[j]
		}
		switch {
		case x == y:
			out[k] = x
		case x == 1:
			out[k] = y
		case y == 1:
			out[k] = x
		case x < 0 && y < 0:
			out[k] = -1
		case x < 0:
			out[k] = y
		case y < 0:
			out[k] = x
		default:
			return nil, fmt.Errorf("shapes %v and %v do not broadcast", a, b)
		}
	}
	return out, nil
}

func (s *Shapes) inferBroadcast(n *onnxpb.NodeProto, i int, op string) {
	dt := s.dt(n, 0)
	if op == "Where" {
		dt = s.dt(n, 1)
	}
	if boolOut[op] {
		dt = Bool
	}
	var out []int64
	for k := range n.Input {
		x, ok := s.in(n, k)
		if !ok {
			s.set(n, 0, nil, dt)
			return
		}
		if k == 0 {
			out = clone(x)
			continue
		}
		var err error
		if op == "PRelu" {
			// The slope broadcasts to X (unidirectionally).
			if _, err = broadcast(out, x); err == nil {
				continue
			}
		}
		if out, err = broadcast(out, x); err != nil {
			s.fail(n, i, n.Input[k], "%v", err)
			return
		}
	}
	s.set(n, 0, out, dt)
	s.foldInts(n, op, out)
}

// foldInts evaluates integer arithmetic on known values, as found in the
// shape computations that exporters emit.
func (s *Shapes) foldInts(n *onnxpb.NodeProto, op string, out []int64) {
	if len(n.Input) < 2 || prod(out) < 0 || prod(out) > maxValueElems {
		return
	}
	vals := make([][]int64, len(n.Input))
	for k := range n.Input {
		v, ok := s.val(n, k)
		if !ok {
			return
		}
		vals[k] = v
	}
	total := int(prod(out))
	res := make([]int64, total)
	at := func(v []int64, k int) int64 {
		if len(v) == 1 {
			return v[0]
		}
		if len(v) == total {
			return v[k]
		}
		return Unknown
	}
	if op == "Where" && len(vals) < 3 {
		return // malformed: Where takes three inputs
	}
	for k := 0; k < total; k++ {
		a, b := at(vals[0], k), at(vals[1], k)
		if op == "Where" {
			c := at(vals[2], k)
			switch {
			case a == Unknown:
				res[k] = Unknown
			case a != 0:
				res[k] = b
			default:
				res[k] = c
			}
			continue
		}
		if a == Unknown || b == Unknown {
			res[k] = Unknown
			continue
		}
		switch op {
		case "Add":
			res[k] = a + b
		case "Sub":
			res[k] = a - b
		case "Mul":
			res[k] = a * b
		case "Div":
			if b == 0 {
				return
			}
			res[k] = a / b
		case "Mod":
			if b == 0 {
				return
			}
			r := a % b // sign of the dividend, which is fmod=1
			if AttrInt(n, "fmod", 0) == 0 && r != 0 && (r < 0) != (b < 0) {
				r += b // fmod=0 (default): sign of the divisor, as in Python
			}
			res[k] = r
		case "Max":
			res[k] = max(a, b)
		case "Min":
			res[k] = min(a, b)
		case "Equal":
			res[k] = b2i(a == b)
		case "Less":
			res[k] = b2i(a < b)
		case "Greater":
			res[k] = b2i(a > b)
		default:
			return
		}
	}
	s.setVal(n, 0, res)
}

func b2i(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

func (s *Shapes) inferConv(n *onnxpb.NodeProto, i int) {
	x, okx := s.in(n, 0)
	w, okw := s.in(n, 1)
	if !okx || !okw {
		return
	}
	if len(w) < 3 || len(x) != len(w) {
		s.fail(n, i, n.Input[1], "weight rank %d does not fit input rank %d", len(w), len(x))
		return
	}
	group := AttrInt(n, "group", 1)
	if group <= 0 || (w[0] >= 0 && w[0]%group != 0) {
		s.fail(n, i, n.Input[1], "%d output channels are not divisible by group %d", w[0], group)
		return
	}
	if x[1] >= 0 && w[1] >= 0 && x[1] != w[1]*group {
		s.fail(n, i, n.Input[1], "input has %d channels, weight %v with group %d expects %d", x[1], w, group, w[1]*group)
	}
	if b, ok := s.in(n, 2); ok {
		if len(b) != 1 || (b[0] >= 0 && w[0] >= 0 && b[0] != w[0]) {
			s.fail(n, i, n.Input[2], "bias shape %v does not match %d output channels", b, w[0])
		}
	}
	out := []int64{x[0], w[0]}
	out = append(out, s.spatial(n, x[2:], w[2:])...)
	s.set(n, 0, out, s.dt(n, 0))
}

// spatial computes convolution and pooling output sizes.
func (s *Shapes) spatial(n *onnxpb.NodeProto, in, kernel []int64) []int64 {
	r := len(in)
	strides := AttrInts(n, "strides")
	dil := AttrInts(n, "dilations")
	pads := AttrInts(n, "pads")
	autoPad := AttrString(n, "auto_pad", "NOTSET")
	ceil := AttrInt(n, "ceil_mode", 0) == 1
	out := make([]int64, r)
	for k := 0; k < r; k++ {
		st, dl, pb, pe := int64(1), int64(1), int64(0), int64(0)
		if k < len(strides) {
			st = strides[k]
		}
		if k < len(dil) {
			dl = dil[k]
		}
		if len(pads) == 2*r {
			pb, pe = pads[k], pads[k+r]
		}
		if in[k] < 0 || kernel[k] < 0 || st <= 0 {
			out[k] = -1
			continue
		}
		ek := dl*(kernel[k]-1) + 1
		switch autoPad {
		case "SAME_UPPER", "SAME_LOWER":
			out[k] = (in[k] + st - 1) / st
		case "VALID":
			out[k] = (in[k]-ek)/st + 1
		default:
			num := in[k] + pb + pe - ek
			if ceil {
				out[k] = (num+st-1)/st + 1
				// The last window must start inside the input or left padding.
				if (out[k]-1)*st >= in[k]+pb {
					out[k]--
				}
			} else {
				out[k] = num/st + 1
			}
		}
	}
	return out
}

func (s *Shapes) inferConvTranspose(n *onnxpb.NodeProto, i int) {
	x, okx := s.in(n, 0)
	w, okw := s.in(n, 1)
	if !okx || !okw || len(w) < 3 || len(x) != len(w) {
		return
	}
	group := AttrInt(n, "group", 1)
	if x[1] >= 0 && w[0] >= 0 && x[1] != w[0] {
		s.fail(n, i, n.Input[1], "input has %d channels, weight %v expects %d", x[1], w, w[0])
	}
	out := []int64{x[0], -1}
	if w[1] >= 0 {
		out[1] = w[1] * group
	}
	r := len(x) - 2
	strides, dil, pads := AttrInts(n, "strides"), AttrInts(n, "dilations"), AttrInts(n, "pads")
	outPad, outShape := AttrInts(n, "output_padding"), AttrInts(n, "output_shape")
	for k := 0; k < r; k++ {
		if len(outShape) == r {
			out = append(out, outShape[k])
			continue
		}
		st, dl, pb, pe, op := int64(1), int64(1), int64(0), int64(0), int64(0)
		if k < len(strides) {
			st = strides[k]
		}
		if k < len(dil) {
			dl = dil[k]
		}
		if len(pads) == 2*r {
			pb, pe = pads[k], pads[k+r]
		}
		if k < len(outPad) {
			op = outPad[k]
		}
		if x[k+2] < 0 || w[k+2] < 0 {
			out = append(out, -1)
			continue
		}
		out = append(out, st*(x[k+2]-1)+op+((w[k+2]-1)*dl+1)-pb-pe)
	}
	s.set(n, 0, out, s.dt(n, 0))
}

func (s *Shapes) inferPool(n *onnxpb.NodeProto, i int) {
	x, ok := s.in(n, 0)
	if !ok || len(x) < 3 {
		return
	}
	kernel := AttrInts(n, "kernel_shape")
	if len(kernel) != len(x)-2 {
		s.fail(n, i, n.Input[0], "kernel_shape %v does not fit input rank %d", kernel, len(x))
		return
	}
	out := append([]int64{x[0], x[1]}, s.spatial(n, x[2:], kernel)...)
	s.set(n, 0, out, s.dt(n, 0))
	s.set(n, 1, clone(out), Int64)
}

func (s *Shapes) inferGemm(n *onnxpb.NodeProto, i int) {
	a, oka := s.in(n, 0)
	b, okb := s.in(n, 1)
	if !oka || !okb {
		return
	}
	if len(a) != 2 || len(b) != 2 {
		s.fail(n, i, n.Input[1], "Gemm needs 2-D operands, got %v and %v", a, b)
		return
	}
	m, ka := a[0], a[1]
	if AttrInt(n, "transA", 0) == 1 {
		m, ka = a[1], a[0]
	}
	kb, nn := b[0], b[1]
	if AttrInt(n, "transB", 0) == 1 {
		kb, nn = b[1], b[0]
	}
	if ka >= 0 && kb >= 0 && ka != kb {
		s.fail(n, i, n.Input[1], "inner dimensions disagree: A %v, B %v (transA=%d, transB=%d)", a, b,
			AttrInt(n, "transA", 0), AttrInt(n, "transB", 0))
	}
	out := []int64{m, nn}
	if c, ok := s.in(n, 2); ok {
		if _, err := broadcast(out, c); err != nil || len(c) > 2 {
			s.fail(n, i, n.Input[2], "C %v does not broadcast to the output %v", c, out)
		}
	}
	s.set(n, 0, out, s.dt(n, 0))
}

func (s *Shapes) inferMatMul(n *onnxpb.NodeProto, i int) {
	a, oka := s.in(n, 0)
	b, okb := s.in(n, 1)
	if !oka || !okb {
		return
	}
	if len(a) == 0 || len(b) == 0 {
		s.fail(n, i, n.Input[0], "MatMul of a scalar")
		return
	}
	aa, bb := clone(a), clone(b)
	if len(aa) == 1 {
		aa = []int64{1, aa[0]}
	}
	if len(bb) == 1 {
		bb = []int64{bb[0], 1}
	}
	ka, kb := aa[len(aa)-1], bb[len(bb)-2]
	if ka >= 0 && kb >= 0 && ka != kb {
		s.fail(n, i, n.Input[1], "inner dimensions disagree: %v x %v", a, b)
		return
	}
	batch, err := broadcast(aa[:len(aa)-2], bb[:len(bb)-2])
	if err != nil {
		s.fail(n, i, n.Input[1], "batch dimensions: %v", err)
		return
	}
	out := batch
	if len(a) > 1 {
		out = append(out, aa[len(aa)-2])
	}
	if len(b) > 1 {
		out = append(out, bb[len(bb)-1])
	}
	dt := s.dt(n, 0)
	if n.GetOpType() == "MatMulInteger" {
		dt = Int32
	}
	s.set(n, 0, out, dt)
}

func (s *Shapes) inferReshape(n *onnxpb.NodeProto, i int) {
	x, okx := s.in(n, 0)
	v, okv := s.val(n, 1)
	dt := s.dt(n, 0)
	if !okv {
		// The output rank is the shape's length; sh comes from declared
		// dims, so bound it before allocating (no real tensor has
		// thousands of dimensions).
		if sh, ok := s.in(n, 1); ok && len(sh) == 1 && sh[0] >= 0 && sh[0] <= maxValueElems {
			out := make([]int64, sh[0])
			for k := range out {
				out[k] = -1
			}
			s.set(n, 0, out, dt)
		}
		return
	}
	allowZero := AttrInt(n, "allowzero", 0) == 1
	out := make([]int64, len(v))
	infer := -1
	for k, d := range v {
		switch {
		case d == Unknown:
			out[k] = -1
		case d == 0 && !allowZero:
			if okx && k < len(x) {
				out[k] = x[k]
			} else {
				out[k] = -1
			}
		case d == -1:
			if infer >= 0 {
				s.fail(n, i, n.Input[1], "shape %v has more than one -1", v)
				return
			}
			infer = k
			out[k] = -1
		case d < 0:
			s.fail(n, i, n.Input[1], "invalid shape %v", v)
			return
		default:
			out[k] = d
		}
	}
	if okx {
		total := prod(x)
		if infer >= 0 {
			rest := int64(1)
			for k, d := range out {
				if k != infer {
					if d < 0 {
						rest = -1
						break
					}
					rest *= d
				}
			}
			if total >= 0 && rest > 0 {
				if total%rest != 0 {
					s.fail(n, i, n.Input[1], "cannot reshape %v to %v", x, v)
					return
				}
				out[infer] = total / rest
			}
		} else if p := prod(out); total >= 0 && p >= 0 && p != total {
			s.fail(n, i, n.Input[1], "cannot reshape %v (%d elements) to %v", x, total, v)
			return
		}
	}
	s.set(n, 0, out, dt)
	if xv, ok := s.val(n, 0); ok {
		s.setVal(n, 0, xv)
	}
}

func (s *Shapes) inferConcat(n *onnxpb.NodeProto, i int) {
	var out []int64
	axis := AttrInt(n, "axis", 0)
	var vals []int64
	allVals := true
	for k := range n.Input {
		x, ok := s.in(n, k)
		if !ok {
			s.set(n, 0, nil, s.dt(n, 0))
			return
		}
		if v, ok := s.val(n, k); ok && allVals {
			vals = append(vals, v...)
		} else {
			allVals = false
		}
		a := axis
		if a < 0 {
			a += int64(len(x))
		}
		if a < 0 || a >= int64(len(x)) {
			s.fail(n, i, n.Input[k], "axis %d out of range for rank %d", axis, len(x))
			return
		}
		if k == 0 {
			out = clone(x)
			continue
		}
		if len(x) != len(out) {
			s.fail(n, i, n.Input[k], "rank %d differs from %d", len(x), len(out))
			return
		}
		for d := range x {
			if int64(d) == a {
				if out[d] < 0 || x[d] < 0 {
					out[d] = -1
				} else {
					out[d] += x[d]
				}
			} else if out[d] >= 0 && x[d] >= 0 && out[d] != x[d] {
				s.fail(n, i, n.Input[k], "shape %v does not match %v off the concat axis %d", x, out, axis)
				return
			} else if out[d] < 0 {
				out[d] = x[d]
			}
		}
	}
	s.set(n, 0, out, s.dt(n, 0))
	if allVals {
		s.setVal(n, 0, vals)
	}
}

func (s *Shapes) inferSplit(n *onnxpb.NodeProto, i int, opset int64) {
	x, ok := s.in(n, 0)
	if !ok {
		return
	}
	axis := AttrInt(n, "axis", 0)
	if axis < 0 {
		axis += int64(len(x))
	}
	if axis < 0 || axis >= int64(len(x)) {
		s.fail(n, i, n.Input[0], "axis out of range")
		return
	}
	split := AttrInts(n, "split")
	splitKnown := true
	if opset >= 13 && len(n.Input) > 1 && n.Input[1] != "" {
		split, splitKnown = s.val(n, 1)
		for _, v := range split {
			if v == Unknown {
				splitKnown = false
			}
		}
	}
	nout := len(n.Output)
	if !splitKnown {
		// Sizes computed at run time: only the split axis is unknown.
		for k := 0; k < nout; k++ {
			out := clone(x)
			out[axis] = -1
			s.set(n, k, out, s.dt(n, 0))
		}
		return
	}
	if split == nil && x[axis] >= 0 {
		ns := AttrInt(n, "num_outputs", int64(nout))
		if ns <= 0 {
			s.fail(n, i, n.Input[0], "split into %d outputs", ns)
			return
		}
		chunk := (x[axis] + ns - 1) / ns
		for k := 0; k < nout; k++ {
			split = append(split, min(chunk, x[axis]-int64(k)*chunk))
		}
	}
	for k := 0; k < nout; k++ {
		out := clone(x)
		if k < len(split) {
			out[axis] = split[k]
		} else {
			out[axis] = -1
		}
		s.set(n, k, out, s.dt(n, 0))
	}
	if split != nil && x[axis] >= 0 {
		var sum int64
		for _, v := range split {
			sum += v
		}
		if sum != x[axis] {
			s.fail(n, i, n.Input[0], "split %v does not add up to %d", split, x[axis])
		}
	}
}

func (s *Shapes) inferSlice(n *onnxpb.NodeProto, i int) {
	x, ok := s.in(n, 0)
	if !ok {
		return
	}
	starts, ok1 := s.val(n, 1)
	ends, ok2 := s.val(n, 2)
	if len(n.Input) < 3 { // opset < 10: attributes
		starts, ends = AttrInts(n, "starts"), AttrInts(n, "ends")
		ok1, ok2 = starts != nil, ends != nil
	}
	axes, ok3 := s.val(n, 3)
	if len(n.Input) < 3 {
		axes, ok3 = AttrInts(n, "axes"), AttrInts(n, "axes") != nil
	}
	present := func(k int) bool { return k < len(n.Input) && n.Input[k] != "" }
	if !ok1 || !ok2 || len(starts) != len(ends) || (!ok3 && present(3)) {
		// Which axes change, or by how much, is only known at run time.
		out := make([]int64, len(x))
		for k := range out {
			out[k] = -1
		}
		s.set(n, 0, out, s.dt(n, 0))
		return
	}
	if !ok3 {
		axes = make([]int64, len(starts))
		for k := range axes {
			axes[k] = int64(k)
		}
	}
	steps, ok4 := s.val(n, 4)
	if !ok4 {
		// Absent steps are 1; steps known only at run time are Unknown.
		fill := int64(1)
		if present(4) {
			fill = Unknown
		}
		steps = make([]int64, len(starts))
		for k := range steps {
			steps[k] = fill
		}
	}
	out := clone(x)
	r := int64(len(x))
	first, stride := make([]int64, r), make([]int64, r) // per axis, for values
	for k := range stride {
		stride[k] = 1
	}
	for k := range starts {
		if k >= len(axes) || k >= len(steps) {
			return
		}
		a := axes[k]
		if a < 0 {
			a += r
		}
		if a < 0 || a >= r {
			s.fail(n, i, n.Input[0], "slice axis %d out of range", axes[k])
			return
		}
		dim := x[a]
		if dim < 0 || starts[k] == Unknown || ends[k] == Unknown || steps[k] == Unknown || steps[k] == 0 {
			out[a] = -1
			continue
		}
		out[a] = sliceLen(starts[k], ends[k], steps[k], dim)
		first[a], _, stride[a] = SliceBounds(starts[k], ends[k], steps[k], dim)
	}
	s.set(n, 0, out, s.dt(n, 0))
	if v, ok := s.val(n, 0); ok {
		s.setVal(n, 0, stridedValues(v, x, out, func(a int, j int64) int64 { return first[a] + j*stride[a] }))
	}
}

// stridedValues picks elements of v (a row-major tensor of dims x) into a
// tensor of dims out, whose element j along axis a comes from element
// src(a, j) of x along the axis it maps to (the same axis, or perm[a] when
// perm is given). It returns nil when the sizes are not all known or do not
// match the values, or the result is too large to track.
func stridedValues(v, x, out []int64, src func(a int, j int64) int64, perm ...int64) []int64 {
	total := prod(out)
	if total < 0 || total > maxValueElems || prod(x) != int64(len(v)) || len(out) != len(x) {
		return nil
	}
	xstride := make([]int64, len(x))
	acc := int64(1)
	for a := len(x) - 1; a >= 0; a-- {
		xstride[a] = acc
		acc *= x[a]
	}
	res := make([]int64, 0, total)
	idx := make([]int64, len(out))
	for k := int64(0); k < total; k++ {
		flat := int64(0)
		for a, j := range idx {
			from := a
			if perm != nil {
				from = int(perm[a])
			}
			sj := src(a, j)
			if sj < 0 || sj >= x[from] {
				return nil
			}
			flat += sj * xstride[from]
		}
		res = append(res, v[flat])
		for a := len(idx) - 1; a >= 0; a-- { // next index, row-major
			if idx[a]++; idx[a] < out[a] {
				break
			}
			idx[a] = 0
		}
	}
	return res
}

// SliceBounds clamps Slice's start and end for a dimension of size dim, the
// way the ONNX Slice operator does.
func SliceBounds(start, end, step, dim int64) (int64, int64, int64) {
	if start < 0 {
		start += dim
	}
	if end < 0 {
		end += dim
	}
	if step > 0 {
		start = max(0, min(start, dim))
		end = max(0, min(end, dim))
	} else {
		start = max(-1, min(start, dim-1))
		end = max(-1, min(end, dim-1))
	}
	return start, end, step
}

func sliceLen(start, end, step, dim int64) int64 {
	st, en, sp := SliceBounds(start, end, step, dim)
	// Written so that no step, however large, overflows: the bounds are
	// within [-1, dim], the step is not.
	if sp > 0 {
		if en <= st {
			return 0
		}
		return 1 + (en-st-1)/sp
	}
	if st <= en {
		return 0
	}
	if sp < en-st { // also covers math.MinInt64, whose negation overflows
		return 1
	}
	return 1 + (st-en-1)/-sp
}

func (s *Shapes) inferGather(n *onnxpb.NodeProto, i int) {
	x, okx := s.in(n, 0)
	idx, oki := s.in(n, 1)
	if !okx || !oki {
		return
	}
	axis := AttrInt(n, "axis", 0)
	if axis < 0 {
		axis += int64(len(x))
	}
	if axis < 0 || axis >= int64(len(x)) {
		s.fail(n, i, n.Input[0], "axis %d out of range for rank %d", AttrInt(n, "axis", 0), len(x))
		return
	}
	out := append(append(clone(x[:axis]), idx...), x[axis+1:]...)
	s.set(n, 0, out, s.dt(n, 0))
	xv, ok1 := s.val(n, 0)
	iv, ok2 := s.val(n, 1)
	if ok1 && ok2 && len(x) == 1 && x[0] >= 0 && int64(len(xv)) == x[0] {
		res := make([]int64, len(iv))
		for k, j := range iv {
			if j < 0 {
				j += x[0]
			}
			if j < 0 || j >= x[0] {
				s.fail(n, i, n.Input[1], "index %d out of range for %d", iv[k], x[0])
				return
			}
			res[k] = xv[j]
		}
		s.setVal(n, 0, res)
	}
}

func (s *Shapes) axesOf(n *onnxpb.NodeProto, opset, since int64) ([]int64, bool) {
	if opset >= since {
		if len(n.Input) > 1 && n.Input[1] != "" {
			return s.val(n, 1)
		}
		return nil, true
	}
	return AttrInts(n, "axes"), true
}

func (s *Shapes) inferUnsqueeze(n *onnxpb.NodeProto, i int, opset int64) {
	x, okx := s.in(n, 0)
	axes, oka := s.axesOf(n, opset, 13)
	if !okx || !oka {
		return
	}
	r := int64(len(x) + len(axes))
	ins := map[int64]bool{}
	for _, a := range axes {
		if a < 0 {
			a += r
		}
		if a < 0 || a >= r || ins[a] {
			s.fail(n, i, n.Input[0], "bad axes %v for rank %d", axes, len(x))
			return
		}
		ins[a] = true
	}
	out := make([]int64, 0, r)
	j := 0
	for k := int64(0); k < r; k++ {
		if ins[k] {
			out = append(out, 1)
		} else {
			out = append(out, x[j])
			j++
		}
	}
	s.set(n, 0, out, s.dt(n, 0))
	if v, ok := s.val(n, 0); ok {
		s.setVal(n, 0, v)
	}
}

func (s *Shapes) inferSqueeze(n *onnxpb.NodeProto, i int, opset int64) {
	x, okx := s.in(n, 0)
	axes, oka := s.axesOf(n, opset, 13)
	if !okx || !oka {
		return
	}
	drop := map[int64]bool{}
	if len(axes) == 0 {
		for k, d := range x {
			if d == 1 {
				drop[int64(k)] = true
			} else if d < 0 {
				return // cannot tell which dims go
			}
		}
	}
	for _, a := range axes {
		if a < 0 {
			a += int64(len(x))
		}
		if a < 0 || a >= int64(len(x)) || (x[a] >= 0 && x[a] != 1) {
			s.fail(n, i, n.Input[0], "cannot squeeze axes %v of %v", axes, x)
			return
		}
		drop[a] = true
	}
	var out []int64
	for k, d := range x {
		if !drop[int64(k)] {
			out = append(out, d)
		}
	}
	if out == nil {
		out = []int64{}
	}
	s.set(n, 0, out, s.dt(n, 0))
	if v, ok := s.val(n, 0); ok {
		s.setVal(n, 0, v)
	}
}

func (s *Shapes) inferReduce(n *onnxpb.NodeProto, i int, opset int64) {
	x, ok := s.in(n, 0)
	if !ok {
		return
	}
	op := n.GetOpType()
	keep := AttrInt(n, "keepdims", 1) == 1
	dt := s.dt(n, 0)
	var axes []int64
	if op == "ArgMax" || op == "ArgMin" {
		axes = []int64{AttrInt(n, "axis", 0)}
		dt = Int64
	} else {
		since := int64(18)
		if op == "ReduceSum" {
			since = 13
		}
		var oka bool
		if axes, oka = s.axesOf(n, opset, since); !oka {
			s.set(n, 0, nil, dt)
			return
		}
		if len(axes) == 0 && AttrInt(n, "noop_with_empty_axes", 0) == 1 {
			s.set(n, 0, clone(x), dt)
			return
		}
	}
	red := map[int64]bool{}
	for _, a := range axes {
		if a < 0 {
			a += int64(len(x))
		}
		if a < 0 || a >= int64(len(x)) {
			s.fail(n, i, n.Input[0], "axes %v out of range for rank %d", axes, len(x))
			return
		}
		red[a] = true
	}
	out := []int64{}
	for k, d := range x {
		all := len(axes) == 0
		if red[int64(k)] || all {
			if keep {
				out = append(out, 1)
			}
			continue
		}
		out = append(out, d)
	}
	s.set(n, 0, out, dt)
}

func (s *Shapes) inferPad(n *onnxpb.NodeProto, i int, opset int64) {
	x, ok := s.in(n, 0)
	if !ok {
		return
	}
	pads := AttrInts(n, "pads")
	known := true
	if opset >= 11 {
		pads, known = s.val(n, 1)
	}
	if !known || (len(n.Input) > 3 && n.Input[3] != "") {
		// Pads computed at run time, or an axes input (rare): the rank
		// stays, the sizes are unknown.
		out := make([]int64, len(x))
		for k := range out {
			out[k] = -1
		}
		s.set(n, 0, out, s.dt(n, 0))
		return
	}
	r := len(x)
	if len(pads) != 2*r {
		s.fail(n, i, n.Input[0], "pads %v do not fit rank %d", pads, r)
		return
	}
	out := clone(x)
	for k := 0; k < r; k++ {
		if out[k] >= 0 && pads[k] != Unknown && pads[k+r] != Unknown {
			out[k] += pads[k] + pads[k+r]
		} else {
			out[k] = -1
		}
	}
	s.set(n, 0, out, s.dt(n, 0))
}
