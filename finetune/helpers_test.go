package finetune

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/onnx-cria/onnx-cria/onnxio"
	"github.com/onnx-cria/onnx-cria/onnxio/onnxpb"
	"github.com/onnx-cria/onnx-cria/ort"
)

// needORT fails the test (never skips) when ONNX Runtime is missing.
func needORT(t testing.TB) {
	t.Helper()
	if err := ort.Init(ort.Config{}); err != nil {
		t.Fatalf("ONNX Runtime is required for this test (run scripts/setup-ort.sh): %v", err)
	}
}

// testRT runs tests on one thread: results are then reproducible and the
// race detector has less to watch.
var testRT = ort.Config{Threads: 1}

// tgraph builds small test models in either float type.
type tgraph struct {
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

func newTG(opset int64) *tgraph { return &tgraph{opset: opset} }

// in declares a float graph input with values from gen (uniform in [-1, 1]
// when gen is nil).
func (g *tgraph) in(name string, gen func(*rand.Rand, int) []float64, dims ...int64) string {
	if gen == nil {
		gen = uniform(-1, 1)
	}
	g.inputs = append(g.inputs, tinput{name, dims, gen})
	return name
}

// ints declares an int64 constant.
func (g *tgraph) ints(name string, dims []int64, v ...int64) string {
	g.consts = append(g.consts, onnxio.NewInt64Tensor(name, dims, v))
	return name
}

// fconst declares a float constant (in the graph's float type).
func (g *tgraph) fconst(name string, dims []int64, v ...float64) string {
	g.fconsts = append(g.fconsts, fconst{name, dims, v})
	return name
}

func (g *tgraph) node(op string, ins []string, outs []string, attrs ...*onnxpb.AttributeProto) {
	name := fmt.Sprintf("n%d_%s", len(g.nodes), op)
	g.nodes = append(g.nodes, &onnxpb.NodeProto{Name: &name, OpType: &op, Input: ins, Output: outs, Attribute: attrs})
}

// op adds a one-output node named out.
func (g *tgraph) op(op string, ins []string, out string, attrs ...*onnxpb.AttributeProto) string {
	g.node(op, ins, []string{out}, attrs...)
	return out
}

func (g *tgraph) out(names ...string) { g.outputs = append(g.outputs, names...) }

// model builds the model with float inputs and constants of type dt.
func (g *tgraph) model(t testing.TB, dt onnxio.DataType) *onnxio.Model {
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

func uniform(lo, hi float64) func(*rand.Rand, int) []float64 {
	return func(r *rand.Rand, n int) []float64 {
		v := make([]float64, n)
		for i := range v {
			v[i] = lo + (hi-lo)*r.Float64()
		}
		return v
	}
}

// away gives values of either sign with magnitude in [m, 1], so that kinks
// at 0 stay farther than any finite-difference step.
func away(m float64) func(*rand.Rand, int) []float64 {
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

// distinct gives a shuffled grid of values 0.05 apart: no ties for max.
func distinct(r *rand.Rand, n int) []float64 {
	v := make([]float64, n)
	for i, p := range r.Perm(n) {
		v[i] = float64(p)*0.05 - float64(n)*0.025
	}
	return v
}

func tensorOf(name string, dt onnxio.DataType, dims []int64, v []float64) ort.Tensor {
	if dt == onnxio.Double {
		return ort.Tensor{Name: name, DType: dt, Shape: dims, Data: append([]float64{}, v...)}
	}
	f := make([]float32, len(v))
	for i, x := range v {
		f[i] = float32(x)
	}
	return ort.Tensor{Name: name, DType: dt, Shape: dims, Data: f}
}

func float64sOf(t ort.Tensor) []float64 {
	switch d := t.Data.(type) {
	case []float64:
		return d
	case []float32:
		out := make([]float64, len(d))
		for i, x := range d {
			out[i] = float64(x)
		}
		return out
	}
	panic(fmt.Sprintf("tensor %s holds %T", t.Name, t.Data))
}

// notImplemented reports ORT's refusal to run an op in a type.
func notImplemented(err error) bool {
	s := err.Error()
	return strings.Contains(s, "NOT_IMPLEMENTED") || strings.Contains(s, "Could not find an implementation") ||
		strings.Contains(s, "types are incompatible")
}

// checkGrad compares the VJP graph's gradients of wrt with central finite
// differences of L = sum_o <R_o, o> for random R, in float64 when ORT runs
// every op in double precision and in float32 otherwise.
func checkGrad(t *testing.T, g *tgraph, wrt ...string) {
	t.Helper()
	checkGradIn(t, g, onnxio.Double, wrt...)
}

// checkGradIn is checkGrad starting from element type dt.
func checkGradIn(t *testing.T, g *tgraph, dt onnxio.DataType, wrt ...string) {
	t.Helper()
	needORT(t)
	for {
		err := tryCheckGrad(t, g, dt, wrt)
		if err == nil {
			return
		}
		if dt == onnxio.Double && notImplemented(err) {
			dt = onnxio.Float
			continue
		}
		t.Fatal(err)
	}
}

func tryCheckGrad(t *testing.T, g *tgraph, dt onnxio.DataType, wrt []string) error {
	t.Helper()
	m := g.model(t, dt)
	vm, err := VJP(m, wrt)
	if err != nil {
		return err
	}
	fwd, err := ort.NewSessionForModel(m, nil, testRT)
	if err != nil {
		return err
	}
	defer fwd.Destroy()
	bwd, err := ort.NewSessionForModel(vm, nil, testRT)
	if err != nil {
		return err
	}
	defer bwd.Destroy()
	r := rand.New(rand.NewPCG(1, 2))
	vals := map[string][]float64{}
	var feed []ort.Tensor
	dims := map[string][]int64{}
	for _, in := range g.inputs {
		v := in.gen(r, int(onnxio.NumElements(in.dims)))
		vals[in.name] = v
		dims[in.name] = in.dims
		feed = append(feed, tensorOf(in.name, dt, in.dims, v))
	}
	outs, err := fwd.Run(feed...)
	if err != nil {
		return err
	}
	seeds := map[string][]float64{}
	bfeed := append([]ort.Tensor{}, feed...)
	for _, o := range outs {
		s := uniform(-1, 1)(r, len(float64sOf(o)))
		seeds[o.Name] = s
		bfeed = append(bfeed, tensorOf(SeedName(o.Name), o.DType, o.Shape, s))
	}
	res, err := bwd.Run(bfeed...)
	if err != nil {
		return err
	}
	grads := map[string][]float64{}
	for _, o := range res {
		if strings.HasPrefix(o.Name, "grad:") {
			grads[strings.TrimPrefix(o.Name, "grad:")] = float64sOf(o)
		}
	}
	loss := func(fd []ort.Tensor) float64 {
		outs, err := fwd.Run(fd...)
		if err != nil {
			t.Fatal(err)
		}
		var l float64
		for _, o := range outs {
			for i, y := range float64sOf(o) {
				l += seeds[o.Name][i] * y
			}
		}
		return l
	}
	h, tol := 1e-6, 1e-6
	if dt == onnxio.Float {
		h, tol = 1e-2, 2e-2
	}
	for _, w := range wrt {
		gv := grads[w]
		if len(gv) != len(vals[w]) {
			return fmt.Errorf("gradient of %s has %d elements, want %d", w, len(gv), len(vals[w]))
		}
		scale := 0.0
		for _, x := range gv {
			scale += math.Abs(x)
		}
		scale /= float64(len(gv))
		idx := r.Perm(len(gv))
		if len(idx) > 48 {
			idx = idx[:48]
		}
		for _, i := range idx {
			fd := func(delta float64) float64 {
				in := make([]ort.Tensor, len(feed))
				for k, tt := range feed {
					if tt.Name == w {
						v := append([]float64{}, vals[w]...)
						v[i] += delta
						in[k] = tensorOf(w, dt, dims[w], v)
					} else {
						in[k] = tt
					}
				}
				return loss(in)
			}
			num := (fd(h) - fd(-h)) / (2 * h)
			if d := math.Abs(num - gv[i]); d > tol*(math.Abs(num)+math.Abs(gv[i])+scale+1e-12) {
				return fmt.Errorf("%s: d/d%s[%d]: backward %.8g, finite difference %.8g (%s)", g.nodes[len(g.nodes)-1].GetOpType(), w, i, gv[i], num, dt)
			}
		}
	}
	t.Logf("%d gradients checked in %s", len(wrt), dt)
	return nil
}

// pieces draws uniformly from the union of intervals lo[i]..hi[i], which
// keeps inputs away from kinks between them.
func pieces(bounds ...float64) func(*rand.Rand, int) []float64 {
	return func(r *rand.Rand, n int) []float64 {
		v := make([]float64, n)
		for i := range v {
			k := 2 * r.IntN(len(bounds)/2)
			v[i] = bounds[k] + (bounds[k+1]-bounds[k])*r.Float64()
		}
		return v
	}
}

func nil2() *rand.Rand { return rand.New(rand.NewPCG(7, 7)) }
