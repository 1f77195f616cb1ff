package spectral

import (
	"testing"

	"gonum.org/v1/gonum/mat"
)

// When the s-th eigenvalue is repeated beyond s, the eigenvectors at the cut
// are arbitrary inside the eigenspace. Score then keeps the whole cluster
// with an orthonormal basis, so the scores no longer depend on the solver
// nor on the basis.
//
// Construction: points of a jittered grid as neurons (two samples, so each
// neuron's signal is a point in the plane), and a layer that moves a single
// neuron a little. Only the edges at that neuron change between the graphs,
// so L_X - L_Y has low rank and every vector it annihilates is an
// eigenvector with zeta = 1: a large cluster just below the few eigenvalues
// that the move creates.
func TestRepeatedEigenvaluesGiveSolverIndependentScores(t *testing.T) {
	r := newRand(11, 12)
	const side = 8
	n := side * side
	z := mat.NewDense(2, n, nil)
	for j := 0; j < n; j++ {
		z.Set(0, j, float64(j%side)+0.2*r.Float64())
		z.Set(1, j, float64(j/side)+0.2*r.Float64())
	}
	a := mat.DenseCopyOf(z)
	a.Set(0, 27, a.At(0, 27)+0.45)
	a.Set(1, 27, a.At(1, 27)+0.45)
	clustered := 0
	for s := 1; s <= 4; s++ {
		dense, sparse := DefaultOptions(), DefaultOptions()
		dense.K, sparse.K = 4, 4
		dense.S, sparse.S = s, s
		dense.Solver, sparse.Solver = Dense, Sparse
		rd, err := Score(z, a, dense)
		if err != nil {
			t.Fatal(err)
		}
		rs, err := Score(z, a, sparse)
		if err != nil {
			t.Fatal(err)
		}
		if len(rd.Eigenvalues) != len(rs.Eigenvalues) || rd.Clustered != rs.Clustered {
			t.Fatalf("s=%d: dense kept %v (clustered %v), sparse %v (clustered %v)", s, rd.Eigenvalues, rd.Clustered, rs.Eigenvalues, rs.Clustered)
		}
		if d := maxAbsDiff(rd.Scores, rs.Scores); d > 1e-6 {
			t.Errorf("s=%d: scores differ by %g (eigenvalues %v, next %v)", s, d, rd.Eigenvalues, rd.NextEigenvalue)
		}
		if !rd.Clustered {
			continue
		}
		clustered++
		if rd.ClusterCut {
			t.Errorf("s=%d: the cluster was cut (%d pairs)", s, len(rd.Eigenvalues))
		}
		// Rotating two vectors of the cluster leaves the scores alone.
		k := len(rd.Eigenvalues)
		v := mat.DenseCopyOf(rd.Eigenvectors)
		for i := 0; i < n; i++ {
			x, y := v.At(i, k-2), v.At(i, k-1)
			v.Set(i, k-2, 0.6*x-0.8*y)
			v.Set(i, k-1, 0.8*x+0.6*y)
		}
		gx, _, _, _ := pencil(t, z, a, dense)
		rot, _ := NeuronScores(gx, rd.Eigenvalues, v)
		if d := maxAbsDiff(rot, rd.Scores); d > 1e-9 {
			t.Errorf("s=%d: a rotation inside the cluster changed scores by %g", s, d)
		}
		t.Logf("s=%d: kept %d pairs, eigenvalues %.6g, next %.6g", s, k, rd.Eigenvalues, rd.NextEigenvalue)
	}
	if clustered == 0 {
		t.Fatal("the construction gave no cluster at any cut; the test proves nothing")
	}
}

// Dead or constant units make clusters of hundreds of equal eigenvalues:
// here the construction above at 400 neurons, almost every eigenvalue 1.
// Score solves such a cluster with one dense decomposition after the
// sparse solve (it used to widen the dense solve step by step, a full
// O(n^3) decomposition each time: eight of them here), and the result
// agrees with the dense oracle.
func TestLargeClusterIsSolvedOnce(t *testing.T) {
	r := newRand(11, 12)
	const side = 20
	n := side * side
	z := mat.NewDense(2, n, nil)
	for j := 0; j < n; j++ {
		z.Set(0, j, float64(j%side)+0.2*r.Float64())
		z.Set(1, j, float64(j/side)+0.2*r.Float64())
	}
	a := mat.DenseCopyOf(z)
	a.Set(0, 210, a.At(0, 210)+0.45)
	a.Set(1, 210, a.At(1, 210)+0.45)
	auto, dense := DefaultOptions(), DefaultOptions()
	auto.K, dense.K = 4, 4
	dense.Solver = Dense
	ra, err := Score(z, a, auto)
	if err != nil {
		t.Fatal(err)
	}
	rd, err := Score(z, a, dense)
	if err != nil {
		t.Fatal(err)
	}
	if !ra.Clustered || ra.ClusterCut || len(ra.Eigenvalues) < 100 {
		t.Fatalf("want a large cluster kept whole: clustered %v cut %v, %d pairs", ra.Clustered, ra.ClusterCut, len(ra.Eigenvalues))
	}
	if ra.Solves != 2 || rd.Solves != 2 {
		t.Errorf("eigensolves: auto %d, dense %d; want the first solve and one for the cluster", ra.Solves, rd.Solves)
	}
	if d := maxAbsDiff(ra.Scores, rd.Scores); d > 1e-6 {
		t.Errorf("scores differ from the dense oracle by %g", d)
	}
	t.Logf("%d pairs kept (zeta %.4g ... %.4g), solver %s", len(ra.Eigenvalues), ra.Eigenvalues[0], ra.Eigenvalues[len(ra.Eigenvalues)-1], ra.Solver)
}
