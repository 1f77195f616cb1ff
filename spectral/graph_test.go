package spectral

import (
	"math"
	"testing"

	"gonum.org/v1/gonum/mat"
)

// L = D - W annihilates the constant vector: every row sums to zero (exactly
// for unit weights, to rounding for Gaussian ones), and L is symmetric with
// a positive diagonal.
func TestLaplacianRowSums(t *testing.T) {
	rng := newRand(5, 5)
	x := lowRank(rng, 30, 150, 3, 0.2)
	for _, w := range []Weighting{Unweighted, Gaussian} {
		g, st, err := KNNGraph(x, Options{Weighting: w})
		if err != nil {
			t.Fatal(err)
		}
		l := g.Laplacian()
		d := l.SymDense()
		for i := 0; i < l.N; i++ {
			sum, diag := 0.0, 0.0
			for j := l.Ptr[i]; j < l.Ptr[i+1]; j++ {
				sum += l.Val[j]
				if l.Ind[j] == i {
					diag = l.Val[j]
				}
			}
			if w == Unweighted && sum != 0 {
				t.Fatalf("%v: row %d sums to %v", w, i, sum)
			}
			if math.Abs(sum) > 1e-14*diag || diag <= 0 {
				t.Fatalf("%v: row %d sum %v diag %v", w, i, sum, diag)
			}
			for j := 0; j < l.N; j++ {
				if d.At(i, j) != d.At(j, i) {
					t.Fatalf("not symmetric at %d,%d", i, j)
				}
			}
		}
		if w == Gaussian && !(st.Sigma > 0) {
			t.Errorf("sigma = %v", st.Sigma)
		}
	}
}

// The union graph holds every listed pair in both directions and nothing
// else, with sorted rows.
func TestUnionGraph(t *testing.T) {
	rng := newRand(6, 6)
	x := randDense(rng, 10, 60)
	nb, err := KNN(x, 4, 1)
	if err != nil {
		t.Fatal(err)
	}
	g, _ := UnionGraph(nb, Unweighted, 0)
	want := map[[2]int]bool{}
	for p := 0; p < nb.N; p++ {
		for _, q := range nb.Of(p) {
			want[[2]int{p, q}], want[[2]int{q, p}] = true, true
		}
	}
	got := 0
	for p := 0; p < g.N; p++ {
		for i := g.Ptr[p]; i < g.Ptr[p+1]; i++ {
			if !want[[2]int{p, g.Ind[i]}] {
				t.Fatalf("extra edge %d-%d", p, g.Ind[i])
			}
			if i > g.Ptr[p] && g.Ind[i] <= g.Ind[i-1] {
				t.Fatalf("row %d not sorted", p)
			}
			got++
		}
	}
	if got != len(want) || g.Edges()*2 != got {
		t.Fatalf("%d directed edges, want %d", got, len(want))
	}
}

// Two clusters of 30 and 25 points, far apart: a node only reaches the other
// cluster once k exceeds its own cluster's other members (29 or 24). k
// doubles 10 -> 20 -> 40; at 20 the graph still has 2 components, at 40 the
// 25-point cluster's lists cross over and it is connected.
func TestConnectivityDoubling(t *testing.T) {
	rng := newRand(7, 7)
	const m = 8
	x := mat.NewDense(m, 55, nil)
	for j := 0; j < 55; j++ {
		off := 0.0
		if j >= 30 {
			off = 1000
		}
		setCol(x, j, func(int) float64 { return off + rng.NormFloat64() })
	}
	nb, _ := KNN(x, 20, 1)
	g20, _ := UnionGraph(nb, Unweighted, 0)
	if c := g20.Components(); c != 2 {
		t.Fatalf("k=20: %d components, want 2", c)
	}
	_, st, err := KNNGraph(x, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if st.K != 40 || !st.Connected || st.Components != 1 {
		t.Fatalf("stats %+v, want K=40 connected", st)
	}
	// With the median rule sigma grows with k: at k = n-1 half the edges
	// cross the gap, so the graph is connected.
	_, st, err = KNNGraph(x, Options{Weighting: Gaussian})
	if err != nil {
		t.Fatal(err)
	}
	if st.K != 54 || !st.Connected || st.Sigma < 1000 {
		t.Fatalf("gaussian stats %+v, want K=54 connected, sigma > 1000", st)
	}
	// A fixed sigma = 1 makes the weights across the gap underflow to 0: no
	// k connects the graph, doubling stops at n-1 and reports it.
	_, st, err = KNNGraph(x, Options{Weighting: Gaussian, Sigma: 1})
	if err != nil {
		t.Fatal(err)
	}
	if st.K != 54 || st.Connected || st.Components != 2 {
		t.Fatalf("gaussian stats %+v, want K=54, 2 components", st)
	}
	// Score refuses the singular rank-one regularisation and works with
	// eps*I.
	if _, err := Score(x, x, Options{Weighting: Gaussian, Sigma: 1}); err == nil {
		t.Fatal("no error for disconnected G_Y under RegRankOne")
	}
	for _, solver := range []Solver{Dense, Sparse} {
		for _, s := range []int{2, 54} { // 54 = n-1 reaches the zero zetas of the split G_X
			r, err := Score(x, applyFn(x, math.Tanh), Options{Weighting: Gaussian, Sigma: 1, Reg: RegEps, Solver: solver, S: s})
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range r.Scores {
				if math.IsNaN(s) || s < 0 || s > 1 {
					t.Fatalf("score %v", s)
				}
			}
		}
	}
}
