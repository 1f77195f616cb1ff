package onnxio

import (
	"encoding/json"
	"math"
	"sort"
	"strings"
	"testing"

	"github.com/onnx-cria/onnx-cria/onnxio/onnxpb"
)

// shapeCase is one graph with the shapes its tensors must get. Expected
// shapes are worked out by hand from the ONNX operator definitions; the
// comment next to each states the arithmetic.
type shapeCase struct {
	name  string
	opset int64
	g     graph
	want  map[string][]int64 // nil value: the rank must be unknown
	err   string             // substring of the one expected error ("" for none)
}

func runShapeCases(t *testing.T, cases []shapeCase) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			opset := c.opset
			if opset == 0 {
				opset = 13
			}
			s := InferShapes(c.g.model(opset), false)
			for name, want := range c.want {
				got, ok := s.Shape(name)
				if want == nil {
					if ok {
						t.Errorf("%s: shape %v, want unknown", name, got)
					}
					continue
				}
				if !ok || !equalInts(got, want) {
					t.Errorf("%s: shape %v (known %v), want %v", name, got, ok, want)
				}
			}
			switch {
			case c.err == "" && len(s.Errors) > 0:
				t.Errorf("unexpected errors: %v", s.Errors)
			case c.err != "":
				if len(s.Errors) != 1 || !strings.Contains(s.Errors[0].Error(), c.err) {
					t.Fatalf("errors %v, want one saying %q", s.Errors, c.err)
				}
				// Errors name the node and its op.
				e := s.Errors[0]
				n := c.g.nodes[len(c.g.nodes)-1]
				if e.Node != n.GetName() || e.Op != n.GetOpType() || e.Tensor == "" {
					t.Errorf("error %+v does not name node %s (%s) and a tensor", e, n.GetName(), n.GetOpType())
				}
			}
		})
	}
}

func want(kv ...any) map[string][]int64 {
	m := map[string][]int64{}
	for k := 0; k < len(kv); k += 2 {
		if kv[k+1] == nil {
			m[kv[k].(string)] = nil
			continue
		}
		m[kv[k].(string)] = kv[k+1].([]int64)
	}
	return m
}

func dims(d ...int64) []int64 { return append([]int64{}, d...) }

// one builds a graph of a single node named after its op, with inputs
// declared by shape (float) and int64 constants as initializers.
func one(op string, inputs []*onnxpb.ValueInfoProto, consts []*onnxpb.TensorProto, in, out []string, attrs ...*onnxpb.AttributeProto) graph {
	return graph{
		nodes:  []*onnxpb.NodeProto{node(op, strings.ToLower(op), in, out, attrs...)},
		inputs: inputs,
		inits:  consts,
	}
}

func TestShapesConv(t *testing.T) {
	x := func(d ...int64) *onnxpb.ValueInfoProto { return vi("x", d...) }
	runShapeCases(t, []shapeCase{
		// H: (10+1+1-3)/2+1 = 5, W: (12+1+1-3)/2+1 = 6
		{name: "pads strides", g: one("Conv", []*onnxpb.ValueInfoProto{x(1, 3, 10, 12)}, []*onnxpb.TensorProto{zeros("w", 8, 3, 3, 3), zeros("b", 8)},
			ins("x", "w", "b"), outs("y"), aInts("pads", 1, 1, 1, 1), aInts("strides", 2, 2)),
			want: want("y", dims(1, 8, 5, 6))},
		// asymmetric pads: H (10+0+2-3)/1+1 = 10, W (12+1+0-3)/1+1 = 11
		{name: "asymmetric pads", g: one("Conv", []*onnxpb.ValueInfoProto{x(1, 3, 10, 12)}, []*onnxpb.TensorProto{zeros("w", 2, 3, 3, 3)},
			ins("x", "w"), outs("y"), aInts("pads", 0, 1, 2, 0)),
			want: want("y", dims(1, 2, 10, 11))},
		// effective kernel 2*(3-1)+1 = 5 and 3*(3-1)+1 = 7: 9-5+1 = 5, 11-7+1 = 5
		{name: "dilations", g: one("Conv", []*onnxpb.ValueInfoProto{x(-1, 4, 9, 11)}, []*onnxpb.TensorProto{zeros("w", 6, 4, 3, 3)},
			ins("x", "w"), outs("y"), aInts("dilations", 2, 3)),
			want: want("y", dims(-1, 6, 5, 5))},
		// 8 input channels = 2 per group * 4 groups; 7-3+1 = 5
		{name: "groups", g: one("Conv", []*onnxpb.ValueInfoProto{x(1, 8, 7, 7)}, []*onnxpb.TensorProto{zeros("w", 16, 2, 3, 3)},
			ins("x", "w"), outs("y"), aInt("group", 4)),
			want: want("y", dims(1, 16, 5, 5))},
		{name: "depthwise", g: one("Conv", []*onnxpb.ValueInfoProto{x(1, 8, 7, 7)}, []*onnxpb.TensorProto{zeros("w", 8, 1, 3, 3), zeros("b", 8)},
			ins("x", "w", "b"), outs("y"), aInt("group", 8)),
			want: want("y", dims(1, 8, 5, 5))},
		// SAME: ceil(7/2) = 4, ceil(8/2) = 4
		{name: "SAME_UPPER", g: one("Conv", []*onnxpb.ValueInfoProto{x(1, 3, 7, 8)}, []*onnxpb.TensorProto{zeros("w", 4, 3, 3, 3)},
			ins("x", "w"), outs("y"), aString("auto_pad", "SAME_UPPER"), aInts("strides", 2, 2)),
			want: want("y", dims(1, 4, 4, 4))},
		{name: "SAME_LOWER", g: one("Conv", []*onnxpb.ValueInfoProto{x(1, 3, 7, 8)}, []*onnxpb.TensorProto{zeros("w", 4, 3, 5, 5)},
			ins("x", "w"), outs("y"), aString("auto_pad", "SAME_LOWER")),
			want: want("y", dims(1, 4, 7, 8))},
		// VALID: (7-3)/2+1 = 3, (8-3)/2+1 = 3
		{name: "VALID", g: one("Conv", []*onnxpb.ValueInfoProto{x(1, 3, 7, 8)}, []*onnxpb.TensorProto{zeros("w", 4, 3, 3, 3)},
			ins("x", "w"), outs("y"), aString("auto_pad", "VALID"), aInts("strides", 2, 2)),
			want: want("y", dims(1, 4, 3, 3))},
		// 1-D: (20+0+2-4)/3+1 = 7
		{name: "conv1d", g: one("Conv", []*onnxpb.ValueInfoProto{x(2, 3, 20)}, []*onnxpb.TensorProto{zeros("w", 5, 3, 4)},
			ins("x", "w"), outs("y"), aInts("strides", 3), aInts("pads", 0, 2)),
			want: want("y", dims(2, 5, 7))},
		// 3-D, unknown spatial size stays unknown
		{name: "conv3d unknown", g: one("Conv", []*onnxpb.ValueInfoProto{x(1, 2, -1, 6, 6)}, []*onnxpb.TensorProto{zeros("w", 3, 2, 1, 3, 3)},
			ins("x", "w"), outs("y")),
			want: want("y", dims(1, 3, -1, 4, 4))},
		{name: "channel mismatch", g: one("Conv", []*onnxpb.ValueInfoProto{x(1, 4, 8, 8)}, []*onnxpb.TensorProto{zeros("w", 8, 3, 3, 3)},
			ins("x", "w"), outs("y")), err: "input has 4 channels"},
		{name: "bias mismatch", g: one("Conv", []*onnxpb.ValueInfoProto{x(1, 3, 8, 8)}, []*onnxpb.TensorProto{zeros("w", 8, 3, 3, 3), zeros("b", 7)},
			ins("x", "w", "b"), outs("y")), err: "bias shape [7]"},
		{name: "group does not divide", g: one("Conv", []*onnxpb.ValueInfoProto{x(1, 6, 8, 8)}, []*onnxpb.TensorProto{zeros("w", 8, 2, 3, 3)},
			ins("x", "w"), outs("y"), aInt("group", 3)), err: "not divisible by group 3"},
		{name: "rank mismatch", g: one("Conv", []*onnxpb.ValueInfoProto{x(1, 3, 8)}, []*onnxpb.TensorProto{zeros("w", 8, 3, 3, 3)},
			ins("x", "w"), outs("y")), err: "weight rank 4"},
		// ConvTranspose: 2*(4-1)+0+((3-1)*1+1)-1-1 = 7; channels 2*group 2 = 4
		{name: "ConvTranspose", g: one("ConvTranspose", []*onnxpb.ValueInfoProto{x(1, 6, 4, 4)}, []*onnxpb.TensorProto{zeros("w", 6, 2, 3, 3)},
			ins("x", "w"), outs("y"), aInts("strides", 2, 2), aInts("pads", 1, 1, 1, 1), aInt("group", 2)),
			want: want("y", dims(1, 4, 7, 7))},
	})
}

