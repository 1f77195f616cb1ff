package autodiff

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/onnx-cria/onnx-cria/internal/testgraph"
	"github.com/onnx-cria/onnx-cria/onnxio"
	"github.com/onnx-cria/onnx-cria/onnxio/onnxpb"
	"github.com/onnx-cria/onnx-cria/ort"
)

// weightModel is x -> Gemm(x, W, b) (classifier) or ids -> Gather(E) W
// (language model), in double precision, with W, b, E as initializers.
func weightModel(t *testing.T, lm bool) *onnxio.Model {
	t.Helper()
	r := rand.New(rand.NewPCG(3, 4))
	g := testgraph.New(17)
	var inputs []*onnxpb.ValueInfoProto
	init := func(name string, dims ...int64) string {
		g.FConst(name, dims, testgraph.Uniform(-1, 1)(r, int(onnxio.NumElements(dims)))...)
		return name
	}
	if lm {
		e := init("E", 7, 3)
		w := init("W", 3, 5)
		g.Op("MatMul", []string{g.Op("Gather", []string{e, "ids"}, "h"), w}, "z")
		inputs = append(inputs,
			onnxio.NewValueInfo("ids", onnxio.Int64, []onnxio.Dim{{Param: "N"}, {Value: 4, Known: true}}),
			onnxio.NewValueInfo("mask", onnxio.Int64, []onnxio.Dim{{Param: "N"}, {Value: 4, Known: true}}))
	} else {
		g.In("x", nil, 3, 4)
		g.Op("Gemm", []string{"x", init("W", 5, 4), init("b", 5)}, "z", attrInt("transB", 1))
	}
	g.Out("z")
	m := g.Model(t, onnxio.Double)
	m.Graph().Input = append(m.Graph().Input, inputs...)
	return m.Clone()
}

func TestLossGradients(t *testing.T) {
	needORT(t)
	cases := []struct {
		name string
		lm   bool
		obj  Objective
	}{
		{"ce", false, Objective{CE: 1}},
		{"kd", false, Objective{KD: 1, Temperature: 2}},
		{"mse", false, Objective{MSE: 1}},
		{"ce+kd", false, Objective{CE: 0.5, KD: 0.5, Temperature: 3}},
		{"lm", true, Objective{LM: 1, IDs: "ids"}},
		{"lm_mask", true, Objective{LM: 1, IDs: "ids", Mask: "mask"}},
		{"lm_kd", true, Objective{KD: 1, Temperature: 1.5}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := weightModel(t, tc.lm)
			tg, err := BuildTraining(m, TrainSpec{Objective: tc.obj})
			if err != nil {
				t.Fatal(err)
			}
			s, err := ort.NewSessionForModel(tg.Model, nil, testRT)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Destroy()
			r := rand.New(rand.NewPCG(5, 6))
			var feed []ort.Tensor
			if tc.lm {
				ids := make([]int64, 2*4)
				for i := range ids {
					ids[i] = int64(r.IntN(5)) // targets must be inside the vocabulary of 5
				}
				feed = append(feed,
					ort.Tensor{Name: "ids", Shape: []int64{2, 4}, Data: ids},
					ort.Tensor{Name: "mask", Shape: []int64{2, 4}, Data: []int64{1, 1, 1, 0, 1, 1, 0, 0}})
			} else {
				feed = append(feed, tensorOf("x", onnxio.Double, []int64{3, 4}, testgraph.Uniform(-1, 1)(r, 12)))
			}
			if tg.Labels != "" {
				feed = append(feed, ort.Tensor{Name: tg.Labels, Shape: []int64{3}, Data: []int64{4, 0, 2}})
			}
			if tg.Teacher != "" {
				dims := []int64{3, 5}
				if tc.lm {
					dims = []int64{2, 4, 5}
				}
				feed = append(feed, tensorOf(tg.Teacher, onnxio.Double, dims, testgraph.Uniform(-2, 2)(r, int(onnxio.NumElements(dims)))))
			}
			vals := map[string][]float64{}
			ix := onnxio.NewIndex(m.Graph())
			for _, p := range tg.Params {
				v, _ := m.Float64s(ix.Init[p.Name])
				vals[p.Name] = v
			}
			run := func(name string, i int, delta float64) []ort.Tensor {
				in := append([]ort.Tensor{}, feed...)
				for _, p := range tg.Params {
					v := append([]float64{}, vals[p.Name]...)
					if p.Name == name {
						v[i] += delta
					}
					in = append(in, tensorOf(p.Name, onnxio.Double, p.Dims, v))
				}
				out, err := s.Run(in...)
				if err != nil {
					t.Fatal(err)
				}
				return out
			}
			base := run("", 0, 0)
			if l := base[0].Data.([]float64)[0]; !(l > 0) {
				t.Fatalf("loss %v, want > 0", l)
			}
			for k, p := range tg.Params {
				grad := base[1+k].Data.([]float64)
				for i := range grad {
					h := 1e-6
					lp := run(p.Name, i, h)[0].Data.([]float64)[0]
					lm := run(p.Name, i, -h)[0].Data.([]float64)[0]
					num := (lp - lm) / (2 * h)
					if math.Abs(num-grad[i]) > 1e-6*(1+math.Abs(num)) {
						t.Errorf("d loss/d %s[%d]: %.9g, finite difference %.9g", p.Name, i, grad[i], num)
					}
				}
			}
		})
	}
}

