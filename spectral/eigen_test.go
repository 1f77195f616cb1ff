package spectral

import (
	"fmt"
	"math"
	"testing"

	"gonum.org/v1/gonum/floats"
	"gonum.org/v1/gonum/mat"
)

// TestSparseMatchesDense: the Lanczos path must reproduce the dense oracle
// (Cholesky + EigenSym): top-s eigenvalues to 1e-6 relative, eigenvectors
// up to sign, and normalised scores to 1e-6 absolute. Data: pure Gaussian
// noise (Z and A independent), and low-rank-plus-noise pre-activations with
// ReLU or GELU, which is what captured layers look like.
func TestSparseMatchesDense(t *testing.T) {
	sizes := []int{50, 150, 300, 600}
	if raceEnabled || testing.Short() {
		sizes = []int{50, 120}
	}
	const m = 48
	for _, n := range sizes {
		rng := newRand(11, uint64(n))
		lr := lowRank(rng, m, n, 4, 0.3)
		cases := []struct {
			name string
			z, a *mat.Dense
		}{
			{"gauss", randDense(rng, m, n), randDense(rng, m, n)},
			{"lowrank-relu", lr, applyFn(lr, relu)},
			{"lowrank-gelu", lr, applyFn(lr, gelu)},
		}
		if n > 300 {
			cases = cases[2:] // the dense oracle is O(n^3): one case at n=600
		}
		for _, tc := range cases {
			t.Run(fmt.Sprintf("%s/n=%d", tc.name, n), func(t *testing.T) {
				gx, _, lx, ly := pencil(t, tc.z, tc.a, Options{})
				o := DefaultOptions()
				o.S = 4
				dense, err := GeneralizedEigsDense(lx, ly, o)
				if err != nil {
					t.Fatal(err)
				}
				for _, s := range []int{1, 2, 4} {
					o.S = s
					sp, err := GeneralizedEigsSparse(lx, ly, o)
					if err != nil {
						t.Fatal(err)
					}
					dv := dense.Values[:s]
					dvec := mat.DenseCopyOf(dense.Vectors.Slice(0, n, 0, s))
					for i := range dv {
						if rel := math.Abs(sp.Values[i]-dv[i]) / dv[i]; rel > 1e-6 {
							t.Errorf("s=%d: zeta_%d sparse %v dense %v (rel %.1g)", s, i+1, sp.Values[i], dv[i], rel)
						}
					}
					next := dense.Next
					if s < 4 {
						next = dense.Values[s]
					}
					gap := (dv[s-1] - next) / dv[s-1]
					if gap < 1e-4 {
						// Eigenvectors of a (near) multiple eigenvalue are not
						// determined; only the values are comparable.
						t.Logf("s=%d: gap %.1g, skipping vectors", s, gap)
						continue
					}
					for i := 0; i < s; i++ {
						if c := math.Abs(floats.Dot(col(dvec, i), col(sp.Vectors, i))); c < 1-1e-8 {
							t.Errorf("s=%d: eigenvector %d |cos| = %v", s, i+1, c)
						}
					}
					ds, _ := NeuronScores(gx, dv, dvec)
					ss, _ := NeuronScores(gx, sp.Values, sp.Vectors)
					d := maxAbsDiff(ds, ss)
					t.Logf("s=%d: zeta %.6g, score diff %.1g, %d Lanczos steps", s, sp.Values, d, sp.Iterations)
					if d > 1e-6 {
						t.Errorf("s=%d: scores differ by %.2g", s, d)
					}
					if sp.Residual > o.Tol {
						t.Errorf("s=%d: residual %.2g > %.2g", s, sp.Residual, o.Tol)
					}
				}
			})
		}
	}
}

// Both regularisations leave the constant vector at zeta = 0 and every
// other eigenvector orthogonal to 1 (for eps*I: u^T B 1 = eps u^T 1 = 0).
// Under RegEps the values move by O(eps); the solvers must still agree.
func TestRegEps(t *testing.T) {
	rng := newRand(3, 3)
	z := lowRank(rng, 32, 80, 3, 0.3)
	_, _, lx, ly := pencil(t, z, applyFn(z, relu), Options{})
	o := DefaultOptions()
	o.Reg = RegEps
	o.Eps = 1e-3
	d, err := GeneralizedEigsDense(lx, ly, o)
	if err != nil {
		t.Fatal(err)
	}
	s, err := GeneralizedEigsSparse(lx, ly, o)
	if err != nil {
		t.Fatal(err)
	}
	r, err := GeneralizedEigsDense(lx, ly, DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	for i := range d.Values {
		if math.Abs(d.Values[i]-s.Values[i]) > 1e-9*d.Values[i] {
			t.Errorf("zeta_%d dense %v sparse %v", i+1, d.Values[i], s.Values[i])
		}
		// eps I only adds to B, so each zeta can only shrink.
		if d.Values[i] > r.Values[i] || d.Values[i] < r.Values[i]*(1-0.1) {
			t.Errorf("zeta_%d eps %v rank-one %v", i+1, d.Values[i], r.Values[i])
		}
		if mean := floats.Sum(col(d.Vectors, i)); math.Abs(mean) > 1e-10 {
			t.Errorf("eigenvector %d has sum %v, want 0", i+1, mean)
		}
	}
}

// On a full basis (m reaches n-1) Lanczos is exact, including tiny n.
func TestSparseTinyAndFull(t *testing.T) {
	rng := newRand(4, 4)
	for _, n := range []int{2, 3, 5, 12} {
		z := randDense(rng, 6, n)
		a := applyFn(z, math.Tanh)
		_, _, lx, ly := pencil(t, z, a, Options{})
		o := DefaultOptions()
		o.S = n - 1
		d, err := GeneralizedEigsDense(lx, ly, o)
		if err != nil {
			t.Fatal(err)
		}
		s, err := GeneralizedEigsSparse(lx, ly, o)
		if err != nil {
			t.Fatal(err)
		}
		for i := range d.Values {
			if math.Abs(d.Values[i]-s.Values[i]) > 1e-9*d.Values[0] {
				t.Errorf("n=%d zeta_%d dense %v sparse %v", n, i+1, d.Values[i], s.Values[i])
			}
		}
		if d.Next != 0 || s.Next != 0 {
			t.Errorf("n=%d: Next %v %v, want 0 (the constant vector)", n, d.Next, s.Next)
		}
	}
}