func TestShapesPool(t *testing.T) {
	x := func(d ...int64) []*onnxpb.ValueInfoProto { return []*onnxpb.ValueInfoProto{vi("x", d...)} }
	runShapeCases(t, []shapeCase{
		// floor((8-3)/2)+1 = 3
		{name: "floor", g: one("MaxPool", x(1, 2, 8, 8), nil, ins("x"), outs("y"), aInts("kernel_shape", 3, 3), aInts("strides", 2, 2)),
			want: want("y", dims(1, 2, 3, 3))},
		// ceil((8-3)/2)+1 = 4; the last window starts at 6 < 8
		{name: "ceil", g: one("MaxPool", x(1, 2, 8, 8), nil, ins("x"), outs("y", "idx"), aInts("kernel_shape", 3, 3), aInts("strides", 2, 2), aInt("ceil_mode", 1)),
			want: want("y", dims(1, 2, 4, 4), "idx", dims(1, 2, 4, 4))},
		// ceil((5+1+1-2)/2)+1 = 4, but that window would start at 6 = 5+1,
		// wholly in the right padding, so 3 (PyTorch and ONNX agree)
		{name: "ceil drops window in padding", g: one("MaxPool", x(1, 1, 5, 5), nil, ins("x"), outs("y"),
			aInts("kernel_shape", 2, 2), aInts("strides", 2, 2), aInts("pads", 1, 1, 1, 1), aInt("ceil_mode", 1)),
			want: want("y", dims(1, 1, 3, 3))},
		// ceil((6-3)/2)+1 = 3 against floor 2
		{name: "avg ceil", g: one("AveragePool", x(1, 8, 6, 7), nil, ins("x"), outs("y"), aInts("kernel_shape", 3, 3), aInts("strides", 2, 2), aInt("ceil_mode", 1)),
			want: want("y", dims(1, 8, 3, 3))},
		{name: "avg floor", g: one("AveragePool", x(1, 8, 6, 7), nil, ins("x"), outs("y"), aInts("kernel_shape", 3, 3), aInts("strides", 2, 2)),
			want: want("y", dims(1, 8, 2, 3))},
		// 1-D with pads: (4+1+1-3)/1+1 = 4
		{name: "1d pads", g: one("AveragePool", x(1, 1, 4), nil, ins("x"), outs("y"), aInts("kernel_shape", 3), aInts("pads", 1, 1)),
			want: want("y", dims(1, 1, 4))},
		// dilated MaxPool: effective kernel 3, (9-3)/1+1 = 7
		{name: "dilated", g: one("MaxPool", x(1, 1, 9), nil, ins("x"), outs("y"), aInts("kernel_shape", 2), aInts("dilations", 2)),
			want: want("y", dims(1, 1, 7))},
		{name: "SAME_UPPER", g: one("MaxPool", x(1, 1, 9, 10), nil, ins("x"), outs("y"), aInts("kernel_shape", 3, 3), aInts("strides", 2, 2), aString("auto_pad", "SAME_UPPER")),
			want: want("y", dims(1, 1, 5, 5))},
		{name: "global", g: one("GlobalAveragePool", x(-1, 4, 5, 6), nil, ins("x"), outs("y")),
			want: want("y", dims(-1, 4, 1, 1))},
		{name: "kernel rank", g: one("MaxPool", x(1, 2, 8, 8), nil, ins("x"), outs("y"), aInts("kernel_shape", 3)), err: "kernel_shape [3]"},
	})
}

func TestShapesGemmMatMul(t *testing.T) {
	ab := func(a, b []int64) []*onnxpb.ValueInfoProto {
		return []*onnxpb.ValueInfoProto{vi("a", a...), vi("b", b...)}
	}
	runShapeCases(t, []shapeCase{
		{name: "gemm", g: one("Gemm", ab(dims(4, 3), dims(3, 5)), nil, ins("a", "b"), outs("y")), want: want("y", dims(4, 5))},
		{name: "gemm transA", g: one("Gemm", ab(dims(3, 4), dims(3, 5)), nil, ins("a", "b"), outs("y"), aInt("transA", 1)), want: want("y", dims(4, 5))},
		{name: "gemm transB", g: one("Gemm", ab(dims(-1, 3), dims(5, 3)), []*onnxpb.TensorProto{zeros("c", 5)}, ins("a", "b", "c"), outs("y"), aInt("transB", 1)),
			want: want("y", dims(-1, 5))},
		{name: "gemm both", g: one("Gemm", ab(dims(3, 4), dims(5, 3)), []*onnxpb.TensorProto{zeros("c", 4, 1)}, ins("a", "b", "c"), outs("y"), aInt("transA", 1), aInt("transB", 1)),
			want: want("y", dims(4, 5))},
		{name: "gemm inner", g: one("Gemm", ab(dims(4, 3), dims(4, 5)), nil, ins("a", "b"), outs("y")), err: "inner dimensions disagree"},
		{name: "gemm transB inner", g: one("Gemm", ab(dims(2, 6), dims(5, 3)), nil, ins("a", "b"), outs("y"), aInt("transB", 1)), err: "inner dimensions disagree"},
		{name: "gemm C", g: one("Gemm", ab(dims(4, 3), dims(3, 5)), []*onnxpb.TensorProto{zeros("c", 3)}, ins("a", "b", "c"), outs("y")), err: "does not broadcast"},
		{name: "gemm rank", g: one("Gemm", ab(dims(4, 3, 1), dims(3, 5)), nil, ins("a", "b"), outs("y")), err: "2-D operands"},

		{name: "matmul 3x2", g: one("MatMul", ab(dims(2, 3, 4), dims(4, 5)), nil, ins("a", "b"), outs("y")), want: want("y", dims(2, 3, 5))},
		{name: "matmul broadcast", g: one("MatMul", ab(dims(2, 1, 3, 4), dims(6, 4, 5)), nil, ins("a", "b"), outs("y")), want: want("y", dims(2, 6, 3, 5))},
		{name: "matmul 1-D left", g: one("MatMul", ab(dims(4), dims(4, 5)), nil, ins("a", "b"), outs("y")), want: want("y", dims(5))},
		{name: "matmul 1-D right", g: one("MatMul", ab(dims(3, 4), dims(4)), nil, ins("a", "b"), outs("y")), want: want("y", dims(3))},
		{name: "matmul 1-D both", g: one("MatMul", ab(dims(4), dims(4)), nil, ins("a", "b"), outs("y")), want: want("y", dims())},
		{name: "matmul 1-D batched", g: one("MatMul", ab(dims(4), dims(2, 4, 5)), nil, ins("a", "b"), outs("y")), want: want("y", dims(2, 5))},
		{name: "matmul 3-D by 1-D", g: one("MatMul", ab(dims(7, 3, 4), dims(4)), nil, ins("a", "b"), outs("y")), want: want("y", dims(7, 3))},
		{name: "matmul unknown", g: one("MatMul", ab(dims(-1, -1, 4), dims(4, 6)), nil, ins("a", "b"), outs("y")), want: want("y", dims(-1, -1, 6))},
		{name: "matmul inner", g: one("MatMul", ab(dims(2, 3), dims(4, 5)), nil, ins("a", "b"), outs("y")), err: "inner dimensions disagree"},
		{name: "matmul batch", g: one("MatMul", ab(dims(2, 3, 4), dims(3, 4, 5)), nil, ins("a", "b"), outs("y")), err: "batch dimensions"},
	})
}

