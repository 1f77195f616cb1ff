package spectral

import (
	"math"
	"math/rand/v2"
	"testing"

	"gonum.org/v1/gonum/mat"
)

func relu(x float64) float64 { return math.Max(x, 0) }
func gelu(x float64) float64 { return 0.5 * x * (1 + math.Erf(x/math.Sqrt2)) }

func applyFn(z *mat.Dense, f func(float64) float64) *mat.Dense {
	var a mat.Dense
	a.Apply(func(_, _ int, v float64) float64 { return f(v) }, z)
	return &a
}

func TestSparseAgreesQuick(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for _, n := range []int{50, 200, 600} {
		z := lowRank(rng, 64, n, 4, 0.3)
		a := applyFn(z, relu)
		for _, s := range []int{1, 2, 4} {
			o := DefaultOptions()
			o.S = s
			o.Solver = Dense
			rd, err := Score(z, a, o)
			if err != nil {
				t.Fatal(err)
			}
			o.Solver = Sparse
			rs, err := Score(z, a, o)
			if err != nil {
				t.Fatal(err)
			}
			maxd := 0.0
			for i := range rd.Scores {
				maxd = math.Max(maxd, math.Abs(rd.Scores[i]-rs.Scores[i]))
			}
			t.Logf("n=%d s=%d dense %v next %v (%v) sparse %v next %v it=%d cg=%d res=%.2g  dscore=%.2g  tD=%v tS=%v", n, s, rd.Eigenvalues, rd.NextEigenvalue, rd.Residual, rs.Eigenvalues, rs.NextEigenvalue, rs.Iterations, rs.CGIterations, rs.Residual, maxd, rd.Timings.Eigen, rs.Timings.Eigen)
		}
	}
}
