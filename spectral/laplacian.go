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

// spOp is a Laplacian-like matrix in the form the iterative solvers stream:
// diagonal apart, int32 column indices, and no values at all when every
// off-diagonal entry is -1 (unit weights, the default), which roughly
// thirds the bytes read per product.
type spOp struct {
	n    int
	diag []float64
	ptr  []int32
	ind  []int32
	w    []float64 // off-diagonal weights (= -value); nil when all are 1
}

func newSpOp(a *CSR) *spOp {
	op := &spOp{n: a.N, diag: make([]float64, a.N), ptr: make([]int32, a.N+1)}
	unit := true
	for i := 0; i < a.N; i++ {
		for j := a.Ptr[i]; j < a.Ptr[i+1]; j++ {
			if a.Ind[j] == i {
				op.diag[i] += a.Val[j]
				continue
			}
			op.ind = append(op.ind, int32(a.Ind[j]))
			op.w = append(op.w, -a.Val[j])
			if a.Val[j] != -1 {
				unit = false
			}
		}
		op.ptr[i+1] = int32(len(op.ind))
	}
	if unit {
		op.w = nil
	}
	return op
}

// mulPar sets dst = A x on up to threads goroutines; each row is summed by
// one goroutine in a fixed order, so the result does not depend on threads.
func (op *spOp) mulPar(dst, x []float64, threads int) {
	const minNNZ = 1 << 15 // below this, goroutine hand-off costs more
	if threads <= 1 || len(op.ind) < minNNZ {
		op.mulRows(dst, x, 0, op.n)
		return
	}
	chunk := (op.n + threads - 1) / threads
	parallelFor(threads, threads, func(t int) {
		op.mulRows(dst, x, t*chunk, min(t*chunk+chunk, op.n))
	})
}

func (op *spOp) mulRows(dst, x []float64, lo, hi int) {
	x = x[:op.n]
	dst = dst[:op.n]
	if op.w == nil {
		for i := lo; i < hi; i++ {
			// Four partial sums: independent loads and adds.
			ind := op.ind[op.ptr[i]:op.ptr[i+1]]
			var s0, s1, s2, s3 float64
			for len(ind) >= 4 {
				s0 += x[ind[0]]
				s1 += x[ind[1]]
				s2 += x[ind[2]]
				s3 += x[ind[3]]
				ind = ind[4:]
			}
			for _, c := range ind {
				s0 += x[c]
			}
			dst[i] = op.diag[i]*x[i] - ((s0 + s1) + (s2 + s3))
		}
		return
	}
	for i := lo; i < hi; i++ {
		s := 0.0
		lo, hi := op.ptr[i], op.ptr[i+1]
		w := op.w[lo:hi]
		for j, c := range op.ind[lo:hi] {
			s += w[j] * x[c]
		}
		dst[i] = op.diag[i]*x[i] - s
	}
}
