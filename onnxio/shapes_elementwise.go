package onnxio

import (
	"github.com/onnx-cria/onnx-cria/onnxio/onnxpb"
	"github.com/onnx-cria/onnx-cria/onnxio/ops"
)

func init() {
	shapeRules.Add("", 1, (*inferer).inferIdentity, "Identity")
	shapeRules.Add("", 1, (*inferer).inferCast, "Cast")
	shapeRules.Add("", 15, (*inferer).inferCast, "CastLike")
	// Not elementwise, but the output has the input's shape and type.
	same := func(s *inferer, n *onnxpb.NodeProto, i int) { s.inferUnary(n, i, ops.Unary) }
	shapeRules.Add("", 1, same, "Softmax", "LogSoftmax", "Hardmax", "BatchNormalization",
		"InstanceNormalization", "LpNormalization", "LRN")
	shapeRules.Add("", 11, same, "CumSum")
	shapeRules.Add("", 14, same, "Trilu")
	shapeRules.Add("", 15, same, "Bernoulli")
	shapeRules.Add("", 18, same, "GroupNormalization")
}

// inferUnary gives output 0 the shape of input 0, and its type (boolean for
// a predicate).
func (s *inferer) inferUnary(n *onnxpb.NodeProto, i int, c ops.Class) {
	dt := s.dt(n, 0)
	if c&ops.Predicate != 0 {
		dt = Bool
	}
	s.set(n, 0, s.inDims(n, 0), dt)
}

func (s *inferer) inferIdentity(n *onnxpb.NodeProto, i int) {
	s.inferUnary(n, i, ops.Unary)
	if v, ok := s.val(n, 0); ok {
		s.setVal(n, 0, v)
	}
}

func (s *inferer) inferCast(n *onnxpb.NodeProto, i int) {
	dt := DataType(AttrInt(n, "to", 0))
	if n.GetOpType() == "CastLike" {
		dt = s.dt(n, 1)
	}
	s.set(n, 0, s.inDims(n, 0), dt)
	if v, ok := s.val(n, 0); ok && dt.IsInt() {
		s.setVal(n, 0, v)
	}
}

// inferBroadcast broadcasts all inputs together and folds integer
// arithmetic on known values.
func (s *inferer) inferBroadcast(n *onnxpb.NodeProto, i int, c ops.Class) {
	op := n.GetOpType()
	dt := s.dt(n, 0)
	if op == "Where" {
		dt = s.dt(n, 1)
	}
	if c&ops.Predicate != 0 {
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
func (s *inferer) foldInts(n *onnxpb.NodeProto, op string, out []int64) {
	if len(n.Input) < 2 || NumElements(out) < 0 || NumElements(out) > maxValueElems {
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
	total := int(NumElements(out))
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
