package capture

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/onnx-cria/onnx-cria/dataset"
	"github.com/onnx-cria/onnx-cria/onnxio"
	"github.com/onnx-cria/onnx-cria/onnxio/onnxpb"
	"github.com/onnx-cria/onnx-cria/ort"
	"github.com/onnx-cria/onnx-cria/rewrite"
	"google.golang.org/protobuf/proto"
)

func TestMain(m *testing.M) {
	if err := ort.Init(ort.Config{}); err != nil {
		fmt.Fprintf(os.Stderr, "capture tests need ONNX Runtime; run scripts/setup-ort.sh first.\n%v\n", err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

func sp(s string) *string { return &s }

// tokenModel is x [N,T,D] -> h = Relu(x * scale) (scale per channel), with
// an attention_mask input that the graph itself ignores, and y = h.
func tokenModel(t *testing.T, tl, d int) *onnxio.Model {
	t.Helper()
	scale := make([]float64, d)
	for k := range scale {
		scale[k] = float64(k+1) / float64(d)
	}
	raw, _ := onnxio.EncodeFloat64s(onnxio.Float, scale)
	st, _ := onnxio.NewTensor("scale", onnxio.Float, []int64{int64(d)}, raw)
	dims := []onnxio.Dim{{Param: "N"}, {Value: int64(tl), Known: true}, {Value: int64(d), Known: true}}
	g := &onnxpb.GraphProto{
		Name: sp("token"),
		Input: []*onnxpb.ValueInfoProto{
			onnxio.NewValueInfo("x", onnxio.Float, dims),
			onnxio.NewValueInfo("attention_mask", onnxio.Int64, dims[:2]),
		},
		Output:      []*onnxpb.ValueInfoProto{onnxio.NewValueInfo("y", onnxio.Float, dims)},
		Initializer: []*onnxpb.TensorProto{st},
		Node: []*onnxpb.NodeProto{
			{OpType: sp("Mul"), Input: []string{"x", "scale"}, Output: []string{"z"}, Name: sp("mul")},
			{OpType: sp("Relu"), Input: []string{"z"}, Output: []string{"h"}, Name: sp("relu")},
			{OpType: sp("Identity"), Input: []string{"h"}, Output: []string{"y"}, Name: sp("id")},
		},
	}
	ir := int64(8)
	ver := int64(17)
	return &onnxio.Model{Proto: &onnxpb.ModelProto{IrVersion: &ir, Graph: g, OpsetImport: []*onnxpb.OperatorSetIdProto{{Domain: sp(""), Version: &ver}}}}
}

func tokenData(t *testing.T, n, tl, d int, seed uint64) (*dataset.Set, []float32, []int64) {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, 1))
	x := make([]float32, n*tl*d)
	for k := range x {
		x[k] = float32(r.NormFloat64())
	}
	mask := make([]int64, n*tl)
	for s := 0; s < n; s++ {
		real := 1 + r.IntN(tl)
		for p := 0; p < real; p++ {
			mask[s*tl+p] = 1
		}
	}
	xa, _ := dataset.New("x", []int{n, tl, d}, x)
	ma, _ := dataset.New("attention_mask", []int{n, tl}, mask)
	return &dataset.Set{Path: "mem", Arrays: []*dataset.Array{xa, ma}}, x, mask
}

// The reduction must be the masked mean over real tokens (or the root mean
// square), computed here straight from the inputs.
func TestMaskedTokenMean(t *testing.T) {
	const n, tl, d = 37, 6, 5
	data, x, mask := tokenData(t, n, tl, d, 3)
	static := tokenModel(t, tl, d)
	// The same model with a dynamic sequence axis, as exports with
	// dynamic_axes have it: the calibration data fixes its length.
	dynamic := dynamicAxes(static)
	for _, rms := range []bool{false, true} {
		for _, tensor := range []string{"z", "h"} {
			m := static
			if rms == (tensor == "h") {
				m = dynamic
			}
			res, err := Run(m, []Point{{Tensor: tensor, Axis: 2, RMS: rms}}, data, Options{Batch: 8})
			if err != nil {
				t.Fatal(err)
			}
			got := res.Data[0]
			if r, c := got.Dims(); r != n || c != d {
				t.Fatalf("got %dx%d, want %dx%d", r, c, n, d)
			}
			for s := 0; s < n; s++ {
				for u := 0; u < d; u++ {
					var sum, cnt float64
					for p := 0; p < tl; p++ {
						if mask[s*tl+p] == 0 {
							continue
						}
						v := float64(x[(s*tl+p)*d+u]) * float64(u+1) / d
						if tensor == "h" {
							v = math.Max(v, 0)
						}
						if rms {
							v *= v
						}
						sum += v
						cnt++
					}
					want := sum / cnt
					if rms {
						want = math.Sqrt(want)
					}
					if math.Abs(got.At(s, u)-want) > 1e-5*math.Max(1, math.Abs(want)) {
						t.Fatalf("%s rms=%v sample %d unit %d: got %v, want %v", tensor, rms, s, u, got.At(s, u), want)
					}
				}
			}
		}
	}
}

// Without a mask every position counts; blocks of B positions per unit and
// R repeats are averaged into the unit.
func TestBlocksAndRepeats(t *testing.T) {
	const n, tl, d = 9, 4, 12
	m := tokenModel(t, tl, d)
	data, x, _ := tokenData(t, n, tl, d, 5)
	data.Arrays = data.Arrays[:1]
	m.Graph().Input = m.Graph().Input[:1]
	for _, rb := range [][2]int{{1, 1}, {1, 3}, {2, 2}, {3, 1}} {
		r, b := rb[0], rb[1]
		units := d / (r * b)
		res, err := Run(m, []Point{{Tensor: "z", Axis: 2, R: r, B: b}}, data, Options{})
		if err != nil {
			t.Fatal(err)
		}
		for s := 0; s < n; s++ {
			for u := 0; u < units; u++ {
				var sum float64
				cnt := 0
				for p := 0; p < tl; p++ {
					for rr := 0; rr < r; rr++ {
						for j := 0; j < b; j++ {
							pos := rr*units*b + u*b + j
							sum += float64(x[(s*tl+p)*d+pos]) * float64(pos+1) / d
							cnt++
						}
					}
				}
				if want := sum / float64(cnt); math.Abs(res.Data[0].At(s, u)-want) > 1e-5 {
					t.Fatalf("R=%d B=%d sample %d unit %d: got %v want %v", r, b, s, u, res.Data[0].At(s, u), want)
				}
			}
		}
	}
}

func TestNaNIsAnError(t *testing.T) {
	m := tokenModel(t, 3, 2)
	data, x, _ := tokenData(t, 4, 3, 2, 1)
	x[7] = float32(math.NaN())
	_, err := Run(m, []Point{{Tensor: "h", Axis: 2}}, data, Options{})
	if err == nil || !strings.Contains(err.Error(), `"h"`) || !strings.Contains(err.Error(), "sample 1") {
		t.Fatalf("want an error naming tensor h and sample 1, got %v", err)
	}
}

func TestBadPoints(t *testing.T) {
	m := tokenModel(t, 3, 4)
	data, _, _ := tokenData(t, 4, 3, 4, 1)
	for _, c := range []struct {
		p    Point
		want string
	}{
		{Point{Tensor: "nope", Axis: 1}, "nope"},
		{Point{Tensor: "h", Axis: 0}, "axis 0"},
		{Point{Tensor: "h", Axis: 5}, "no static unit axis"},
		{Point{Tensor: "h", Axis: 2, B: 3}, "not a multiple"},
	} {
		if _, err := Run(m, []Point{c.p}, data, Options{}); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: want error containing %q, got %v", c.p, c.want, err)
		}
	}
	// The model itself is never changed.
	if len(m.Graph().Node) != 3 || len(m.Graph().Output) != 1 {
		t.Error("capture modified the model")
	}
}

