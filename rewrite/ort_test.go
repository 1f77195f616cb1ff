package rewrite

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/onnx-cria/onnx-cria/onnxio"
	"github.com/onnx-cria/onnx-cria/onnxio/onnxpb"
	"github.com/onnx-cria/onnx-cria/ort"
)

// These tests run models through the real ONNX Runtime: a rewrite is only
// right if the numbers say so.

func TestMain(m *testing.M) {
	if err := ort.Init(ort.Config{}); err != nil {
		fmt.Fprintf(os.Stderr, "rewrite tests need ONNX Runtime; run scripts/setup-ort.sh first.\n%v\n", err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// fixtures lists the committed models the rewriter must handle.
func fixtures(t *testing.T) []string {
	t.Helper()
	var paths []string
	for _, pattern := range []string{"../testdata/models/*/*.onnx", "../onnxio/testdata/conv_bn.onnx", "../onnxio/testdata/ops17.onnx", "../onnxio/testdata/ops11.onnx"} {
		m, _ := filepath.Glob(pattern)
		paths = append(paths, m...)
	}
	if len(paths) == 0 {
		t.Fatal("no fixture models found under testdata/models")
	}
	sort.Strings(paths)
	return paths
}

// inputsFor makes n rows of deterministic inputs: normal floats, token ids
// within the vocabulary of the embedding they index, attention masks with
// some padding at the end.
func inputsFor(t *testing.T, m *onnxio.Model, n int, seed uint64) []ort.Tensor {
	t.Helper()
	g := m.Graph()
	ix := onnxio.NewIndex(g)
	r := rand.New(rand.NewPCG(seed, 7))
	var out []ort.Tensor
	for _, v := range g.GetInput() {
		if ix.Init[v.GetName()] != nil {
			continue
		}
		dt, shape, ok := onnxio.TensorType(v)
		if !ok {
			t.Fatalf("input %q is not a tensor", v.GetName())
		}
		dims := onnxio.StaticDims(shape)
		size := 1
		for k := range dims {
			if dims[k] < 0 {
				dims[k] = int64(n)
				if k > 0 {
					dims[k] = 16
				}
			}
			size *= int(dims[k])
		}
		switch dt {
		case onnxio.Float:
			x := make([]float32, size)
			for k := range x {
				x[k] = float32(r.NormFloat64())
			}
			out = append(out, ort.Tensor{Name: v.GetName(), DType: dt, Shape: dims, Data: x})
		case onnxio.Int64:
			x := make([]int64, size)
			if strings.Contains(v.GetName(), "mask") {
				cols := int(dims[len(dims)-1])
				for k := range x {
					if k%cols < cols-1-(k/cols)%4 {
						x[k] = 1
					}
				}
			} else {
				vocab := int64(2)
				for _, c := range ix.Consumers[v.GetName()] {
					if nd := ix.Node(c); nd.GetOpType() == "Gather" && nd.Input[1] == v.GetName() {
						if tt := ix.Const(nd.Input[0]); tt != nil {
							vocab = tt.GetDims()[0]
						}
					}
				}
				for k := range x {
					x[k] = r.Int64N(vocab)
				}
			}
			out = append(out, ort.Tensor{Name: v.GetName(), DType: dt, Shape: dims, Data: x})
		default:
			t.Fatalf("input %q: no test data for %s", v.GetName(), dt)
		}
	}
	return out
}

func runModel(t *testing.T, m *onnxio.Model, in []ort.Tensor) []ort.Tensor {
	t.Helper()
	b, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	s, err := ort.NewSession(b, nil, ort.Config{Threads: 1})
	if err != nil {
		t.Fatalf("fresh ORT session: %v", err)
	}
	defer s.Destroy()
	out, err := s.Run(in...)
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	return out
}

// maxDiff compares outputs element by element, relative to the scale of
// each output (its largest magnitude, at least 1): float32 sums that lose
// zero terms round differently, by a few ulps of the largest values.
func maxDiff(t *testing.T, a, b []ort.Tensor) float64 {
	t.Helper()
	if len(a) != len(b) {
		t.Fatalf("%d outputs vs %d", len(a), len(b))
	}
	worst := 0.0
	for k := range a {
		x, ok1 := a[k].Data.([]float32)
		y, ok2 := b[k].Data.([]float32)
		if !ok1 || !ok2 || len(x) != len(y) {
			t.Fatalf("output %q: %T[%d] vs %T", a[k].Name, a[k].Data, len(x), b[k].Data)
		}
		scale := 1.0
		for _, v := range x {
			scale = math.Max(scale, math.Abs(float64(v)))
		}
		for i := range x {
			d := math.Abs(float64(x[i])-float64(y[i])) / scale
			if math.IsNaN(d) {
				return math.Inf(1)
			}
			worst = math.Max(worst, d)
		}
	}
	return worst
}

// zeroOutgoing zeroes, in a copy of the analysed model, the weights that read
// the planned units.
func zeroOutgoing(t *testing.T, a *Analysis, plan Plan) *onnxio.Model {
	t.Helper()
	c, err := a.ZeroUnits(plan)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func randomUnits(r *rand.Rand, width, n int) []int {
	perm := r.Perm(width)[:n]
	sort.Ints(perm)
	return perm
}

func signature(m *onnxio.Model) string {
	var b strings.Builder
	for _, list := range [][]*onnxpb.ValueInfoProto{m.Graph().GetInput(), m.Graph().GetOutput()} {
		for _, v := range list {
			dt, shape, _ := onnxio.TensorType(v)
			fmt.Fprintf(&b, "%s %s %v;", v.GetName(), dt, shape)
		}
		b.WriteString("|")
	}
	return b.String()
}

// checkModel runs the rewriter's contract on one model.
func checkModel(t *testing.T, m *onnxio.Model) {
	a, err := Analyze(m, Options{})
	if err != nil {
		t.Fatal(err)
	}
	in := inputsFor(t, m, 3, 1)
	base := runModel(t, m, in)

	// Removing nothing changes nothing.
	same, err := a.Apply(Plan{})
	if err != nil {
		t.Fatal(err)
	}
	b0, _ := m.Encode()
	b1, _ := same.Encode()
	if string(b0) != string(b1) {
		t.Error("an empty plan changed the model")
	}
	if d := maxDiff(t, base, runModel(t, same, in)); d != 0 {
		t.Errorf("an empty plan changed the outputs by %g", d)
	}

	groups := a.Prunable()
	if len(groups) == 0 {
		t.Logf("no prunable groups")
		return
	}
	r := rand.New(rand.NewPCG(42, 1))

	// Units whose outgoing weights are zero can be removed without changing
	// the outputs: each group alone, then all together.
	all := Plan{}
	for _, g := range groups {
		if len(g.Warnings) > 0 {
			continue // normalisation statistics over the units change
		}
		plan := Plan{g.Name: randomUnits(r, g.Width, max(1, g.Width*3/10))}
		all[g.Name] = plan[g.Name]
		zeroed := zeroOutgoing(t, a, plan)
		za, err := Analyze(zeroed, Options{})
		if err != nil {
			t.Fatal(err)
		}
		pruned, err := za.Apply(plan)
		if err != nil {
			t.Fatalf("group %s: %v", g.Name, err)
		}
		if d := maxDiff(t, runModel(t, zeroed, in), runModel(t, pruned, in)); d > 1e-5 {
			t.Errorf("group %s (%s): removing units with zero outgoing weights changed outputs by %g", g.Name, g.Kind, d)
		}
	}
	if len(all) > 1 {
		zeroed := zeroOutgoing(t, a, all)
		za, _ := Analyze(zeroed, Options{})
		pruned, err := za.Apply(all)
		if err != nil {
			t.Fatal(err)
		}
		if d := maxDiff(t, runModel(t, zeroed, in), runModel(t, pruned, in)); d > 1e-5 {
			t.Errorf("all groups at once: outputs changed by %g", d)
		}
	}

	// Half of every group, at random: valid, same signature, exact count.
	half := Plan{}
	for _, g := range groups {
		half[g.Name] = randomUnits(r, g.Width, g.Width/2)
	}
	want, err := a.ParamsAfter(half)
	if err != nil {
		t.Fatal(err)
	}
	pruned, err := a.Apply(half)
	if err != nil {
		t.Fatal(err)
	}
	if err := onnxio.Validate(pruned); err != nil {
		t.Errorf("pruned model is invalid: %v", err)
	}
	if signature(pruned) != signature(m) {
		t.Errorf("signature changed:\n%s\n%s", signature(m), signature(pruned))
	}
	path := filepath.Join(t.TempDir(), "half.onnx")
	if err := pruned.Save(path, nil); err != nil {
		t.Fatal(err)
	}
	back, err := onnxio.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := back.ParamCount()
	before, _ := m.ParamCount()
	if got != want || got >= before {
		t.Errorf("parameters: %d before, %d after, ParamsAfter said %d", before, got, want)
	}
	out := runModel(t, back, in)
	for k := range out {
		if fmt.Sprint(out[k].Shape) != fmt.Sprint(base[k].Shape) {
			t.Errorf("output %q: shape %v, was %v", out[k].Name, out[k].Shape, base[k].Shape)
		}
	}
	t.Logf("%d groups prunable; half of each: %d -> %d parameters (file %d bytes)", len(groups), before, got, fileSize(path))
}

func fileSize(p string) int64 {
	st, err := os.Stat(p)
	if err != nil {
		return -1
	}
	return st.Size()
}

func TestFixtures(t *testing.T) {
	for _, p := range fixtures(t) {
		t.Run(strings.TrimPrefix(p, "../"), func(t *testing.T) {
			m, err := onnxio.Load(p)
			if err != nil {
				t.Fatal(err)
			}
			checkModel(t, m)
		})
	}
}