func TestShapesFlattenReshapeTranspose(t *testing.T) {
	x := func(d ...int64) []*onnxpb.ValueInfoProto { return []*onnxpb.ValueInfoProto{vi("x", d...)} }
	shp := func(v ...int64) []*onnxpb.TensorProto { return []*onnxpb.TensorProto{i64s("s", v...)} }
	runShapeCases(t, []shapeCase{
		{name: "flatten", g: one("Flatten", x(2, 3, 4, 5), nil, ins("x"), outs("y")), want: want("y", dims(2, 60))},
		{name: "flatten 0", g: one("Flatten", x(2, 3, 4, 5), nil, ins("x"), outs("y"), aInt("axis", 0)), want: want("y", dims(1, 120))},
		{name: "flatten -1", g: one("Flatten", x(2, 3, 4, 5), nil, ins("x"), outs("y"), aInt("axis", -1)), want: want("y", dims(24, 5))},
		{name: "flatten rank", g: one("Flatten", x(2, 3, 4, 5), nil, ins("x"), outs("y"), aInt("axis", 4)), want: want("y", dims(120, 1))},
		{name: "flatten batch", g: one("Flatten", x(-1, 3, 4), nil, ins("x"), outs("y")), want: want("y", dims(-1, 12))},
		{name: "flatten unknown", g: one("Flatten", x(-1, 3, 4), nil, ins("x"), outs("y"), aInt("axis", 2)), want: want("y", dims(-1, 4))},
		{name: "flatten bad axis", g: one("Flatten", x(2, 3), nil, ins("x"), outs("y"), aInt("axis", 3)), err: "axis 3 out of range"},

		{name: "reshape 0 -1", g: one("Reshape", x(2, 3, 4), shp(0, -1), ins("x", "s"), outs("y")), want: want("y", dims(2, 12))},
		{name: "reshape -1", g: one("Reshape", x(2, 3, 4), shp(-1), ins("x", "s"), outs("y")), want: want("y", dims(24))},
		{name: "reshape 0 in middle", g: one("Reshape", x(2, 3, 4), shp(4, 0, 2), ins("x", "s"), outs("y")), want: want("y", dims(4, 3, 2))},
		{name: "reshape 0 0 -1 2", g: one("Reshape", x(2, 3, 4), shp(0, 0, -1, 2), ins("x", "s"), outs("y")), want: want("y", dims(2, 3, 2, 2))},
		{name: "reshape batch", g: one("Reshape", x(-1, 3, 4), shp(0, 12), ins("x", "s"), outs("y")), want: want("y", dims(-1, 12))},
		{name: "reshape batch -1", g: one("Reshape", x(-1, 3, 4), shp(-1, 6), ins("x", "s"), outs("y")), want: want("y", dims(-1, 6))},
		{name: "reshape allowzero", g: one("Reshape", x(0, 3), shp(3, 0), ins("x", "s"), outs("y"), aInt("allowzero", 1)), want: want("y", dims(3, 0))},
		{name: "reshape unknown shape", g: graph{
			nodes:  []*onnxpb.NodeProto{node("Reshape", "reshape", ins("x", "s"), outs("y"))},
			inputs: []*onnxpb.ValueInfoProto{vi("x", 2, 3), viT("s", Int64, 3)},
		}, want: want("y", dims(-1, -1, -1))},
		{name: "reshape count", g: one("Reshape", x(2, 3, 4), shp(7, 3), ins("x", "s"), outs("y")), err: "cannot reshape"},
		{name: "reshape indivisible", g: one("Reshape", x(2, 3, 4), shp(5, -1), ins("x", "s"), outs("y")), err: "cannot reshape"},
		{name: "reshape two -1", g: one("Reshape", x(2, 3, 4), shp(-1, -1), ins("x", "s"), outs("y")), err: "more than one -1"},
		{name: "reshape -2", g: one("Reshape", x(2, 3, 4), shp(-2, 12), ins("x", "s"), outs("y")), err: "invalid shape"},

		{name: "transpose", g: one("Transpose", x(2, 3, 4), nil, ins("x"), outs("y"), aInts("perm", 1, 0, 2)), want: want("y", dims(3, 2, 4))},
		{name: "transpose default", g: one("Transpose", x(2, 3, 4), nil, ins("x"), outs("y")), want: want("y", dims(4, 3, 2))},
		{name: "transpose nchw", g: one("Transpose", x(-1, 3, 4, 5), nil, ins("x"), outs("y"), aInts("perm", 0, 2, 3, 1)), want: want("y", dims(-1, 4, 5, 3))},
		{name: "transpose perm rank", g: one("Transpose", x(2, 3, 4), nil, ins("x"), outs("y"), aInts("perm", 1, 0)), err: "does not match rank"},
		{name: "transpose perm range", g: one("Transpose", x(2, 3), nil, ins("x"), outs("y"), aInts("perm", 0, 2)), err: "out of range"},
	})
}

