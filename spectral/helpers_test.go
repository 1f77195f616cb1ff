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

// pencil builds both graphs and Laplacians.
func pencil(t testing.TB, z, a mat.Matrix, o Options) (gx, gy *Graph, lx, ly *CSR) {
	t.Helper()
	var err error
	if gx, _, err = KNNGraph(z, o); err != nil {
		t.Fatal(err)
	}
	if gy, _, err = KNNGraph(a, o); err != nil {
		t.Fatal(err)
	}
	return gx, gy, gx.Laplacian(), gy.Laplacian()
}

func sameGraph(a, b *Graph) bool {
	if a.N != b.N || len(a.Ind) != len(b.Ind) {
		return false
	}
	for i := range a.Ptr {
		if a.Ptr[i] != b.Ptr[i] {
			return false
		}
	}
	for i := range a.Ind {
		if a.Ind[i] != b.Ind[i] {
			return false
		}
	}
	return true
}

func col(m *mat.Dense, j int) []float64 { return mat.Col(nil, j, m) }

func maxAbsDiff(a, b []float64) float64 {
	d := 0.0
	for i := range a {
		d = math.Max(d, math.Abs(a[i]-b[i]))
	}
	return d
}

func setCol(m *mat.Dense, j int, f func(i int) float64) {
	r, _ := m.Dims()
	for i := 0; i < r; i++ {
		m.Set(i, j, f(i))
	}
}

func newRand(a, b uint64) *rand.Rand { return rand.New(rand.NewPCG(a, b)) }
