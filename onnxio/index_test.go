package onnxio

import (
	"reflect"
	"sort"
	"testing"

	"github.com/onnx-cria/onnx-cria/onnxio/onnxpb"
	"google.golang.org/protobuf/proto"
)

// subgraphModel: x -> Relu -> r; an If whose branches read r, w (an
// initializer) and, in a nested Loop body, s; outputs y.
//
//	0 relu:  x -> r
//	1 add:   r, r -> s        (r used twice by one node)
//	2 if:    cond -> y        then: Mul(r, w)   else: Loop body reads s
//	3 final: y, s -> z
func subgraphModel() *Model {
	thenG := graph{
		nodes:   []*onnxpb.NodeProto{node("Mul", "then_mul", ins("r", "w"), outs("t_out"))},
		outputs: []*onnxpb.ValueInfoProto{vi("t_out", 2)},
	}.proto("then")
	body := graph{
		nodes: []*onnxpb.NodeProto{
			node("Add", "body_add", ins("acc", "s"), outs("acc_out")),
			node("Identity", "body_cond", ins("c"), outs("c_out")),
		},
		inputs:  []*onnxpb.ValueInfoProto{viT("i", Int64), viT("c", Bool), vi("acc", 2)},
		outputs: []*onnxpb.ValueInfoProto{viT("c_out", Bool), vi("acc_out", 2)},
	}.proto("body")
	elseG := graph{
		nodes: []*onnxpb.NodeProto{
			node("Loop", "else_loop", ins("", "", "r"), outs("e_out"), aGraph("body", body)),
		},
		outputs: []*onnxpb.ValueInfoProto{vi("e_out", 2)},
	}.proto("else")
	g := graph{
		nodes: []*onnxpb.NodeProto{
			node("Relu", "relu", ins("x"), outs("r")),
			node("Add", "add", ins("r", "r"), outs("s")),
			node("If", "if", ins("cond"), outs("y"), aGraph("then_branch", thenG), aGraph("else_branch", elseG)),
			node("Add", "final", ins("y", "s"), outs("z")),
		},
		inputs:  []*onnxpb.ValueInfoProto{vi("x", 2), viT("cond", Bool)},
		outputs: []*onnxpb.ValueInfoProto{vi("z", 2)},
		inits:   []*onnxpb.TensorProto{zeros("w", 2)},
	}
	return g.model(13)
}

func TestIndexProducersConsumers(t *testing.T) {
	m := subgraphModel()
	ix := NewIndex(m.Graph())
	wantProd := map[string]int{"r": 0, "s": 1, "y": 2, "z": 3}
	if !reflect.DeepEqual(ix.Producer, wantProd) {
		t.Errorf("Producer = %v, want %v", ix.Producer, wantProd)
	}
	wantCons := map[string][]int{
		"x":    {0},
		"r":    {1, 1, 2}, // twice by add, once from inside both If branches
		"w":    {2},       // read by the then branch
		"s":    {2, 3},    // read by the Loop nested in the else branch, then by final
		"cond": {2},
		"y":    {3},
	}
	if !reflect.DeepEqual(ix.Consumers, wantCons) {
		t.Errorf("Consumers = %v, want %v", ix.Consumers, wantCons)
	}
	if ix.ProducerNode("s").GetName() != "add" || ix.ProducerNode("x") != nil || ix.Node(3).GetName() != "final" {
		t.Error("ProducerNode/Node")
	}
	if _, ok := ix.Inputs["x"]; !ok || ix.Outputs["z"] == nil || ix.Init["w"] == nil {
		t.Error("Inputs/Outputs/Init")
	}
	reads := SubgraphReads(m.Graph().Node[2])
	sort.Strings(reads)
	if !reflect.DeepEqual(reads, []string{"r", "s", "w"}) {
		t.Errorf("SubgraphReads(if) = %v", reads)
	}
	// Names defined inside the subgraph (loop state, body outputs) are not
	// outer reads.
	if r := SubgraphReads(m.Graph().Node[2].Attribute[1].G.Node[0]); !reflect.DeepEqual(r, []string{"s"}) {
		t.Errorf("SubgraphReads(loop) = %v, want [s]", r)
	}
	if SubgraphReads(m.Graph().Node[0]) != nil {
		t.Error("a node without subgraphs reads nothing through them")
	}
}

