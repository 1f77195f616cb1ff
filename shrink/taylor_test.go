package shrink

import (
	"strings"
	"testing"

	"github.com/onnx-cria/onnx-cria/dataset"
	"github.com/onnx-cria/onnx-cria/onnxio"
	"github.com/onnx-cria/onnx-cria/ort"
)

// Units whose incoming weights and bias are zero compute nothing: the
// product of weight and gradient is zero, so their Taylor score is exactly
// zero, while live units score above it. Without labels a classifier has no
// loss to differentiate, and the error says so.
func TestTaylorKnownAnswers(t *testing.T) {
	m, calib := loadFixture(t, "mlp", "fmnist_calib.npz")
	m = m.Clone()
	dead := []int{3, 7, 100}
	var w, b string
	for _, n := range m.Graph().GetNode() {
		if n.GetOpType() == "Gemm" {
			w, b = n.GetInput()[1], n.GetInput()[2]
			break
		}
	}
	ix := onnxio.NewIndex(m.Graph())
	for _, name := range []string{w, b} {
		tp := ix.Const(name)
		vals, err := m.Float64s(tp)
		if err != nil {
			t.Fatal(err)
		}
		inner := len(vals) / int(tp.GetDims()[0]) // Gemm weight [out, in] (transB) or bias [out]
		for _, u := range dead {
			for k := u * inner; k < (u+1)*inner; k++ {
				vals[k] = 0
			}
		}
		raw, _ := onnxio.EncodeFloat64s(onnxio.Float, vals)
		tp.RawData, tp.FloatData = raw, nil
	}
	_, scored, err := Score(m, calib, Config{Criterion: Taylor{}, Samples: 256, Runtime: ort.Config{Threads: 1}})
	if err != nil {
		t.Fatal(err)
	}
	first := scored[0]
	if first.Group.Width != 512 {
		t.Fatalf("first group %s has %d units, want fc1's 512", first.Group.Name, first.Group.Width)
	}
	live := 0
	for u, s := range first.Scored.Scores {
		isDead := u == 3 || u == 7 || u == 100
		if isDead && s != 0 {
			t.Errorf("unit %d has zero incoming weights but scores %g", u, s)
		}
		if !isDead && s > 0 {
			live++
		}
	}
	if live < 400 {
		t.Errorf("only %d of 509 live units score above zero", live)
	}
	unlabeled := &dataset.Set{Path: "unlabeled.npz", Arrays: []*dataset.Array{calib.Get("input")}}
	if _, _, err := Score(m, unlabeled, Config{Criterion: Taylor{}, Samples: 64}); err == nil || !strings.Contains(err.Error(), "labels") {
		t.Errorf("unlabeled calibration data: %v", err)
	}
}

// The loop runs on Taylor scores for a classifier (labels) and for the
// language model (next-token loss) and reaches its target.
func TestTaylorShrinks(t *testing.T) {
	for _, f := range []struct{ model, calib string }{
		{"cnn", "fmnist_calib"}, {"llama", "llama_calib"},
	} {
		m, err := onnxio.Load("../testdata/models/" + f.model + "/model.onnx")
		if err != nil {
			t.Fatal(err)
		}
		calib, err := dataset.Load("../testdata/data/" + f.calib + ".npz")
		if err != nil {
			t.Fatal(err)
		}
		_, rep, err := Run(m, calib, Config{Target: 0.2, Criterion: Taylor{}, Samples: 64, Batch: 32, Runtime: ort.Config{Threads: 1}})
		if err != nil {
			t.Fatalf("%s: %v", f.model, err)
		}
		if rep.Reduction < 0.2 || rep.Options.Criterion != "taylor" {
			t.Errorf("%s: reduction %.4f with %s", f.model, rep.Reduction, rep.Options.Criterion)
		}
	}
}
