package spectral

import (
	"errors"
	"fmt"
	"math"
)

// Reg selects how the singular L_Y is made positive definite.
type Reg int

const (
	// RegRankOne uses B = L_Y + (1/n) 1 1^T (default). The constant vector
	// gets zeta = 0, every other eigenvector is orthogonal to 1, and on that
	// subspace B = L_Y: the non-constant pairs are exactly those of the
	// pencil (L_X, L_Y) on 1^⊥, independent of the 1/n factor.
	RegRankOne Reg = iota
	// RegEps uses B = L_Y + eps*I, eps = Eps * (mean diagonal of L_Y). The
	// constant vector again gets zeta = 0; the others are perturbed by
	// O(eps / lambda_2(L_Y)).
	RegEps
)

func (r Reg) String() string {
	switch r {
	case RegRankOne:
		return "rank-one"
	case RegEps:
		return "eps"
	}
	return "Reg(?)"
}

// Solver selects the generalized eigensolver.
type Solver int

const (
	// Auto uses Dense for n <= DenseMaxN and Sparse above.
	Auto Solver = iota
	// Dense: Cholesky of B and a dense symmetric eigensolver (the oracle).
	Dense
	// Sparse: Lanczos in the B inner product with preconditioned conjugate
	// gradient solves on B.
	Sparse
)

func (s Solver) String() string {
	switch s {
	case Auto:
		return "auto"
	case Dense:
		return "dense"
	case Sparse:
		return "sparse"
	}
	return "Solver(?)"
}

// Defaults; doc.go says where each comes from.
const (
	DefaultK         = 10
	DefaultS         = 2
	DefaultEps       = 1e-6
	DefaultTol       = 1e-10
	DefaultMaxIter   = 600
	DefaultDenseMaxN = 64
)

// Options configures Score. The zero value of every field means its
// default, so Options{} and DefaultOptions() score alike.
type Options struct {
	K         int       // neighbours per node before union; capped at n-1
	Weighting Weighting // Unweighted or Gaussian
	Sigma     float64   // Gaussian width; 0: median edge length of each graph
	S         int       // eigenpairs kept; capped at n-1 (cost grows with S)
	Reg       Reg       // regularisation of L_Y
	Eps       float64   // RegEps: eps relative to the mean degree of G_Y
	Solver    Solver
	DenseMaxN int     // Auto: largest n solved densely
	Tol       float64 // sparse: relative residual of each returned pair
	MaxIter   int     // sparse: Lanczos steps; capped at n-1
	Seed      uint64  // sparse: start vector
	Threads   int     // 0: GOMAXPROCS; results do not depend on it
	// EdgeScores asks for the normalised eta of every edge of G_X.
	EdgeScores bool
}

// DefaultOptions returns the defaults with every field spelled out.
func DefaultOptions() Options {
	return Options{K: DefaultK, Weighting: Unweighted, S: DefaultS, Reg: RegRankOne,
		Eps: DefaultEps, Solver: Auto, DenseMaxN: DefaultDenseMaxN, Tol: DefaultTol,
		MaxIter: DefaultMaxIter}
}

// resolve fills defaults and validates. Threads is resolved too, so the
// caller can report what ran.
func (o Options) resolve() (Options, error) {
	bad := func(name string, v any) error { return fmt.Errorf("spectral: invalid option %s = %v", name, v) }
	if o.K < 0 {
		return o, bad("K", o.K)
	}
	if o.K == 0 {
		o.K = DefaultK
	}
	if o.Weighting != Unweighted && o.Weighting != Gaussian {
		return o, bad("Weighting", int(o.Weighting))
	}
	if o.Sigma < 0 || math.IsNaN(o.Sigma) || math.IsInf(o.Sigma, 0) {
		return o, bad("Sigma", o.Sigma)
	}
	if o.S < 0 {
		return o, bad("S", o.S)
	}
	if o.S == 0 {
		o.S = DefaultS
	}
	if o.Reg != RegRankOne && o.Reg != RegEps {
		return o, bad("Reg", int(o.Reg))
	}
	if o.Eps < 0 || math.IsNaN(o.Eps) || math.IsInf(o.Eps, 0) {
		return o, bad("Eps", o.Eps)
	}
	if o.Eps == 0 {
		o.Eps = DefaultEps
	}
	if o.Solver != Auto && o.Solver != Dense && o.Solver != Sparse {
		return o, bad("Solver", int(o.Solver))
	}
	if o.DenseMaxN < 0 {
		return o, bad("DenseMaxN", o.DenseMaxN)
	}
	if o.DenseMaxN == 0 {
		o.DenseMaxN = DefaultDenseMaxN
	}
	if o.Tol < 0 || o.Tol >= 1 || math.IsNaN(o.Tol) {
		return o, bad("Tol", o.Tol)
	}
	if o.Tol == 0 {
		o.Tol = DefaultTol
	}
	if o.MaxIter < 0 {
		return o, bad("MaxIter", o.MaxIter)
	}
	if o.MaxIter == 0 {
		o.MaxIter = DefaultMaxIter
	}
	if o.Threads < 0 {
		return o, errors.New("spectral: invalid option Threads < 0")
	}
	o.Threads = resolveThreads(o.Threads)
	return o, nil
}
