package spectral

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas64"
	"gonum.org/v1/gonum/floats"
	"gonum.org/v1/gonum/mat"
)

// Eigs holds the s largest generalized eigenpairs of L_X u = zeta B u, B the
// regularised L_Y (see Reg).
type Eigs struct {
	Values  []float64  // zeta_1 >= ... >= zeta_s
	Next    float64    // zeta_{s+1} (0, the constant vector's, when s = n-1)
	Vectors *mat.Dense // n x s; unit 2-norm columns; largest |entry| positive
	// Residual is the largest backward error
	// |L_X u - zeta B u| / ((|L_X| + zeta |B|) |u|) over the returned pairs,
	// with Gershgorin bounds for the norms (well defined also for zeta = 0).
	Residual float64
	// Sparse only: Lanczos steps and conjugate gradient iterations.
	Iterations, CGIterations int
}

// regularisation returns (c, eps) with B = L_Y + c 1 1^T + eps I.
func regularisation(ly *CSR, o Options) (float64, float64) {
	if o.Reg == RegEps {
		d := ly.Diag()
		return 0, o.Eps * floats.Sum(d) / float64(ly.N)
	}
	return 1 / float64(ly.N), 0
}

func checkPencil(lx, ly *CSR, s int) error {
	if lx.N != ly.N {
		return fmt.Errorf("spectral: L_X is %d x %d but L_Y is %d x %d", lx.N, lx.N, ly.N, ly.N)
	}
	if lx.N < 2 {
		return errors.New("spectral: generalized eigenproblem needs n >= 2")
	}
	if s < 1 || s > lx.N-1 {
		return fmt.Errorf("spectral: s = %d, want 1..n-1 = %d", s, lx.N-1)
	}
	return nil
}

// GeneralizedEigsDense is the reference solver: Cholesky B = U^T U, the
// symmetric eigenproblem of U^-T L_X U^-1, and u = U^-1 y. O(n^3): use it
// for small n and as the oracle in tests. Uses opts.S (exact), Reg, Eps.
func GeneralizedEigsDense(lx, ly *CSR, opts Options) (*Eigs, error) {
	o, err := opts.resolve()
	if err != nil {
		return nil, err
	}
	if err := checkPencil(lx, ly, o.S); err != nil {
		return nil, err
	}
	n, s := lx.N, o.S
	c, eps := regularisation(ly, o)
	b := ly.SymDense()
	for i := 0; i < n; i++ {
		for j := i; j < n; j++ {
			v := b.At(i, j) + c
			if i == j {
				v += eps
			}
			b.SetSym(i, j, v)
		}
	}
	var ch mat.Cholesky
	if !ch.Factorize(b) {
		return nil, errors.New("spectral: regularised L_Y is not positive definite (is G_Y disconnected? try RegEps)")
	}
	var u mat.TriDense
	ch.UTo(&u)
	ut := u.RawTriangular()

	// C = U^-T L_X U^-1.
	cm := mat.DenseCopyOf(lx.SymDense())
	craw := cm.RawMatrix()
	blas64.Trsm(blas.Left, blas.Trans, 1, ut, craw)
	blas64.Trsm(blas.Right, blas.NoTrans, 1, ut, craw)
	cs := mat.NewSymDense(n, nil)
	for i := 0; i < n; i++ {
		for j := i; j < n; j++ {
			cs.SetSym(i, j, (cm.At(i, j)+cm.At(j, i))/2)
		}
	}
	var es mat.EigenSym
	if !es.Factorize(cs, true) {
		return nil, errors.New("spectral: dense symmetric eigensolver did not converge")
	}
	vals := es.Values(nil) // ascending
	var y mat.Dense
	es.VectorsTo(&y)
	e := &Eigs{Values: make([]float64, s), Vectors: mat.NewDense(n, s, nil)}
	for i := 0; i < s; i++ {
		e.Values[i] = vals[n-1-i]
		e.Vectors.SetCol(i, mat.Col(nil, n-1-i, &y))
	}
	if s+1 <= n-1 {
		e.Next = vals[n-1-s]
	}
	blas64.Trsm(blas.Left, blas.NoTrans, 1, ut, e.Vectors.RawMatrix())
	normaliseColumns(e.Vectors)
	e.Residual = residual(newSpOp(lx), newSpOp(ly), c, eps, e.Values, e.Vectors)
	return e, nil
}