// The loss values themselves, against direct computation.
func TestLossValues(t *testing.T) {
	needORT(t)
	m := weightModel(t, false)
	for _, tc := range []struct {
		obj  Objective
		want func(z, tch []float64, labels []int64) float64
	}{
		{Objective{CE: 1}, func(z, _ []float64, y []int64) float64 {
			var l float64
			for i := 0; i < 3; i++ {
				row := z[i*5 : i*5+5]
				l += logSumExp(row) - row[y[i]]
			}
			return l / 3
		}},
		{Objective{KD: 1, Temperature: 2}, func(z, tch []float64, _ []int64) float64 {
			var l float64
			for i := 0; i < 3; i++ {
				zs, ts := scaled(z[i*5:i*5+5], 0.5), scaled(tch[i*5:i*5+5], 0.5)
				lz, lt := logSumExp(zs), logSumExp(ts)
				for k := range zs {
					pt := math.Exp(ts[k] - lt)
					l += pt * ((ts[k] - lt) - (zs[k] - lz))
				}
			}
			return 4 * l / 3
		}},
	} {
		t.Run(fmt.Sprint(tc.obj), func(t *testing.T) {
			tg, err := BuildTraining(m, TrainSpec{Objective: tc.obj, Outputs: true})
			if err != nil {
				t.Fatal(err)
			}
			s, err := ort.NewSessionForModel(tg.Model, nil, testRT)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Destroy()
			r := rand.New(rand.NewPCG(8, 9))
			labels := []int64{1, 4, 3}
			tch := testgraph.Uniform(-2, 2)(r, 15)
			feed := []ort.Tensor{tensorOf("x", onnxio.Double, []int64{3, 4}, testgraph.Uniform(-1, 1)(r, 12))}
			if tg.Labels != "" {
				feed = append(feed, ort.Tensor{Name: tg.Labels, Shape: []int64{3}, Data: labels})
			}
			if tg.Teacher != "" {
				feed = append(feed, tensorOf(tg.Teacher, onnxio.Double, []int64{3, 5}, tch))
			}
			ix := onnxio.NewIndex(m.Graph())
			for _, p := range tg.Params {
				v, _ := m.Float64s(ix.Init[p.Name])
				feed = append(feed, tensorOf(p.Name, onnxio.Double, p.Dims, v))
			}
			out, err := s.Run(feed...)
			if err != nil {
				t.Fatal(err)
			}
			got := out[0].Data.([]float64)[0]
			z := out[len(out)-1].Data.([]float64)
			if want := tc.want(z, tch, labels); math.Abs(got-want) > 1e-12*(1+math.Abs(want)) {
				t.Errorf("loss %.15g, want %.15g", got, want)
			}
		})
	}
}

func logSumExp(v []float64) float64 {
	mx := math.Inf(-1)
	for _, x := range v {
		mx = math.Max(mx, x)
	}
	var s float64
	for _, x := range v {
		s += math.Exp(x - mx)
	}
	return mx + math.Log(s)
}

func scaled(v []float64, f float64) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = x * f
	}
	return out
}
