package rewrite

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/onnx-cria/onnx-cria/onnxio"
	"github.com/onnx-cria/onnx-cria/onnxio/onnxpb"
	"google.golang.org/protobuf/proto"
)

// A terse builder for synthetic test models: typed inputs, seeded random
// float initializers, nodes with attributes, an opset. Node outputs are
// named after their nodes, so a test reads like the network it builds.

type builder struct {
	t       testing.TB
	opset   int64
	extra   []*onnxpb.OperatorSetIdProto
	r       *rand.Rand
	nodes   []*onnxpb.NodeProto
	inputs  []*onnxpb.ValueInfoProto
	outputs []string
	inits   []*onnxpb.TensorProto
	vinfo   []*onnxpb.ValueInfoProto
	names   map[string]bool
}

func newBuilder(t testing.TB, opset int64) *builder {
	return &builder{t: t, opset: opset, r: rand.New(rand.NewPCG(uint64(opset), 99)), names: map[string]bool{}}
}

// use imports another domain (custom or contrib ops).
func (b *builder) use(domain string, version int64) {
	b.extra = append(b.extra, &onnxpb.OperatorSetIdProto{Domain: proto.String(domain), Version: proto.Int64(version)})
}

func (b *builder) claim(name string) string {
	if b.names[name] {
		b.t.Fatalf("builder: name %q used twice", name)
	}
	b.names[name] = true
	return name
}

// dims of -1 are symbolic: "N" for the first axis, "T<k>" for others.
func symDims(dims []int64) []onnxio.Dim {
	out := make([]onnxio.Dim, len(dims))
	for k, d := range dims {
		switch {
		case d >= 0:
			out[k] = onnxio.Dim{Value: d, Known: true}
		case k == 0:
			out[k] = onnxio.Dim{Param: "N"}
		default:
			out[k] = onnxio.Dim{Param: fmt.Sprintf("T%d", k)}
		}
	}
	return out
}

// in declares a float graph input.
func (b *builder) in(name string, dims ...int64) string {
	return b.inT(name, onnxio.Float, dims...)
}

func (b *builder) inT(name string, dt onnxio.DataType, dims ...int64) string {
	b.inputs = append(b.inputs, onnxio.NewValueInfo(b.claim(name), dt, symDims(dims)))
	return name
}

// w is a seeded random float initializer with a scale that keeps
// activations of order one: normal / sqrt(fan-in), where the fan-in is
// everything but the first axis (the second, for 2-D MatMul weights, is
// close enough in these small models).
func (b *builder) w(name string, dims ...int64) string {
	n := onnxio.NumElements(dims)
	fan := 1.0
	if len(dims) > 1 {
		fan = float64(n / dims[0])
	}
	if len(dims) == 2 {
		fan = float64(max(dims[0], dims[1]))
	}
	vals := make([]float64, n)
	for k := range vals {
		vals[k] = b.r.NormFloat64() / math.Sqrt(fan)
	}
	return b.f(name, dims, vals...)
}

// pos is a seeded initializer with values in [0.5, 1.5) (variances, scales).
func (b *builder) pos(name string, dims ...int64) string {
	vals := make([]float64, onnxio.NumElements(dims))
	for k := range vals {
		vals[k] = 0.5 + b.r.Float64()
	}
	return b.f(name, dims, vals...)
}

// f is a float initializer with the given values.
func (b *builder) f(name string, dims []int64, vals ...float64) string {
	raw, err := onnxio.EncodeFloat64s(onnxio.Float, vals)
	if err != nil {
		b.t.Fatal(err)
	}
	t, err := onnxio.NewTensor(b.claim(name), onnxio.Float, dims, raw)
	if err != nil {
		b.t.Fatal(err)
	}
	b.inits = append(b.inits, t)
	return name
}

// fs is a float scalar initializer.
func (b *builder) fs(name string, v float64) string { return b.f(name, nil, v) }

// ints is a 1-D int64 initializer.
func (b *builder) ints(name string, vals ...int64) string {
	b.inits = append(b.inits, onnxio.NewInt64Tensor(b.claim(name), []int64{int64(len(vals))}, vals))
	return name
}

