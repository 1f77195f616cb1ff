package autodiff

import (
	"fmt"

	"github.com/onnx-cria/onnx-cria/onnxio"
	"github.com/onnx-cria/onnx-cria/onnxio/onnxpb"
)

// SeedName is the graph input through which VJP feeds dL/do for a graph
// output o.
func SeedName(o string) string { return "seed:" + o }

// GradName is the graph output that carries dL/dt for a tensor t.
func GradName(t string) string { return "grad:" + t }

// VJP returns a copy of m that computes vector-Jacobian products: for
// every graph output o it takes an extra input SeedName(o) (same type and
// shape as o, standing for dL/do), and besides m's outputs it returns
// GradName(t) = dL/dt for every tensor t in wrt, where L = sum over o of
// <seed(o), o>. Initializers named in wrt become graph inputs (fed with
// the weights). A tensor the outputs do not depend on gets zeros. m is not
// modified.
func VJP(m *onnxio.Model, wrt []string) (*onnxio.Model, error) {
	c, b, err := prepare(m, wrt)
	if err != nil {
		return nil, err
	}
	g := c.Graph()
	seeds := map[string]string{}
	for _, o := range g.GetOutput() {
		s := SeedName(o.GetName())
		in := cloneVI(o)
		in.Name = &s
		g.Input = append(g.Input, in)
		seeds[o.GetName()] = s
	}
	grads, err := b.backward(seeds, wrt)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", m.Name(), err)
	}
	for _, t := range wrt {
		b.output(GradName(t), grads[t], t)
	}
	return c, nil
}

func cloneVI(v *onnxpb.ValueInfoProto) *onnxpb.ValueInfoProto {
	dt, shape, _ := onnxio.TensorType(v)
	return onnxio.NewValueInfo(v.GetName(), dt, shape)
}

// output declares name as a graph output holding g, the gradient of the
// forward tensor t (zeros of t's shape when g is ""), typed like t.
func (b *builder) output(name, g, t string) {
	dt := b.dtype(t)
	if g == "" {
		g = b.zerosLike(t, dt)
	}
	b.scope = ""
	id := "Identity"
	b.g.Node = append(b.g.Node, &onnxpb.NodeProto{Name: ptr(b.fresh("out")), OpType: &id, Input: []string{g}, Output: []string{name}})
	var shape []onnxio.Dim
	if d, ok := b.dims(t); ok {
		for _, v := range d {
			if v >= 0 {
				shape = append(shape, onnxio.Dim{Value: v, Known: true})
			} else {
				shape = append(shape, onnxio.Dim{})
			}
		}
	}
	vi := onnxio.NewValueInfo(name, dt, shape)
	if _, ok := b.dims(t); !ok {
		vi.Type.GetTensorType().Shape = nil
	}
	b.g.Output = append(b.g.Output, vi)
}

func ptr[T any](v T) *T { return &v }

// prepare clones m for differentiation: initializers in wrt become graph
// inputs, and an opset between 13 and 15 is raised to 16 so that scatter
// ops can add (the operators models use did not change meaning between
// those versions).
func prepare(m *onnxio.Model, wrt []string) (*onnxio.Model, *builder, error) {
	c := m.Clone()
	c.Path, c.Size, c.Hash = "", 0, ""
	g := c.Graph()
	if g == nil {
		return nil, nil, fmt.Errorf("%s: model has no graph", m.Name())
	}
	if v := c.Opset(""); v >= 13 && v < 16 {
		for _, n := range g.GetNode() {
			if n.GetOpType() == "RoiAlign" {
				v = 0
			}
		}
		if v != 0 {
			for _, o := range c.Proto.OpsetImport {
				if o.GetDomain() == "" || o.GetDomain() == "ai.onnx" {
					o.Version = ptr(int64(16))
				}
			}
		}
	}
	inits := map[string]*onnxpb.TensorProto{}
	for _, t := range g.GetInitializer() {
		inits[t.GetName()] = t
	}
	inputs := map[string]bool{}
	for _, v := range g.GetInput() {
		inputs[v.GetName()] = true
	}
	want := map[string]bool{}
	for _, t := range wrt {
		if want[t] {
			return nil, nil, fmt.Errorf("tensor %q listed twice", t)
		}
		want[t] = true
		init, ok := inits[t]
		if !ok {
			continue
		}
		dt := onnxio.DataType(init.GetDataType())
		if !dt.IsFloat() {
			return nil, nil, fmt.Errorf("initializer %q has element type %s, which has no gradient", t, dt)
		}
		if !inputs[t] {
			var shape []onnxio.Dim
			for _, d := range init.GetDims() {
				shape = append(shape, onnxio.Dim{Value: d, Known: true})
			}
			g.Input = append(g.Input, onnxio.NewValueInfo(t, dt, shape))
		}
	}
	if len(want) > 0 {
		kept := g.Initializer[:0]
		for _, t := range g.Initializer {
			if !want[t.GetName()] {
				kept = append(kept, t)
			}
		}
		g.Initializer = kept
	}
	b := newBuilder(c)
	for _, t := range wrt {
		if _, ok := b.sh.DTypes[t]; !ok && !b.known(t) {
			return nil, nil, fmt.Errorf("%s: no tensor %q in the graph", m.Name(), t)
		}
	}
	return c, b, nil
}

// known reports whether t is a graph input, initializer or node output.
func (b *builder) known(t string) bool {
	if _, ok := b.ix.Producer[t]; ok {
		return true
	}
	if _, ok := b.ix.Inputs[t]; ok {
		return true
	}
	_, ok := b.ix.Init[t]
	return ok
}
