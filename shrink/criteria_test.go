package shrink

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/onnx-cria/onnx-cria/capture"
	"github.com/onnx-cria/onnx-cria/dataset"
	"github.com/onnx-cria/onnx-cria/onnxio"
	"github.com/onnx-cria/onnx-cria/ort"
	"gonum.org/v1/gonum/mat"
)

func loadMLP(t *testing.T) (*onnxio.Model, *dataset.Set) {
	t.Helper()
	return loadFixture(t, "mlp", "fmnist_calib.npz")
}

// loadFixture loads testdata/models/NAME/model.onnx and testdata/data/DATA.
func loadFixture(t *testing.T, name, data string) (*onnxio.Model, *dataset.Set) {
	t.Helper()
	m, err := onnxio.Load("../testdata/models/" + name + "/model.onnx")
	if err != nil {
		t.Fatal(err)
	}
	d, err := dataset.Load("../testdata/data/" + data)
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
		a := postStates(t, m, gs.Group.Observe.Post, data)
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

// A latency measurement bounded in wall time times batch 1, then halves a
// batch whose estimated runs (from batch 1's) would not fit the limit, and
// records the batch it timed; without a limit it times what it was asked.
func TestMeasureLatenciesWithin(t *testing.T) {
	m, data := loadMLP(t)
	models := []*onnxio.Model{m, m}
	lat, err := MeasureLatenciesWithin(models, data, []int{1, 4096}, 10*time.Millisecond, 30*time.Millisecond, ort.Config{Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range lat {
		if l[0].Batch != 1 || l[0].Runs < 1 {
			t.Fatalf("batch 1 first: %+v", l)
		}
		// One turn of two models at batch 4096 is far beyond 30 ms at
		// batch 1's speed per row: the batch was halved, or skipped.
		if len(l) == 2 && (l[1].Batch >= 4096 || l[1].Batch <= 1 || 4096%l[1].Batch != 0 || l[1].Runs < 1) {
			t.Errorf("second measurement %+v", l[1])
		}
		if len(l) != len(lat[0]) || len(l) > 2 {
			t.Errorf("latencies %+v", lat)
		}
	}
	full, err := MeasureLatenciesWithin(models[:1], data, []int{1, 256}, time.Millisecond, 0, ort.Config{Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(full[0]) != 2 || full[0][1].Batch != 256 {
		t.Errorf("without a limit: %+v", full[0])
	}
}

// The output criteria on the MLP: wanda and flap agree with their formulas
// computed from a plain ORT run and the outgoing weights; obs's leave-one-
// out variance is the residual variance of regressing a unit on the others.
func TestOutputCriteria(t *testing.T) {
	m, data := loadMLP(t)
	data, err := data.Subset(256, 4)
	if err != nil {
		t.Fatal(err)
	}
	for _, kind := range []string{"wanda", "flap", "obs", "spectral-flap"} {
		_, scored, err := Score(m, data, Config{Criterion: Output{Kind: kind}, Samples: 256, Runtime: ort.Config{Threads: 1}})
		if err != nil {
			t.Fatal(err)
		}
		for _, gs := range scored {
			sc := gs.Scored.Scores
			if len(sc) != gs.Group.Width {
				t.Fatalf("%s %s: %d scores", kind, gs.Group.Name, len(sc))
			}
			if kind != "wanda" && kind != "flap" {
				continue
			}
			a := postStates(t, m, gs.Group.Observe.Post, data)
			outn, err := outgoingNorms(m, gs.Group)
			if err != nil {
				t.Fatal(err)
			}
			n := gs.Group.Width
			for p := 0; p < n; p++ {
				var s, ss, sa float64
				for i := 0; i < 256; i++ {
					v := float64(a[i*n+p])
					s, ss, sa = s+v, ss+v*v, sa+math.Abs(v)
				}
				want := sa / 256 * outn[p]
				if kind == "flap" {
					mu := s / 256
					want = (ss/256 - mu*mu) * outn[p] * outn[p]
				}
				if math.Abs(sc[p]-want) > 1e-4*(math.Abs(want)+1e-6) {
					t.Fatalf("%s %s unit %d: %v, want %v", kind, gs.Group.Name, p, sc[p], want)
				}
			}
		}
	}
	// leaveOneOut against an explicit regression on a small matrix.
	r := rand.New(rand.NewPCG(5, 6))
	const rows, n = 200, 5
	x := make([]float32, rows*n)
	for i := 0; i < rows; i++ {
		base := r.NormFloat64()
		for p := 0; p < n; p++ {
			x[i*n+p] = float32(base*float64(p) + r.NormFloat64())
		}
	}
	am := capture.NewMatrix(rows, n, x)
	mean := make([]float64, n)
	for p := 0; p < n; p++ {
		for i := 0; i < rows; i++ {
			mean[p] += am.At(i, p) / rows
		}
	}
	loo, err := leaveOneOut(am, mean)
	if err != nil {
		t.Fatal(err)
	}
	for p := 0; p < n; p++ {
		others := mat.NewDense(rows, n, nil) // the other columns and a bias
		y := mat.NewVecDense(rows, nil)
		for i := 0; i < rows; i++ {
			k := 0
			for q := 0; q < n; q++ {
				if q != p {
					others.Set(i, k, am.At(i, q))
					k++
				}
			}
			others.Set(i, n-1, 1)
			y.SetVec(i, am.At(i, p))
		}
		var b, res mat.VecDense
		if err := b.SolveVec(others, y); err != nil {
			t.Fatal(err)
		}
		res.MulVec(others, &b)
		res.SubVec(y, &res)
		want := mat.Dot(&res, &res) / rows
		if math.Abs(loo[p]-want) > 0.01*want {
			t.Errorf("unit %d: leave-one-out variance %v, regression residual %v", p, loo[p], want)
		}
	}
}

// postStates runs m with tensor as an extra output on data's inputs.
func postStates(t *testing.T, m *onnxio.Model, tensor string, data *dataset.Set) []float32 {
	t.Helper()
	s, err := ort.NewSessionForModel(m, []string{tensor}, ort.Config{Threads: 1})
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
	return outs[len(outs)-1].Data.([]float32)
}

// The spectral criterion scores units whose output never varies 0: on the
// MLP, fc2 has such units on the calibration set.
func TestSpectralDeadUnitsFirst(t *testing.T) {
	m, data := loadMLP(t)
	_, scored, err := Score(m, data, Config{Samples: 512, Criterion: NewSpectral(DefaultSpectralOptions()), Runtime: ort.Config{Threads: 1}})
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, gs := range scored {
		a := postStates(t, m, gs.Group.Observe.Post, mustSubset(t, data, 512))
		n := gs.Group.Width
		dead := 0
		for p := 0; p < n; p++ {
			same := true
			for i := 1; i < 512 && same; i++ {
				same = a[i*n+p] == a[p]
			}
			if same {
				dead++
				if gs.Scored.Scores[p] != 0 {
					t.Errorf("%s: dead unit %d scores %v", gs.Group.Name, p, gs.Scored.Scores[p])
				}
			}
		}
		if got := gs.Scored.Detail["dead_units"]; got != dead {
			t.Errorf("%s: report says %v dead units, %d found", gs.Group.Name, got, dead)
		}
		total += dead
	}
	if total == 0 {
		t.Error("no dead unit on the MLP's calibration set: the test checks nothing")
	}
}

func mustSubset(t *testing.T, d *dataset.Set, n int) *dataset.Set {
	t.Helper()
	s, err := d.Subset(n, 0)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// With fewer samples than units leaveOneOut takes the Gram-matrix path; it
// must give the diagonal the covariance path gives, dead and duplicated
// units included.
func TestLeaveOneOutWide(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	const rows, n = 24, 60
	c := mat.NewDense(rows, n, nil)
	for i := 0; i < rows; i++ {
		for p := 0; p < n; p++ {
			switch {
			case p%10 == 3: // dead
			case p%10 == 7: // a copy of the unit before
				c.Set(i, p, c.At(i, p-1))
			default:
				c.Set(i, p, r.NormFloat64()*float64(1+p%4))
			}
		}
	}
	lam := 0.01
	cov, err := inverseDiagCov(c, lam)
	if err != nil {
		t.Fatal(err)
	}
	gram, err := inverseDiagGram(c, lam)
	if err != nil {
		t.Fatal(err)
	}
	for p := range cov {
		if math.Abs(cov[p]-gram[p]) > 1e-8*cov[p] {
			t.Fatalf("unit %d: %v through the covariance, %v through the Gram matrix", p, cov[p], gram[p])
		}
	}
	if math.Abs(cov[3]-1/lam) > 1e-9/lam {
		t.Errorf("a dead unit's diagonal %v, want 1/lam", cov[3])
	}
}
