package shrink

import (
	"math"
	"testing"
	"time"

	"github.com/onnx-cria/onnx-cria/dataset"
	"github.com/onnx-cria/onnx-cria/onnxio"
	"github.com/onnx-cria/onnx-cria/ort"
)

func loadMLP(t *testing.T) (*onnxio.Model, *dataset.Set) {
	t.Helper()
	m, err := onnxio.Load("../testdata/models/mlp/model.onnx")
	if err != nil {
		t.Fatal(err)
	}
	d, err := dataset.Load("../testdata/data/fmnist_calib.npz")
	if err != nil {
		t.Fatal(err)
	}
	return m, d
}

// The activation criterion's score of a unit is the mean absolute value of
// its post-activation state, which a plain ORT run with the hidden tensor
// as an output gives independently of capture.
func TestActivationScores(t *testing.T) {
	m, data := loadMLP(t)
	data, err := data.Subset(128, 3)
	if err != nil {
		t.Fatal(err)
	}
	_, scored, err := Score(m, data, Config{Criterion: Activation{}, Samples: 128, Runtime: ort.Config{Threads: 1}})
	if err != nil {
		t.Fatal(err)
	}
	for _, gs := range scored {
		post := gs.Group.Observe.Post
		s, err := ort.NewSessionForModel(m, []string{post}, ort.Config{Threads: 1})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Destroy()
		in, err := ort.FromArray("input", data.Get("input"))
		if err != nil {
			t.Fatal(err)
		}
		outs, err := s.Run(in)
		if err != nil {
			t.Fatal(err)
		}
		a := outs[len(outs)-1].Data.([]float32)
		n := gs.Group.Width
		for u := 0; u < n; u++ {
			var want float64
			for r := 0; r < 128; r++ {
				want += math.Abs(float64(a[r*n+u]))
			}
			want /= 128
			if got := gs.Scored.Scores[u]; math.Abs(got-want) > 1e-4*(1+want) {
				t.Fatalf("%s unit %d: score %v, mean |a| %v", gs.Group.Name, u, got, want)
			}
		}
	}
}

// Random scores repeat for the same seed, round and group, and change with
// each of them.
func TestRandomScores(t *testing.T) {
	m, data := loadMLP(t)
	score := func(seed int64, round int) map[string]*Scored {
		a, scored, err := Score(m, data, Config{Criterion: Random{}, Seed: seed, Samples: 64, AllGroups: true})
		if err != nil {
			t.Fatal(err)
		}
		in := &Round{Analysis: a, Index: round, Seed: seed}
		for _, gs := range scored {
			in.Groups = append(in.Groups, gs.Group)
		}
		out, err := Random{}.Score(in)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	same := func(a, b []float64) bool {
		for k := range a {
			if a[k] != b[k] {
				return false
			}
		}
		return true
	}
	base := score(1, 1)
	again, otherSeed, otherRound := score(1, 1), score(2, 1), score(1, 2)
	var first []float64
	for name, s := range base {
		for _, v := range s.Scores {
			if v < 0 || v >= 1 {
				t.Fatalf("%s: score %v outside [0, 1)", name, v)
			}
		}
		if !same(s.Scores, again[name].Scores) {
			t.Errorf("%s: the same seed and round gave other scores", name)
		}
		if same(s.Scores, otherSeed[name].Scores) || same(s.Scores, otherRound[name].Scores) {
			t.Errorf("%s: another seed or round gave the same scores", name)
		}
		if first != nil && same(first[:8], s.Scores[:8]) {
			t.Errorf("%s: two groups drew the same scores", name)
		}
		first = s.Scores
	}
}

// The ablation on the MLP's first layer: removing the half with the
// smallest incoming weights costs less accuracy than removing the half
// with the largest, and random removal lands in between on average.
func TestAblate(t *testing.T) {
	m, _ := loadMLP(t)
	ev, err := dataset.Load("../testdata/data/fmnist_eval.npz")
	if err != nil {
		t.Fatal(err)
	}
	if ev, err = ev.Subset(500, 1); err != nil {
		t.Fatal(err)
	}
	res, err := Ablate(m, nil, ev, "fc1:neurons", 0.5, 3, Config{Criterion: Magnitude{Norm: 2}, Runtime: ort.Config{Threads: 1}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Removed != res.Width/2 || len(res.Random) != 3 {
		t.Fatalf("removed %d of %d, %d random trials", res.Removed, res.Width, len(res.Random))
	}
	lo, hi := res.Lowest.Value, res.Highest.Value
	if !(lo > hi) || !(res.Original.Value >= lo-0.02) {
		t.Errorf("accuracy: original %.4f, lowest removed %.4f, highest removed %.4f", res.Original.Value, lo, hi)
	}
	if mean, _ := MeanStd(res.Random); mean != res.RandMean || !(res.RandMean > hi) {
		t.Errorf("random removal %.4f (mean %v), highest removed %.4f", res.RandMean, mean, hi)
	}
	if _, err := Ablate(m, nil, ev, "nosuch", 0.5, 1, Config{Criterion: Magnitude{Norm: 2}}); err == nil {
		t.Error("an unknown group was accepted")
	}
}

// Latency is measured per batch size on real rows, with a median that
// agrees with the runs' count and the throughput.
func TestMeasureLatency(t *testing.T) {
	m, data := loadMLP(t)
	lat, err := MeasureLatency(m, data, []int{1, 8}, 50*time.Millisecond, ort.Config{Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(lat) != 2 || lat[0].Batch != 1 || lat[1].Batch != 8 {
		t.Fatalf("latencies %+v", lat)
	}
	for _, l := range lat {
		if !(l.Median > 0) || l.Runs < 5 || math.Abs(l.Samples-float64(l.Batch)/l.Median*1000) > 1e-6*l.Samples {
			t.Errorf("batch %d: %+v", l.Batch, l)
		}
	}
}
