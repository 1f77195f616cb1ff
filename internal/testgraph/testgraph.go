// Package testgraph builds small ONNX models for tests: float inputs and
// constants in float32 or float64, nodes of the default domain, outputs
// typed by shape inference. It is for tests only.
package testgraph

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/onnx-cria/onnx-cria/onnxio"
	"github.com/onnx-cria/onnx-cria/onnxio/onnxpb"
)

// Graph builds small test models in either float type.
type Graph struct {
	opset   int64
	inputs  []tinput
	nodes   []*onnxpb.NodeProto
	outputs []string
	consts  []*onnxpb.TensorProto
	fconsts []fconst
}

type tinput struct {
	name string
	dims []int64
	gen  func(r *rand.Rand, n int) []float64
}

type fconst struct {
	name string
	dims []int64
	vals []float64
}

// New starts a graph of the default domain at opset.
func New(opset int64) *Graph { return &Graph{opset: opset} }

// In declares a float graph input with values from gen (uniform in [-1, 1]
// when gen is nil).
func (g *Graph) In(name string, gen func(*rand.Rand, int) []float64, dims ...int64) string {
	if gen == nil {
		gen = Uniform(-1, 1)
	}
	g.inputs = append(g.inputs, tinput{name, dims, gen})
	return name
}

// Ints declares an int64 constant.
func (g *Graph) Ints(name string, dims []int64, v ...int64) string {
	g.consts = append(g.consts, onnxio.NewInt64Tensor(name, dims, v))
	return name
}

// FConst declares a float constant (in the graph's float type).
func (g *Graph) FConst(name string, dims []int64, v ...float64) string {
	g.fconsts = append(g.fconsts, fconst{name, dims, v})
	return name
}

// Node adds a node with any number of outputs.
func (g *Graph) Node(op string, ins []string, outs []string, attrs ...*onnxpb.AttributeProto) {
	name := fmt.Sprintf("n%d_%s", len(g.nodes), op)
	g.nodes = append(g.nodes, &onnxpb.NodeProto{Name: &name, OpType: &op, Input: ins, Output: outs, Attribute: attrs})
}

// Op adds a one-output node named out.
func (g *Graph) Op(op string, ins []string, out string, attrs ...*onnxpb.AttributeProto) string {
	g.Node(op, ins, []string{out}, attrs...)
	return out
}

// Out declares graph outputs.
func (g *Graph) Out(names ...string) { g.outputs = append(g.outputs, names...) }

// Model builds the model with float inputs and constants of type dt.
func (g *Graph) Model(t testing.TB, dt onnxio.DataType) *onnxio.Model {
	t.Helper()
	gp := &onnxpb.GraphProto{Name: ptr("test")}
	for _, in := range g.inputs {
		var shape []onnxio.Dim
		for _, d := range in.dims {
			shape = append(shape, onnxio.Dim{Value: d, Known: true})
		}
		gp.Input = append(gp.Input, onnxio.NewValueInfo(in.name, dt, shape))
	}
	gp.Initializer = append(gp.Initializer, g.consts...)
	for _, c := range g.fconsts {
		raw, err := onnxio.EncodeFloat64s(dt, c.vals)
		if err != nil {
			t.Fatal(err)
		}
		tp, err := onnxio.NewTensor(c.name, dt, c.dims, raw)
		if err != nil {
			t.Fatal(err)
		}
		gp.Initializer = append(gp.Initializer, tp)
	}
	gp.Node = g.nodes
	mp := &onnxpb.ModelProto{IrVersion: ptr(int64(8)), Graph: gp,
		OpsetImport: []*onnxpb.OperatorSetIdProto{{Domain: ptr(""), Version: ptr(g.opset)}}}
	m := &onnxio.Model{Proto: mp}
	sh := onnxio.InferShapes(m, false)
	for _, o := range g.outputs {
		d, ok := sh.Shape(o)
		var shape []onnxio.Dim
		for _, v := range d {
			shape = append(shape, onnxio.Dim{Value: v, Known: v >= 0})
		}
		odt := sh.DTypes[o]
		if odt == onnxio.Undefined {
			odt = dt
		}
		vi := onnxio.NewValueInfo(o, odt, shape)
		if !ok {
			vi.Type.GetTensorType().Shape = nil
		}
		gp.Output = append(gp.Output, vi)
	}
	return m.Clone()
}

// Uniform draws uniformly from [lo, hi).
func Uniform(lo, hi float64) func(*rand.Rand, int) []float64 {
	return func(r *rand.Rand, n int) []float64 {
		v := make([]float64, n)
		for i := range v {
			v[i] = lo + (hi-lo)*r.Float64()
		}
		return v
	}
}

// Away gives values of either sign with magnitude in [m, 1], so that kinks
// at 0 stay farther than any finite-difference step.
func Away(m float64) func(*rand.Rand, int) []float64 {
	return func(r *rand.Rand, n int) []float64 {
		v := make([]float64, n)
		for i := range v {
			v[i] = m + (1-m)*r.Float64()
			if r.IntN(2) == 0 {
				v[i] = -v[i]
			}
		}
		return v
	}
}

// Distinct gives a shuffled grid of values 0.05 apart: no ties for max.
func Distinct(r *rand.Rand, n int) []float64 {
	v := make([]float64, n)
	for i, p := range r.Perm(n) {
		v[i] = float64(p)*0.05 - float64(n)*0.025
	}
	return v
}

// Pieces draws uniformly from the union of intervals lo[i]..hi[i], which
// keeps inputs away from kinks between them.
func Pieces(bounds ...float64) func(*rand.Rand, int) []float64 {
	return func(r *rand.Rand, n int) []float64 {
		v := make([]float64, n)
		for i := range v {
			k := 2 * r.IntN(len(bounds)/2)
			v[i] = bounds[k] + (bounds[k+1]-bounds[k])*r.Float64()
		}
		return v
	}
}

// AttrInt, AttrInts, AttrFloat and AttrString make node attributes.
func AttrInt(name string, v int64) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: &name, Type: onnxpb.AttributeProto_INT.Enum(), I: &v}
}

func AttrInts(name string, v []int64) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: &name, Type: onnxpb.AttributeProto_INTS.Enum(), Ints: v}
}

func AttrFloat(name string, v float32) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: &name, Type: onnxpb.AttributeProto_FLOAT.Enum(), F: &v}
}

func AttrString(name, v string) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: &name, Type: onnxpb.AttributeProto_STRING.Enum(), S: []byte(v)}
}

func ptr[T any](v T) *T { return &v }

// Input is a graph input with values drawn for one run.
type Input struct {
	Name   string
	Dims   []int64
	Values []float64
}

// Draw draws every input's values from its generator, in declaration order.
func (g *Graph) Draw(r *rand.Rand) []Input {
	out := make([]Input, len(g.inputs))
	for k, in := range g.inputs {
		out[k] = Input{in.name, in.dims, in.gen(r, int(onnxio.NumElements(in.dims)))}
	}
	return out
}
