package onnxio

import "github.com/onnx-cria/onnx-cria/onnxio/onnxpb"

func init() {
	shapeRules.Add("", 1, (*inferer).inferReduce, "ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin",
		"ReduceProd", "ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare",
		"ArgMax", "ArgMin")
	// LayerNormalization and SimplifiedLayerNormalization are also ONNX
	// Runtime's contrib ops of the default domain, from version 1.
	shapeRules.Add("", 1, (*inferer).inferNorm, "LayerNormalization", "SimplifiedLayerNormalization")
	shapeRules.Add("", 23, (*inferer).inferNorm, "RMSNormalization")
}

// inferNorm gives the normalised output the input's shape; the statistics
// outputs stay unknown.
func (s *inferer) inferNorm(n *onnxpb.NodeProto, i int) {
	if x, ok := s.in(n, 0); ok {
		s.set(n, 0, clone(x), s.dt(n, 0))
	}
}

func (s *inferer) inferReduce(n *onnxpb.NodeProto, i int) {
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
		if axes, oka = s.axesOf(n, since); !oka {
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