// i64 is an int64 scalar initializer.
func (b *builder) i64(name string, v int64) string {
	b.inits = append(b.inits, onnxio.NewInt64Tensor(b.claim(name), nil, []int64{v}))
	return name
}

// constInts is a Constant node holding a 1-D int64 tensor.
func (b *builder) constInts(name string, vals ...int64) string {
	t := onnxio.NewInt64Tensor("", []int64{int64(len(vals))}, vals)
	return b.op("Constant", name, nil, aT("value", t))
}

// op adds a node named name with one output, also named name.
func (b *builder) op(op, name string, ins []string, attrs ...*onnxpb.AttributeProto) string {
	return b.opN(op, name, ins, 1, attrs...)[0]
}

// opN adds a node with nout outputs named name_0, name_1, ...
func (b *builder) opN(op, name string, ins []string, nout int, attrs ...*onnxpb.AttributeProto) []string {
	var outs []string
	if nout == 1 {
		outs = []string{b.claim(name)}
	} else {
		for k := 0; k < nout; k++ {
			outs = append(outs, b.claim(fmt.Sprintf("%s_%d", name, k)))
		}
	}
	domain := ""
	if k := strings.Index(op, "::"); k >= 0 {
		domain, op = op[:k], op[k+2:]
	}
	n := &onnxpb.NodeProto{OpType: proto.String(op), Name: proto.String(name), Input: ins, Output: outs, Attribute: attrs}
	if domain != "" {
		n.Domain = proto.String(domain)
	}
	b.nodes = append(b.nodes, n)
	return outs
}

// declare adds a value_info entry (a shape an exporter recorded).
func (b *builder) declare(name string, dims ...int64) {
	b.vinfo = append(b.vinfo, onnxio.NewValueInfo(name, onnxio.Float, symDims(dims)))
}

// out marks tensors as graph outputs.
func (b *builder) out(names ...string) { b.outputs = append(b.outputs, names...) }

// graph assembles the main graph; output types come from shape inference.
func (b *builder) model() *onnxio.Model {
	b.t.Helper()
	ir := int64(8)
	if b.opset < 9 {
		ir = 3
	}
	g := &onnxpb.GraphProto{Name: proto.String("synthetic"), Node: b.nodes, Input: b.inputs, Initializer: b.inits, ValueInfo: b.vinfo}
	m := &onnxio.Model{Proto: &onnxpb.ModelProto{
		IrVersion:   proto.Int64(ir),
		OpsetImport: append([]*onnxpb.OperatorSetIdProto{{Domain: proto.String(""), Version: proto.Int64(b.opset)}}, b.extra...),
		Graph:       g,
	}}
	sh := onnxio.InferShapes(m, false)
	for _, o := range b.outputs {
		dt, ok := sh.DTypes[o]
		if !ok {
			dt = onnxio.Float
		}
		var shape []onnxio.Dim
		if d, ok := sh.Dims[o]; ok {
			shape = make([]onnxio.Dim, len(d))
			for k, v := range d {
				if v >= 0 {
					shape[k] = onnxio.Dim{Value: v, Known: true}
				}
			}
		}
		v := onnxio.NewValueInfo(o, dt, shape)
		if shape == nil {
			v.GetType().GetTensorType().Shape = nil // rank unknown
		}
		g.Output = append(g.Output, v)
	}
	if err := onnxio.Validate(m); err != nil {
		b.t.Fatalf("builder made an invalid model: %v", err)
	}
	// Round-trip through bytes, as a loaded model would be.
	raw, err := m.Encode()
	if err != nil {
		b.t.Fatal(err)
	}
	back, err := onnxio.Decode(raw)
	if err != nil {
		b.t.Fatal(err)
	}
	return back
}

// subgraph assembles a body graph for If/Loop from the nodes added by fn.
func (b *builder) subgraph(name string, fn func(s *builder), outs ...*onnxpb.ValueInfoProto) *onnxpb.GraphProto {
	s := &builder{t: b.t, opset: b.opset, r: b.r, names: b.names}
	fn(s)
	return &onnxpb.GraphProto{Name: proto.String(name), Node: s.nodes, Initializer: s.inits, Input: s.inputs, Output: outs}
}

