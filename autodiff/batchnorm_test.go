package autodiff

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/onnx-cria/onnx-cria/internal/testgraph"
	"github.com/onnx-cria/onnx-cria/onnxio"
	"github.com/onnx-cria/onnx-cria/ort"
)

// bnNet is a per-channel affine map (Conv, which ORT runs in float32
// only, in float32) -> BatchNormalization -> Relu -> spatial mean -> Gemm
// in the given float type.
func bnNet(t *testing.T, dt onnxio.DataType) *onnxio.Model {
	r := rand.New(rand.NewPCG(31, 32))
	g := testgraph.New(17)
	x := g.In("x", nil, 4, 3, 5, 5)
	w := func(name string, lo, hi float64, dims ...int64) string {
		return g.FConst(name, dims, testgraph.Uniform(lo, hi)(r, int(onnxio.NumElements(dims)))...)
	}
	var c string
	if dt == onnxio.Float {
		c = g.Op("Conv", []string{x, w("k", -0.5, 0.5, 3, 3, 3, 3)}, "c", attrInts("pads", []int64{1, 1, 1, 1}))
	} else {
		c = g.Op("Add", []string{g.Op("Mul", []string{x, w("k", 0.5, 2, 3, 1, 1)}, "xk"), w("kb", -1, 1, 3, 1, 1)}, "c")
	}
	bn := g.Op("BatchNormalization", []string{c, w("s", 0.5, 1.5, 3), w("b", -0.2, 0.2, 3), w("mean", -0.1, 0.1, 3), w("var", 0.5, 1.5, 3)}, "bn", attrFloat("momentum", 0.8))
	p := g.Op("ReduceMean", []string{g.Op("Relu", []string{bn}, "r")}, "f", attrInts("axes", []int64{2, 3}), attrInt("keepdims", 0))
	g.Out(g.Op("Gemm", []string{p, w("fw", -1, 1, 4, 3), w("fb", -0.1, 0.1, 4)}, "logits", attrInt("transB", 1)))
	return g.Model(t, dt)
}

// In batch mode the graph normalises with the batch's statistics: its loss
// gradients match finite differences (float64), and it returns the batch
// mean and unbiased variance.
func TestBatchNormBatchMode(t *testing.T) {
	needORT(t)
	m := bnNet(t, onnxio.Double)
	r := rand.New(rand.NewPCG(5, 5))
	x := tensorOf("x", onnxio.Double, []int64{4, 3, 5, 5}, testgraph.Uniform(-1, 1)(r, 300))
	tg, out := checkBatchModeGrads(t, m, x, []int64{0, 3, 1, 1}, "c")
	if len(tg.BNStats) != 1 || tg.BNStats[0].Momentum != float64(float32(0.8)) {
		t.Fatalf("batch statistics %+v", tg.BNStats)
	}
	for _, p := range tg.Params {
		if p.Name == "mean" || p.Name == "var" {
			t.Errorf("running statistic %s is trained", p.Name)
		}
	}
	// Statistics against the conv output.
	c := out[len(out)-1].Data.([]float64)
	mean, vr := out[1+len(tg.Params)].Data.([]float64), out[2+len(tg.Params)].Data.([]float64)
	for ch := 0; ch < 3; ch++ {
		var sum, sq float64
		n := 0
		for b := 0; b < 4; b++ {
			for k := 0; k < 25; k++ {
				v := c[(b*3+ch)*25+k]
				sum += v
				sq += v * v
				n++
			}
		}
		mu := sum / float64(n)
		unb := (sq - float64(n)*mu*mu) / float64(n-1)
		if math.Abs(mean[ch]-mu) > 1e-12 || math.Abs(vr[ch]-unb) > 1e-10 {
			t.Errorf("channel %d: mean %v var %v, want %v %v", ch, mean[ch], vr[ch], mu, unb)
		}
	}
}

// Fine-tuning in batch mode moves the running statistics towards the
// data's and writes them into the model; frozen mode leaves them.

// checkBatchModeGrads builds m's batch-mode training graph (cross-entropy
// on labels), checks every parameter's loss gradient against central
// finite differences at x (float64), and returns the graph and the outputs
// of the unperturbed run, extra forward tensors last.
func checkBatchModeGrads(t *testing.T, m *onnxio.Model, x ort.Tensor, labels []int64, extra ...string) (*TrainGraph, []ort.Tensor) {
	t.Helper()
	tg, err := BuildTraining(m, TrainSpec{Objective: Objective{CE: 1}, BatchNorm: BNBatch})
	if err != nil {
		t.Fatal(err)
	}
	s, err := ort.NewSessionForModel(tg.Model, extra, testRT)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Destroy()
	base := []ort.Tensor{x, {Name: tg.Labels, Shape: []int64{int64(len(labels))}, Data: labels}}
	ix := onnxio.NewIndex(m.Graph())
	vals := map[string][]float64{}
	for _, p := range tg.Params {
		vals[p.Name], _ = m.Float64s(ix.Init[p.Name])
	}
	run := func(name string, i int, d float64) []ort.Tensor {
		in := append([]ort.Tensor{}, base...)
		for _, p := range tg.Params {
			v := append([]float64{}, vals[p.Name]...)
			if p.Name == name {
				v[i] += d
			}
			in = append(in, tensorOf(p.Name, onnxio.Double, p.Dims, v))
		}
		out, err := s.Run(in...)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	out := run("", 0, 0)
	for k, p := range tg.Params {
		g := out[1+k].Data.([]float64)
		for i := range g {
			const h = 1e-6
			num := (run(p.Name, i, h)[0].Data.([]float64)[0] - run(p.Name, i, -h)[0].Data.([]float64)[0]) / (2 * h)
			if math.Abs(num-g[i]) > 1e-6*(1+math.Abs(num)) {
				t.Errorf("d loss/d %s[%d]: %.9g, finite difference %.9g", p.Name, i, g[i], num)
			}
		}
	}
	return tg, out
}

// Batch mode on [N, C] activations (BatchNorm1d after a Gemm): the
// statistics reduce over the batch axis alone.
func TestBatchNormBatchModeRank2(t *testing.T) {
	needORT(t)
	r := rand.New(rand.NewPCG(41, 42))
	g := testgraph.New(17)
	w := func(name string, lo, hi float64, dims ...int64) string {
		return g.FConst(name, dims, testgraph.Uniform(lo, hi)(r, int(onnxio.NumElements(dims)))...)
	}
	x := g.In("x", nil, 6, 4)
	h := g.Op("Gemm", []string{x, w("w1", -1, 1, 5, 4)}, "h", attrInt("transB", 1))
	bn := g.Op("BatchNormalization", []string{h, w("s", 0.5, 1.5, 5), w("b", -0.2, 0.2, 5), w("mean", -0.1, 0.1, 5), w("var", 0.5, 1.5, 5)}, "bn")
	g.Out(g.Op("Gemm", []string{g.Op("Relu", []string{bn}, "r"), w("w2", -1, 1, 3, 5)}, "logits", attrInt("transB", 1)))
	m := g.Model(t, onnxio.Double)
	tg, _ := checkBatchModeGrads(t, m, tensorOf("x", onnxio.Double, []int64{6, 4}, testgraph.Uniform(-2, 2)(r, 24)), []int64{0, 2, 1, 1, 0, 2})
	if len(tg.BNStats) != 1 || len(tg.Params) != 4 {
		t.Fatalf("%d batch statistics, %d parameters; want 1 and 4 (w1, s, b, w2)", len(tg.BNStats), len(tg.Params))
	}
}
