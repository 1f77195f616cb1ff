package onnxio

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/onnx-cria/onnx-cria/onnxio/onnxpb"
	"google.golang.org/protobuf/proto"
)

func TestValidateValidModels(t *testing.T) {
	local, fixtures := testModels(t)
	for _, path := range append(local, fixtures...) {
		if err := Validate(mustLoad(t, path)); err != nil {
			t.Errorf("%s: %v", path, err)
		}
	}
	for name, m := range map[string]*Model{"subgraphs": subgraphModel()} {
		if err := Validate(m); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// brokenModel breaks every rule once; each break is listed with the node
// and tensor its error must name.
func brokenModel() (*Model, []wantErr) {
	bad, _ := NewTensor("bad_init", Float, []int64{4}, make([]byte, 16))
	bad.RawData = bad.RawData[:8]
	g := graph{
		nodes: []*onnxpb.NodeProto{
			node("Conv", "conv", ins("x", "conv_w", "conv_b"), outs("c"), aInts("pads", 0, 0, 0, 0)),
			node("BatchNormalization", "bn", ins("c", "bn_scale", "bn_bias", "bn_mean", "bn_var"), outs("b")),
			node("Relu", "early", ins("later"), outs("r0")),
			node("Relu", "later_node", ins("b"), outs("later")),
			node("Add", "undefined", ins("b", "ghost"), outs("u")),
			node("Relu", "dup", ins("b"), outs("c")),
			node("Gemm", "gemm", ins("a", "gemm_b"), outs("g")),
			node("Add", "use_bad", ins("bad_init", "bad_init"), outs("ub")),
		},
		inputs: []*onnxpb.ValueInfoProto{vi("x", 1, 3, 8, 8), vi("a", 4, 6)},
		inits: []*onnxpb.TensorProto{
			zeros("conv_w", 8, 3, 3, 3), zeros("conv_b", 7),
			zeros("bn_scale", 8), zeros("bn_bias", 5), zeros("bn_mean", 8), zeros("bn_var", 8),
			zeros("gemm_b", 5, 3), bad,
		},
		outputs: []*onnxpb.ValueInfoProto{vi("g", 4, 3), vi("missing_out", 1)},
		vinfo:   []*onnxpb.ValueInfoProto{vi("ghost_vi", 2), vi("later", 1, 2, 3)},
	}
	m := g.model(13)
	m.Path = filepath.Join("some", "dir", "broken.onnx")
	return m, []wantErr{
		{"conv", "Conv", "conv_b", "bias shape [7]"},
		{"bn", "BatchNormalization", "bn_bias", "does not match 8 channels"},
		{"early", "Relu", "later", "topological order"},
		{"undefined", "Add", "ghost", "not defined anywhere"},
		{"dup", "Relu", "c", "defined more than once"},
		{"gemm", "Gemm", "gemm_b", "inner dimensions disagree"},
		{"", "", "missing_out", "not produced by any node"},
		{"", "", "bad_init", "holds 8 bytes"},
		{"", "", "ghost_vi", "stale value_info: no such tensor"},
		{"", "", "later", "stale value_info: declares shape [1 2 3]"},
	}
}

type wantErr struct{ node, op, tensor, msg string }

func TestValidateReportsEverything(t *testing.T) {
	m, wants := brokenModel()
	err := Validate(m)
	var list ErrorList
	if !errors.As(err, &list) {
		t.Fatalf("Validate returned %T %v, want an ErrorList", err, err)
	}
	used := make([]bool, len(list))
	for _, w := range wants {
		found := false
		for k, e := range list {
			if e.Node == w.node && e.Op == w.op && e.Tensor == w.tensor && strings.Contains(e.Msg, w.msg) {
				found, used[k] = true, true
				if e.File != m.Path {
					t.Errorf("error %q does not name the file", e)
				}
				s := e.Error()
				if !strings.Contains(s, m.Path) || !strings.Contains(s, `"`+w.tensor+`"`) || (w.node != "" && !strings.Contains(s, "node "+w.node+" ("+w.op+")")) {
					t.Errorf("message %q does not name file, node and tensor", s)
				}
			}
		}
		if !found {
			t.Errorf("no error for node %q tensor %q saying %q", w.node, w.tensor, w.msg)
		}
	}
	for k, e := range list {
		if !used[k] {
			t.Logf("also reported: %v", e)
		}
	}
	// The list is sorted and prints every problem.
	for k := 1; k < len(list); k++ {
		a, b := list[k-1], list[k]
		if a.Graph > b.Graph || (a.Graph == b.Graph && a.Node > b.Node) {
			t.Errorf("not sorted: %v before %v", a, b)
		}
	}
	if s := err.Error(); !strings.HasPrefix(s, "") || strings.Count(s, "\n") != len(list) {
		t.Errorf("ErrorList.Error prints %d lines for %d problems", strings.Count(s, "\n"), len(list))
	}
}

// TestValidateEachRule checks every rule on its own, on an otherwise valid
// model, so that one rule's report does not hide behind another's.
func TestValidateEachRule(t *testing.T) {
	base := func() graph {
		return graph{
			nodes: []*onnxpb.NodeProto{
				node("Conv", "conv", ins("x", "w", "b"), outs("c")),
				node("Relu", "relu", ins("c"), outs("r")),
				node("Flatten", "flat", ins("r"), outs("f")),
				node("Gemm", "fc", ins("f", "fw", "fb"), outs("y"), aInt("transB", 1)),
			},
			inputs:  []*onnxpb.ValueInfoProto{vi("x", -1, 3, 5, 5)},
			inits:   []*onnxpb.TensorProto{zeros("w", 4, 3, 3, 3), zeros("b", 4), zeros("fw", 2, 36), zeros("fb", 2)},
			outputs: []*onnxpb.ValueInfoProto{vi("y", -1, 2)},
			vinfo:   []*onnxpb.ValueInfoProto{vi("c", -1, 4, 3, 3)},
		}
	}
	if err := Validate(base().model(13)); err != nil {
		t.Fatalf("base model: %v", err)
	}
	cases := []struct {
		name   string
		break_ func(g *graph, m *Model)
		want   wantErr
	}{
		{"undefined input", func(g *graph, _ *Model) { g.nodes[1].Input[0] = "nope" }, wantErr{"relu", "Relu", "nope", "not defined anywhere"}},
		{"order", func(g *graph, _ *Model) { g.nodes[1], g.nodes[2] = g.nodes[2], g.nodes[1] }, wantErr{"flat", "Flatten", "r", "topological order"}},
		{"duplicate", func(g *graph, _ *Model) { g.nodes[2].Output[0] = "c"; g.nodes[3].Input[0] = "c" }, wantErr{"flat", "Flatten", "c", "defined more than once"}},
		{"output", func(g *graph, _ *Model) { g.outputs[0] = vi("z", -1, 2) }, wantErr{"", "", "z", "not produced"}},
		{"init bytes", func(g *graph, _ *Model) { g.inits[1].RawData = g.inits[1].RawData[:12] }, wantErr{"", "", "b", "holds 12 bytes"}},
		{"conv weight", func(g *graph, _ *Model) { g.inits[0] = zeros("w", 4, 2, 3, 3) }, wantErr{"conv", "Conv", "w", "input has 3 channels"}},
		{"conv bias", func(g *graph, _ *Model) { g.inits[1] = zeros("b", 3) }, wantErr{"conv", "Conv", "b", "bias shape [3]"}},
		{"gemm", func(g *graph, _ *Model) { g.inits[2] = zeros("fw", 2, 35) }, wantErr{"fc", "Gemm", "fw", "inner dimensions"}},
		{"stale name", func(g *graph, _ *Model) { g.vinfo = append(g.vinfo, vi("gone", 1)) }, wantErr{"", "", "gone", "no such tensor"}},
		{"stale shape", func(g *graph, _ *Model) { g.vinfo[0] = vi("c", -1, 4, 5, 5) }, wantErr{"", "", "c", "stale value_info: declares shape [-1 4 5 5]"}},
		{"stale rank", func(g *graph, _ *Model) { g.vinfo[0] = vi("c", 4, 3, 3) }, wantErr{"", "", "c", "stale value_info"}},
		{"output shape", func(g *graph, _ *Model) { g.outputs[0] = vi("y", -1, 3) }, wantErr{"", "", "y", "graph output declares shape"}},
		{"repeated value_info", func(g *graph, _ *Model) { g.vinfo = append(g.vinfo, vi("c", -1, 4, 3, 3)) }, wantErr{"", "", "c", "repeated"}},
		{"no op", func(g *graph, _ *Model) { g.nodes[1].OpType = nil }, wantErr{"relu", "", "", "without op_type"}},
		{"untyped input", func(g *graph, _ *Model) { g.inputs = append(g.inputs, &onnxpb.ValueInfoProto{Name: proto.String("u")}) }, wantErr{"", "", "u", "no type"}},
		{"unnamed init", func(g *graph, _ *Model) { g.inits = append(g.inits, &onnxpb.TensorProto{DataType: proto.Int32(1)}) }, wantErr{"", "", "", "without a name"}},
		{"init dtype", func(g *graph, _ *Model) { g.inits[1].DataType = nil }, wantErr{"", "", "b", "without a data type"}},
		{"ir version", func(_ *graph, m *Model) { m.Proto.IrVersion = nil }, wantErr{"", "", "", "ir_version"}},
		{"opset", func(_ *graph, m *Model) { m.Proto.OpsetImport = nil }, wantErr{"", "", "", "no opset_import"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := base()
			m := g.model(13)
			c.break_(&g, m)
			m.Proto.Graph = g.proto("test")
			err := Validate(m)
			var list ErrorList
			if !errors.As(err, &list) {
				t.Fatalf("Validate = %v", err)
			}
			for _, e := range list {
				if e.Node == c.want.node && e.Op == c.want.op && e.Tensor == c.want.tensor && strings.Contains(e.Msg, c.want.msg) {
					return
				}
			}
			t.Errorf("got %v\nwant node %q (%s) tensor %q saying %q", err, c.want.node, c.want.op, c.want.tensor, c.want.msg)
		})
	}
}

func TestValidateNormalisationParams(t *testing.T) {
	g := graph{
		nodes: []*onnxpb.NodeProto{
			node("BatchNormalization", "bn", ins("x", "s", "b", "m", "v"), outs("y")),
			node("InstanceNormalization", "in", ins("y", "s", "b2"), outs("z")),
			node("LayerNormalization", "ln", ins("z", "g", "lb"), outs("w"), aInt("axis", -2)),
		},
		inputs:  []*onnxpb.ValueInfoProto{vi("x", -1, 4, 3, 5)},
		inits:   []*onnxpb.TensorProto{zeros("s", 4), zeros("b", 4), zeros("m", 4), zeros("v", 3), zeros("b2", 4, 1), zeros("g", 3, 5), zeros("lb", 4)},
		outputs: []*onnxpb.ValueInfoProto{vi("w", -1, 4, 3, 5)},
	}
	err := Validate(g.model(17))
	for _, w := range []string{`node bn (BatchNormalization): tensor "v"`, `node in (InstanceNormalization): tensor "b2"`, `node ln (LayerNormalization): tensor "lb"`} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("missing %q in %v", w, err)
		}
	}
	if err != nil && strings.Contains(err.Error(), `tensor "g"`) {
		t.Errorf("LayerNormalization scale [3 5] over normalised dims [3 5] reported: %v", err)
	}
}

