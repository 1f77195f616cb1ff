package shrink

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

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

// Rounding keeps Conv channel counts at multiples of the block: every
// group with an explicit --round-to, and with the automatic (CPU) block all
// but at most one, which may end off its block to land the target, with a
// warning. Either way the reduction lands near the target.
func TestRounding(t *testing.T) {
	for _, c := range []struct {
		fixture        string
		roundTo, chans int
		maxReduction   float64
	}{
		{"cnn", 8, 0, 0.53},
		{"cnn", 1, 16, 0.52},
		{"dwcnn", 1, 16, 0.52},
		{"dwcnn", 1, 8, 0.52},
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
			pruned, off := 0, 0
			for _, g := range rep.Groups {
				if !g.Pruned {
					continue
				}
				pruned++
				step := c.roundTo
				if c.chans > 1 && g.Kind == "channels" {
					step = c.chans
				}
				if g.WidthAfter%step == 0 {
					continue
				}
				off++
				warned := false
				for _, w := range rep.Warnings {
					warned = warned || strings.Contains(w, g.Name) && strings.Contains(w, "off the block")
				}
				if c.chans <= 1 || !warned {
					t.Errorf("group %s (%s): width %d -> %d, not a multiple of %d (warned: %v)", g.Name, g.Kind, g.WidthBefore, g.WidthAfter, step, warned)
				}
			}
			if pruned == 0 || off > 1 {
				t.Errorf("%d groups pruned, %d off their block", pruned, off)
			}
			t.Logf("reduction %.4f, %d groups pruned, %d off the block", rep.Reduction, pruned, off)
		})
	}
}

