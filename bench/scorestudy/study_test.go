package main

import (
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gonum.org/v1/gonum/mat"
)

func TestSpearman(t *testing.T) {
	for _, c := range []struct {
		x, y []float64
		want float64
	}{
		{[]float64{1, 2, 3, 4}, []float64{10, 20, 30, 40}, 1},
		{[]float64{1, 2, 3, 4}, []float64{4, 3, 2, 1}, -1},
		{[]float64{1, 5, 2, 9}, []float64{0.1, 0.2, 0.3, 0.4}, 0.8}, // ranks 1 3 2 4 against 1 2 3 4: 1 - 6*2/(4*15)
		// Ties get their mean rank: (1.5, 1.5, 3) against (1, 2, 3).
		{[]float64{7, 7, 8}, []float64{1, 2, 3}, 1.5 / math.Sqrt(3)},
	} {
		if got := spearman(c.x, c.y); math.Abs(got-c.want) > 1e-12 {
			t.Errorf("spearman(%v, %v) = %v, want %v", c.x, c.y, got, c.want)
		}
	}
	if r := spearman([]float64{1, 1, 1}, []float64{1, 2, 3}); !math.IsNaN(r) {
		t.Errorf("constant side: %v, want NaN", r)
	}
}

// obs claims to be the increase of the next layer's squared output error
// when unit p is removed and that layer is refit, by least squares, on the
// other units. Check it against that refit done directly.
func TestObsIsTheRefitError(t *testing.T) {
	const m, n, next = 400, 6, 3
	rng := rand.New(rand.NewPCG(1, 2))
	a := mat.NewDense(m, n, nil)
	for i := 0; i < m; i++ {
		base := rng.NormFloat64()
		for p := 0; p < n; p++ {
			a.Set(i, p, rng.NormFloat64()+float64(p%3)*base) // correlated units
		}
	}
	// Centre the columns, as derivedScores does.
	for p := 0; p < n; p++ {
		col := mat.Col(nil, p, a)
		mu := 0.0
		for _, v := range col {
			mu += v / m
		}
		for i := range col {
			a.Set(i, p, col[i]-mu)
		}
	}
	w := mat.NewDense(next, n, nil)
	outn := make([]float64, n)
	for p := 0; p < n; p++ {
		for j := 0; j < next; j++ {
			w.Set(j, p, rng.NormFloat64())
			outn[p] += w.At(j, p) * w.At(j, p)
		}
		outn[p] = math.Sqrt(outn[p])
	}
	obs, _, err := leaveOneOut(a, outn)
	if err != nil {
		t.Fatal(err)
	}
	var y mat.Dense // the next layer's output, M x next
	y.Mul(a, w.T())
	for p := 0; p < n; p++ {
		var keep []int
		for q := 0; q < n; q++ {
			if q != p {
				keep = append(keep, q)
			}
		}
		x := mat.NewDense(m, n-1, nil)
		for k, q := range keep {
			x.SetCol(k, mat.Col(nil, q, a))
		}
		var sol mat.Dense
		if err := sol.Solve(x, &y); err != nil {
			t.Fatal(err)
		}
		var fit mat.Dense
		fit.Mul(x, &sol)
		fit.Sub(&y, &fit)
		refit := mat.Norm(&fit, 2)
		refit = refit * refit / m
		// The study's covariance carries a ridge of 1e-3 of its mean diagonal.
		if math.Abs(obs[p]-refit) > 0.01*refit {
			t.Errorf("unit %d: obs %.6g, refit error %.6g", p, obs[p], refit)
		}
	}
}

// A short study of the MLP fixture: every score for every unit, the damage
// records asked for, KL divergences that are not negative, and the dead
// units (constant output on the scoring rows) that spectral-live sets to 0.
func TestQuickMLP(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the MLP fixture through ONNX Runtime")
	}
	out := t.TempDir()
	if err := run([]string{"--fixtures", "mlp", "--root", "../..", "--single", "3", "--sets", "2", "--fractions", "0.5", "--out", out}); err != nil {
		t.Fatal(err)
	}
	st, err := readStudy(filepath.Join(out, "study.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Fixtures) != 1 || len(st.Fixtures[0].Groups) != 2 {
		t.Fatalf("want the MLP's two hidden layers, got %+v", st.Fixtures)
	}
	if !strings.Contains(st.Config.Command, "--out DIR") || strings.Contains(st.Config.Command, out) {
		t.Errorf("recorded command %q names the output directory", st.Config.Command)
	}
	f := st.Fixtures[0]
	if f.Scoring != 768 || f.Validation != 256 {
		t.Errorf("split %d / %d rows, want 768 / 256", f.Scoring, f.Validation)
	}
	dead := 0
	for _, g := range f.Groups {
		for _, name := range append(append([]string(nil), criteria...), derivedNames...) {
			if len(g.Scores[name]) != g.Width {
				t.Errorf("%s: score %s has %d entries for %d units", g.Name, name, len(g.Scores[name]), g.Width)
			}
		}
		if len(g.Single) != 3 || len(g.Sets) != 2 || len(g.Bottom) != len(bottomScores)+randomDraws {
			t.Errorf("%s: %d single, %d sets, %d bottom removals", g.Name, len(g.Single), len(g.Sets), len(g.Bottom))
		}
		for _, d := range append(g.Single, g.Sets...) {
			if d.KL < -1e-9 || math.IsNaN(d.DLoss) {
				t.Errorf("%s: removing %v gives KL %v, loss change %v", g.Name, d.Units, d.KL, d.DLoss)
			}
		}
		for p, sd := range g.Scores["std"] {
			if sd == 0 {
				dead++
				if g.Scores["spectral-live"][p] != 0 {
					t.Errorf("%s: dead unit %d has spectral-live %v", g.Name, p, g.Scores["spectral-live"][p])
				}
			}
		}
	}
	if dead == 0 {
		t.Error("the MLP has dead ReLU units on its calibration data; none found")
	}
	md, err := os.ReadFile(filepath.Join(out, "tables.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"fc1:neurons", "Summary over all groups", "lowest-scored 50%"} {
		if !strings.Contains(string(md), want) {
			t.Errorf("tables.md lacks %q", want)
		}
	}
}

// docs/research/tables.md must be exactly what the committed records
// (docs/research/study-*.json, in name order) render to, so that every
// number in docs/RESEARCH.md traces back to them.
func TestPublishedStudy(t *testing.T) {
	files, err := filepath.Glob("../../docs/research/study-*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no records in docs/research (%v)", err)
	}
	st, err := readStudies(files)
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile("../../docs/research/tables.md")
	if err != nil {
		t.Fatal(err)
	}
	if Markdown(st) != string(want) {
		t.Error("docs/research/tables.md differs from what docs/research/study.json renders to; render them again with go run ./bench/scorestudy --render (see docs/RESEARCH.md)")
	}
}