func TestIndexSubgraphOutputIsOuterName(t *testing.T) {
	// A branch that returns an outer tensor directly reads it.
	branch := graph{outputs: []*onnxpb.ValueInfoProto{vi("a", 1)}}.proto("b")
	g := graph{
		nodes: []*onnxpb.NodeProto{
			node("Relu", "relu", ins("x"), outs("a")),
			node("If", "if", ins("c"), outs("y"), aGraph("then_branch", branch), aGraph("else_branch", branch)),
		},
		inputs: []*onnxpb.ValueInfoProto{vi("x", 1), viT("c", Bool)},
	}
	ix := NewIndex(g.proto("g"))
	if !reflect.DeepEqual(ix.Consumers["a"], []int{1}) {
		t.Errorf("Consumers[a] = %v, want [1] (each name once per node)", ix.Consumers["a"])
	}
}

func TestIndexConst(t *testing.T) {
	valueT := NewInt64Tensor("", []int64{2}, []int64{1, -1})
	g := graph{
		nodes: []*onnxpb.NodeProto{
			node("Constant", "c_value", nil, outs("cv"), aTensor("value", valueT)),
			node("Constant", "c_float", nil, outs("cf"), aFloat("value_float", 2.5)),
			node("Constant", "c_floats", nil, outs("cfs"), aFloats("value_floats", 1, -2, 0.5)),
			node("Constant", "c_int", nil, outs("ci"), aInt("value_int", -7)),
			node("Constant", "c_ints", nil, outs("cis"), aInts("value_ints", 3, 4)),
			node("Constant", "c_string", nil, outs("cs"), aString("value_string", "hi")),
			{OpType: proto.String("Constant"), Domain: proto.String("custom"), Output: outs("cc"), Attribute: []*onnxpb.AttributeProto{aInt("value_int", 1)}},
			node("Add", "add", ins("w", "x"), outs("y")),
			node("Add", "add2", ins("b", "y"), outs("y2")),
		},
		inputs:  []*onnxpb.ValueInfoProto{vi("x", 2), vi("b", 2)},
		inits:   []*onnxpb.TensorProto{zeros("w", 2), zeros("b", 2)},
		outputs: []*onnxpb.ValueInfoProto{vi("y2", 2)},
	}
	m := g.model(13)
	ix := NewIndex(m.Graph())

	if c := ix.Const("w"); c == nil || c != ix.Init["w"] {
		t.Error("initializer w is not a constant")
	}
	if ix.Const("b") != nil || ix.IsConst("b") {
		t.Error("initializer b, overridable by graph input b, is a constant")
	}
	for _, name := range []string{"x", "y", "cs", "cc", "nonexistent"} {
		if ix.IsConst(name) {
			t.Errorf("%s is a constant", name)
		}
	}
	var nilModel *Model
	check := func(name string, dt DataType, dims []int64, want []float64) {
		t.Helper()
		c := ix.Const(name)
		if c == nil {
			t.Fatalf("%s: not a constant", name)
		}
		if DataType(c.GetDataType()) != dt || !equalInts(c.Dims, dims) {
			t.Errorf("%s: %s %v, want %s %v", name, DataType(c.GetDataType()), c.Dims, dt, dims)
		}
		got, err := nilModel.Float64s(c)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("%s = %v, %v; want %v", name, got, err, want)
		}
	}
	check("cv", Int64, []int64{2}, []float64{1, -1})
	check("cf", Float, nil, []float64{2.5})
	check("cfs", Float, []int64{3}, []float64{1, -2, 0.5})
	check("ci", Int64, nil, []float64{-7})
	check("cis", Int64, []int64{2}, []float64{3, 4})
	if ix.Const("cv") != valueT {
		t.Error("Const of a value attribute is not the attribute's tensor")
	}
	// The converted forms are named after the node output.
	if ix.Const("cis").GetName() != "cis" || ix.Const("cf").GetName() != "cf" {
		t.Error("converted constants are not named after their output")
	}
}

