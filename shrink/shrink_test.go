package shrink

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/onnx-cria/onnx-cria/dataset"
	"github.com/onnx-cria/onnx-cria/onnxio"
	"github.com/onnx-cria/onnx-cria/ort"
)

func TestMain(m *testing.M) {
	if err := ort.Init(ort.Config{}); err != nil {
		fmt.Fprintf(os.Stderr, "shrink tests need ONNX Runtime; run scripts/setup-ort.sh first.\n%v\n", err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

type fixture struct {
	name, model, calib, eval string
}

// fixtures reads the committed fixtures' meta.json files.
func fixtures(t *testing.T) []fixture {
	t.Helper()
	metas, _ := filepath.Glob("../testdata/models/*/meta.json")
	var out []fixture
	for _, meta := range metas {
		b, err := os.ReadFile(meta)
		if err != nil {
			t.Fatal(err)
		}
		var m struct {
			Name  string `json:"name"`
			Calib string `json:"calib"`
			Eval  string `json:"eval"`
		}
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("%s: %v", meta, err)
		}
		dir := filepath.Dir(meta)
		models, _ := filepath.Glob(filepath.Join(dir, "*.onnx"))
		for _, p := range models {
			out = append(out, fixture{name: filepath.Base(dir) + "/" + filepath.Base(p), model: p, calib: filepath.Join(dir, m.Calib), eval: filepath.Join(dir, m.Eval)})
		}
	}
	if len(out) == 0 {
		t.Fatal("no fixtures with meta.json under testdata/models")
	}
	return out
}

// The loop reaches its target, overshooting by at most one unit's
// parameters, writes a valid model with the input's signature, and its
// report agrees with a recount from the written file.
func TestShrinkFixtures(t *testing.T) {
	for _, f := range fixtures(t) {
		t.Run(f.name, func(t *testing.T) {
			m, err := onnxio.Load(f.model)
			if err != nil {
				t.Fatal(err)
			}
			calib, err := dataset.Load(f.calib)
			if err != nil {
				t.Fatal(err)
			}
			const target = 0.25
			small, rep, err := Run(m, calib, Config{Target: target, Samples: 96, Seed: 1, Runtime: ort.Config{Threads: 1}})
			if err != nil {
				t.Fatal(err)
			}
			p0, _ := m.ParamCount()
			p1, _ := small.ParamCount()
			got := 1 - float64(p1)/float64(p0)
			if got < target {
				t.Fatalf("reduction %.4f below target %.2f", got, target)
			}
			// Overshoot: at most the largest per-unit cost of a pruned group.
			var worst int64
			for _, g := range rep.Groups {
				if g.Pruned {
					worst = max(worst, g.ParamsPerUnit)
				}
			}
			if over := int64(math.Floor((1-target)*float64(p0))) - p1; over > worst {
				t.Errorf("overshot the target by %d parameters, more than one unit (%d)", over, worst)
			}
			path := filepath.Join(t.TempDir(), "out.onnx")
			if err := small.Save(path, nil); err != nil {
				t.Fatal(err)
			}
			back, err := onnxio.Load(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := onnxio.Validate(back); err != nil {
				t.Fatalf("written model invalid: %v", err)
			}
			if bp, _ := back.ParamCount(); bp != rep.Output.Params || bp != rep.Rounds[len(rep.Rounds)-1].ParamsAfter {
				t.Errorf("report says %d parameters, the file has %d", rep.Output.Params, bp)
			}
			if fl := onnxio.FLOPs(back); fl != rep.Output.FLOPs {
				t.Errorf("report says %d FLOPs, the file has %d", rep.Output.FLOPs, fl)
			}
			if back.Size != rep.Output.Bytes {
				t.Errorf("report says %d bytes, the file has %d", rep.Output.Bytes, back.Size)
			}
			if math.Abs(rep.Reduction-got) > 1e-12 {
				t.Errorf("report says reduction %v, recount %v", rep.Reduction, got)
			}
			// Widths in the report match the kept units.
			for _, g := range rep.Groups {
				if g.Pruned && len(g.Kept) != g.WidthAfter {
					t.Errorf("group %s: %d kept units listed, width %d", g.Name, len(g.Kept), g.WidthAfter)
				}
			}
			// A fresh ORT session runs it with the same signature.
			s, err := ort.NewSessionForModel(back, nil, ort.Config{Threads: 1})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Destroy()
			s0, err := ort.NewSessionForModel(m, nil, ort.Config{Threads: 1})
			if err != nil {
				t.Fatal(err)
			}
			defer s0.Destroy()
			if fmt.Sprint(s.Inputs(), s.Outputs()) != fmt.Sprint(s0.Inputs(), s0.Outputs()) {
				t.Errorf("signature changed: %v %v vs %v %v", s0.Inputs(), s0.Outputs(), s.Inputs(), s.Outputs())
			}
			t.Logf("%d rounds, %d -> %d params (%.4f), FLOPs %d -> %d", len(rep.Rounds), p0, p1, got, rep.Input.FLOPs, rep.Output.FLOPs)
		})
	}
}

// Rounding keeps Conv channel counts at multiples of the kernel block (what
// --round-to auto asks for) and other groups exact, and the last round takes
// the step that overshoots least: on the CNN with steps of 8 channels the
// next step in line overshoots 50% to 0.61, the closest one to 0.516.
func TestRounding(t *testing.T) {
	for _, c := range []struct {
		fixture        string
		roundTo, chans int
		maxReduction   float64
	}{
		{"cnn", 8, 0, 0.53},
		{"cnn", 1, 16, 0.55},
		{"dwcnn", 1, 16, 0.52},
	} {
		t.Run(fmt.Sprintf("%s/%d/%d", c.fixture, c.roundTo, c.chans), func(t *testing.T) {
			m, err := onnxio.Load("../testdata/models/" + c.fixture + "/model.onnx")
			if err != nil {
				t.Fatal(err)
			}
			calib, err := dataset.Load("../testdata/data/fmnist_calib.npz")
			if err != nil {
				t.Fatal(err)
			}
			_, rep, err := Run(m, calib, Config{Target: 0.5, Samples: 128, RoundTo: c.roundTo, RoundChannels: c.chans, Runtime: ort.Config{Threads: 1}})
			if err != nil {
				t.Fatal(err)
			}
			if rep.Reduction < 0.5 || rep.Reduction > c.maxReduction {
				t.Errorf("reduction %.4f, want within [0.5, %.2f]", rep.Reduction, c.maxReduction)
			}
			pruned := 0
			for _, g := range rep.Groups {
				if !g.Pruned {
					continue
				}
				pruned++
				step := c.roundTo
				if c.chans > 1 && g.Kind == "channels" {
					step = c.chans
				}
				if g.WidthAfter%step != 0 {
					t.Errorf("group %s (%s): width %d -> %d, not a multiple of %d", g.Name, g.Kind, g.WidthBefore, g.WidthAfter, step)
				}
			}
			if pruned == 0 {
				t.Error("no group pruned")
			}
			t.Logf("reduction %.4f, %d groups pruned", rep.Reduction, pruned)
		})
	}
}

func TestRemovalSteps(t *testing.T) {
	for _, c := range []struct {
		width, minW int
		per         float64
		roundTo     int
		want        []int
	}{
		{100, 4, 0.1, 1, []int{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}},
		{8, 4, 0.1, 1, []int{1}},      // narrow groups still move one unit
		{5, 4, 0.5, 1, []int{1}},      // never below the minimum
		{4, 4, 0.5, 1, nil},           // at the minimum
		{100, 4, 0.1, 8, []int{4}},    // 100 -> 96, a multiple of 8
		{96, 4, 0.2, 8, []int{8, 16}}, // 19 allowed: steps of 8
		{96, 4, 0.05, 8, []int{8}},    // one step even above the cap
	} {
		got := removalSteps(c.width, c.minW, c.per, c.roundTo)
		if fmt.Sprint(got) != fmt.Sprint(c.want) {
			t.Errorf("removalSteps(%d, %d, %v, %d) = %v, want %v", c.width, c.minW, c.per, c.roundTo, got, c.want)
		}
	}
}

// Weights that an old exporter also listed as graph inputs are still
// pruned, and the report says what was done.
func TestInitializersListedAsInputs(t *testing.T) {
	m, err := onnxio.Load("../testdata/models/mlp/model.onnx")
	if err != nil {
		t.Fatal(err)
	}
	g := m.Graph()
	for _, init := range g.GetInitializer() {
		g.Input = append(g.Input, onnxio.NewValueInfo(init.GetName(), onnxio.DataType(init.GetDataType()), dimsOf(init.GetDims())))
	}
	if len(onnxio.InputInitializers(m)) == 0 {
		t.Fatal("setup: no initializer inputs")
	}
	calib, err := dataset.Load("../testdata/data/fmnist_calib.npz")
	if err != nil {
		t.Fatal(err)
	}
	small, rep, err := Run(m, calib, Config{Target: 0.2, Samples: 64, Criterion: Magnitude{Norm: 2}})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Reduction < 0.2 || len(rep.Warnings) == 0 {
		t.Errorf("reduction %v, warnings %v", rep.Reduction, rep.Warnings)
	}
	if len(onnxio.InputInitializers(small)) != 0 {
		t.Error("the output still lists initializers as inputs")
	}
	if len(onnxio.InputInitializers(m)) == 0 {
		t.Error("the input model was modified")
	}
}

func dimsOf(d []int64) []onnxio.Dim {
	out := make([]onnxio.Dim, len(d))
	for k, v := range d {
		out[k] = onnxio.Dim{Value: v, Known: true}
	}
	return out
}