// TestShapesComputedReshape: the shape of a view(x.size(0), -1) as exporters
// write it, through Shape -> Gather -> Unsqueeze -> Concat, in opset 11
// (axes attribute) and 13 (axes input).
func TestShapesComputedReshape(t *testing.T) {
	for _, opset := range []int64{11, 13} {
		for _, batch := range []int64{2, -1} {
			unsq := node("Unsqueeze", "unsq", ins("g"), outs("u"), aInts("axes", 0))
			inits := []*onnxpb.TensorProto{i64scalar("zero", 0), i64s("minus1", -1), i64s("ax0", 0)}
			if opset >= 13 {
				unsq = node("Unsqueeze", "unsq", ins("g", "ax0"), outs("u"))
			}
			g := graph{
				nodes: []*onnxpb.NodeProto{
					node("Shape", "shape", ins("x"), outs("s")),
					node("Gather", "gather", ins("s", "zero"), outs("g"), aInt("axis", 0)),
					unsq,
					node("Concat", "concat", ins("u", "minus1"), outs("c"), aInt("axis", 0)),
					node("Reshape", "reshape", ins("x", "c"), outs("y")),
				},
				inputs: []*onnxpb.ValueInfoProto{vi("x", batch, 3, 4)},
				inits:  inits,
			}
			s := InferShapes(g.model(opset), false)
			if len(s.Errors) > 0 {
				t.Fatal(s.Errors)
			}
			b := batch
			if b < 0 {
				b = Unknown
			}
			checkVal := func(name string, wantDims, wantVals []int64) {
				t.Helper()
				if d, _ := s.Shape(name); !equalInts(d, wantDims) || !equalInts(s.Values[name], wantVals) {
					t.Errorf("opset %d batch %d: %s: dims %v values %v, want %v %v", opset, batch, name, d, s.Values[name], wantDims, wantVals)
				}
			}
			checkVal("s", dims(3), dims(b, 3, 4))
			checkVal("g", dims(), dims(b))
			checkVal("u", dims(1), dims(b))
			checkVal("c", dims(2), dims(b, -1))
			if s.DTypes["s"] != Int64 || s.DTypes["y"] != Float {
				t.Errorf("dtypes %v", s.DTypes)
			}
			// Statically: [2, 12]. With a run-time batch, the first element is
			// Unknown and Values cannot say it equals x's first dim, so the -1
			// cannot be resolved either: [-1, -1] is the exact answer
			// available, and it must not be a wrong one.
			wantY := dims(2, 12)
			if batch < 0 {
				wantY = dims(-1, -1)
			}
			if d, _ := s.Shape("y"); !equalInts(d, wantY) {
				t.Errorf("opset %d batch %d: y = %v, want %v", opset, batch, d, wantY)
			}
		}
	}
}

func TestShapesConcatSplit(t *testing.T) {
	two := func(a, b []int64) []*onnxpb.ValueInfoProto {
		return []*onnxpb.ValueInfoProto{vi("a", a...), vi("b", b...)}
	}
	x := func(d ...int64) []*onnxpb.ValueInfoProto { return []*onnxpb.ValueInfoProto{vi("x", d...)} }
	runShapeCases(t, []shapeCase{
		{name: "concat", g: one("Concat", two(dims(2, 3), dims(2, 5)), nil, ins("a", "b"), outs("y"), aInt("axis", 1)), want: want("y", dims(2, 8))},
		{name: "concat -1", g: one("Concat", two(dims(2, 3), dims(2, 5)), nil, ins("a", "b"), outs("y"), aInt("axis", -1)), want: want("y", dims(2, 8))},
		{name: "concat unknown", g: one("Concat", two(dims(-1, 3), dims(2, 3)), nil, ins("a", "b"), outs("y"), aInt("axis", 0)), want: want("y", dims(-1, 3))},
		{name: "concat fills", g: one("Concat", two(dims(-1, 3), dims(2, 4)), nil, ins("a", "b"), outs("y"), aInt("axis", 1)), want: want("y", dims(2, 7))},
		{name: "concat mismatch", g: one("Concat", two(dims(2, 3), dims(3, 5)), nil, ins("a", "b"), outs("y"), aInt("axis", 1)), err: "off the concat axis"},
		{name: "concat rank", g: one("Concat", two(dims(2, 3), dims(2, 3, 1)), nil, ins("a", "b"), outs("y"), aInt("axis", 1)), err: "rank 3 differs"},
		{name: "concat axis", g: one("Concat", two(dims(2, 3), dims(2, 3)), nil, ins("a", "b"), outs("y"), aInt("axis", 2)), err: "axis 2 out of range"},

		{name: "split attr", opset: 11, g: one("Split", x(5, 4), nil, ins("x"), outs("p", "q"), aInts("split", 2, 3)),
			want: want("p", dims(2, 4), "q", dims(3, 4))},
		{name: "split input", opset: 13, g: one("Split", x(4, 5), []*onnxpb.TensorProto{i64s("sp", 1, 4)}, ins("x", "sp"), outs("p", "q"), aInt("axis", -1)),
			want: want("p", dims(4, 1), "q", dims(4, 4))},
		{name: "split equal", opset: 13, g: one("Split", x(6, 4), nil, ins("x"), outs("p", "q", "r")),
			want: want("p", dims(2, 4), "q", dims(2, 4), "r", dims(2, 4))},
		// opset 18 num_outputs: ceil(7/3) = 3, so 3, 3, 1
		{name: "split num_outputs", opset: 18, g: one("Split", x(7), nil, ins("x"), outs("p", "q", "r"), aInt("num_outputs", 3)),
			want: want("p", dims(3), "q", dims(3), "r", dims(1))},
		{name: "split unknown axis", opset: 13, g: one("Split", x(-1, 4), nil, ins("x"), outs("p", "q")),
			want: want("p", dims(-1, 4), "q", dims(-1, 4))},
		{name: "split sum", opset: 11, g: one("Split", x(5, 4), nil, ins("x"), outs("p", "q"), aInts("split", 2, 2)), err: "does not add up to 5"},
		{name: "split no outputs", opset: 13, g: one("Split", x(6), nil, ins("x"), nil), err: "split into 0 outputs"},
		{name: "split unknown sizes", opset: 13, g: graph{
			nodes:  []*onnxpb.NodeProto{node("Split", "split", ins("x", "sp"), outs("p", "q"), aInt("axis", 1))},
			inputs: []*onnxpb.ValueInfoProto{vi("x", 2, 6), viT("sp", Int64, 2)},
		}, want: want("p", dims(2, -1), "q", dims(2, -1))},
	})
}

