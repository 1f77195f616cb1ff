package main

import (
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"

	"github.com/onnx-cria/onnx-cria/dataset"
	"github.com/onnx-cria/onnx-cria/internal/testgraph"
	"github.com/onnx-cria/onnx-cria/onnxio"
	"github.com/onnx-cria/onnx-cria/onnxio/onnxpb"
)

const (
	fmnistEval = "../../testdata/data/fmnist_eval.npz"
	cnnModel   = "../../testdata/models/cnn/model.onnx"
)

// writeFMNIST writes n rows of Fashion-MNIST-shaped inputs (value v
// everywhere when same, else varied) with the given labels.
func writeFMNIST(t *testing.T, path string, n int, same bool, labels ...int64) string {
	t.Helper()
	x := make([]float32, n*784)
	for i := range x {
		if !same {
			x[i] = float32(i%251) / 251
		}
	}
	xa, err := dataset.New("input", []int{n, 1, 28, 28}, x)
	if err != nil {
		t.Fatal(err)
	}
	arrays := []*dataset.Array{xa}
	if labels != nil {
		la, err := dataset.New("labels", []int{len(labels)}, labels)
		if err != nil {
			t.Fatal(err)
		}
		arrays = append(arrays, la)
	}
	if err := dataset.SaveNPZ(path, arrays...); err != nil {
		t.Fatal(err)
	}
	return path
}

// saveModel writes a test graph as a model file.
func saveModel(t *testing.T, m *onnxio.Model, path string) string {
	t.Helper()
	if err := m.Save(path, nil); err != nil {
		t.Fatal(err)
	}
	return path
}

