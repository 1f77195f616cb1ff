package onnxio

import (
	"fmt"
	"math"

	"github.com/onnx-cria/onnx-cria/onnxio/onnxpb"
	"github.com/onnx-cria/onnx-cria/onnxio/ops"
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
	inf := &inferer{Shapes: s, m: m, opsets: map[string]int64{}}
	for i, n := range g.GetNode() {
		inf.inferNode(n, i)
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

// in2 returns the dims of inputs 0 and 1 of n, and whether both are known.
func (s *Shapes) in2(n *onnxpb.NodeProto) ([]int64, []int64, bool) {
	a, oka := s.in(n, 0)
	b, okb := s.in(n, 1)
	return a, b, oka && okb
}

// inDims returns a copy of the dims of input k of n, nil if unknown.
func (s *Shapes) inDims(n *onnxpb.NodeProto, k int) []int64 {
	if x, ok := s.in(n, k); ok {
		return clone(x)
	}
	return nil
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

// inferer carries what shape rules need besides the shapes: the model
// (for constant values) and the opset version of the node's domain.
type inferer struct {
	*Shapes
	m      *Model
	opset  int64            // of the node being inferred
	opsets map[string]int64 // by domain, as the model imports them
}

// A shapeRule sets the shapes, element types and known values of node n's
// outputs (n is node i of the graph).
type shapeRule func(s *inferer, n *onnxpb.NodeProto, i int)

// shapeRules holds the ops with shape logic of their own; the others are
// inferred from their class in ops.Facts (see deriveShape). An op without
// an entry leaves its outputs unknown.
var shapeRules = ops.NewTable(deriveShape)

// deriveShape infers elementwise ops: the first input's shape, or all
// inputs broadcast together.
func deriveShape(c ops.Class) (shapeRule, bool) {
	switch {
	case c&ops.Broadcast != 0:
		return func(s *inferer, n *onnxpb.NodeProto, i int) { s.inferBroadcast(n, i, c) }, true
	case c&ops.Unary != 0:
		return func(s *inferer, n *onnxpb.NodeProto, i int) { s.inferUnary(n, i, c) }, true
	}
	return nil, false
}

func (s *inferer) inferNode(n *onnxpb.NodeProto, i int) {
	d := n.GetDomain()
	opset, ok := s.opsets[d]
	if !ok {
		opset = s.m.Opset(d)
		s.opsets[d] = opset
	}
	if r, ok := shapeRules.Lookup(d, n.GetOpType(), opset); ok {
		s.opset = opset
		r(s, n, i)
	}
}

func clone(d []int64) []int64 { return append(make([]int64, 0, len(d)), d...) }

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