func TestShapesSliceGather(t *testing.T) {
	x := func(d ...int64) []*onnxpb.ValueInfoProto { return []*onnxpb.ValueInfoProto{vi("x", d...)} }
	sl := func(starts, ends, axes, steps []int64) []*onnxpb.TensorProto {
		ts := []*onnxpb.TensorProto{i64s("st", starts...), i64s("en", ends...)}
		if axes != nil {
			ts = append(ts, i64s("ax", axes...))
		}
		if steps != nil {
			ts = append(ts, i64s("sp", steps...))
		}
		return ts
	}
	slIns := func(n int) []string { return []string{"x", "st", "en", "ax", "sp"}[:n] }
	const big = math.MaxInt64
	runShapeCases(t, []shapeCase{
		// dim 0: [1, 10-1) = 8; dim 2: [30-5, min(100, 30)) = 5
		{name: "negative and clamped", g: one("Slice", x(10, 20, 30), sl(dims(1, -5), dims(-1, 100), dims(0, 2), nil), slIns(4), outs("y")),
			want: want("y", dims(8, 20, 5))},
		// start -100 clamps to 0: all 20
		{name: "clamped start", g: one("Slice", x(10, 20), sl(dims(-100), dims(big), dims(1), nil), slIns(4), outs("y")),
			want: want("y", dims(10, 20))},
		// reversal: start -1 -> 19, end -big clamps to -1: 20 elements
		{name: "reverse", g: one("Slice", x(10, 20), sl(dims(-1), dims(-big), dims(-1), dims(-1)), slIns(5), outs("y")),
			want: want("y", dims(10, 20))},
		// step 3 over [0, 10): 0 3 6 9
		{name: "step 3", g: one("Slice", x(10), sl(dims(0), dims(big), nil, nil), slIns(3), outs("y")),
			want: want("y", dims(10))},
		{name: "step 3 explicit", g: one("Slice", x(10), sl(dims(0), dims(big), dims(0), dims(3)), slIns(5), outs("y")),
			want: want("y", dims(4))},
		// step -2 from 8 down to (not including) 1: 8 6 4 2
		{name: "step -2", g: one("Slice", x(10), sl(dims(8), dims(1), dims(0), dims(-2)), slIns(5), outs("y")),
			want: want("y", dims(4))},
		// step -3 from the clamped start 9 to the start: 9 6 3 0
		{name: "step -3 clamped", g: one("Slice", x(10), sl(dims(big), dims(-big), dims(0), dims(-3)), slIns(5), outs("y")),
			want: want("y", dims(4))},
		{name: "empty", g: one("Slice", x(10, 4), sl(dims(7), dims(3), dims(0), nil), slIns(4), outs("y")),
			want: want("y", dims(0, 4))},
		{name: "huge step", g: one("Slice", x(10), sl(dims(2), dims(big), dims(0), dims(big)), slIns(5), outs("y")),
			want: want("y", dims(1))},
		{name: "huge negative step", g: one("Slice", x(10), sl(dims(-1), dims(-big), dims(0), dims(-big)), slIns(5), outs("y")),
			want: want("y", dims(1))},
		// A literal math.MinInt64 cannot be told from Unknown in Values:
		// the length is left unknown, which is not wrong.
		{name: "min step", g: one("Slice", x(10), sl(dims(-1), dims(-big), dims(0), dims(math.MinInt64)), slIns(5), outs("y")),
			want: want("y", dims(-1))},
		{name: "near-min step", g: one("Slice", x(10), sl(dims(-1), dims(-big), dims(0), dims(math.MinInt64+1)), slIns(5), outs("y")),
			want: want("y", dims(1))},
		{name: "unknown dim", g: one("Slice", x(-1, 6), sl(dims(1, 1), dims(3, -1), dims(0, 1), nil), slIns(4), outs("y")),
			want: want("y", dims(-1, 4))},
		// opset 9: attributes
		{name: "attributes", opset: 9, g: one("Slice", x(10, 20), nil, ins("x"), outs("y"),
			aInts("starts", 2, -3), aInts("ends", 5, big), aInts("axes", 0, 1)),
			want: want("y", dims(3, 3))},
		{name: "axis out of range", g: one("Slice", x(10), sl(dims(0), dims(1), dims(1), nil), slIns(4), outs("y")), err: "slice axis 1"},

		{name: "gather", g: graph{
			nodes:  []*onnxpb.NodeProto{node("Gather", "gather", ins("x", "i"), outs("y"), aInt("axis", 1))},
			inputs: []*onnxpb.ValueInfoProto{vi("x", 5, 6, 7), viT("i", Int64, 2, 3)},
		}, want: want("y", dims(5, 2, 3, 7))},
		{name: "gather scalar", g: one("Gather", x(5, 6, 7), []*onnxpb.TensorProto{i64scalar("i", 4)}, ins("x", "i"), outs("y")),
			want: want("y", dims(6, 7))},
		{name: "gather -1", g: one("Gather", x(5, 6, 7), []*onnxpb.TensorProto{i64s("i", 0, 1)}, ins("x", "i"), outs("y"), aInt("axis", -1)),
			want: want("y", dims(5, 6, 2))},
		{name: "gather axis", g: one("Gather", x(5), []*onnxpb.TensorProto{i64s("i", 0)}, ins("x", "i"), outs("y"), aInt("axis", 1)), err: "axis 1 out of range"},
	})

	// Values through Slice and Gather of a shape.
	g := graph{
		nodes: []*onnxpb.NodeProto{
			node("Shape", "shape", ins("x"), outs("s")),
			node("Slice", "slice", ins("s", "st", "en"), outs("hw")),
			node("Gather", "gather", ins("s", "idx"), outs("g")),
			node("Slice", "rev", ins("s", "rst", "ren", "rax", "rsp"), outs("r")),
			node("Gather", "gatherbad", ins("s", "bad"), outs("gb")),
		},
		inputs: []*onnxpb.ValueInfoProto{vi("x", -1, 3, 4, 5)},
		inits: []*onnxpb.TensorProto{i64s("st", 2), i64s("en", math.MaxInt64), i64s("idx", -1, 1),
			i64s("rst", -1), i64s("ren", -math.MaxInt64), i64s("rax", 0), i64s("rsp", -2), i64s("bad", 4)},
	}
	s := InferShapes(g.model(13), false)
	for name, w := range map[string][]int64{"s": {Unknown, 3, 4, 5}, "hw": {4, 5}, "g": {5, 3}, "r": {5, 3}} {
		if !equalInts(s.Values[name], w) {
			t.Errorf("values of %s = %v, want %v", name, s.Values[name], w)
		}
	}
	if len(s.Errors) != 1 || s.Errors[0].Node != "gatherbad" || !strings.Contains(s.Errors[0].Msg, "index 4 out of range") {
		t.Errorf("errors %v, want one for gatherbad", s.Errors)
	}
}