// TestValidateSubgraphs: rules apply inside If/Loop bodies, which may read
// names from the enclosing scope defined before the node.
func TestValidateSubgraphs(t *testing.T) {
	if err := Validate(subgraphModel()); err != nil {
		t.Fatal(err)
	}
	m := subgraphModel()
	ifNode := m.Graph().Node[2]
	then := ifNode.Attribute[0].G
	then.Node[0].Input[1] = "z" // defined by the outer graph, but after the If
	then.Node = append(then.Node, node("Relu", "inner", ins("nowhere"), outs("q")))
	err := Validate(m)
	if err == nil {
		t.Fatal("broken subgraph accepted")
	}
	for _, w := range []string{`graph "then": node then_mul (Mul): tensor "z"`, `graph "then": node inner (Relu): tensor "nowhere"`} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("missing %q in %v", w, err)
		}
	}
}

func TestErrorFormatting(t *testing.T) {
	e := &Error{File: "m.onnx", Graph: "body", Node: "#3", Op: "Add", Tensor: "t", Msg: "bad"}
	if got := e.Error(); got != `m.onnx: graph "body": node #3 (Add): tensor "t": bad` {
		t.Errorf("got %q", got)
	}
	if got := (&Error{Node: "n", Msg: "m"}).Error(); got != "node n: m" {
		t.Errorf("got %q", got)
	}
	var l ErrorList
	if l.Err() != nil || l.Error() != "no errors" {
		t.Error("empty list")
	}
	l.Add(&Error{Node: "b", Msg: "x"})
	if l.Err() == nil || l.Error() != "node b: x" {
		t.Errorf("one error: %q", l.Error())
	}
	l.Add(&Error{Node: "a", Msg: "y"})
	l.Add(&Error{Graph: "g", Node: "a", Msg: "z"})
	l.Sort()
	if l[0].Node != "a" || l[1].Node != "b" || l[2].Graph != "g" {
		t.Errorf("sorted: %v", l)
	}
	if !strings.HasPrefix(l.Error(), "3 problems:\n\t") {
		t.Errorf("list: %q", l.Error())
	}
}