// normaliseColumns scales each column to unit 2-norm with its entry of
// largest magnitude (first on ties) positive.
func normaliseColumns(v *mat.Dense) {
	n, s := v.Dims()
	col := make([]float64, n)
	for j := 0; j < s; j++ {
		mat.Col(col, j, v)
		nrm := floats.Norm(col, 2)
		if nrm == 0 {
			continue
		}
		big := 0
		for i, x := range col {
			if math.Abs(x) > math.Abs(col[big]) {
				big = i
			}
		}
		if col[big] < 0 {
			nrm = -nrm
		}
		floats.Scale(1/nrm, col)
		v.SetCol(j, col)
	}
}

// residual returns the largest backward error of the pairs (see Eigs).
func residual(lx, ly *spOp, c, eps float64, vals []float64, vecs *mat.Dense) float64 {
	n := lx.n
	// Gershgorin bounds: a Laplacian's norm is at most twice its largest
	// degree; B adds c n (rank one) and eps.
	normLX := 2 * floats.Max(lx.diag)
	normB := 2*floats.Max(ly.diag) + c*float64(n) + eps
	u := make([]float64, n)
	a := make([]float64, n)
	b := make([]float64, n)
	worst := 0.0
	for i, z := range vals {
		mat.Col(u, i, vecs)
		lx.mulPar(a, u, 1)
		applyB(ly, c, eps, b, u, 1)
		floats.AddScaled(a, -z, b)
		if den := (normLX + math.Abs(z)*normB) * floats.Norm(u, 2); den > 0 {
			worst = math.Max(worst, floats.Norm(a, 2)/den)
		}
	}
	return worst
}

// applyB sets dst = (L_Y + c 1 1^T + eps I) x without forming 1 1^T.
func applyB(ly *spOp, c, eps float64, dst, x []float64, threads int) {
	ly.mulPar(dst, x, threads)
	t := c * floats.Sum(x)
	if eps != 0 {
		for i, v := range x {
			dst[i] += t + eps*v
		}
		return
	}
	if t != 0 {
		floats.AddConst(t, dst)
	}
}

// pcg solves B x = rhs by conjugate gradients with the Jacobi
// preconditioner diag(B), from x = 0, to |r| <= tol |rhs|. It returns the
// iterations used.
type pcg struct {
	ly         *spOp
	c, eps     float64
	inv        []float64 // 1 / diag(B)
	tol        float64
	maxIter    int
	threads    int
	r, z, p, q []float64
}

func newPCG(ly *spOp, c, eps, tol float64) *pcg {
	n := ly.n
	d := ly.diag
	inv := make([]float64, n)
	for i, v := range d {
		inv[i] = 1 / (v + c + eps)
	}
	return &pcg{ly: ly, c: c, eps: eps, inv: inv, tol: tol, maxIter: 20 * n,
		r: make([]float64, n), z: make([]float64, n), p: make([]float64, n), q: make([]float64, n)}
}

func (s *pcg) solve(x, rhs []float64) (int, error) {
	r, z, p, q := s.r, s.z, s.p, s.q
	for i := range x {
		x[i] = 0
	}
	copy(r, rhs)
	target := s.tol * floats.Norm(rhs, 2)
	if target == 0 {
		return 0, nil
	}
	floats.MulTo(z, s.inv, r)
	copy(p, z)
	rz := floats.Dot(r, z)
	for it := 1; it <= s.maxIter; it++ {
		applyB(s.ly, s.c, s.eps, q, p, s.threads)
		alpha := rz / floats.Dot(p, q)
		floats.AddScaled(x, alpha, p)
		floats.AddScaled(r, -alpha, q)
		if floats.Norm(r, 2) <= target {
			return it, nil
		}
		floats.MulTo(z, s.inv, r)
		rz1 := floats.Dot(r, z)
		beta := rz1 / rz
		rz = rz1
		for i, v := range z {
			p[i] = v + beta*p[i]
		}
	}
	return s.maxIter, fmt.Errorf("spectral: conjugate gradient did not reach %.1g in %d iterations", s.tol, s.maxIter)
}