// On real fixtures, capture of every group's observation points agrees with
// the mean computed in Go from the full tensors that ORT returns.
func TestFixturesAgreeWithFullTensors(t *testing.T) {
	paths, _ := filepath.Glob("../testdata/models/*/model*.onnx")
	if len(paths) == 0 {
		t.Fatal("no fixtures")
	}
	checked := 0
	defer func() {
		if checked == 0 {
			t.Error("no fixture has a meta.json naming its calibration data")
		}
	}()
	for _, p := range paths {
		meta := filepath.Join(filepath.Dir(p), "meta.json")
		calib := calibOf(t, meta)
		if calib == "" {
			continue
		}
		checked++
		t.Run(p, func(t *testing.T) {
			m, err := onnxio.Load(p)
			if err != nil {
				t.Fatal(err)
			}
			data, err := dataset.Load(calib)
			if err != nil {
				t.Fatal(err)
			}
			if data, err = data.Subset(6, 1); err != nil {
				t.Fatal(err)
			}
			pts := observed(t, m)
			if len(pts) == 0 {
				t.Fatal("no observed groups: every fixture has nonlinearities to observe")
			}
			res, err := Run(m, pts, data, Options{Batch: 4})
			if err != nil {
				t.Fatal(err)
			}
			full := fullTensors(t, m, pts, data)
			mask := data.Get("attention_mask")
			for k, pt := range pts {
				checkAgainstFull(t, pt, full[k], res.Data[k], mask)
			}
			// Again into the first result's memory, filled with garbage:
			// every value must be written anew.
			var bufs Buffers
			first := map[*float32]bool{}
			for _, d := range res.Data {
				first[&d.data[0]] = true
			}
			bufs.Release(res)
			for _, f := range bufs.free {
				for i := range f {
					f[i] = float32(math.NaN())
				}
			}
			res, err = Run(m, pts, data, Options{Batch: 4, Buffers: &bufs})
			if err != nil {
				t.Fatal(err)
			}
			for k, pt := range pts {
				if !first[&res.Data[k].data[0]] {
					t.Errorf("%s: the second capture did not reuse the released memory", pt.Tensor)
				}
				checkAgainstFull(t, pt, full[k], res.Data[k], mask)
			}
		})
	}
}