// Written widths snap to the nearest multiple of the block at or above the
// floor (ties keep more units), or stay at the original width.
func TestSnap(t *testing.T) {
	for _, c := range []struct {
		width, block, minW, natural, want int
	}{
		{100, 1, 4, 37, 37}, // single units: the natural width
		{100, 1, 4, 2, 4},   // never below the minimum
		{64, 16, 4, 55, 48}, // nearer 48 than 64
		{64, 16, 4, 56, 64}, // a tie keeps more
		{64, 16, 4, 60, 64}, // nearer the original
		{64, 16, 4, 5, 16},  // the floor is one block
		{24, 16, 4, 19, 16}, // an original width off the block
		{24, 16, 4, 21, 24}, // nearer the original
		{16, 16, 4, 10, 16}, // one block: cannot shrink
		{96, 8, 20, 17, 24}, // the floor is the minimum rounded up
	} {
		s := &unitState{width: c.width, block: c.block, minW: c.minW, eligible: true}
		if got := s.snap(c.natural); got != c.want {
			t.Errorf("width %d block %d min %d: snap(%d) = %d, want %d", c.width, c.block, c.minW, c.natural, got, c.want)
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

// A FLOPs target lands on the FLOPs of the written model, a latency target
// records the timings it made (speed itself is a benchmark's business), and
// the cost ranking spends the budget where units cost most.
func TestTargetKinds(t *testing.T) {
	m, calib := loadMLP(t)
	rt := ort.Config{Threads: 1}
	small, rep, err := Run(m, calib, Config{Target: 0.4, Kind: TargetFLOPs, Samples: 128, Runtime: rt})
	if err != nil {
		t.Fatal(err)
	}
	got := 1 - float64(onnxio.FLOPs(small))/float64(onnxio.FLOPs(m))
	if got < 0.4 || got > 0.41 || math.Abs(got-rep.Landed) > 1e-9 || rep.TargetKind != TargetFLOPs {
		t.Errorf("FLOPs reduction %.4f, report %s %.4f", got, rep.TargetKind, rep.Landed)
	}

	_, rep, err = Run(m, calib, Config{Target: 0.05, Kind: TargetLatency, LatencyBatch: 16, LatencyBudget: 20 * time.Millisecond, Samples: 128, Runtime: rt})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Timings) == 0 || rep.Landed < 0.05 || rep.Options.LatencyBatch != 16 {
		t.Errorf("latency target: %d timings, landed %.4f, batch %d", len(rep.Timings), rep.Landed, rep.Options.LatencyBatch)
	}

	// fc1's units each carry 784 inputs, fc2's 512: at equal scores the
	// cost ranking removes fc1's first, the per-group ranking alike.
	frac := func(ranking string) (fc1, fc2 float64) {
		_, rep, err := Run(m, calib, Config{Target: 0.3, Ranking: ranking, Criterion: Random{}, Samples: 128, Runtime: rt})
		if err != nil {
			t.Fatal(err)
		}
		for _, g := range rep.Groups {
			switch g.Name {
			case "fc1:neurons":
				fc1 = g.Removed
			case "fc2:neurons":
				fc2 = g.Removed
			}
		}
		return fc1, fc2
	}
	c1, c2 := frac("cost")
	p1, p2 := frac("per-group")
	if !(c1 > c2) || !(c1-c2 > p1-p2) {
		t.Errorf("removed fc1/fc2: cost ranking %.3f/%.3f, per-group %.3f/%.3f", c1, c2, p1, p2)
	}
}

// With global ranking, a partial round removes the units with the lowest
// normalised scores among every group's candidates (its lowest-scored tenth):
// no kept candidate scores below a removed unit, but for the one unit the
// landing may add to meet the target with less overshoot.
func TestGlobalRanking(t *testing.T) {
	m, calib := loadMLP(t)
	cfg := Config{Target: 0.03, Ranking: "global", Criterion: Magnitude{Norm: 2}, Samples: 64}
	_, rep, err := Run(m, calib, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Rounds) != 1 {
		t.Fatalf("%d rounds, want a single partial one", len(rep.Rounds))
	}
	_, scored, err := Score(m, calib, cfg)
	if err != nil {
		t.Fatal(err)
	}
	type unit struct {
		norm    float64
		removed bool
	}
	var cands []unit
	for _, gs := range scored {
		removed := map[int]bool{}
		for _, gr := range rep.Rounds[0].Groups {
			if gr.Name == gs.Group.Name {
				for _, u := range gr.Removed {
					removed[u] = true
				}
			}
		}
		sc := gs.Scored.Scores
		top := 0.0
		for _, v := range sc {
			top = math.Max(top, math.Abs(v))
		}
		order := ascending(sc)
		for _, u := range order[:len(sc)/10] {
			cands = append(cands, unit{sc[u] / top, removed[u]})
		}
		if len(removed) == 0 {
			t.Logf("%s: nothing removed", gs.Group.Name)
		}
	}
	exceptions := 0
	for _, r := range cands {
		if !r.removed {
			continue
		}
		for _, k := range cands {
			if !k.removed && k.norm < r.norm {
				exceptions++
				break
			}
		}
	}
	if exceptions > 1 {
		t.Errorf("%d removed units score above a kept candidate", exceptions)
	}
}

// When the channel block is what stops a target short, the refusal says
// what single-unit widths would reach.
func TestUnreachableByBlocks(t *testing.T) {
	m, calib := loadFixture(t, "cnn", "fmnist_calib.npz")
	var err error
	for _, c := range []struct {
		chans     int
		unblocked bool
	}{{16, true}, {0, false}} {
		_, _, err = Run(m, calib, Config{Target: 0.99, Samples: 64, RoundChannels: c.chans, Runtime: ort.Config{Threads: 1}})
		var ue *UnreachableError
		if !errors.As(err, &ue) || !ue.Upfront {
			t.Fatalf("blocks of %d: err %v, want an upfront UnreachableError", c.chans, err)
		}
		if got := ue.Unblocked > ue.Reached; got != c.unblocked {
			t.Errorf("blocks of %d: reached %.4f, unblocked %.4f", c.chans, ue.Reached, ue.Unblocked)
		}
	}
	_, _, err = Run(m, calib, Config{Target: 0.7, Samples: 64, RoundChannels: 16, Runtime: ort.Config{Threads: 1}})
	var ue *UnreachableError
	if !errors.As(err, &ue) || ue.Reached >= 0.7 || ue.Unblocked <= 0.7 {
		t.Errorf("0.7 with blocks of 16: %v (%+v), want refused with single units reaching past it", err, ue)
	}
}