func TestShapesSqueezeUnsqueeze(t *testing.T) {
	x := func(d ...int64) []*onnxpb.ValueInfoProto { return []*onnxpb.ValueInfoProto{vi("x", d...)} }
	axes := func(v ...int64) []*onnxpb.TensorProto { return []*onnxpb.TensorProto{i64s("axes", v...)} }
	runShapeCases(t, []shapeCase{
		// opset 11: axes attribute; output rank 4, ones at 0 and 3
		{name: "unsqueeze 11", opset: 11, g: one("Unsqueeze", x(3, 4), nil, ins("x"), outs("y"), aInts("axes", 0, 3)), want: want("y", dims(1, 3, 4, 1))},
		{name: "unsqueeze 11 negative", opset: 11, g: one("Unsqueeze", x(3, 4), nil, ins("x"), outs("y"), aInts("axes", -1)), want: want("y", dims(3, 4, 1))},
		{name: "unsqueeze 13", g: one("Unsqueeze", x(3, 4), axes(0, 3), ins("x", "axes"), outs("y")), want: want("y", dims(1, 3, 4, 1))},
		{name: "unsqueeze 13 middle", g: one("Unsqueeze", x(3, 4), axes(1, -1), ins("x", "axes"), outs("y")), want: want("y", dims(3, 1, 4, 1))},
		{name: "unsqueeze scalar", g: one("Unsqueeze", x(), axes(0), ins("x", "axes"), outs("y")), want: want("y", dims(1))},
		{name: "unsqueeze 13 unknown axes", g: graph{
			nodes:  []*onnxpb.NodeProto{node("Unsqueeze", "unsqueeze", ins("x", "a"), outs("y"))},
			inputs: []*onnxpb.ValueInfoProto{vi("x", 3), viT("a", Int64, 1)},
		}, want: want("y", nil)},
		{name: "unsqueeze duplicate", g: one("Unsqueeze", x(3, 4), axes(1, 1), ins("x", "axes"), outs("y")), err: "bad axes"},
		{name: "unsqueeze range", opset: 11, g: one("Unsqueeze", x(3, 4), nil, ins("x"), outs("y"), aInts("axes", 3)), err: "bad axes"},

		{name: "squeeze 11", opset: 11, g: one("Squeeze", x(1, 3, 1, 4), nil, ins("x"), outs("y"), aInts("axes", 0, 2)), want: want("y", dims(3, 4))},
		{name: "squeeze 11 all", opset: 11, g: one("Squeeze", x(1, 3, 1, 4), nil, ins("x"), outs("y")), want: want("y", dims(3, 4))},
		{name: "squeeze 13", g: one("Squeeze", x(1, 3, 1, 4), axes(-2), ins("x", "axes"), outs("y")), want: want("y", dims(1, 3, 4))},
		{name: "squeeze 13 all", g: one("Squeeze", x(1, 3, 1, 4), nil, ins("x"), outs("y")), want: want("y", dims(3, 4))},
		{name: "squeeze to scalar", g: one("Squeeze", x(1), nil, ins("x"), outs("y")), want: want("y", dims())},
		{name: "squeeze unknown dim", g: one("Squeeze", x(-1, 1, 4), axes(1), ins("x", "axes"), outs("y")), want: want("y", dims(-1, 4))},
		{name: "squeeze all unknown", g: one("Squeeze", x(-1, 1, 4), nil, ins("x"), outs("y")), want: want("y", nil)},
		{name: "squeeze not 1", g: one("Squeeze", x(1, 3), axes(1), ins("x", "axes"), outs("y")), err: "cannot squeeze"},
	})
}

func TestShapesReduce(t *testing.T) {
	x := []*onnxpb.ValueInfoProto{vi("x", 2, 3, 4)}
	axes := func(v ...int64) []*onnxpb.TensorProto { return []*onnxpb.TensorProto{i64s("axes", v...)} }
	runShapeCases(t, []shapeCase{
		{name: "mean keepdims", g: one("ReduceMean", x, nil, ins("x"), outs("y"), aInts("axes", 1)), want: want("y", dims(2, 1, 4))},
		{name: "mean drop", g: one("ReduceMean", x, nil, ins("x"), outs("y"), aInts("axes", 1), aInt("keepdims", 0)), want: want("y", dims(2, 4))},
		{name: "mean negative", g: one("ReduceMean", x, nil, ins("x"), outs("y"), aInts("axes", -1, 0)), want: want("y", dims(1, 3, 1))},
		{name: "mean all", g: one("ReduceMean", x, nil, ins("x"), outs("y")), want: want("y", dims(1, 1, 1))},
		{name: "mean all drop", g: one("ReduceMax", x, nil, ins("x"), outs("y"), aInt("keepdims", 0)), want: want("y", dims())},
		{name: "sum 13 input", g: one("ReduceSum", x, axes(2), ins("x", "axes"), outs("y"), aInt("keepdims", 0)), want: want("y", dims(2, 3))},
		{name: "sum 11 attr", opset: 11, g: one("ReduceSum", x, nil, ins("x"), outs("y"), aInts("axes", 0, 2)), want: want("y", dims(1, 3, 1))},
		{name: "mean 18 input", opset: 18, g: one("ReduceMean", x, axes(0), ins("x", "axes"), outs("y")), want: want("y", dims(1, 3, 4))},
		{name: "sum noop", g: one("ReduceSum", x, nil, ins("x"), outs("y"), aInt("noop_with_empty_axes", 1)), want: want("y", dims(2, 3, 4))},
		{name: "argmax", g: one("ArgMax", x, nil, ins("x"), outs("y"), aInt("axis", 2), aInt("keepdims", 0)), want: want("y", dims(2, 3))},
		{name: "argmin keep", g: one("ArgMin", x, nil, ins("x"), outs("y"), aInt("axis", -2)), want: want("y", dims(2, 1, 4))},
		{name: "axes range", g: one("ReduceMean", x, nil, ins("x"), outs("y"), aInts("axes", 3)), err: "out of range"},
	})
	s := InferShapes(one("ArgMax", x, nil, ins("x"), outs("y")).model(13), false)
	if s.DTypes["y"] != Int64 {
		t.Errorf("ArgMax dtype %s", s.DTypes["y"])
	}
}

func TestShapesExpandWherePadRange(t *testing.T) {
	runShapeCases(t, []shapeCase{
		// bidirectional: [3,1] with [2,1,4] -> [2,3,4]
		{name: "expand", g: one("Expand", []*onnxpb.ValueInfoProto{vi("x", 3, 1)}, []*onnxpb.TensorProto{i64s("s", 2, 1, 4)}, ins("x", "s"), outs("y")),
			want: want("y", dims(2, 3, 4))},
		{name: "expand smaller shape", g: one("Expand", []*onnxpb.ValueInfoProto{vi("x", 2, 3, 1)}, []*onnxpb.TensorProto{i64s("s", 5)}, ins("x", "s"), outs("y")),
			want: want("y", dims(2, 3, 5))},
		{name: "expand bad", g: one("Expand", []*onnxpb.ValueInfoProto{vi("x", 3, 2)}, []*onnxpb.TensorProto{i64s("s", 4)}, ins("x", "s"), outs("y")),
			err: "do not broadcast"},
		{name: "where", g: graph{
			nodes:  []*onnxpb.NodeProto{node("Where", "where", ins("c", "a", "b"), outs("y"))},
			inputs: []*onnxpb.ValueInfoProto{viT("c", Bool, 2, 1), viT("a", Int32, 1, 3), viT("b", Int32)},
		}, want: want("y", dims(2, 3))},
		{name: "where bad", g: graph{
			nodes:  []*onnxpb.NodeProto{node("Where", "where", ins("c", "a", "b"), outs("y"))},
			inputs: []*onnxpb.ValueInfoProto{viT("c", Bool, 2, 1), vi("a", 1, 3), vi("b", 4)},
		}, err: "do not broadcast"},
		{name: "add broadcast", g: graph{
			nodes:  []*onnxpb.NodeProto{node("Add", "add", ins("a", "b"), outs("y"))},
			inputs: []*onnxpb.ValueInfoProto{vi("a", -1, 1, 5), vi("b", 4, 1)},
		}, want: want("y", dims(-1, 4, 5))},
		// opset 11: pads input [b0 b1 b2 b3 e0 e1 e2 e3]: 4+1+3 = 8, 5+2+4 = 11
		{name: "pad 11", opset: 11, g: one("Pad", []*onnxpb.ValueInfoProto{vi("x", 1, 3, 4, 5)}, []*onnxpb.TensorProto{i64s("p", 0, 0, 1, 2, 0, 0, 3, 4)}, ins("x", "p"), outs("y")),
			want: want("y", dims(1, 3, 8, 11))},
		{name: "pad crop", opset: 13, g: one("Pad", []*onnxpb.ValueInfoProto{vi("x", -1, 6)}, []*onnxpb.TensorProto{i64s("p", 0, -1, 0, -2)}, ins("x", "p"), outs("y")),
			want: want("y", dims(-1, 3))},
		{name: "pad 2 attr", opset: 2, g: one("Pad", []*onnxpb.ValueInfoProto{vi("x", 2, 3)}, nil, ins("x"), outs("y"), aInts("pads", 1, 0, 1, 2)),
			want: want("y", dims(4, 5))},
		{name: "pad rank", opset: 11, g: one("Pad", []*onnxpb.ValueInfoProto{vi("x", 2, 3)}, []*onnxpb.TensorProto{i64s("p", 1, 1)}, ins("x", "p"), outs("y")),
			err: "do not fit rank 2"},
		// ceil((10-0)/3) = 4: 0 3 6 9
		{name: "range", g: one("Range", nil, []*onnxpb.TensorProto{i64scalar("a", 0), i64scalar("b", 10), i64scalar("d", 3)}, ins("a", "b", "d"), outs("y")),
			want: want("y", dims(4))},
		// ceil((0-10)/-4) = ceil(2.5) = 3: 10 6 2
		{name: "range down", g: one("Range", nil, []*onnxpb.TensorProto{i64scalar("a", 10), i64scalar("b", 0), i64scalar("d", -4)}, ins("a", "b", "d"), outs("y")),
			want: want("y", dims(3))},
		{name: "range empty", g: one("Range", nil, []*onnxpb.TensorProto{i64scalar("a", 5), i64scalar("b", 0), i64scalar("d", 1)}, ins("a", "b", "d"), outs("y")),
			want: want("y", dims(0))},
		{name: "range unknown", g: graph{
			nodes:  []*onnxpb.NodeProto{node("Range", "range", ins("a", "b", "d"), outs("y"))},
			inputs: []*onnxpb.ValueInfoProto{vi("a"), vi("b"), vi("d")},
		}, want: want("y", dims(-1))},
	})
	s := InferShapes(one("Range", nil, []*onnxpb.TensorProto{i64scalar("a", 10), i64scalar("b", 0), i64scalar("d", -4)}, ins("a", "b", "d"), outs("y")).model(13), false)
	if !equalInts(s.Values["y"], []int64{10, 6, 2}) {
		t.Errorf("range values %v", s.Values["y"])
	}
}