// Bad input and bad settings fail with a clear message and the right exit
// status, never a wrong result reported as success (issue 15, items 5 to
// 10).
func TestRefusals(t *testing.T) {
	dir := t.TempDir()
	p := func(name string) string { return filepath.Join(dir, name) }
	out := p("out.onnx")
	badLabels := writeFMNIST(t, p("badlabels.npz"), 20, false, 3, 99, 1, 2, 0, 5, 6, 7, 8, 9, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0)
	noRows := writeFMNIST(t, p("norows.npz"), 0, false, []int64{}...)
	twoRows := writeFMNIST(t, p("tworows.npz"), 2, false)
	zeros := writeFMNIST(t, p("zeros.npz"), 64, true)

	// A model with no parameters, and one whose only units stop at an op
	// without a rule.
	g := testgraph.New(17)
	g.Out(g.Op("Relu", []string{g.In("input", nil, 1, 4)}, "y"))
	noParams := saveModel(t, g.Model(t, onnxio.Float), p("noparams.onnx"))
	g = testgraph.New(17)
	h := g.Op("Gemm", []string{g.In("input", nil, 1, 4), g.FConst("w1", []int64{8, 4}, testgraph.Uniform(-1, 1)(nil2(), 32)...)}, "h", testgraph.AttrInt("transB", 1))
	u := g.Op("Relu", []string{h}, "u")
	g.Node("Swish", []string{u}, []string{"s"})
	g.Out(g.Op("Gemm", []string{"s", g.FConst("w2", []int64{2, 8}, testgraph.Uniform(-1, 1)(nil2(), 16)...)}, "y", testgraph.AttrInt("transB", 1)))
	blocked := g.Model(t, onnxio.Float)
	blocked.Graph().Node[2].Domain = ptr("com.example")
	blocked.Proto.OpsetImport = append(blocked.Proto.OpsetImport, &onnxpb.OperatorSetIdProto{Domain: ptr("com.example"), Version: ptr(int64(1))})
	blockedPath := saveModel(t, blocked, p("blocked.onnx"))
	x4 := make([]float32, 128)
	for i, v := range testgraph.Uniform(-1, 1)(nil2(), 128) {
		x4[i] = float32(v)
	}
	rowsOf4, err := dataset.New("input", []int{32, 4}, x4)
	if err != nil {
		t.Fatal(err)
	}
	calib4 := p("calib4.npz")
	if err := dataset.SaveNPZ(calib4, rowsOf4); err != nil {
		t.Fatal(err)
	}

	shrinkMLP := func(more ...string) []string {
		return append([]string{"shrink", mlpModel, out, "--target", "0.3", "--calib", mlpCalib, "--samples", "64", "--quiet", "--no-latency"}, more...)
	}
	ft := func(more ...string) []string {
		return append([]string{"finetune", mlpModel, out, "--data", mlpCalib, "--max-steps", "1", "--quiet"}, more...)
	}
	cases := []struct {
		name string
		args []string
		code int
		want string
	}{
		// 5: results that would be wrong.
		{"eval labels out of range", []string{"eval", "--quiet", mlpModel, badLabels}, 1, "outside the model's 10 classes"},
		{"eval without rows", []string{"eval", "--quiet", mlpModel, noRows}, 1, "no rows"},
		{"shrink --eval labels out of range", shrinkMLP("--eval", badLabels), 1, "outside the model's 10 classes"},
		{"ablate --eval labels out of range", []string{"ablate", mlpModel, "--group", "fc1:neurons", "--calib", mlpCalib, "--eval", badLabels, "--samples", "64", "--quiet"}, 1, "outside the model's 10 classes"},
		// 6: degenerate calibration.
		{"two calibration rows", []string{"shrink", mlpModel, out, "--target", "0.3", "--calib", twoRows, "--quiet"}, 1, "needs at least 16"},
		{"one sample", shrinkMLP("--samples", "1"), 1, "needs at least 16"},
		{"identical calibration rows", []string{"shrink", mlpModel, out, "--target", "0.3", "--calib", zeros, "--quiet"}, 1, "are the same input"},
		// 7 and 10: nothing to prune, unreachable targets.
		{"no parameters", []string{"shrink", noParams, out, "--target", "0.3", "--criterion", "magnitude", "--quiet"}, 1, "no floating-point parameters"},
		{"nothing prunable", []string{"shrink", blockedPath, out, "--target", "0.3", "--calib", calib4, "--quiet", "--no-latency"}, 1, "Swish"},
		{"target out of reach", shrinkMLP("--target", "0.999999"), 1, "cannot reach the target 0.999999"},
		{"missing target", []string{"shrink", mlpModel, out, "--calib", mlpCalib}, 2, "--target is required"},
		{"taylor without labels", []string{"shrink", mlpModel, out, "--target", "0.3", "--calib", zeros, "--criterion", "taylor", "--quiet"}, 1, "labels"},
		// 9: flag values.
		{"per-round NaN", shrinkMLP("--per-round", "NaN"), 2, "per-round"},
		{"per-round above 1", shrinkMLP("--per-round", "2"), 2, "per-round"},
		{"min-width-frac 1.5", shrinkMLP("--min-width-frac", "1.5"), 2, "min-width-frac"},
		{"min-width 0", shrinkMLP("--min-width", "0"), 2, "min-width"},
		{"samples 0", shrinkMLP("--samples", "0"), 2, "samples"},
		{"batch 0", shrinkMLP("--batch", "0"), 2, "batch"},
		{"ridge NaN", shrinkMLP("--ridge", "NaN"), 2, "ridge"},
		{"k 0", shrinkMLP("--k", "0"), 2, "-k"},
		{"s 1000", shrinkMLP("--s", "1000"), 2, "--s 1000"},
		{"threads 100000", shrinkMLP("--threads", "100000"), 2, "threads"},
		{"ft-clip negative", shrinkMLP("--ft-clip", "-1"), 2, "ft-clip"},
		{"alpha 2", ft("--alpha", "2"), 2, "alpha"},
		{"temperature -1", ft("--temperature", "-1"), 2, "temperature"},
		{"weight-decay NaN", ft("--weight-decay", "NaN"), 2, "weight-decay"},
		{"lr 1e30", ft("--lr", "1e30"), 2, "lr"},
		{"max-steps -1", ft("--max-steps", "-1"), 2, "max-steps"},
		{"ablate fraction NaN", []string{"ablate", mlpModel, "--group", "x", "--fraction", "NaN", "--eval", fmnistEval}, 2, "fraction"},
		{"ablate random-trials 0", []string{"ablate", mlpModel, "--group", "x", "--random-trials", "0", "--eval", fmnistEval}, 2, "random-trials"},
		{"score unknown group", []string{"score", mlpModel, "--calib", mlpCalib, "--samples", "64", "--group", "NOSUCH", "--quiet"}, 1, "no scored group matches"},
	}
	for _, c := range cases {
		code, _, errOut := cli(c.args...)
		if code != c.code || !strings.Contains(errOut, c.want) {
			t.Errorf("%s: exit %d, stderr %q; want exit %d and %q", c.name, code, errOut, c.code, c.want)
		}
		if strings.Contains(errOut, "--teacher") && c.name == "taylor without labels" {
			t.Errorf("%s: tells a shrink user about finetune's --teacher: %q", c.name, errOut)
		}
	}
	assertNoTemp(t, dir)
}

// Progress written to something other than a terminal has no
// carriage-return frames: a line per stage (issue 15, item 15).
func TestProgressWithoutTerminal(t *testing.T) {
	out := filepath.Join(t.TempDir(), "o.onnx")
	code, _, errOut := cli("shrink", mlpModel, out, "--target", "0.2", "--calib", mlpCalib, "--samples", "64", "--no-latency", "--eval", fmnistEval)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if strings.Contains(errOut, "\r") {
		t.Errorf("progress wrote carriage returns into a non-terminal:\n%q", errOut)
	}
	if !strings.Contains(errOut, "capture round 1: ") {
		t.Errorf("no line for the capture stage:\n%s", errOut)
	}
}

func ptr[T any](v T) *T { return &v }

func nil2() *rand.Rand { return rand.New(rand.NewPCG(7, 7)) }