// TestIndexConstantFromExport: the Constant nodes torch exports are constants
// with the values the Reshape needs.
func TestIndexConstantFromExport(t *testing.T) {
	m := mustLoad(t, "testdata/constant.onnx")
	ix := NewIndex(m.Graph())
	c := ix.Const("/Constant_output_0")
	if c == nil {
		t.Fatal("/Constant_output_0 is not a constant")
	}
	v, err := m.Float64s(c)
	if err != nil || !reflect.DeepEqual(v, []float64{0.5, 2, -1, 4}) {
		t.Errorf("scale = %v, %v", v, err)
	}
	if !ix.IsConst("fc.weight") || ix.IsConst("x") || ix.IsConst("/Shape_output_0") {
		t.Error("IsConst")
	}
	n := 0
	for name := range ix.Producer {
		if ix.IsConst(name) {
			n++
		}
	}
	if n != 7 {
		t.Errorf("%d Constant node outputs, want 7", n)
	}
}

func TestAttrHelpers(t *testing.T) {
	n := node("Conv", "c", nil, nil, aInt("group", 2), aInts("pads", 1, 1), aFloat("alpha", 0.5), aString("auto_pad", "VALID"))
	if AttrInt(n, "group", 1) != 2 || AttrInt(n, "missing", 9) != 9 || AttrInt(n, "pads", 9) != 9 {
		t.Error("AttrInt")
	}
	if AttrFloat(n, "alpha", 1) != 0.5 || AttrFloat(n, "beta", 1) != 1 {
		t.Error("AttrFloat")
	}
	if !reflect.DeepEqual(AttrInts(n, "pads"), []int64{1, 1}) || AttrInts(n, "strides") != nil {
		t.Error("AttrInts")
	}
	if AttrString(n, "auto_pad", "NOTSET") != "VALID" || AttrString(n, "mode", "x") != "x" {
		t.Error("AttrString")
	}
	SetAttrInt(n, "group", 4)
	SetAttrInt(n, "axis", 1)
	v := []int64{2, 2}
	SetAttrInts(n, "pads", v)
	SetAttrInts(n, "strides", v)
	v[0] = 9 // SetAttrInts copies
	if AttrInt(n, "group", 0) != 4 || AttrInt(n, "axis", 0) != 1 ||
		!reflect.DeepEqual(AttrInts(n, "pads"), []int64{2, 2}) || !reflect.DeepEqual(AttrInts(n, "strides"), []int64{2, 2}) {
		t.Errorf("Set: %v", n.Attribute)
	}
	if Attr(n, "axis").GetType() != onnxpb.AttributeProto_INT || Attr(n, "strides").GetType() != onnxpb.AttributeProto_INTS {
		t.Error("added attributes lack their type")
	}
	if NodeLabel(n, 3) != "c" || NodeLabel(&onnxpb.NodeProto{}, 3) != "#3" {
		t.Error("NodeLabel")
	}
}

func TestTensorType(t *testing.T) {
	v := NewValueInfo("t", Float16, []Dim{{Param: "batch"}, {Value: 3, Known: true}, {}})
	dt, shape, ok := TensorType(v)
	if !ok || dt != Float16 || len(shape) != 3 || shape[0].Param != "batch" || shape[1].Value != 3 || shape[2].Known {
		t.Fatalf("TensorType = %v %v %v", dt, shape, ok)
	}
	if s := shape[0].String() + shape[1].String() + shape[2].String(); s != "batch3?" {
		t.Errorf("Dim strings %q", s)
	}
	if !reflect.DeepEqual(StaticDims(shape), []int64{-1, 3, -1}) {
		t.Errorf("StaticDims = %v", StaticDims(shape))
	}
	// Unknown rank and non-tensor types.
	v.Type.GetTensorType().Shape = nil
	if _, shape, ok := TensorType(v); !ok || shape != nil {
		t.Error("unknown rank")
	}
	seq := &onnxpb.ValueInfoProto{Name: proto.String("s"), Type: &onnxpb.TypeProto{Value: &onnxpb.TypeProto_SequenceType{SequenceType: &onnxpb.TypeProto_Sequence{}}}}
	if _, _, ok := TensorType(seq); ok {
		t.Error("sequence is a tensor")
	}
	if _, _, ok := TensorType(&onnxpb.ValueInfoProto{}); ok {
		t.Error("untyped value is a tensor")
	}
	// A scalar has a shape with no dims, not an unknown one.
	if _, shape, ok := TensorType(NewValueInfo("s", Int64, nil)); !ok || shape == nil || len(shape) != 0 {
		t.Errorf("scalar shape = %v", shape)
	}
}
