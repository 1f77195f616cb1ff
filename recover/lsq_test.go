package recover

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/onnx-cria/onnx-cria/dataset"
	"github.com/onnx-cria/onnx-cria/evaluate"
	"github.com/onnx-cria/onnx-cria/internal/testgraph"
	"github.com/onnx-cria/onnx-cria/onnxio"
	"github.com/onnx-cria/onnx-cria/onnxio/onnxpb"
	"github.com/onnx-cria/onnx-cria/ort"
	"github.com/onnx-cria/onnx-cria/rewrite"
)

// dynamicBatch makes axis 0 of every graph input and output symbolic.
func dynamicBatch(m *onnxio.Model) *onnxio.Model {
	g := m.Graph()
	for _, vs := range [][]*onnxpbValueInfo{g.Input, g.Output} {
		for _, v := range vs {
			if s := v.GetType().GetTensorType().GetShape(); s != nil && len(s.Dim) > 0 {
				s.Dim[0].Value = &onnxpbDimParam{DimParam: "N"}
			}
		}
	}
	return m.Clone()
}

// smallNets are a deep MLP and a CNN (plain, strided and depthwise convs,
// pooling, a classifier), float32, random weights.
func smallNets(t *testing.T) map[string]*onnxio.Model {
	r := rand.New(rand.NewPCG(21, 22))
	w := func(g *testgraph.Graph, name string, fanIn int64, dims ...int64) string {
		s := math.Sqrt(3 / float64(fanIn))
		return g.FConst(name, dims, testgraph.Uniform(-s, s)(r, int(onnxio.NumElements(dims)))...)
	}
	nets := map[string]*onnxio.Model{}

	g := testgraph.New(17)
	x := g.In("input", nil, 1, 8)
	h := g.Op("Relu", []string{g.Op("Gemm", []string{x, w(g, "w1", 8, 32, 8), w(g, "b1", 8, 32)}, "g1", testgraph.AttrInt("transB", 1))}, "a1")
	h = g.Op("Relu", []string{g.Op("Gemm", []string{h, w(g, "w2", 32, 32, 24), w(g, "b2", 32, 24)}, "g2")}, "a2")
	h = g.Op("Relu", []string{g.Op("Add", []string{g.Op("MatMul", []string{h, w(g, "w3", 24, 24, 16)}, "m3"), w(g, "b3", 24, 16)}, "g3")}, "a3")
	g.Out(g.Op("Gemm", []string{h, w(g, "w4", 16, 5, 16), w(g, "b4", 16, 5)}, "logits", testgraph.AttrInt("transB", 1)))
	nets["mlp"] = dynamicBatch(g.Model(t, onnxio.Float))

	g = testgraph.New(17)
	x = g.In("input", nil, 1, 2, 10, 10)
	c := g.Op("Relu", []string{g.Op("Conv", []string{x, w(g, "k1", 18, 8, 2, 3, 3), w(g, "kb1", 18, 8)}, "c1", testgraph.AttrInts("pads", []int64{1, 1, 1, 1}))}, "r1")
	c = g.Op("Relu", []string{g.Op("Conv", []string{c, w(g, "k2", 72, 12, 8, 3, 3), w(g, "kb2", 72, 12)}, "c2", testgraph.AttrInts("strides", []int64{2, 2}), testgraph.AttrInts("pads", []int64{1, 1, 1, 1}))}, "r2")
	c = g.Op("Relu", []string{g.Op("Conv", []string{c, w(g, "k3", 9, 12, 1, 3, 3), w(g, "kb3", 9, 12)}, "c3", testgraph.AttrInt("group", 12), testgraph.AttrInts("pads", []int64{1, 1, 1, 1}))}, "r3")
	// A Conv without bias into a BatchNormalization: the refit's bias is
	// folded into the normalisation's.
	c4 := g.Op("Conv", []string{c, w(g, "k4", 12, 10, 12, 1, 1)}, "c4")
	bn := g.Op("BatchNormalization", []string{c4, g.FConst("bns", []int64{10}, testgraph.Uniform(0.5, 2)(r, 10)...), w(g, "bnb", 1, 10),
		w(g, "bnm", 1, 10), g.FConst("bnv", []int64{10}, testgraph.Uniform(0.5, 2)(r, 10)...)}, "bn4")
	c = g.Op("Relu", []string{bn}, "r4")
	p := g.Op("Flatten", []string{g.Op("GlobalAveragePool", []string{c}, "gap")}, "flat")
	g.Out(g.Op("Gemm", []string{p, w(g, "w5", 10, 4, 10), w(g, "b5", 10, 4)}, "logits", testgraph.AttrInt("transB", 1)))
	nets["cnn"] = dynamicBatch(g.Model(t, onnxio.Float))
	return nets
}

func randomInputs(t *testing.T, dims []int, n int, seed uint64) *dataset.Set {
	r := rand.New(rand.NewPCG(seed, 5))
	shape := append([]int{n}, dims...)
	size := n
	for _, d := range dims {
		size *= d
	}
	v := make([]float32, size)
	for i := range v {
		v[i] = float32(r.NormFloat64())
	}
	a, err := dataset.New("input", shape, v)
	if err != nil {
		t.Fatal(err)
	}
	return &dataset.Set{Arrays: []*dataset.Array{a}}
}

