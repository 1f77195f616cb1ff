package recover

import (
	"errors"
	"math"
	"math/rand/v2"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas64"
)

// solve computes the ridge solution of every group into wNew and switches
// to scoring the rows of heldSamples held-out samples. It returns the
// squared error of the solution on the rows solved on, per group and
// output.
func (e *normal) solve(ridge float64, seed uint64, heldSamples int) ([]float64, error) {
	if err := e.flush(); err != nil {
		return nil, err
	}
	d, n := e.d, e.n
	e.wNew = make([]float32, e.groups*d*n)
	e.w64 = make([]float64, e.groups*d*n)
	sse := make([]float64, e.groups*n)
	rng := rand.New(rand.NewPCG(seed, 7))
	var share float64
	for k := 0; k < e.groups; k++ {
		var w, s []float64
		var sh float64
		var err error
		switch {
		case e.rows == 0: // nothing to fit: the old weights, which are not applied
			w, s = make([]float64, d*n), make([]float64, n)
			for i := range w {
				w[i] = float64(e.wOld[k*d*n+i])
			}
		case e.dual:
			w, s, sh, err = e.solveDual(k, ridge, rng)
		default:
			w, s, sh, err = e.solvePrimal(k, ridge, rng)
		}
		if err != nil {
			return nil, err
		}
		copy(sse[k*n:], s)
		copy(e.w64[k*d*n:], w)
		for i, v := range w {
			e.wNew[k*d*n+i] = float32(v)
		}
		share += sh
	}
	e.ridgeShare = share / float64(e.groups)
	e.g, e.c, e.xs, e.ys = nil, nil, nil, nil
	e.held = true
	e.hOld, e.hNew, e.hyy = make([]float64, e.groups*n), make([]float64, e.groups*n), make([]float64, e.groups*n)
	e.sOld, e.sNew = make([][]float64, len(e.part)), make([][]float64, len(e.part))
	for p := range e.part {
		e.sOld[p], e.sNew[p] = make([]float64, heldSamples), make([]float64, heldSamples)
	}
	return sse, nil
}

// penalised is the number of features the ridge applies to.
func (e *normal) penalised() int {
	if e.bias {
		return e.d - 1
	}
	return e.d
}

// solvePrimal solves (X^T X + lambda I) W = X^T Y for group k, factoring
// X^T X in place so that the equations are not held twice.
func (e *normal) solvePrimal(k int, ridge float64, rng *rand.Rand) (w, sse []float64, share float64, err error) {
	d, n, nf := e.d, e.n, e.penalised()
	g, c := e.g[k], e.c[k]
	var tr float64
	for i := 0; i < nf; i++ {
		tr += g[i*d+i]
	}
	u, lambda, err := e.p.cholesky(g, d, nf, ridge*tr/float64(max(nf, 1)), tr)
	if err != nil {
		return nil, nil, 0, err
	}
	w = append([]float64(nil), c...)
	if err := e.p.potrs(u, w, n); err != nil {
		return nil, nil, 0, err
	}
	sse = make([]float64, n)
	for j := 0; j < n; j++ {
		// With (G + lambda I) w = c, w'Gw - 2w'c = -w'c - lambda |w|^2.
		var wc, ww float64
		for i := 0; i < d; i++ {
			wc += w[i*n+j] * c[i*n+j]
			if i < nf {
				ww += w[i*n+j] * w[i*n+j]
			}
		}
		sse[j] = math.Max(0, e.yy[k*n+j]-wc-lambda*ww)
	}
	// The effective degrees of freedom are nf - lambda tr((G + lambda I)^-1).
	share = lambda * inverseTrace(u, nf, rng) / float64(max(nf, 1))
	e.lambda = lambda
	return w, sse, math.Min(1, share), nil
}

