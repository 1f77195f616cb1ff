package spectral

import "gonum.org/v1/gonum/mat"

// CSR is a square sparse matrix in compressed sparse row form: row i holds
// Val[Ptr[i]:Ptr[i+1]] at columns Ind[Ptr[i]:Ptr[i+1]] (ascending).
type CSR struct {
	N   int
	Ptr []int
	Ind []int
	Val []float64
}

// Laplacian returns L = D - W of g, with the diagonal stored in each row at
// its sorted position. The diagonal is the sum of the row's weights, so the
// row sums are zero up to one rounding per weight (exactly zero when
// unweighted).
func (g *Graph) Laplacian() *CSR {
	n := g.N
	l := &CSR{N: n, Ptr: make([]int, n+1), Ind: make([]int, 0, len(g.Ind)+n), Val: make([]float64, 0, len(g.Ind)+n)}
	for p := 0; p < n; p++ {
		d := 0.0
		for i := g.Ptr[p]; i < g.Ptr[p+1]; i++ {
			d += g.W[i]
		}
		placed := false
		for i := g.Ptr[p]; i < g.Ptr[p+1]; i++ {
			if !placed && g.Ind[i] > p {
				l.Ind = append(l.Ind, p)
				l.Val = append(l.Val, d)
				placed = true
			}
			l.Ind = append(l.Ind, g.Ind[i])
			l.Val = append(l.Val, -g.W[i])
		}
		if !placed {
			l.Ind = append(l.Ind, p)
			l.Val = append(l.Val, d)
		}
		l.Ptr[p+1] = len(l.Ind)
	}
	return l
}

// MulVecTo sets dst = A x. dst and x must not overlap.
func (a *CSR) MulVecTo(dst, x []float64) { a.mulRows(dst, x, 0, a.N) }

// mulVecPar is MulVecTo on up to threads goroutines. Each row is summed by
// one goroutine in the same order, so the result does not depend on threads.
func (a *CSR) mulVecPar(dst, x []float64, threads int) {
	const minNNZ = 1 << 15 // below this, goroutine hand-off costs more
	if threads <= 1 || len(a.Ind) < minNNZ {
		a.mulRows(dst, x, 0, a.N)
		return
	}
	chunk := (a.N + threads - 1) / threads
	parallelFor(threads, threads, func(t int) {
		a.mulRows(dst, x, t*chunk, min(t*chunk+chunk, a.N))
	})
}

func (a *CSR) mulRows(dst, x []float64, lo, hi int) {
	x = x[:a.N]
	dst = dst[:a.N]
	for i := lo; i < hi; i++ {
		s := 0.0
		lo, hi := a.Ptr[i], a.Ptr[i+1]
		ind := a.Ind[lo:hi]
		val := a.Val[lo:hi]
		for j, c := range ind {
			s += val[j] * x[c]
		}
		dst[i] = s
	}
}

// Diag returns the diagonal of a.
func (a *CSR) Diag() []float64 {
	d := make([]float64, a.N)
	for i := 0; i < a.N; i++ {
		for j := a.Ptr[i]; j < a.Ptr[i+1]; j++ {
			if a.Ind[j] == i {
				d[i] += a.Val[j]
			}
		}
	}
	return d
}

// SymDense returns a as a dense symmetric matrix (a must be symmetric).
func (a *CSR) SymDense() *mat.SymDense {
	s := mat.NewSymDense(a.N, nil)
	for i := 0; i < a.N; i++ {
		for j := a.Ptr[i]; j < a.Ptr[i+1]; j++ {
			if c := a.Ind[j]; c >= i {
				s.SetSym(i, c, a.Val[j])
			}
		}
	}
	return s
}
