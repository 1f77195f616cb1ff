package onnxio

import (
	"fmt"
	"testing"

	"github.com/onnx-cria/onnx-cria/onnxio/onnxpb"
	"github.com/onnx-cria/onnx-cria/onnxio/ops"
)

// TestMalformedGraphs: structurally odd graphs, of the kind corrupt files
// and fuzzing produce, are reported or ignored but never crash.
func TestMalformedGraphs(t *testing.T) {
	for name, g := range malformedGraphs() {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if r := recover(); r != nil {
					t.Fatalf("panic: %v", r)
				}
			}()
			m := g.model(13)
			exercise(m)
			b := mustEncode(t, m)
			m2, err := Decode(b)
			if err != nil {
				t.Fatal(err)
			}
			exercise(m2)
			for _, opset := range []int64{9, 11, 18, 23} {
				m.Proto.OpsetImport[0].Version = &opset
				exercise(m)
			}
			_ = fmt.Sprint(Validate(m))
		})
	}
}

// malformedGraphs are graphs that crashed the package before it was fixed,
// and their relatives. FuzzDecode seeds its corpus with them too.
func malformedGraphs() map[string]graph {
	return map[string]graph{
		"Where with two inputs": {
			nodes: []*onnxpb.NodeProto{node("Where", "w", ins("a", "b"), outs("y"))},
			inits: []*onnxpb.TensorProto{i64s("a", 1, 0), i64s("b", 2, 3)},
		},
		"redefined value tensor": {
			// s first holds 3 known values, then is redefined as a 5-vector
			// with none: later nodes must not index the stale values.
			nodes: []*onnxpb.NodeProto{
				node("Shape", "shape", ins("x"), outs("s")),
				node("Relu", "redefine", ins("v5"), outs("s")),
				node("Gather", "gather", ins("s", "i"), outs("g")),
				node("Slice", "slice", ins("s", "st", "en"), outs("sl")),
				node("Reshape", "reshape", ins("x", "s"), outs("r")),
			},
			inputs: []*onnxpb.ValueInfoProto{vi("x", 1, 2, 3), viT("v5", Int64, 5)},
			inits:  []*onnxpb.TensorProto{i64s("i", 4), i64s("st", 1), i64s("en", 5)},
		},
		"initializer redefined by a node": {
			nodes: []*onnxpb.NodeProto{
				node("Relu", "redefine", ins("v5"), outs("c")),
				node("Gather", "gather", ins("c", "i"), outs("g")),
			},
			inputs: []*onnxpb.ValueInfoProto{viT("v5", Int64, 5)},
			inits:  []*onnxpb.TensorProto{i64s("c", 7), i64s("i", 4)},
		},
		"huge reshape rank": {
			nodes:  []*onnxpb.NodeProto{node("Reshape", "reshape", ins("x", "s"), outs("y"))},
			inputs: []*onnxpb.ValueInfoProto{vi("x", 2), viT("s", Int64, 1<<40)},
		},
		"huge shape values": {
			nodes: []*onnxpb.NodeProto{
				node("ConstantOfShape", "cos", ins("s"), outs("y")),
				node("Range", "range", ins("a", "b", "d"), outs("r")),
				node("Tile", "tile", ins("y", "s"), outs("t")),
				node("Expand", "expand", ins("y", "s"), outs("e")),
			},
			inits: []*onnxpb.TensorProto{i64s("s", 1<<40, 1<<40), i64scalar("a", -1<<62), i64scalar("b", 1<<62), i64scalar("d", 1)},
		},
		"normalisation without inputs": {
			nodes: []*onnxpb.NodeProto{
				node("BatchNormalization", "bn", nil, outs("y")),
				node("InstanceNormalization", "in", nil, outs("z")),
				node("LayerNormalization", "ln", nil, outs("w")),
			},
		},
		"ops without inputs or outputs": func() graph {
			// Every op shape inference knows, by its own rule or its class.
			var g graph
			seen := map[string]bool{}
			add := func(op string) {
				if !seen[op] {
					seen[op] = true
					g.nodes = append(g.nodes, node(op, op, nil, nil), node(op, op+"_out", nil, outs(op+"_y")))
				}
			}
			for _, e := range shapeRules.Entries() {
				add(e.Key.Op)
			}
			for _, e := range ops.Facts.Entries() {
				add(e.Key.Op)
			}
			return g
		}(),
		"negative dims everywhere": {
			nodes: []*onnxpb.NodeProto{
				node("Conv", "conv", ins("x", "w"), outs("c"), aInt("group", -1)),
				node("MaxPool", "pool", ins("x"), outs("p"), aInts("kernel_shape", -3, 0), aInts("strides", 0, -1)),
				node("Split", "split", ins("x"), outs("s1", "s2"), aInt("num_outputs", -2)),
				node("Gather", "gather", ins("x", "w"), outs("g"), aInt("axis", -100)),
				node("Transpose", "tr", ins("x"), outs("t"), aInts("perm", -1, 5, 0, 0)),
				node("Reshape", "reshape", ins("x", "neg"), outs("r")),
				node("Pad", "pad", ins("x", "negpads"), outs("pd")),
				node("Flatten", "flat", ins("x"), outs("f"), aInt("axis", -9)),
			},
			inputs: []*onnxpb.ValueInfoProto{vi("x", 2, 3, 4, 5)},
			inits: []*onnxpb.TensorProto{
				{Name: strp("w"), DataType: i32p(int32(Float)), Dims: []int64{-4, 3, 3, 3}, RawData: []byte{}},
				i64s("neg", -5, -7), i64s("negpads", -9, -9, -9, -9, 0, 0, 0, 0),
			},
		},
	}
}

func strp(s string) *string { return &s }
func i32p(v int32) *int32   { return &v }