// GeneralizedEigsSparse computes the same pairs as GeneralizedEigsDense by
// Lanczos on Op = B^-1 L_X, which is self-adjoint in the B inner product,
// restricted to 1^⊥ (every wanted eigenvector lies there, and both L_X and
// B^-1 map 1^⊥ into itself). Each step costs one L_X product and one
// preconditioned CG solve with B; the basis is fully reorthogonalised
// (twice, classical Gram-Schmidt) in the B inner product. Ritz pairs come
// from the projected matrix V^T L_X V. Uses opts.S (exact), Reg, Eps, Tol,
// MaxIter, Seed and Threads.
func GeneralizedEigsSparse(lx, ly *CSR, opts Options) (*Eigs, error) {
	o, err := opts.resolve()
	if err != nil {
		return nil, err
	}
	if err := checkPencil(lx, ly, o.S); err != nil {
		return nil, err
	}
	n, s := lx.N, o.S
	dim := n - 1
	want := min(s+1, dim)
	maxIter := min(o.MaxIter, dim)
	if maxIter < want {
		maxIter = want
	}
	c, eps := regularisation(ly, o)
	lxOp, lyOp := newSpOp(lx), newSpOp(ly)
	solver := newPCG(lyOp, c, eps, o.Tol*1e-2)
	solver.threads = o.Threads
	l := &lanczos{n: n, hs: maxIter, ly: lyOp, c: c, eps: eps, threads: o.Threads,
		rng: rand.New(rand.NewPCG(o.Seed, 0x5eed5eed)), h: make([]float64, maxIter*maxIter), coef: make([]float64, maxIter+1)}
	e := &Eigs{}

	v, bv, ok := l.fresh()
	if !ok {
		return nil, errors.New("spectral: could not build a start vector")
	}
	l.V, l.BV = append(l.V, v), append(l.BV, bv)
	z := make([]float64, n)
	var lastBeta float64
	nextCheck := want
	var ritzVals []float64
	var ritzVecs *mat.Dense
	for {
		j := len(l.V) - 1
		lxOp.mulPar(z, l.V[j], o.Threads)
		l.project(j, z)
		m := j + 1
		done := m >= maxIter
		if !done {
			beta, full, it, err := l.extend(solver, z, m == dim)
			e.CGIterations += it
			if err != nil {
				return nil, err
			}
			lastBeta, done = beta, full
		}
		e.Iterations = m
		if m < nextCheck && !done {
			continue
		}
		nextCheck = m + max(5, m/8)
		vals, y, est, err := l.rayleighRitz(m, min(want, m), s, lastBeta)
		if err != nil {
			return nil, err
		}
		ritzVals = vals
		// est is relative to theta, the test below a backward error: screen
		// loosely, decide on the true residual.
		if est > 100*o.Tol && !done {
			continue
		}
		ritzVecs = l.ritzVectors(y, m, min(s, len(vals)))
		res := residual(lxOp, lyOp, c, eps, ritzVals[:min(s, len(vals))], ritzVecs)
		if res <= o.Tol || done {
			e.Residual = res
			if res > o.Tol && m < dim {
				return nil, fmt.Errorf("spectral: Lanczos did not converge in %d steps (residual %.2g > Tol %.2g)", m, res, o.Tol)
			}
			break
		}
	}
	if len(ritzVals) < s {
		return nil, fmt.Errorf("spectral: Lanczos found only %d of %d eigenpairs", len(ritzVals), s)
	}
	e.Values = ritzVals[:s]
	if len(ritzVals) > s {
		e.Next = ritzVals[s]
	}
	normaliseColumns(ritzVecs)
	e.Vectors = ritzVecs
	return e, nil
}

// lanczos is the state of GeneralizedEigsSparse: the B-orthonormal basis V,
// its B-image BV and the projected matrix V^T L_X V.
type lanczos struct {
	n, hs   int
	ly      *spOp
	c, eps  float64
	threads int
	rng     *rand.Rand
	V, BV   [][]float64
	h       []float64 // projected L_X, row-major with stride hs
	coef    []float64 // scratch for orth
}

// orth makes w B-orthogonal to V and 1 (classical Gram-Schmidt, twice).
// It then sets bw = B w by an explicit product: tracking B w through the
// recurrence instead would amplify the CG error at every step.
func (l *lanczos) orth(w, bw []float64) {
	for pass := 0; pass < 2; pass++ {
		for i := range l.V {
			l.coef[i] = floats.Dot(l.BV[i], w)
		}
		for i := range l.V {
			floats.AddScaled(w, -l.coef[i], l.V[i])
		}
		floats.AddConst(-floats.Sum(w)/float64(l.n), w)
	}
	applyB(l.ly, l.c, l.eps, bw, w, l.threads)
}