// TestShapesFolding: integer arithmetic over known values, as exporters
// emit it, and casts.
func TestShapesFolding(t *testing.T) {
	g := graph{
		nodes: []*onnxpb.NodeProto{
			node("Shape", "shape", ins("x"), outs("s")),
			node("Mul", "mul", ins("s", "two"), outs("m")),
			node("Div", "div", ins("s", "two"), outs("d")),
			node("Sub", "sub", ins("s", "one"), outs("sb")),
			node("Equal", "eq", ins("s", "three"), outs("e")),
			node("Where", "where", ins("e", "s", "one"), outs("w")),
			node("Cast", "cast", ins("s"), outs("c"), aInt("to", int64(Int32))),
			node("Mod", "mod", ins("neg", "three"), outs("md")),
			node("ConstantOfShape", "cos", ins("s"), outs("z")),
			node("Shape", "shape2", ins("x"), outs("tail"), aInt("start", -2)),
			node("Identity", "id", ins("tail"), outs("tail2")),
		},
		inputs: []*onnxpb.ValueInfoProto{vi("x", -1, 3, 4)},
		inits:  []*onnxpb.TensorProto{i64scalar("two", 2), i64scalar("one", 1), i64scalar("three", 3), i64s("neg", -7, 7)},
	}
	s := InferShapes(g.model(13), false)
	for name, w := range map[string][]int64{
		"m": {Unknown, 6, 8}, "d": {Unknown, 1, 2}, "sb": {Unknown, 2, 3}, "e": {Unknown, 1, 0},
		"w": {Unknown, 3, 1}, "c": {Unknown, 3, 4}, "tail": {3, 4}, "tail2": {3, 4},
		// ONNX Mod with fmod=0 takes the sign of the divisor, like Python:
		// -7 mod 3 = 2, 7 mod 3 = 1.
		"md": {2, 1},
	} {
		if !equalInts(s.Values[name], w) {
			t.Errorf("values of %s = %v, want %v", name, s.Values[name], w)
		}
	}
	if d, _ := s.Shape("z"); !equalInts(d, dims(-1, 3, 4)) {
		t.Errorf("ConstantOfShape dims %v", d)
	}
	if s.DTypes["e"] != Bool || s.DTypes["c"] != Int32 || s.DTypes["z"] != Float {
		t.Errorf("dtypes e %s c %s z %s", s.DTypes["e"], s.DTypes["c"], s.DTypes["z"])
	}
}

// TestShapesValueInfo: declared value_info fills in only where inference
// knows nothing, and only when asked for.
func TestShapesValueInfo(t *testing.T) {
	g := graph{
		nodes: []*onnxpb.NodeProto{
			node("CustomOp", "custom", ins("x"), outs("c")),
			node("Relu", "relu", ins("c"), outs("r")),
			node("Relu", "relu2", ins("x"), outs("q")),
		},
		inputs: []*onnxpb.ValueInfoProto{vi("x", 2, 3)},
		vinfo:  []*onnxpb.ValueInfoProto{vi("c", 7, 7), vi("q", 9)},
	}
	m := g.model(13)
	s := InferShapes(m, false)
	if _, ok := s.Shape("c"); ok {
		t.Error("custom op output known without value_info")
	}
	s = InferShapes(m, true)
	if d, _ := s.Shape("c"); !equalInts(d, dims(7, 7)) {
		t.Errorf("c = %v", d)
	}
	if d, _ := s.Shape("r"); !equalInts(d, dims(7, 7)) {
		t.Errorf("r = %v (propagated from value_info)", d)
	}
	if d, _ := s.Shape("q"); !equalInts(d, dims(2, 3)) {
		t.Errorf("q = %v: value_info overrode inference", d)
	}
}

// TestShapesOverridableInitializer: an initializer that a graph input can
// replace is not a known value.
func TestShapesOverridableInitializer(t *testing.T) {
	g := graph{
		nodes:  []*onnxpb.NodeProto{node("Reshape", "reshape", ins("x", "s"), outs("y"))},
		inputs: []*onnxpb.ValueInfoProto{vi("x", 2, 6), viT("s", Int64, 2)},
		inits:  []*onnxpb.TensorProto{i64s("s", 3, 4)},
	}
	s := InferShapes(g.model(13), false)
	if _, ok := s.Values["s"]; ok {
		t.Error("values of an overridable initializer are treated as known")
	}
	if d, _ := s.Shape("y"); !equalInts(d, dims(-1, -1)) {
		t.Errorf("y = %v, want [-1 -1]", d)
	}
}

// onnxShapes holds, per model in testdata, the shapes onnx's own shape
// inference gave (make_models.py).
func loadOnnxShapes(t *testing.T) map[string]map[string][]int64 {
	var all map[string]map[string][]int64
	if err := json.Unmarshal(readFile(t, "testdata/shapes.json"), &all); err != nil {
		t.Fatal(err)
	}
	return all
}

