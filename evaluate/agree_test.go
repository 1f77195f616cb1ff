package evaluate

import (
	"math"
	"testing"

	"github.com/onnx-cria/onnx-cria/dataset"
	"github.com/onnx-cria/onnx-cria/onnxio"
	"github.com/onnx-cria/onnx-cria/ort"
)

// A model agrees with itself everywhere; a model whose last layer gives
// zero logits predicts the uniform distribution, so its KL from the
// reference is log V minus the reference's entropy, position by position.
func TestAgree(t *testing.T) {
	m, data := loadLM(t)
	opts := Options{Batch: 16, Runtime: ort.Config{Threads: 1}}
	self, err := Agree(m, m, data, opts)
	if err != nil {
		t.Fatal(err)
	}
	ppl, err := Run(m, data, opts)
	if err != nil {
		t.Fatal(err)
	}
	if self.Top1 != 1 || math.Abs(self.MeanKL) > 1e-6 || self.Positions != ppl.Tokens || self.Rows != ppl.Samples {
		t.Errorf("the model against itself: %v; perplexity scored %d tokens of %d rows", self, ppl.Tokens, ppl.Samples)
	}

	// Zero the weight of the last MatMul, the one that makes the logits.
	zero := m.Clone()
	g := zero.Graph()
	last := g.Node[len(g.Node)-1]
	if last.GetOpType() != "MatMul" {
		t.Fatalf("the fixture ends with %s", last.GetOpType())
	}
	w := onnxio.NewIndex(g).Const(last.Input[1])
	raw, err := zero.RawData(w)
	if err != nil {
		t.Fatal(err)
	}
	if err := onnxio.SetRawData(w, w.GetDims(), make([]byte, len(raw))); err != nil {
		t.Fatal(err)
	}
	got, err := Agree(m, zero, data, opts)
	if err != nil {
		t.Fatal(err)
	}
	// The reference's entropy at the same positions, from its logits.
	var sumH float64
	var n int64
	err = eachBatch(m, data, opts, 0, 0, true, func(lp []float32, width, rows int) (bool, error) {
		for i := 0; i < len(lp); i += width {
			for _, l := range lp[i : i+width] {
				sumH -= math.Exp(float64(l)) * float64(l)
			}
			n++
		}
		return true, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	v := float64(w.GetDims()[1])
	want := math.Log(v) - sumH/float64(n)
	if math.Abs(got.MeanKL-want) > 1e-4*want || got.Top1 >= 1 {
		t.Errorf("against zero logits: %v, want mean KL %.6f and some disagreement", got, want)
	}
}

// Chunked comparison (a chunk of one batch's log-probabilities) gives the
// same agreement as one pass over every row.
func TestAgreeChunks(t *testing.T) {
	m, data := loadLM(t)
	small := m.Clone()
	g := small.Graph()
	w := onnxio.NewIndex(g).Const(g.Node[len(g.Node)-1].Input[1])
	raw, err := small.RawData(w)
	if err != nil {
		t.Fatal(err)
	}
	half := append([]byte(nil), raw...)
	for i := 0; i < len(half)/2; i++ {
		half[i] = 0 // zero the first half of the logit weights
	}
	if err := onnxio.SetRawData(w, w.GetDims(), half); err != nil {
		t.Fatal(err)
	}
	opts := Options{Batch: 4, Runtime: ort.Config{Threads: 1}}
	whole, err := Agree(m, small, data, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer func(b int64) { chunkBytes = b }(chunkBytes)
	chunkBytes = 1
	chunked, err := Agree(m, small, data, opts)
	if err != nil {
		t.Fatal(err)
	}
	n, _ := data.N()
	if whole.Rows != n || chunked.Rows != n || chunked.Positions != whole.Positions || chunked.Top1 != whole.Top1 ||
		math.Abs(chunked.MeanKL-whole.MeanKL) > 1e-9*whole.MeanKL || whole.MeanKL == 0 {
		t.Errorf("chunked %v, in one pass %v (%d rows)", chunked, whole, n)
	}
}

// loadLM is the Llama fixture and its evaluation rows.
func loadLM(t *testing.T) (*onnxio.Model, *dataset.Set) {
	t.Helper()
	m, err := onnxio.Load("../testdata/models/llama/model.onnx")
	if err != nil {
		t.Fatal(err)
	}
	data, err := dataset.Load("../testdata/data/llama_eval.npz")
	if err != nil {
		t.Fatal(err)
	}
	return m, data
}
