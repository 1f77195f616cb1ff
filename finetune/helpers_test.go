package finetune

import (
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/onnx-cria/onnx-cria/dataset"
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

// loadFixture loads a committed model and a data file; a missing fixture
// fails the test (they are part of the repository).
func loadFixture(t testing.TB, model, data string) (*onnxio.Model, *dataset.Set) {
	t.Helper()
	m, err := onnxio.Load(filepath.Join("../testdata/models", model, "model.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	d, err := dataset.Load(filepath.Join("../testdata/data", data))
	if err != nil {
		t.Fatal(err)
	}
	return m, d
}

func uniform(r *rand.Rand, lo, hi float64, n int) []float64 {
	v := make([]float64, n)
	for i := range v {
		v[i] = lo + (hi-lo)*r.Float64()
	}
	return v
}

// tinyMLP is input [N,8] -> Gemm 16 -> Relu -> Gemm 3, float32, with
// small random weights.
func tinyMLP(t testing.TB, seed uint64) *onnxio.Model {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, 1))
	g := &onnxpb.GraphProto{Name: ptr("tiny")}
	w := func(name string, scale float64, dims ...int64) string {
		raw, err := onnxio.EncodeFloat64s(onnxio.Float, uniform(r, -scale, scale, int(onnxio.NumElements(dims))))
		if err != nil {
			t.Fatal(err)
		}
		tp, err := onnxio.NewTensor(name, onnxio.Float, dims, raw)
		if err != nil {
			t.Fatal(err)
		}
		g.Initializer = append(g.Initializer, tp)
		return name
	}
	transB := &onnxpb.AttributeProto{Name: ptr("transB"), Type: onnxpb.AttributeProto_INT.Enum(), I: ptr(int64(1))}
	node := func(op string, ins []string, out string, attrs ...*onnxpb.AttributeProto) {
		g.Node = append(g.Node, &onnxpb.NodeProto{Name: ptr(out), OpType: ptr(op), Input: ins, Output: []string{out}, Attribute: attrs})
	}
	node("Gemm", []string{"input", w("fc1.weight", 0.35, 16, 8), w("fc1.bias", 0.1, 16)}, "h", transB)
	node("Relu", []string{"h"}, "a")
	node("Gemm", []string{"a", w("fc2.weight", 0.25, 3, 16), w("fc2.bias", 0.1, 3)}, "logits", transB)
	g.Input = []*onnxpb.ValueInfoProto{onnxio.NewValueInfo("input", onnxio.Float, []onnxio.Dim{{Param: "N"}, {Value: 8, Known: true}})}
	g.Output = []*onnxpb.ValueInfoProto{onnxio.NewValueInfo("logits", onnxio.Float, []onnxio.Dim{{Param: "N"}, {Value: 3, Known: true}})}
	return &onnxio.Model{Proto: &onnxpb.ModelProto{IrVersion: ptr(int64(8)), Graph: g,
		OpsetImport: []*onnxpb.OperatorSetIdProto{{Domain: ptr(""), Version: ptr(int64(17))}}}}
}

func ptr[T any](v T) *T { return &v }