// TestShapesAgainstOnnx: for the exported torch models, every tensor onnx's
// shape inference knows gets the same rank and the same dims wherever both
// know them, and this package knows at least every dim onnx knows. Beyond
// that, a few shapes that onnx leaves open are checked against values
// worked out by hand from the modules in make_models.py.
func TestShapesAgainstOnnx(t *testing.T) {
	all := loadOnnxShapes(t)
	extra := map[string]map[string][]int64{
		"constant.onnx": {"/Reshape_output_0": {-1, -1}, "/fc/Gemm_output_0": {-1, 3}},
		"ops11.onnx": {
			"/Pad_1_output_0": {-1, 7}, "/Add_output_0": {-1, 7},
			"/Unsqueeze_1_output_0": {-1, 7, 1}, "e": {-1, 7, 3}, "/Slice_3_output_0": {-1, 7}, "w": {-1, 4},
		},
	}
	extra["ops17.onnx"] = extra["ops11.onnx"]
	names := make([]string, 0, len(all))
	for name := range all {
		names = append(names, name)
	}
	sort.Strings(names)
	if len(names) < 4 {
		t.Fatalf("shapes.json covers %v", names)
	}
	for _, file := range names {
		t.Run(file, func(t *testing.T) {
			m := mustLoad(t, "testdata/"+file)
			s := InferShapes(m, false)
			if len(s.Errors) > 0 {
				t.Errorf("errors: %v", s.Errors)
			}
			for tensor, ref := range all[file] {
				got, ok := s.Shape(tensor)
				if !ok {
					t.Errorf("%s: unknown, onnx infers %v", tensor, ref)
					continue
				}
				if len(got) != len(ref) {
					t.Errorf("%s: rank %d (%v), onnx infers %v", tensor, len(got), got, ref)
					continue
				}
				for k := range ref {
					if ref[k] >= 0 && got[k] != ref[k] {
						t.Errorf("%s: %v, onnx infers %v", tensor, got, ref)
						break
					}
					if ref[k] < 0 && got[k] >= 0 {
						// We know more than onnx: must come from a hand check.
						if w, ok := extra[file][tensor]; !ok || !equalInts(w, got) {
							t.Errorf("%s: %v where onnx infers %v and no hand-worked value agrees", tensor, got, ref)
							break
						}
					}
				}
			}
			for tensor, w := range extra[file] {
				if got, _ := s.Shape(tensor); !equalInts(got, w) {
					t.Errorf("%s: %v, worked out by hand as %v", tensor, got, w)
				}
			}
			if err := Validate(m); err != nil {
				t.Errorf("Validate: %v", err)
			}
		})
	}
}

// TestShapesFixtures: the trained fixtures infer without errors. Outputs
// whose shape inference cannot follow (ops it has no rule for) are logged.
func TestShapesFixtures(t *testing.T) {
	_, fixtures := testModels(t)
	if len(fixtures) == 0 {
		t.Fatal("no *.onnx under ../testdata: the committed fixtures are missing")
	}
	for _, path := range fixtures {
		m := mustLoad(t, path)
		s := InferShapes(m, false)
		if len(s.Errors) > 0 {
			t.Errorf("%s: %v", path, s.Errors)
		}
		for _, o := range m.Graph().Output {
			if d, ok := s.Shape(o.GetName()); ok {
				t.Logf("%s: output %s: %v", path, o.GetName(), d)
			} else {
				t.Logf("%s: output %s: no inferred shape", path, o.GetName())
			}
		}
	}
}

// TestShapesSliceRuntimeInputs: axes or steps that are inputs known only at
// run time are not taken to be the defaults.
func TestShapesSliceRuntimeInputs(t *testing.T) {
	base := func(extra ...*onnxpb.ValueInfoProto) graph {
		return graph{
			nodes:  []*onnxpb.NodeProto{node("Slice", "slice", ins("x", "st", "en", "ax", "sp"), outs("y"))},
			inputs: append([]*onnxpb.ValueInfoProto{vi("x", 10, 20)}, extra...),
			inits:  []*onnxpb.TensorProto{i64s("st", 2), i64s("en", 6)},
		}
	}
	g := base(viT("ax", Int64, 1), viT("sp", Int64, 1))
	if d, _ := InferShapes(g.model(13), false).Shape("y"); !equalInts(d, dims(-1, -1)) {
		t.Errorf("run-time axes: %v, want [-1 -1]", d)
	}
	g = base(viT("sp", Int64, 1))
	g.inits = append(g.inits, i64s("ax", 1))
	if d, _ := InferShapes(g.model(13), false).Shape("y"); !equalInts(d, dims(10, -1)) {
		t.Errorf("run-time steps: %v, want [10 -1]", d)
	}
}

func TestShapesPadRuntimePads(t *testing.T) {
	g := graph{
		nodes:  []*onnxpb.NodeProto{node("Pad", "pad", ins("x", "p"), outs("y"))},
		inputs: []*onnxpb.ValueInfoProto{vi("x", 2, 3), viT("p", Int64, 4)},
	}
	s := InferShapes(g.model(13), false)
	if d, _ := s.Shape("y"); !equalInts(d, dims(-1, -1)) || s.DTypes["y"] != Float {
		t.Errorf("y = %v %s, want [-1 -1] float32", d, s.DTypes["y"])
	}
}

// TestShapesPadPattern: the pads computation torch emits for F.pad (opset
// 11+) folds to constants: [0, 2] reshaped to [-1, 2], rows reversed,
// transposed and flattened gives ONNX's begin-then-end order.
func TestShapesPadPattern(t *testing.T) {
	g := graph{
		nodes: []*onnxpb.NodeProto{
			node("Reshape", "r1", ins("p", "m12"), outs("r")),
			node("Slice", "flip", ins("r", "st", "en", "ax", "sp"), outs("f")),
			node("Transpose", "tr", ins("f"), outs("t"), aInts("perm", 1, 0)),
			node("Reshape", "r2", ins("t", "m1"), outs("flat")),
			node("Pad", "pad", ins("x", "flat"), outs("y")),
		},
		inputs: []*onnxpb.ValueInfoProto{vi("x", -1, 3, 4)},
		// torch's (left, right) per dim from the last: W (1, 2), H (0, 0), C (0, 0)
		inits: []*onnxpb.TensorProto{i64s("p", 1, 2, 0, 0, 0, 0), i64s("m12", -1, 2), i64s("m1", -1),
			i64s("st", -1), i64s("en", -math.MaxInt64), i64s("ax", 0), i64s("sp", -1)},
	}
	s := InferShapes(g.model(13), false)
	for name, w := range map[string][]int64{
		"r": {1, 2, 0, 0, 0, 0}, "f": {0, 0, 0, 0, 1, 2}, "t": {0, 0, 1, 0, 0, 2}, "flat": {0, 0, 1, 0, 0, 2},
	} {
		if !equalInts(s.Values[name], w) {
			t.Errorf("values of %s = %v, want %v", name, s.Values[name], w)
		}
	}
	if d, _ := s.Shape("y"); !equalInts(d, dims(-1, 3, 7)) {
		t.Errorf("y = %v, want [-1 3 7]", d)
	}
}