// Attributes.

func aI(name string, v int64) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: proto.String(name), Type: onnxpb.AttributeProto_INT.Enum(), I: proto.Int64(v)}
}

func aIs(name string, v ...int64) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: proto.String(name), Type: onnxpb.AttributeProto_INTS.Enum(), Ints: v}
}

func aF(name string, v float32) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: proto.String(name), Type: onnxpb.AttributeProto_FLOAT.Enum(), F: proto.Float32(v)}
}

func aS(name, v string) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: proto.String(name), Type: onnxpb.AttributeProto_STRING.Enum(), S: []byte(v)}
}

func aT(name string, t *onnxpb.TensorProto) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: proto.String(name), Type: onnxpb.AttributeProto_TENSOR.Enum(), T: t}
}

func aG(name string, g *onnxpb.GraphProto) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: proto.String(name), Type: onnxpb.AttributeProto_GRAPH.Enum(), G: g}
}

func strs(s ...string) []string { return s }

// Assertions about an analysis.

// summary lists every group, one line each, for logs and failures.
func summary(a *Analysis) string {
	var sb strings.Builder
	for _, g := range a.Groups {
		fmt.Fprintf(&sb, "  %-28s %-11s width %-3d params/unit %-5d", g.Name, g.Kind, g.Width, g.ParamsPerUnit)
		if len(g.Blocked) > 0 {
			fmt.Fprintf(&sb, " BLOCKED %q", g.Blocked)
		}
		if len(g.Warnings) > 0 {
			fmt.Fprintf(&sb, " warn %d", len(g.Warnings))
		}
		sb.WriteString("\n")
	}
	for _, s := range a.Skipped {
		fmt.Fprintf(&sb, "  skipped %s::%s at %v\n", s.Domain, s.Op, s.Nodes)
	}
	return sb.String()
}

// want describes one expected prunable group.
type want struct {
	name  string // group name
	kind  string
	width int
}

// analyze runs Analyze and checks that the prunable groups are exactly
// those listed (name, kind, width).
func analyze(t *testing.T, m *onnxio.Model, groups ...want) *Analysis {
	t.Helper()
	a, err := Analyze(m, Options{})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]*Group{}
	for _, g := range a.Prunable() {
		got[g.Name] = g
	}
	ok := len(got) == len(groups)
	for _, w := range groups {
		g := got[w.name]
		if g == nil || g.Kind != w.kind || g.Width != w.width {
			ok = false
		}
	}
	if !ok {
		t.Errorf("prunable groups differ: want %v; have\n%s", groups, summary(a))
	} else {
		t.Logf("groups:\n%s", summary(a))
	}
	return a
}

// blockedWith checks that the group containing the units created by node
// src is not prunable, for a reason that contains every fragment.
func blockedWith(t *testing.T, a *Analysis, src string, fragments ...string) {
	t.Helper()
	for _, g := range a.Groups {
		if !contains(g.Sources, src) {
			continue
		}
		if g.Prunable() {
			t.Errorf("group %s (from %s) is prunable; it should be blocked by %q", g.Name, src, fragments)
			return
		}
		all := strings.Join(g.Blocked, "; ")
		for _, f := range fragments {
			if !strings.Contains(all, f) {
				t.Errorf("group %s is blocked for %q; want a reason with %q", g.Name, all, f)
			}
		}
		return
	}
	t.Errorf("no group has units from node %s:\n%s", src, summary(a))
}

// groupOf returns the group whose units node src creates.
func groupOf(t *testing.T, a *Analysis, src string) *Group {
	t.Helper()
	for _, g := range a.Groups {
		if contains(g.Sources, src) {
			return g
		}
	}
	t.Fatalf("no group has units from node %s:\n%s", src, summary(a))
	return nil
}

// dimsOf returns the dims of constant name in m.
func dimsOf(t *testing.T, m *onnxio.Model, name string) []int64 {
	t.Helper()
	c := onnxio.NewIndex(m.Graph()).Const(name)
	if c == nil {
		t.Fatalf("no constant %q", name)
	}
	return c.GetDims()
}
