package spectral

import (
	"encoding/json"
	"math"
	"slices"
	"strings"
	"testing"

	"gonum.org/v1/gonum/mat"
)

// A linear layer over the data (A = c Z, c > 0) scales every distance by c,
// so G_X and G_Y are the same graph and L_X = L_Y. On 1^⊥ (where the
// rank-one regularisation is invisible) L_X u = zeta L_Y u then holds with
// zeta = 1 for every u: all n-1 non-constant eigenvalues are 1 and the
// constant vector has 0. The eigenvectors are any basis of 1^⊥, so the
// eta-based scores would only reflect the solver's arbitrary choice; what
// the math supports is "no neuron is distinguished", which Score reports as
// NoDistortion with every score 1. With Gaussian weights sigma scales with
// c too, so the weights agree up to rounding.
func TestLinearLayerNoDistortion(t *testing.T) {
	rng := newRand(8, 8)
	z := lowRank(rng, 40, 90, 4, 0.3)
	var a mat.Dense
	a.Scale(3, z)
	for _, w := range []Weighting{Unweighted, Gaussian} {
		o := Options{Weighting: w}
		gx, gy, lx, ly := pencil(t, z, &a, o)
		if !sameGraph(gx, gy) {
			t.Fatalf("%v: graphs differ; the premise of the test fails", w)
		}
		full := DefaultOptions()
		full.Weighting = w
		full.S = gx.N - 1
		e, err := GeneralizedEigsDense(lx, ly, full)
		if err != nil {
			t.Fatal(err)
		}
		for i, v := range e.Values {
			if math.Abs(v-1) > 1e-10 {
				t.Fatalf("%v: zeta_%d = %v, want 1", w, i+1, v)
			}
		}
		if e.Next != 0 {
			t.Fatalf("%v: constant vector has zeta %v, want 0", w, e.Next)
		}
		for _, solver := range []Solver{Dense, Sparse} {
			o.Solver = solver
			r, err := Score(z, &a, o)
			if err != nil {
				t.Fatal(err)
			}
			if !r.NoDistortion {
				t.Fatalf("%v/%v: NoDistortion not set", w, solver)
			}
			for i, v := range r.Eigenvalues {
				if math.Abs(v-1) > 1e-8 {
					t.Fatalf("%v/%v: zeta_%d = %v", w, solver, i+1, v)
				}
			}
			for _, s := range r.Scores {
				if s != 1 {
					t.Fatalf("%v/%v: score %v, want 1", w, solver, s)
				}
			}
		}
	}
	// A nonlinear layer on the same data is not flagged.
	r, err := Score(z, applyFn(z, relu), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if r.NoDistortion || r.Eigenvalues[0] <= 1 {
		t.Fatalf("relu layer: NoDistortion %v, zeta_1 %v", r.NoDistortion, r.Eigenvalues[0])
	}
}

// pendantLayer builds a layer whose group of g = 10 identical neurons
// (columns n0..n0+9) hangs off the rest through one live neuron c0 = 0, in
// both graphs:
//   - live neurons 1..n0-1: Z ~ unit-variance low-rank + noise,
//     A = (Z+1)^2 + 5 (a folding nonlinearity, so G_X and G_Y differ);
//   - c0: Z = -1 + small noise, A = (Z+1)^2 + 5 (the live neuron nearest
//     to the group in both spaces);
//   - the group: dead (Z = -3, A = 0) or duplicated (Z = -3 + 0.3 w,
//     A = 0.3 w', the same w, w' in every copy).
//
// With k = 10 each group member lists the 9 others and c0, and nobody else
// lists a group member (the test checks this). Then rows p of L_X and L_Y
// are identical for p in the group, so for every eigenpair
// L_X u = zeta L_Y u with zeta != 1, (1 - zeta)(L_Y u)_p = 0, i.e. u is
// harmonic on the group with c0 as its only outside neighbour: u equals
// u(c0) on the whole group. Every G_X edge of a group member then has
// eta = 0, and its score is exactly 0, the lowest possible.
func pendantLayer(t *testing.T, dead bool) (z, a *mat.Dense, group []int) {
	const m, n0, g = 200, 80, 10
	rng := newRand(9, 9)
	lr := lowRank(rng, m, n0, 3, 0.5)
	lr.Scale(1/math.Sqrt(3.25), lr)
	z = mat.NewDense(m, n0+g, nil)
	a = mat.NewDense(m, n0+g, nil)
	for j := 0; j < n0; j++ {
		setCol(z, j, func(i int) float64 { return lr.At(i, j) })
	}
	setCol(z, 0, func(int) float64 { return -1 + 0.1*rng.NormFloat64() })
	for j := 0; j < n0; j++ {
		setCol(a, j, func(i int) float64 { v := z.At(i, j) + 1; return v*v + 5 })
	}
	w := randDense(rng, m, 2)
	for j := n0; j < n0+g; j++ {
		group = append(group, j)
		if dead {
			setCol(z, j, func(int) float64 { return -3 })
			setCol(a, j, func(int) float64 { return 0 })
		} else {
			setCol(z, j, func(i int) float64 { return -3 + 0.3*w.At(i, 0) })
			setCol(a, j, func(i int) float64 { return 0.3 * w.At(i, 1) })
		}
	}
	// Check the premise: the group's lists are itself plus c0, in both
	// graphs, and no live neuron lists a group member.
	for _, x := range []*mat.Dense{z, a} {
		nb, err := KNN(x, 10, 1)
		if err != nil {
			t.Fatal(err)
		}
		for p := 0; p < n0+g; p++ {
			for _, q := range nb.Of(p) {
				inG := q >= n0
				if p < n0 && inG {
					t.Fatalf("premise: live neuron %d lists group member %d", p, q)
				}
				if p >= n0 && !inG && q != 0 {
					t.Fatalf("premise: group member %d lists %d, want only c0 = 0 outside", p, q)
				}
			}
		}
	}
	return z, a, group
}

func testPendant(t *testing.T, dead bool) {
	z, a, group := pendantLayer(t, dead)
	ss := []int{1, 2, 4}
	if raceEnabled {
		ss = []int{2}
	}
	for _, solver := range []Solver{Dense, Sparse} {
		for _, s := range ss {
			r, err := Score(z, a, Options{Solver: solver, S: s})
			if err != nil {
				t.Fatal(err)
			}
			for i, v := range r.Eigenvalues {
				if math.Abs(v-1) < 1e-6 {
					t.Fatalf("zeta_%d = %v is 1; the argument needs zeta != 1", i+1, v)
				}
			}
			low := slices.Min(r.Scores[:group[0]])
			for _, p := range group {
				if r.Scores[p] > 1e-9 {
					t.Errorf("%v s=%d: group neuron %d scores %v, want 0", solver, s, p, r.Scores[p])
				}
			}
			if low < 1e-6 {
				t.Errorf("%v s=%d: a live neuron scores %v, as low as the group", solver, s, low)
			}
		}
	}
}

func TestDeadNeuronsScoreLowest(t *testing.T)       { testPendant(t, true) }
func TestDuplicatedNeuronsScoreLowest(t *testing.T) { testPendant(t, false) }

// Duplicates are not always pruning candidates. If neurons h and h' are
// identical and swapping them maps both graphs to themselves, x = e_h - e_h'
// satisfies L x = (d_h + w_hh') x in each graph (shared neighbours cancel),
// so zeta_a = (deg_X(h)+1) / (deg_Y(h)+1) is an exact generalized eigenvalue
// (unit weights) with eigenvector x. Here h is the centroid of the other
// pre-activations (a hub that every neuron lists in G_X) and an outlier in A
// (nobody lists it in G_Y): zeta_a = 60/11 is zeta_2, above it is the
// symmetric "pair against the rest" mode, and with the default s = 2 the
// duplicates score highest. Duplicates score low when the pair hangs off
// the graph (TestDuplicatedNeuronsScoreLowest), not in general (docs/METHOD.md
// §4).
func TestDuplicatedHubScoresHighest(t *testing.T) {
	const m, n, h, h2 = 64, 60, 7, 40
	rng := newRand(10, 10)
	z := randDense(rng, m, n)
	mean := make([]float64, m)
	for j := 0; j < n; j++ {
		if j != h && j != h2 {
			for i := range mean {
				mean[i] += z.At(i, j) / (n - 2)
			}
		}
	}
	setCol(z, h, func(i int) float64 { return mean[i] })
	setCol(z, h2, func(i int) float64 { return mean[i] })
	a := applyFn(z, math.Tanh)
	for _, j := range []int{h, h2} {
		setCol(a, j, func(i int) float64 { return 5 + math.Tanh(mean[i]) })
	}
	gx, gy, lx, ly := pencil(t, z, a, Options{})
	if gx.Ptr[h+1]-gx.Ptr[h] != n-1 {
		t.Fatalf("premise: hub degree %d in G_X, want %d", gx.Ptr[h+1]-gx.Ptr[h], n-1)
	}
	// Premise: the swap h <-> h2 is an automorphism of both graphs.
	for _, g := range []*Graph{gx, gy} {
		for p := 0; p < n; p++ {
			row := g.Ind[g.Ptr[p]:g.Ptr[p+1]]
			if p != h && p != h2 && slices.Contains(row, h) != slices.Contains(row, h2) {
				t.Fatalf("premise: %d is adjacent to only one of the pair", p)
			}
		}
	}
	degX := float64(gx.Ptr[h+1] - gx.Ptr[h])
	degY := float64(gy.Ptr[h+1] - gy.Ptr[h])
	za := (degX + 1) / (degY + 1)
	e, err := GeneralizedEigsDense(lx, ly, Options{S: 2})
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(e.Values[1]-za) > 1e-10*za {
		t.Fatalf("zeta = %v, want zeta_2 = (deg_X+1)/(deg_Y+1) = %v", e.Values, za)
	}
	u := col(e.Vectors, 1)
	if math.Abs(math.Abs(u[h])-math.Sqrt(0.5)) > 1e-10 || math.Abs(u[h]+u[h2]) > 1e-10 {
		t.Fatalf("eigenvector of zeta_a is not (e_h - e_h')/sqrt2: %v %v", u[h], u[h2])
	}
	r, err := Score(z, a, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for p, s := range r.Scores {
		if (p == h || p == h2) != (s > 0.5) {
			t.Fatalf("neuron %d scores %v; want only the duplicated pair above 0.5", p, s)
		}
	}
}

// Same input and seed give bit-identical output, whatever the thread count
// (kNN is exact, and the eigensolver runs in a fixed order).
func TestDeterminism(t *testing.T) {
	n := 420 // above the exhaustive-kNN and dense thresholds
	if raceEnabled {
		n = 300
	}
	rng := newRand(12, 12)
	z := lowRank(rng, 40, n, 5, 0.3)
	for j := 10; j < 20; j++ { // a few dead neurons for ties
		setCol(z, j, func(int) float64 { return -1 })
	}
	a := applyFn(z, relu)
	var ref *Result
	threadCounts := []int{1, 2, 3, 1}
	if raceEnabled {
		threadCounts = []int{1, 3}
	}
	for _, threads := range threadCounts {
		r, err := Score(z, a, Options{Threads: threads, Seed: 5, EdgeScores: true})
		if err != nil {
			t.Fatal(err)
		}
		if r.Solver != "sparse" {
			t.Fatalf("solver %q", r.Solver)
		}
		if ref == nil {
			ref = r
			continue
		}
		if !slices.Equal(r.Scores, ref.Scores) || !slices.Equal(r.Eigenvalues, ref.Eigenvalues) ||
			!mat.Equal(r.Eigenvectors, ref.Eigenvectors) || !slices.Equal(r.Edges, ref.Edges) ||
			r.GraphX != ref.GraphX || r.GraphY != ref.GraphY {
			t.Fatalf("threads=%d: result differs", threads)
		}
	}
	// A different seed changes only the start vector: same answer to
	// solver accuracy.
	r, err := Score(z, a, Options{Seed: 6})
	if err != nil {
		t.Fatal(err)
	}
	if d := maxAbsDiff(r.Scores, ref.Scores); d > 1e-6 {
		t.Fatalf("seed changes scores by %v", d)
	}
}

// Degenerate inputs give defined results, never NaN.
func TestDegenerate(t *testing.T) {
	check := func(name string, r *Result, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for _, s := range r.Scores {
			if math.IsNaN(s) || s < 0 || s > 1 {
				t.Fatalf("%s: score %v", name, s)
			}
		}
		if len(r.Scores) > 0 && slices.Max(r.Scores) != 1 {
			t.Fatalf("%s: max score %v", name, slices.Max(r.Scores))
		}
	}
	// One neuron: nothing to compare with.
	r, err := Score(mat.NewDense(5, 1, nil), mat.NewDense(5, 1, nil), Options{})
	check("n=1", r, err)
	if r.Scores[0] != 1 || r.Eigenvectors != nil {
		t.Fatalf("n=1: %+v", r)
	}
	// Two neurons: one edge, one non-constant eigenvector (1,-1)/sqrt2 with
	// zeta = w_X / w_Y = 1; both graphs are the single edge.
	z2 := mat.NewDense(3, 2, []float64{1, 2, 3, 4, 5, 7})
	r, err = Score(z2, applyFn(z2, math.Sqrt), Options{})
	check("n=2", r, err)
	if len(r.Eigenvalues) != 1 || math.Abs(r.Eigenvalues[0]-1) > 1e-12 || r.Options.S != 1 {
		t.Fatalf("n=2: %v S=%d", r.Eigenvalues, r.Options.S)
	}
	// All-zero layer: every column identical; ties by index give the same
	// graph for Z and A, hence no distortion.
	zero := mat.NewDense(6, 30, nil)
	r, err = Score(zero, zero, Options{})
	check("zero", r, err)
	if !r.NoDistortion || !r.GraphX.Connected {
		t.Fatalf("zero: %+v", r.GraphX)
	}
	// Constant columns with different constants, one sample (M = 1), and a
	// dead half.
	c := mat.NewDense(1, 40, nil)
	for j := 0; j < 40; j++ {
		c.Set(0, j, float64(j%20)-10)
	}
	r, err = Score(c, applyFn(c, relu), Options{Solver: Sparse})
	check("constant", r, err)
	// Non-finite input is an error naming the matrix and column.
	bad := mat.NewDense(4, 9, nil)
	bad.Set(2, 6, math.NaN())
	if _, err := Score(zero.Slice(0, 4, 0, 9), bad, Options{}); err == nil || err.Error() != "A: spectral: column 6 has NaN at row 2" {
		t.Fatalf("NaN: %v", err)
	}
	if _, err := Score(bad, bad, Options{}); err == nil || err.Error()[:2] != "Z:" {
		t.Fatalf("NaN in Z: %v", err)
	}
	if _, err := Score(mat.NewDense(3, 4, nil), mat.NewDense(3, 5, nil), Options{}); err == nil {
		t.Fatal("shape mismatch accepted")
	}
}

// All eta zero (no eigenvalue weight) gives equal scores, not 0/0.
func TestNeuronScoresZeroEta(t *testing.T) {
	nb := &Neighbors{N: 3, K: 1, Index: []int{1, 2, 1}, Dist2: []float64{1, 1, 1}}
	g, _ := UnionGraph(nb, Unweighted, 0)
	s, edges := NeuronScores(g, []float64{0}, mat.NewDense(3, 1, []float64{1, -1, 0}))
	if !slices.Equal(s, []float64{1, 1, 1}) || len(edges) != 2 || edges[0].Eta != 0 {
		t.Fatalf("scores %v edges %v", s, edges)
	}
}

func TestOptions(t *testing.T) {
	o, err := Options{}.resolve()
	if err != nil {
		t.Fatal(err)
	}
	d := DefaultOptions()
	d.Threads = o.Threads
	if o != d {
		t.Fatalf("zero Options resolve to %+v, want %+v", o, d)
	}
	for _, bad := range []Options{{K: -1}, {S: -1}, {Tol: 2}, {Sigma: -1}, {Eps: math.NaN()},
		{Weighting: 7}, {Reg: 9}, {Solver: 5}, {MaxIter: -1}, {Threads: -2}} {
		if _, err := bad.resolve(); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
	// Score records what it used: S capped at n-1, threads resolved.
	z := randDense(newRand(1, 1), 5, 4)
	r, err := Score(z, z, Options{S: 16})
	if err != nil {
		t.Fatal(err)
	}
	if r.Options.S != 3 || r.Options.K != DefaultK || r.GraphX.K != 3 || r.Options.Threads < 1 {
		t.Fatalf("recorded options %+v graph %+v", r.Options, r.GraphX)
	}
}

func TestOptionsJSON(t *testing.T) {
	o := DefaultOptions()
	o.Weighting, o.Solver = Gaussian, Sparse
	b, err := json.Marshal(o)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"Weighting":"gaussian"`) || !strings.Contains(string(b), `"Reg":"rank-one"`) {
		t.Fatalf("json %s", b)
	}
	var back Options
	if err := json.Unmarshal(b, &back); err != nil || back != o {
		t.Fatalf("round trip %+v %v", back, err)
	}
	if err := back.Solver.UnmarshalText([]byte("lobpcg")); err == nil {
		t.Fatal("unknown solver accepted")
	}
}