// fresh returns a random B-unit vector B-orthogonal to V and 1.
func (l *lanczos) fresh() ([]float64, []float64, bool) {
	for try := 0; try < 5; try++ {
		w := make([]float64, l.n)
		for i := range w {
			w[i] = l.rng.NormFloat64()
		}
		bw := make([]float64, l.n)
		l.orth(w, bw)
		beta := math.Sqrt(math.Max(floats.Dot(w, bw), 0))
		if beta > 1e-8*floats.Norm(w, 2) {
			floats.Scale(1/beta, w)
			floats.Scale(1/beta, bw)
			return w, bw, true
		}
	}
	return nil, nil, false
}

// project fills row and column j of the projected matrix from z = L_X V[j].
func (l *lanczos) project(j int, z []float64) {
	for i := 0; i <= j; i++ {
		x := floats.Dot(l.V[i], z)
		l.h[i*l.hs+j], l.h[j*l.hs+i] = x, x
	}
}

// extend appends the next basis vector B^-1 z, B-orthogonalised, and
// returns its norm beta (0 at an invariant subspace), whether the basis is
// complete, and the CG iterations used. last says V already spans 1^⊥.
func (l *lanczos) extend(solver *pcg, z []float64, last bool) (float64, bool, int, error) {
	w := make([]float64, l.n)
	it, err := solver.solve(w, z)
	if err != nil {
		return 0, false, it, err
	}
	before := math.Sqrt(math.Max(floats.Dot(w, z), 0))
	bw := make([]float64, l.n)
	l.orth(w, bw)
	beta := math.Sqrt(math.Max(floats.Dot(w, bw), 0))
	if beta <= 1e-10*before || last {
		// Invariant subspace: the Ritz values are exact there.
		if last {
			return 0, true, it, nil
		}
		nv, nbv, ok := l.fresh()
		if !ok {
			return 0, true, it, nil
		}
		l.V, l.BV = append(l.V, nv), append(l.BV, nbv)
		return 0, false, it, nil
	}
	floats.Scale(1/beta, w)
	floats.Scale(1/beta, bw)
	l.V, l.BV = append(l.V, w), append(l.BV, bw)
	return beta, false, it, nil
}

// rayleighRitz solves the projected problem on the first m basis vectors.
// It returns the k largest Ritz values, the projected eigenvectors
// (ascending order, as EigenSym gives them) and an estimate of the
// relative error of the first min(s, k) values from the Lanczos beta.
func (l *lanczos) rayleighRitz(m, k, s int, beta float64) ([]float64, *mat.Dense, float64, error) {
	hm := mat.NewSymDense(m, nil)
	for a := 0; a < m; a++ {
		for b := a; b < m; b++ {
			hm.SetSym(a, b, l.h[a*l.hs+b])
		}
	}
	var es mat.EigenSym
	if !es.Factorize(hm, true) {
		return nil, nil, 0, errors.New("spectral: Ritz eigensolver did not converge")
	}
	vals := es.Values(nil)
	var y mat.Dense
	es.VectorsTo(&y)
	ritz := make([]float64, k)
	est := 0.0
	for i := 0; i < min(s, k); i++ {
		theta := vals[m-1-i]
		ritz[i] = theta
		if theta > 0 {
			est = math.Max(est, beta*math.Abs(y.At(m-1, m-1-i))/theta)
		}
	}
	if k > s {
		ritz[s] = vals[m-1-s]
	}
	return ritz, &y, est, nil
}

// ritzVectors forms the first cols Ritz vectors V y from the projected
// eigenvectors of an m-vector basis.
func (l *lanczos) ritzVectors(y *mat.Dense, m, cols int) *mat.Dense {
	vecs := mat.NewDense(l.n, cols, nil)
	col := make([]float64, l.n)
	for i := 0; i < cols; i++ {
		for t := range col {
			col[t] = 0
		}
		for a := 0; a < m; a++ {
			floats.AddScaled(col, y.At(a, m-1-i), l.V[a])
		}
		vecs.SetCol(i, col)
	}
	return vecs
}