// pruneHalf removes every other unit of every prunable group.
func pruneHalf(t *testing.T, m *onnxio.Model) (*onnxio.Model, map[string][]int) {
	a, err := rewrite.Analyze(m, rewrite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	plan := rewrite.Plan{}
	kept := map[string][]int{}
	for _, g := range a.Prunable() {
		for u := 0; u < g.Width; u++ {
			if u%2 == 1 {
				plan[g.Name] = append(plan[g.Name], u)
			} else {
				kept[g.Name] = append(kept[g.Name], u)
			}
		}
	}
	if len(plan) == 0 {
		t.Fatal("nothing prunable")
	}
	p, err := a.Apply(plan)
	if err != nil {
		t.Fatal(err)
	}
	return p, kept
}

// outputMSE is the mean squared difference of two models' first outputs.
func outputMSE(t *testing.T, a, b *onnxio.Model, data *dataset.Set) float64 {
	run := func(m *onnxio.Model) []float32 {
		s, err := ort.NewSessionForModel(m, nil, testRT)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Destroy()
		in, err := ort.FromArray("input", data.Arrays[0])
		if err != nil {
			t.Fatal(err)
		}
		out, err := s.Run(in)
		if err != nil {
			t.Fatal(err)
		}
		return out[0].Data.([]float32)
	}
	x, y := run(a), run(b)
	var s float64
	for i := range x {
		d := float64(x[i] - y[i])
		s += d * d
	}
	return s / float64(len(x))
}

func TestLSQReducesError(t *testing.T) {
	needORT(t)
	for name, m := range smallNets(t) {
		t.Run(name, func(t *testing.T) {
			dims := []int{8}
			if name == "cnn" {
				dims = []int{2, 10, 10}
			}
			calib, test := randomInputs(t, dims, 300, 1), randomInputs(t, dims, 200, 2)
			pruned, kept := pruneHalf(t, m)
			fixed, fits, err := LSQ(m, pruned, kept, calib, LSQOptions{Seed: 3, Runtime: testRT, MaxRows: 4000})
			if err != nil {
				t.Fatal(err)
			}
			if name == "cnn" {
				// The fitted bias goes into the running mean, which batch
				// statistics replace in training; the shift stays.
				vals := func(mm *onnxio.Model, name string) []float64 {
					v, err := mm.Float64s(onnxio.NewIndex(mm.Graph()).Init[name])
					if err != nil {
						t.Fatal(err)
					}
					return v
				}
				if !slices.Equal(vals(pruned, "bnb"), vals(fixed, "bnb")) || slices.Equal(vals(pruned, "bnm"), vals(fixed, "bnm")) {
					t.Errorf("the fold changed the BatchNormalization's shift or left its running mean: %v -> %v, %v -> %v",
						vals(pruned, "bnb"), vals(fixed, "bnb"), vals(pruned, "bnm"), vals(fixed, "bnm"))
				}
			}
			applied := 0
			for _, f := range fits {
				t.Logf("%s %s %d->%d rows %d: %.4g -> %.4g applied %v %s", f.Node, f.Op, f.Inputs, f.Outputs, f.Rows, f.Before, f.After, f.Applied, f.Note)
				if f.Note != "" {
					continue
				}
				if f.Node == "n6_Conv" && !f.Bias {
					t.Errorf("%s: no bias folded into the BatchNormalization", f.Node)
				}
				if !(f.After < f.Before) {
					t.Errorf("%s: error %.4g -> %.4g", f.Node, f.Before, f.After)
				}
				if f.Applied {
					applied++
				}
			}
			if applied < 2 {
				t.Errorf("only %d layers refit", applied)
			}
			if err := onnxio.Validate(fixed); err != nil {
				t.Fatal(err)
			}
			before, after := outputMSE(t, m, pruned, test), outputMSE(t, m, fixed, test)
			t.Logf("output MSE to the original on held-out inputs: pruned %.4g, after lsq %.4g", before, after)
			if !(after < 0.7*before) {
				t.Errorf("lsq did not bring the outputs closer: %.4g -> %.4g", before, after)
			}
			// Unpruned: nothing to do.
			same, fits, err := LSQ(m, m, nil, calib, LSQOptions{Runtime: testRT})
			if err != nil || len(fits) != 0 || outputMSE(t, m, same, test) != 0 {
				t.Errorf("lsq on an unpruned model: %d fits, %v", len(fits), err)
			}
		})
	}
}

type (
	onnxpbValueInfo = onnxpb.ValueInfoProto
	onnxpbDimParam  = onnxpb.TensorShapeProto_Dimension_DimParam
)

// needORT fails the test (never skips) when ONNX Runtime is missing.
func needORT(t testing.TB) {
	t.Helper()
	if err := ort.Init(ort.Config{}); err != nil {
		t.Fatalf("ONNX Runtime is required for this test (run scripts/setup-ort.sh): %v", err)
	}
}

// testRT runs tests on one thread, so that results are reproducible.
var testRT = ort.Config{Threads: 1}

// mlpFixture is the Fashion-MNIST MLP with every other unit of its two
// hidden layers pruned, its calibration and evaluation data.
func mlpFixture(t *testing.T) (orig, pruned *onnxio.Model, kept map[string][]int, calib, eval *dataset.Set) {
	t.Helper()
	needORT(t)
	m, err := onnxio.Load("../testdata/models/mlp/model.onnx")
	if err != nil {
		t.Fatal(err)
	}
	if calib, err = dataset.Load("../testdata/data/fmnist_calib.npz"); err != nil {
		t.Fatal(err)
	}
	if eval, err = dataset.Load("../testdata/data/fmnist_eval.npz"); err != nil {
		t.Fatal(err)
	}
	pruned, kept = pruneHalf(t, m)
	return m, pruned, kept, calib, eval
}

func accuracy(t *testing.T, m *onnxio.Model, data *dataset.Set) float64 {
	t.Helper()
	r, err := evaluate.Run(m, data, evaluate.Options{Runtime: testRT})
	if err != nil {
		t.Fatal(err)
	}
	return r.Value
}
