package autodiff

import (
	"math"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/onnx-cria/onnx-cria/dataset"
	"github.com/onnx-cria/onnx-cria/onnxio"
	"github.com/onnx-cria/onnx-cria/ort"
)

const fixtures = "../testdata"

// loadFixture loads a committed model and a data file; a missing fixture
// fails the test (they are part of the repository).
func loadFixture(t testing.TB, model, data string) (*onnxio.Model, *dataset.Set) {
	t.Helper()
	m, err := onnxio.Load(filepath.Join(fixtures, "models", model, "model.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	d, err := dataset.Load(filepath.Join(fixtures, "data", data))
	if err != nil {
		t.Fatal(err)
	}
	return m, d
}

// directionalCheck compares <grad, v> with the central difference of the
// training graph's loss along v for random sign vectors v scaled by h, one
// per listed parameter, h relative to the tensor's RMS. Float32 end to
// end, so the tolerance is loose; a wrong rule gives errors of order one.
func directionalCheck(t *testing.T, tg *TrainGraph, b Batch, names []string, h, tol float64) {
	t.Helper()
	st, err := NewStepper(tg, testRT)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Destroy()
	params, err := ParamValues(tg.Model0, tg.Params)
	if err != nil {
		t.Fatal(err)
	}
	base, err := st.Run(params, b)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(11, 12))
	for _, name := range names {
		k := -1
		for i, p := range tg.Params {
			if p.Name == name {
				k = i
			}
		}
		if k < 0 {
			t.Fatalf("%s is not a trained parameter", name)
		}
		var ss float64
		for _, x := range params[k] {
			ss += float64(x) * float64(x)
		}
		step := h * math.Sqrt(ss/float64(len(params[k])))
		v := make([]float32, len(params[k]))
		var dot float64
		for i := range v {
			v[i] = float32(step)
			if r.IntN(2) == 0 {
				v[i] = -v[i]
			}
			dot += float64(v[i]) * float64(base.Grads[k][i])
		}
		loss := func(sign float32) float64 {
			p := append([][]float32{}, params...)
			p[k] = append([]float32{}, params[k]...)
			for i := range p[k] {
				p[k][i] += sign * v[i]
			}
			res, err := st.Run(p, b)
			if err != nil {
				t.Fatal(err)
			}
			return res.Loss
		}
		num := (loss(1) - loss(-1)) / 2
		t.Logf("%s: <grad, v> %.6g, finite difference %.6g", name, dot, num)
		if math.Abs(num-dot) > tol*math.Abs(num)+1e-6 {
			t.Errorf("%s: directional derivative %.6g, finite difference %.6g", name, dot, num)
		}
	}
}

// The Llama-style fixture (RMSNorm, rotary embeddings, GQA, causal mask,
// SwiGLU): its next-token training graph builds, runs, and its gradients
// agree with finite differences along random directions.
func TestLlamaTrainingGraph(t *testing.T) {
	needORT(t)
	m, data := loadFixture(t, "llama", "llama_calib.npz")
	tg, err := BuildTraining(m, TrainSpec{Objective: Objective{LM: 1, IDs: "input_ids"}})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(tg.Params), len(m.Graph().GetInitializer()); got != want {
		t.Errorf("%d trained tensors, want every initializer (%d)", got, want)
	}
	specs, _ := ort.ModelInputs(m)
	bound, err := data.Match(specs, "")
	if err != nil {
		t.Fatal(err)
	}
	b, err := MakeBatch(bound, []int{3, 500})
	if err != nil {
		t.Fatal(err)
	}
	// The embedding, a norm weight and the first, a middle and the last
	// matrix (export names of the projections vary between exports).
	names := []string{"embed_tokens.weight", "layers.0.input_layernorm.weight"}
	var mats []string
	for _, p := range tg.Params {
		if len(p.Dims) == 2 && p.Name != "embed_tokens.weight" {
			mats = append(mats, p.Name)
		}
	}
	names = append(names, mats[0], mats[len(mats)/2], mats[len(mats)-1])
	directionalCheck(t, tg, b, names, 0.01, 0.03)
}

// The sentiment transformers: LayerNormalization (opset 17) and its
// decomposed form (opset 14), GELU through Erf, attention masks, masked
// mean pooling; classification with cross-entropy on labels.
func TestTransformerTrainingGraphs(t *testing.T) {
	needORT(t)
	for _, name := range []string{"transformer", "transformer_opset14"} {
		t.Run(name, func(t *testing.T) {
			m, data := loadFixture(t, name, "sentiment_calib.npz")
			tg, err := BuildTraining(m, TrainSpec{Objective: Objective{CE: 1}})
			if err != nil {
				t.Fatal(err)
			}
			specs, _ := ort.ModelInputs(m)
			bound, err := data.Match(specs, "")
			if err != nil {
				t.Fatal(err)
			}
			b, err := MakeBatch(bound, []int{0, 7, 100, 333})
			if err != nil {
				t.Fatal(err)
			}
			// Wrong labels: a well-trained model then has large gradients,
			// which finite differences in float32 resolve.
			for i := range b.Labels {
				b.Labels[i] = 1 - b.Labels[i]
			}
			var names []string
			for k, p := range tg.Params {
				if k%4 == 0 {
					names = append(names, p.Name)
				}
			}
			directionalCheck(t, tg, b, names, 0.01, 0.03)
		})
	}
}

// A Stepper with Reuse gives the same loss, gradients and statistics as
// one without, batch after batch, from buffers it keeps (the CNN fixture
// in batch mode: a scalar loss, gradients and BatchNorm statistics).
func TestStepperReuse(t *testing.T) {
	needORT(t)
	m, d := loadFixture(t, "cnn", "fmnist_calib.npz")
	tg, err := BuildTraining(m, TrainSpec{Objective: Objective{CE: 1}, BatchNorm: BNBatch})
	if err != nil {
		t.Fatal(err)
	}
	bound, err := BindData(m, d, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	params, err := ParamValues(m, tg.Params)
	if err != nil {
		t.Fatal(err)
	}
	fresh, err := NewStepper(tg, testRT)
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Destroy()
	reused, err := NewStepper(tg, testRT)
	if err != nil {
		t.Fatal(err)
	}
	defer reused.Destroy()
	reused.Reuse = true
	var first *StepResult
	for i, rows := range [][]int{{0, 1, 2, 3}, {4, 9, 17, 30}} {
		b, err := MakeBatch(bound, rows)
		if err != nil {
			t.Fatal(err)
		}
		want, err := fresh.Run(params, b)
		if err != nil {
			t.Fatal(err)
		}
		got, err := reused.Run(params, b)
		if err != nil {
			t.Fatal(err)
		}
		if got.Loss != want.Loss || len(got.Grads) != len(want.Grads) || len(got.Stats) != len(want.Stats) || len(got.Stats) == 0 {
			t.Fatalf("batch %d: loss %v, %d gradients, %d statistics; want %v, %d, %d", i, got.Loss, len(got.Grads), len(got.Stats), want.Loss, len(want.Grads), len(want.Stats))
		}
		for k := range want.Grads {
			for j := range want.Grads[k] {
				if got.Grads[k][j] != want.Grads[k][j] {
					t.Fatalf("batch %d: gradient %s[%d] %v, want %v", i, tg.Params[k].Name, j, got.Grads[k][j], want.Grads[k][j])
				}
			}
		}
		for k := range want.Stats {
			for j := range want.Stats[k] {
				if got.Stats[k][j] != want.Stats[k][j] {
					t.Fatalf("batch %d: statistic %d[%d] %v, want %v", i, k, j, got.Stats[k][j], want.Stats[k][j])
				}
			}
		}
		if first == nil {
			first = got
		} else if &first.Grads[0][0] != &got.Grads[0][0] {
			t.Error("the second step's gradients are not in the first step's buffers")
		}
	}
}
