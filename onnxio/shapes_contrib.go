package onnxio

import (
	"github.com/onnx-cria/onnx-cria/onnxio/onnxpb"
	"github.com/onnx-cria/onnx-cria/onnxio/ops"
)

// Shapes of ONNX Runtime's transformer ops (domain com.microsoft), as its
// contrib operator schemas define them. Only the outputs the rewriter
// follows are inferred; optional statistics and cache outputs stay unknown
// unless their shape is the input's.

func init() {
	shapeRules.Add(ops.MS, 1, (*inferer).inferSkipNorm, "SkipLayerNormalization", "SkipSimplifiedLayerNormalization")
	shapeRules.Add(ops.MS, 1, (*inferer).inferRotary, "RotaryEmbedding")
	shapeRules.Add(ops.MS, 1, (*inferer).inferAttention, "Attention")
	shapeRules.Add(ops.MS, 1, (*inferer).inferMHA, "MultiHeadAttention")
	shapeRules.Add(ops.MS, 1, (*inferer).inferGQA, "GroupQueryAttention")
	shapeRules.Add(ops.MS, 1, (*inferer).inferMatMulNBits, "MatMulNBits")
}

// inferSkipNorm: the normalised output and the sum input + skip (+ bias),
// output 3, have the input's shape.
func (s *inferer) inferSkipNorm(n *onnxpb.NodeProto, i int) {
	x := s.inDims(n, 0)
	s.set(n, 0, x, s.dt(n, 0))
	s.set(n, 3, clone(x), s.dt(n, 0))
}

func (s *inferer) inferRotary(n *onnxpb.NodeProto, i int) {
	s.set(n, 0, s.inDims(n, 0), s.dt(n, 0))
}

// inferAttention: [B, S, v_hidden_size], the third of the packed weight's
// columns unless qkv_hidden_sizes says otherwise.
func (s *inferer) inferAttention(n *onnxpb.NodeProto, i int) {
	x, ok1 := s.in(n, 0)
	w, ok2 := s.in(n, 1)
	if !ok1 || !ok2 || len(x) != 3 || len(w) != 2 {
		return
	}
	v := int64(-1)
	if sizes := AttrInts(n, "qkv_hidden_sizes"); len(sizes) == 3 {
		v = sizes[2]
	} else if w[1] >= 0 {
		v = w[1] / 3
	}
	s.set(n, 0, []int64{x[0], x[1], v}, s.dt(n, 0))
}

// inferMHA: [B, S, v_hidden_size] from the value input, or num_heads x
// head_size of a packed query.
func (s *inferer) inferMHA(n *onnxpb.NodeProto, i int) {
	q, ok := s.in(n, 0)
	if !ok {
		return
	}
	var out []int64
	switch v, okv := s.in(n, 2); {
	case len(q) == 3 && okv && len(v) == 3:
		out = []int64{q[0], q[1], v[2]}
	case len(q) == 5: // packed QKV [B, S, N, 3, H]
		out = []int64{q[0], q[1], mulDims(q[2], q[4])}
	case len(q) == 3:
		out = []int64{q[0], q[1], q[2]}
	default:
		return
	}
	s.set(n, 0, out, s.dt(n, 0))
}

// inferGQA: [B, S, num_heads x head_size]; with a packed query the head
// size is its width over num_heads + 2 kv_num_heads.
func (s *inferer) inferGQA(n *onnxpb.NodeProto, i int) {
	q, ok := s.in(n, 0)
	if !ok || len(q) != 3 {
		return
	}
	d := q[2]
	if _, hasKey := s.in(n, 1); !hasKey && d >= 0 {
		h, kv := AttrInt(n, "num_heads", 0), AttrInt(n, "kv_num_heads", 0)
		if h+2*kv > 0 {
			d = d / (h + 2*kv) * h
		}
	}
	s.set(n, 0, []int64{q[0], q[1], d}, s.dt(n, 0))
}

// inferMatMulNBits: A's shape with the last axis N.
func (s *inferer) inferMatMulNBits(n *onnxpb.NodeProto, i int) {
	a, ok := s.in(n, 0)
	if !ok || len(a) == 0 {
		return
	}
	out := clone(a)
	out[len(out)-1] = AttrInt(n, "N", -1)
	s.set(n, 0, out, s.dt(n, 0))
}

func mulDims(a, b int64) int64 {
	if a < 0 || b < 0 {
		return -1
	}
	return a * b
}

func init() {
	shapeRules.Add("", 10, (*inferer).inferQuantize, "QuantizeLinear")
	shapeRules.Add("", 10, (*inferer).inferDequantize, "DequantizeLinear")
}

// inferQuantize: x's shape, in the zero point's type (output_dtype from
// opset 21; uint8 without either).
func (s *inferer) inferQuantize(n *onnxpb.NodeProto, i int) {
	dt := s.dt(n, 2)
	if odt := DataType(AttrInt(n, "output_dtype", 0)); odt != Undefined {
		dt = odt
	}
	if dt == Undefined {
		dt = Uint8
	}
	s.set(n, 0, s.inDims(n, 0), dt)
}

// inferDequantize: x's shape, in the scale's type (output_dtype from
// opset 23).
func (s *inferer) inferDequantize(n *onnxpb.NodeProto, i int) {
	dt := s.dt(n, 1)
	if odt := DataType(AttrInt(n, "output_dtype", 0)); odt != Undefined {
		dt = odt
	}
	s.set(n, 0, s.inDims(n, 0), dt)
}