func calibOf(t *testing.T, meta string) string {
	t.Helper()
	b, err := os.ReadFile(meta)
	if err != nil {
		return ""
	}
	var m struct {
		Calib string `json:"calib"`
	}
	if err := json.Unmarshal(b, &m); err != nil || m.Calib == "" {
		t.Fatalf("%s: no calib entry (%v)", meta, err)
	}
	return filepath.Join(filepath.Dir(meta), m.Calib)
}

// fullTensors runs the model once over data with the points' tensors as
// outputs, in Go memory.
func fullTensors(t *testing.T, m *onnxio.Model, pts []Point, data *dataset.Set) []ort.Tensor {
	t.Helper()
	var names []string
	for _, p := range pts {
		names = append(names, p.Tensor)
	}
	s, err := ort.NewSessionForModel(m, names, ort.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Destroy()
	specs, _ := ort.SpecsOf(s.Inputs())
	b, err := data.Match(specs, "")
	if err != nil {
		t.Fatal(err)
	}
	var in []ort.Tensor
	for k, a := range b.Inputs {
		tt, _ := ort.FromArray(b.Specs[k].Name, a)
		in = append(in, tt)
	}
	out, err := s.Run(in...)
	if err != nil {
		t.Fatal(err)
	}
	return out[len(out)-len(pts):]
}

// checkAgainstFull reduces a full tensor the slow, obvious way.
func checkAgainstFull(t *testing.T, p Point, full ort.Tensor, got interface{ At(int, int) float64 }, mask *dataset.Array) {
	t.Helper()
	x := full.Data.([]float32)
	shape := full.Shape
	r, b := max(p.R, 1), max(p.B, 1)
	n := int(shape[p.Axis]) / (r * b)
	var mv []float64
	tl := -1
	if mask != nil {
		mv = mask.AsFloat64()
		tl = mask.Shape[1]
	}
	strides := make([]int, len(shape))
	acc := 1
	for k := len(shape) - 1; k >= 0; k-- {
		strides[k] = acc
		acc *= int(shape[k])
	}
	ns := int(shape[0])
	sum := make([]float64, ns*n)
	cnt := make([]float64, ns*n)
	for i, v := range x {
		idx := make([]int, len(shape))
		for k := range shape {
			idx[k] = (i / strides[k]) % int(shape[k])
		}
		s := idx[0]
		w := 1.0
		for k := 1; k < len(shape); k++ {
			if k != p.Axis && int(shape[k]) == tl {
				w *= mv[s*tl+idx[k]]
			}
		}
		pos := idx[p.Axis]
		u := (pos % (n * b)) / b
		f := float64(v)
		if p.RMS {
			f *= f
		}
		sum[s*n+u] += w * f
		cnt[s*n+u] += w
	}
	for s := 0; s < ns; s++ {
		for u := 0; u < n; u++ {
			want := sum[s*n+u] / cnt[s*n+u]
			if p.RMS {
				want = math.Sqrt(want)
			}
			if g := got.At(s, u); math.Abs(g-want) > 1e-4*math.Max(1, math.Abs(want)) {
				t.Fatalf("%s: sample %d unit %d: capture %v, full tensor %v", p.Tensor, s, u, g, want)
			}
		}
	}
}

// convModel is x [N,4,5,5] -> Conv(kernel k, pads p) -> BatchNormalization
// -> Mul by a per-channel constant -> Sub a scalar = z -> Relu = y.
func convModel(t *testing.T, k, pad, stride, c, o int64) *onnxio.Model {
	t.Helper()
	r := rand.New(rand.NewPCG(uint64(k), uint64(pad)))
	cst := func(name string, dims []int64, pos bool) *onnxpb.TensorProto {
		n := int64(1)
		for _, d := range dims {
			n *= d
		}
		v := make([]float64, n)
		for i := range v {
			v[i] = r.NormFloat64()
			if pos {
				v[i] = 0.5 + math.Abs(v[i])
			}
		}
		raw, _ := onnxio.EncodeFloat64s(onnxio.Float, v)
		tt, _ := onnxio.NewTensor(name, onnxio.Float, dims, raw)
		return tt
	}
	dims := []onnxio.Dim{{Param: "N"}, {Value: c, Known: true}, {Value: 5, Known: true}, {Value: 5, Known: true}}
	g := &onnxpb.GraphProto{
		Name:  sp("conv"),
		Input: []*onnxpb.ValueInfoProto{onnxio.NewValueInfo("x", onnxio.Float, dims)},
		Output: []*onnxpb.ValueInfoProto{onnxio.NewValueInfo("y", onnxio.Float, []onnxio.Dim{{Param: "N"}, {Value: o, Known: true},
			{Value: (5+2*pad-k)/stride + 1, Known: true}, {Value: (5+2*pad-k)/stride + 1, Known: true}})},
		Initializer: []*onnxpb.TensorProto{cst("w", []int64{o, c, k, k}, false), cst("b", []int64{o}, false),
			cst("scale", []int64{o}, true), cst("bias", []int64{o}, false), cst("mean", []int64{o}, false), cst("var", []int64{o}, true),
			cst("mul", []int64{o, 1, 1}, false), cst("sub", nil, false)},
		Node: []*onnxpb.NodeProto{
			{OpType: sp("Conv"), Input: []string{"x", "w", "b"}, Output: []string{"c"}, Name: sp("conv"),
				Attribute: []*onnxpb.AttributeProto{intsAttr("pads", []int64{pad, pad, pad, pad}), intsAttr("strides", []int64{stride, stride}),
					intsAttr("kernel_shape", []int64{k, k})}},
			{OpType: sp("BatchNormalization"), Input: []string{"c", "scale", "bias", "mean", "var"}, Output: []string{"bn"}, Name: sp("bn")},
			{OpType: sp("Mul"), Input: []string{"bn", "mul"}, Output: []string{"m"}, Name: sp("m")},
			{OpType: sp("Sub"), Input: []string{"m", "sub"}, Output: []string{"z"}, Name: sp("sub")},
			{OpType: sp("Relu"), Input: []string{"z"}, Output: []string{"y"}, Name: sp("relu")},
		},
	}
	ir, ver := int64(8), int64(17)
	return &onnxio.Model{Proto: &onnxpb.ModelProto{IrVersion: &ir, Graph: g, OpsetImport: []*onnxpb.OperatorSetIdProto{{Domain: sp(""), Version: &ver}}}}
}

// The spatial mean of a 1x1 Conv's output (through per-channel affine ops)
// is computed from the mean of its input, and that of a Conv with few input
// channels from shifted means of its input, without reading the map; other
// Convs are read directly. All must equal the map's mean.
func TestLinearConvMean(t *testing.T) {
	for _, c := range []struct {
		k, pad, stride, cin, cout int64
		fromMean                  bool
	}{
		{1, 0, 1, 4, 6, true},
		{1, 1, 1, 4, 6, true},  // padded 1x1: 1 x 4 <= 6, shifted means
		{3, 1, 1, 4, 6, false}, // 9 x 4 > 6: read
		{3, 1, 2, 1, 16, true}, // a stem: 9 x 1 <= 16, strided and padded
		{3, 0, 1, 2, 20, true},
		{2, 1, 2, 3, 12, true},
	} {
		x := make([]float32, 7*int(c.cin)*5*5)
		r := rand.New(rand.NewPCG(9, uint64(c.cin)))
		for i := range x {
			x[i] = float32(r.NormFloat64())
		}
		xa, _ := dataset.New("x", []int{7, int(c.cin), 5, 5}, x)
		data := &dataset.Set{Path: "mem", Arrays: []*dataset.Array{xa}}
		m := convModel(t, c.k, c.pad, c.stride, c.cin, c.cout)
		pts := []Point{{Tensor: "z", Axis: 1}, {Tensor: "y", Axis: 1}}
		inst, _, _, err := instrument(m, pts, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		readsZ := false
		for _, n := range inst.Graph().GetNode() {
			if strings.HasPrefix(n.GetName(), "onnx_cria_capture_") && slices.Contains(n.GetInput(), "z") {
				readsZ = true
			}
		}
		if readsZ == c.fromMean {
			t.Errorf("%+v: capture reads z: %v, want %v", c, readsZ, !c.fromMean)
		}
		res, err := Run(m, pts, data, Options{Batch: 3})
		if err != nil {
			t.Fatal(err)
		}
		full := fullTensors(t, m, pts, data)
		for k, pt := range pts {
			checkAgainstFull(t, pt, full[k], res.Data[k], nil)
		}
	}
}

// The instrumented copy keeps only what the captured tensors depend on: on
// the MLP, observing the first hidden layer leaves out every later layer and
// the model's own output.
func TestInstrumentKeepsOnlyWhatItNeeds(t *testing.T) {
	m, err := onnxio.Load("../testdata/models/mlp/model.onnx")
	if err != nil {
		t.Fatal(err)
	}
	a, err := rewrite.Analyze(m, rewrite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	o := a.Groups[0].Observe
	c, _, _, err := instrument(m, []Point{{Tensor: o.Post, Axis: o.PostAxis}}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	made := map[string]bool{}
	for _, n := range c.Graph().GetNode() {
		for _, out := range n.GetOutput() {
			made[out] = true
		}
	}
	if !made[o.Post] {
		t.Fatalf("the observed tensor %s is no longer made", o.Post)
	}
	for _, out := range m.Graph().GetOutput() {
		if made[out.GetName()] {
			t.Errorf("graph output %s is still computed", out.GetName())
		}
	}
	if len(c.Graph().GetNode()) >= len(m.Graph().GetNode()) {
		t.Errorf("%d nodes, the model has %d", len(c.Graph().GetNode()), len(m.Graph().GetNode()))
	}
	if len(m.Graph().GetOutput()) == 0 || m.Graph().GetOutput()[0].GetName() == c.Graph().GetOutput()[0].GetName() {
		t.Error("instrument changed the model's outputs or kept them")
	}
}

// dynamicAxes makes every axis but the last of every graph input and output
// symbolic (a dynamic batch and sequence, as torch.onnx.export's
// dynamic_axes writes them) and drops value_info, so that nothing in the
// model fixes the sequence length.
func dynamicAxes(m *onnxio.Model) *onnxio.Model {
	c := m.Clone()
	g := c.Graph()
	for _, vs := range [][]*onnxpb.ValueInfoProto{g.Input, g.Output} {
		for _, v := range vs {
			s := v.GetType().GetTensorType().GetShape()
			for ax := 0; s != nil && ax < len(s.Dim)-1; ax++ {
				if ax < 2 {
					s.Dim[ax].Value = &onnxpb.TensorShapeProto_Dimension_DimParam{DimParam: fmt.Sprintf("d%d", ax)}
				}
			}
		}
	}
	g.ValueInfo = nil
	return c
}

// A model that imports opset 9 captures exactly what its opset-17 twin
// does (issue 18, item 2): the reduction ops take their opset's form.
func TestOldOpsets(t *testing.T) {
	cases := []struct {
		name, model, calib string
		edit               func(*onnxio.Model) *onnxio.Model
	}{
		{"opset 9", "mlp", "fmnist_calib.npz", func(m *onnxio.Model) *onnxio.Model {
			c := m.Clone()
			for _, o := range c.Proto.OpsetImport {
				if o.GetDomain() == "" {
					o.Version = proto.Int64(9)
				}
			}
			return c
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m, err := onnxio.Load(filepath.Join("../testdata/models", tc.model, "model.onnx"))
			if err != nil {
				t.Fatal(err)
			}
			data, err := dataset.Load(filepath.Join("../testdata/data", tc.calib))
			if err != nil {
				t.Fatal(err)
			}
			if data, err = data.Subset(8, 2); err != nil {
				t.Fatal(err)
			}
			pts := observed(t, m)
			want, err := Run(m, pts, data, Options{Batch: 4, Runtime: ort.Config{Threads: 1}})
			if err != nil {
				t.Fatal(err)
			}
			got, err := Run(tc.edit(m), pts, data, Options{Batch: 4, Runtime: ort.Config{Threads: 1}})
			if err != nil {
				t.Fatal(err)
			}
			for k := range pts {
				w, g := want.Data[k], got.Data[k]
				r, c := w.Dims()
				for i := 0; i < r; i++ {
					for j := 0; j < c; j++ {
						if d := math.Abs(w.At(i, j) - g.At(i, j)); d > 1e-5*(1+math.Abs(w.At(i, j))) {
							t.Fatalf("%s[%d,%d]: %v, static twin %v", pts[k].Tensor, i, j, g.At(i, j), w.At(i, j))
						}
					}
				}
			}
		})
	}
}

// A projected point (fused attention's values, which no tensor holds) is
// the reduction of the tensor times columns of a weight, plus a bias:
// compared with a model that computes that product explicitly.
func TestProjection(t *testing.T) {
	const n, tl, d, width, lo, hi = 11, 4, 5, 7, 1, 7
	data, _, _ := tokenData(t, n, tl, d, 9)
	r := rand.New(rand.NewPCG(4, 4))
	w, bias := make([]float64, d*width), make([]float64, width)
	for k := range w {
		w[k] = r.NormFloat64()
	}
	for k := range bias {
		bias[k] = r.NormFloat64()
	}
	tensor := func(name string, dims []int64, v []float64) *onnxpb.TensorProto {
		raw, _ := onnxio.EncodeFloat64s(onnxio.Float, v)
		c, err := onnxio.NewTensor(name, onnxio.Float, dims, raw)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	m := tokenModel(t, tl, d)
	g := m.Graph()
	g.Initializer = append(g.Initializer, tensor("w", []int64{d, width}, w), tensor("b", []int64{width}, bias))
	// The explicit product, for reference.
	ref := m.Clone()
	var wc, bc []float64
	for row := 0; row < d; row++ {
		wc = append(wc, w[row*width+lo:row*width+hi]...)
	}
	bc = bias[lo:hi]
	rg := ref.Graph()
	rg.Initializer = append(rg.Initializer, tensor("wc", []int64{d, hi - lo}, wc), tensor("bc", []int64{hi - lo}, bc))
	rg.Node = append(rg.Node,
		&onnxpb.NodeProto{OpType: sp("MatMul"), Input: []string{"z", "wc"}, Output: []string{"zw"}, Name: sp("mm")},
		&onnxpb.NodeProto{OpType: sp("Add"), Input: []string{"zw", "bc"}, Output: []string{"pz"}, Name: sp("add")})
	p := Point{Tensor: "z", Axis: 2, B: 2, RMS: true, Project: &Projection{Weight: "w", Bias: "b", Lo: lo, Hi: hi}}
	res, err := Run(m, []Point{p}, data, Options{Batch: 4})
	if err != nil {
		t.Fatal(err)
	}
	if r, c := res.Data[0].Dims(); r != n || c != (hi-lo)/2 {
		t.Fatalf("got %dx%d, want %dx%d", r, c, n, (hi-lo)/2)
	}
	want := Point{Tensor: "pz", Axis: 2, B: 2, RMS: true}
	full := fullTensors(t, ref, []Point{want}, data)
	checkAgainstFull(t, want, full[0], res.Data[0], data.Get("attention_mask"))
	// A bad projection is an error that names the weight.
	p.Project = &Projection{Weight: "w", Lo: 3, Hi: 9}
	if _, err := Run(m, []Point{p}, data, Options{}); err == nil || !strings.Contains(err.Error(), `"w"`) {
		t.Errorf("columns past the weight: %v", err)
	}
}

// observed is every observation point of m's groups, pre and post, as
// shrink captures them.
func observed(t *testing.T, m *onnxio.Model) []Point {
	t.Helper()
	a, err := rewrite.Analyze(m, rewrite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var pts []Point
	for _, g := range a.Groups {
		if o := g.Observe; o != nil {
			var proj *Projection
			if p := o.PreProject; p != nil {
				proj = &Projection{Weight: p.Weight, Bias: p.Bias, Lo: p.Lo, Hi: p.Hi}
			}
			pts = append(pts, Point{Tensor: o.Pre, Axis: o.PreAxis, R: o.PreR, B: o.PreB, RMS: o.RMS, Project: proj},
				Point{Tensor: o.Post, Axis: o.PostAxis, R: o.PostR, B: o.PostB, RMS: o.RMS})
		}
	}
	return pts
}

// A tensor whose samples are off axis 0 ([T, N, D] after a transpose, [T*N, D]
// after a merge) is captured through a view with the samples first: the
// same values, token mask included, as the [N, T, D] tensor it comes from.
func TestSamplesOffAxisZero(t *testing.T) {
	const n, tl, d = 7, 5, 6
	m := tokenModel(t, tl, d)
	g := m.Graph()
	shape := onnxio.NewInt64Tensor("merged", []int64{2}, []int64{-1, d})
	g.Initializer = append(g.Initializer, shape)
	g.Node = append(g.Node,
		&onnxpb.NodeProto{OpType: sp("Transpose"), Input: []string{"h"}, Output: []string{"ht"}, Name: sp("t"), Attribute: []*onnxpb.AttributeProto{intsAttr("perm", []int64{1, 0, 2})}},
		&onnxpb.NodeProto{OpType: sp("Reshape"), Input: []string{"ht", "merged"}, Output: []string{"hm"}, Name: sp("merge")})
	data, _, _ := tokenData(t, n, tl, d, 3)
	for _, rms := range []bool{false, true} {
		pts := []Point{
			{Tensor: "h", Axis: 2, B: 2, RMS: rms},
			{Tensor: "ht", Axis: 2, B: 2, RMS: rms, Samples: &Samples{Axis: 1, Outer: 1, Inner: 1}},
			{Tensor: "hm", Axis: 1, B: 2, RMS: rms, Samples: &Samples{Axis: 0, Outer: tl, Inner: 1}},
		}
		res, err := Run(m, pts, data, Options{Batch: 3})
		if err != nil {
			t.Fatal(err)
		}
		for k := 1; k < len(pts); k++ {
			for s := 0; s < n; s++ {
				for u := 0; u < d/2; u++ {
					if a, b := res.Data[0].At(s, u), res.Data[k].At(s, u); math.Abs(a-b) > 1e-5*math.Max(1, math.Abs(a)) {
						t.Fatalf("rms %v, %s: sample %d unit %d: %g, from %q %g", rms, pts[k].Tensor, s, u, b, "h", a)
					}
				}
			}
		}
	}
	// Samples that do not fit the axis are an error naming the tensor.
	bad := Point{Tensor: "hm", Axis: 1, Samples: &Samples{Axis: 1, Outer: 1, Inner: 1}}
	if _, err := Run(m, []Point{bad}, data, Options{}); err == nil || !strings.Contains(err.Error(), `"hm"`) {
		t.Errorf("samples on the unit axis alone: %v", err)
	}
}