// solveDual solves the same problem through the r x r kernel matrix of
// the r rows kept, for r well below the feature count: with the features
// and targets centred when there is a bias (which is not penalised),
// W = Xc^T (Xc Xc^T + lambda I)^-1 Yc and b = mean(y) - mean(x)^T W.
func (e *normal) solveDual(k int, ridge float64, rng *rand.Rand) (w, sse []float64, share float64, err error) {
	d, n, nf := e.d, e.n, e.penalised()
	r := e.rows
	xs, ys := e.xs[k], e.ys[k]
	xc := make([]float32, r*nf)  // the centred features
	xct := make([]float32, nf*r) // and their transpose
	yc := make([]float64, r*n)
	xm, ym := make([]float64, nf), make([]float64, n)
	var tr float64
	for i := 0; i < r; i++ {
		for f := 0; f < nf; f++ {
			v := float64(xs[i*d+f])
			xm[f] += v
			tr += v * v
		}
		for j := 0; j < n; j++ {
			yc[i*n+j] = float64(ys[i*n+j])
			ym[j] += yc[i*n+j]
		}
	}
	for f := range xm {
		xm[f] /= float64(r)
	}
	for j := range ym {
		ym[j] /= float64(r)
	}
	if !e.bias {
		clear(xm)
		clear(ym)
	}
	for i := 0; i < r; i++ {
		for f := 0; f < nf; f++ {
			v := float32(float64(xs[i*d+f]) - xm[f])
			xc[i*nf+f], xct[f*r+i] = v, v
		}
		for j := 0; j < n; j++ {
			yc[i*n+j] -= ym[j]
		}
	}
	// The products of r x nf matrices in ONNX Runtime's GEMM; the r x r
	// system in float64.
	k32, err := e.p.matMul(xc, xct, r, nf, r)
	if err != nil {
		return nil, nil, 0, err
	}
	kern := make([]float64, r*r)
	for i, v := range k32 {
		kern[i] = float64(v)
	}
	u, lambda, err := e.p.cholesky(kern, r, r, ridge*tr/float64(max(nf, 1)), tr)
	if err != nil {
		return nil, nil, 0, err
	}
	alpha := append([]float64(nil), yc...)
	if err := e.p.potrs(u, alpha, n); err != nil {
		return nil, nil, 0, err
	}
	// The residual Yc - Xc W = lambda alpha.
	sse = make([]float64, n)
	a32 := make([]float32, r*n)
	for i, a := range alpha {
		sse[i%n] += lambda * lambda * a * a
		a32[i] = float32(a)
	}
	wf, err := e.p.matMul(xct, a32, nf, r, n)
	if err != nil {
		return nil, nil, 0, err
	}
	w = make([]float64, d*n)
	for i, v := range wf {
		w[i] = float64(v)
	}
	if e.bias {
		for j := 0; j < n; j++ {
			b := ym[j]
			for f := 0; f < nf; f++ {
				b -= xm[f] * w[f*n+j]
			}
			w[nf*n+j] = b
		}
	}
	// df = tr(K (K + lambda I)^-1) = r - lambda tr((K + lambda I)^-1).
	df := float64(r) - lambda*inverseTrace(u, r, rng)
	e.lambda = lambda
	return w, sse, math.Min(1, math.Max(0, 1-df/float64(max(nf, 1)))), nil
}

// cholesky factors the symmetric dim x dim matrix a (both triangles set)
// plus lambda on its first pen diagonal entries, in place, into the upper
// triangle. If the factorisation fails it restores a from its lower
// triangle and retries with a larger lambda; it returns the lambda used.
func (p *products) cholesky(a []float64, dim, pen int, lambda, tr float64) (blas64.Triangular, float64, error) {
	diag := make([]float64, dim)
	for i := range diag {
		diag[i] = a[i*dim+i]
	}
	for try := 0; try < 4; try++ {
		if try > 0 {
			lambda = math.Max(lambda*100, 1e-12*(tr+1))
			for i := 0; i < dim; i++ {
				for j := i + 1; j < dim; j++ {
					a[i*dim+j] = a[j*dim+i]
				}
			}
		}
		for i := 0; i < dim; i++ {
			a[i*dim+i] = diag[i]
			if i < pen {
				a[i*dim+i] += lambda
			}
		}
		u, ok, err := p.potrf(a, dim)
		if err != nil {
			return u, 0, err
		}
		if ok {
			return u, lambda, nil
		}
	}
	return blas64.Triangular{}, 0, errors.New("the normal equations are singular")
}

// inverseTrace estimates the trace of the leading m x m block of
// (U^T U)^-1 by Hutchinson's estimator: the mean of |U^-T z|^2 over a few
// random sign vectors z (zero beyond m).
func inverseTrace(u blas64.Triangular, m int, rng *rand.Rand) float64 {
	const probes = 8
	z := make([]float64, u.N)
	var tr float64
	for p := 0; p < probes; p++ {
		for i := range z {
			z[i] = 0
			if i < m {
				z[i] = float64(2*rng.IntN(2) - 1)
			}
		}
		blas64.Trsv(blas.Trans, u, blas64.Vector{N: u.N, Inc: 1, Data: z})
		for _, v := range z {
			tr += v * v
		}
	}
	return tr / probes
}
