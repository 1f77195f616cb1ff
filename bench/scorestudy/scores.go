package main

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/onnx-cria/onnx-cria/capture"
	"github.com/onnx-cria/onnx-cria/onnxio"
	"github.com/onnx-cria/onnx-cria/onnxio/onnxpb"
	"github.com/onnx-cria/onnx-cria/rewrite"
	"github.com/onnx-cria/onnx-cria/spectral"
	"gonum.org/v1/gonum/mat"
)

// derivedNames are the scores derivedScores adds.
var derivedNames = []string{"std", "linfrac", "outnorm", "flap", "wanda-out", "wanda-in", "spectral*flap", "spectral-live",
	"spectral-std", "spectral-out", "spectral-contrib", "nbr-recon", "obs", "loo-var",
	"znorm", "anorm", "degx", "degy", "nbr-change"}

// derivedScores adds unit statistics and prototype scores, from the
// captured states Z and A (M x n) and the weights that read the group's
// units. Every name below is a key of GroupResult.Scores:
//
//	std              standard deviation of a_p over the samples
//	linfrac          fraction of samples where a_p = z_p (the unit is in the
//	                 linear part of a ReLU or clip; for a conv channel: no
//	                 position of the sample was clipped)
//	outnorm          ||W_out[:,p]||, every weight that reads unit p
//	flap             std(a_p) * ||W_out[:,p]|| (FLAP's fluctuation, as a norm)
//	wanda-out        mean|a_p| * ||W_out[:,p]||
//	spectral*flap    the spectral score times flap
//	spectral-live    the spectral score with dead units (std 0) set to 0
//	wanda-in         mean|a_p| times the magnitude criterion (incoming weights)
//	spectral-std     spectral on standardised columns of Z and A
//	spectral-out     spectral on Z and A with column p scaled by ||W_out[:,p]||
//	spectral-contrib spectral between Z and each unit's contribution to the
//	                 next layer, a_p (x) W_out[:,p] (sketched to 8 dimensions)
//	nbr-recon        ||W_out[:,p]||^2 times the variance of a_p left after
//	                 regressing it on its neighbours in the kNN graph of A
//	obs              ||W_out[:,p]||^2 / (Sigma^-1)_pp, Sigma the covariance of
//	                 A: the increase of the next layer's output error when p
//	                 is removed and that layer is refit on all the others
//	loo-var          1 / (Sigma^-1)_pp: obs without the weights
//
// and, to see what the spectral score responds to:
//
//	znorm, anorm     ||Z[:,p]||, ||A[:,p]||
//	degx, degy       p's degree in G_X and in G_Y (the spectral score's graphs)
//	nbr-change       1 - |N_X(p) ∩ N_Y(p)| / |N_X(p) ∪ N_Y(p)|: how much p's
//	                 neighbourhood changes across the nonlinearity
//
// want names the one score a caller needs ("" computes them all): the
// expensive ones are skipped unless wanted.
func derivedScores(out map[string][]float64, m *onnxio.Model, g *rewrite.Group, z, a *capture.Matrix, seed int64, want string) error {
	need := func(name string) bool { return want == "" || want == name }
	rows, n := a.Dims()
	w, err := outgoing(m, g)
	if err != nil {
		return err
	}
	mean := make([]float64, n)
	std := make([]float64, n)
	lin := make([]float64, n)
	outn := make([]float64, n)
	for p := 0; p < n; p++ {
		var s, ss float64
		for i := 0; i < rows; i++ {
			v := a.At(i, p)
			s += v
			ss += v * v
			if zv := z.At(i, p); v == zv || math.Abs(v-zv) <= 1e-6*math.Abs(zv) {
				lin[p]++
			}
		}
		mean[p] = s / float64(rows)
		std[p] = math.Sqrt(math.Max(ss/float64(rows)-mean[p]*mean[p], 0))
		lin[p] /= float64(rows)
		for _, v := range w[p] {
			outn[p] += v * v
		}
		outn[p] = math.Sqrt(outn[p])
	}
	spec := out["spectral"]
	act := out["activation"]
	prod := func(x, y []float64) []float64 {
		r := make([]float64, len(x))
		for k := range r {
			r[k] = x[k] * y[k]
		}
		return r
	}
	out["std"], out["linfrac"], out["outnorm"] = std, lin, outn
	out["flap"] = prod(std, outn)
	out["wanda-out"] = prod(act, outn)
	out["spectral*flap"] = prod(spec, out["flap"])
	live := make([]float64, n)
	for p := range live {
		if std[p] > 0 {
			live[p] = spec[p]
		}
	}
	out["spectral-live"] = live
	if mag, ok := out["magnitude"]; ok {
		out["wanda-in"] = prod(act, mag)
	}

	score := func(zm, am mat.Matrix) ([]float64, error) {
		r, err := spectral.Score(zm, am, spectral.Options{Seed: uint64(seed)})
		if err != nil {
			return nil, err
		}
		return r.Scores, nil
	}
	if need("spectral-std") {
		if out["spectral-std"], err = score(standardise(z), standardise(a)); err != nil {
			return fmt.Errorf("spectral-std: %w", err)
		}
	}
	if need("spectral-out") {
		if out["spectral-out"], err = score(scaleCols(z, outn), scaleCols(a, outn)); err != nil {
			return fmt.Errorf("spectral-out: %w", err)
		}
	}
	// The kNN graph of Z depends only on distances between its columns:
	// Z with every row repeated d times and scaled by 1/sqrt(d) has the
	// same graph and the rows of the sketch.
	if need("spectral-contrib") {
		if out["spectral-contrib"], err = score(repeatRows(z, sketchDim), contributions(a, w, sketchDim, seed)); err != nil {
			return fmt.Errorf("spectral-contrib: %w", err)
		}
	}
	centred := mat.NewDense(rows, n, nil)
	for i := 0; i < rows; i++ {
		for p := 0; p < n; p++ {
			centred.Set(i, p, a.At(i, p)-mean[p])
		}
	}
	if need("nbr-recon") {
		if out["nbr-recon"], err = neighbourResidual(centred, a, outn); err != nil {
			return fmt.Errorf("nbr-recon: %w", err)
		}
	}
	if need("obs") || need("loo-var") {
		if out["obs"], out["loo-var"], err = leaveOneOut(centred, outn); err != nil {
			return fmt.Errorf("obs: %w", err)
		}
	}
	if want != "" {
		return nil
	}
	return graphStats(out, z, a)
}

// graphStats adds the column norms, the degrees of p in the spectral
// score's two graphs and how much its neighbourhood changes between them.
func graphStats(out map[string][]float64, z, a *capture.Matrix) error {
	gx, _, err := spectral.KNNGraph(z, spectral.Options{})
	if err != nil {
		return err
	}
	gy, _, err := spectral.KNNGraph(a, spectral.Options{})
	if err != nil {
		return err
	}
	rows, n := a.Dims()
	zn, an := make([]float64, n), make([]float64, n)
	dx, dy, ch := make([]float64, n), make([]float64, n), make([]float64, n)
	for p := 0; p < n; p++ {
		for i := 0; i < rows; i++ {
			zn[p] += z.At(i, p) * z.At(i, p)
			an[p] += a.At(i, p) * a.At(i, p)
		}
		zn[p], an[p] = math.Sqrt(zn[p]), math.Sqrt(an[p])
		nx, ny := gx.Ind[gx.Ptr[p]:gx.Ptr[p+1]], gy.Ind[gy.Ptr[p]:gy.Ptr[p+1]]
		dx[p], dy[p] = float64(len(nx)), float64(len(ny))
		in := map[int]bool{}
		for _, q := range nx {
			in[q] = true
		}
		both := 0
		for _, q := range ny {
			if in[q] {
				both++
			}
		}
		if union := len(nx) + len(ny) - both; union > 0 {
			ch[p] = 1 - float64(both)/float64(union)
		}
	}
	out["znorm"], out["anorm"], out["degx"], out["degy"], out["nbr-change"] = zn, an, dx, dy, ch
	return nil
}

// outgoing returns, per unit, every weight that reads it (the group's
// parameters of role "out"), concatenated in the same order for all units.
func outgoing(m *onnxio.Model, g *rewrite.Group) ([][]float64, error) {
	ix := onnxio.NewIndex(m.Graph())
	w := make([][]float64, g.Width)
	for _, p := range g.Params {
		if p.Role != "out" {
			continue
		}
		t := constant(ix, p.Tensor)
		if t == nil {
			return nil, fmt.Errorf("weight %q not found", p.Tensor)
		}
		vals, err := m.Float64s(t)
		if err != nil {
			return nil, err
		}
		rewrite.UnitRuns(t.GetDims(), p, g.Width, func(u, lo, hi int) {
			w[u] = append(w[u], vals[lo:hi]...)
		})
	}
	if len(w[0]) == 0 {
		return nil, fmt.Errorf("no weights read the units of %s", g.Name)
	}
	return w, nil
}

// constant resolves a constant, looking through Identity nodes.
func constant(ix *onnxio.Index, name string) *onnxpb.TensorProto {
	for k := 0; k < 16; k++ {
		if t := ix.Const(name); t != nil {
			return t
		}
		p := ix.ProducerNode(name)
		if p == nil || p.GetOpType() != "Identity" {
			return nil
		}
		name = p.Input[0]
	}
	return nil
}

func standardise(x *capture.Matrix) *mat.Dense {
	r, c := x.Dims()
	out := mat.NewDense(r, c, nil)
	for p := 0; p < c; p++ {
		var s, ss float64
		for i := 0; i < r; i++ {
			s += x.At(i, p)
			ss += x.At(i, p) * x.At(i, p)
		}
		mu := s / float64(r)
		sd := math.Sqrt(math.Max(ss/float64(r)-mu*mu, 0))
		for i := 0; i < r; i++ {
			if sd > 0 {
				out.Set(i, p, (x.At(i, p)-mu)/sd)
			}
		}
	}
	return out
}

const sketchDim = 8

func repeatRows(x *capture.Matrix, d int) *mat.Dense {
	r, c := x.Dims()
	out := mat.NewDense(r*d, c, nil)
	f := 1 / math.Sqrt(float64(d))
	for i := 0; i < r; i++ {
		for j := 0; j < d; j++ {
			for p := 0; p < c; p++ {
				out.Set(i*d+j, p, x.At(i, p)*f)
			}
		}
	}
	return out
}

func scaleCols(x *capture.Matrix, s []float64) *mat.Dense {
	r, c := x.Dims()
	out := mat.NewDense(r, c, nil)
	for i := 0; i < r; i++ {
		for p := 0; p < c; p++ {
			out.Set(i, p, x.At(i, p)*s[p])
		}
	}
	return out
}

// contributions sketches each unit's contribution to the next layer,
// the M x len(w_p) matrix a_p w_p^T, as the M*d vector a_p (x) (P w_p) with
// P a seeded Gaussian d x len(w_p) matrix scaled by 1/sqrt(d): inner
// products (a_p.a_q)(w_p.w_q), and so distances, are kept in expectation.
func contributions(a *capture.Matrix, w [][]float64, d int, seed int64) *mat.Dense {
	rows, n := a.Dims()
	rng := rand.New(rand.NewPCG(uint64(seed), 0xc0ffee))
	proj := make([][]float64, d)
	for j := range proj {
		proj[j] = make([]float64, len(w[0]))
		for k := range proj[j] {
			proj[j][k] = rng.NormFloat64() / math.Sqrt(float64(d))
		}
	}
	out := mat.NewDense(rows*d, n, nil)
	for p := 0; p < n; p++ {
		u := make([]float64, d)
		for j := range u {
			for k, v := range w[p] {
				u[j] += proj[j][k] * v
			}
		}
		for i := 0; i < rows; i++ {
			for j := 0; j < d; j++ {
				out.Set(i*d+j, p, a.At(i, p)*u[j])
			}
		}
	}
	return out
}

// neighbourResidual regresses each centred column of A on the centred
// columns of its neighbours in the kNN graph of A (the spectral score's
// G_Y) and returns the residual variance times outn^2.
func neighbourResidual(c *mat.Dense, a *capture.Matrix, outn []float64) ([]float64, error) {
	rows, n := c.Dims()
	g, _, err := spectral.KNNGraph(a, spectral.Options{})
	if err != nil {
		return nil, err
	}
	out := make([]float64, n)
	for p := 0; p < n; p++ {
		nb := g.Ind[g.Ptr[p]:g.Ptr[p+1]]
		x := mat.NewDense(rows, len(nb), nil)
		for k, q := range nb {
			x.SetCol(k, mat.Col(nil, q, c))
		}
		y := mat.NewVecDense(rows, mat.Col(nil, p, c))
		res, err := ridgeResidual(x, y)
		if err != nil {
			return nil, err
		}
		out[p] = res / float64(rows) * outn[p] * outn[p]
	}
	return out, nil
}

// ridgeResidual is ||y - X b||^2 for the ridge solution b (ridge 1e-6 of
// the mean squared feature).
func ridgeResidual(x *mat.Dense, y *mat.VecDense) (float64, error) {
	_, k := x.Dims()
	var g mat.SymDense
	g.SymOuterK(1, x.T())
	tr := 0.0
	for i := 0; i < k; i++ {
		tr += g.At(i, i)
	}
	lam := 1e-6*tr/float64(k) + 1e-30
	for i := 0; i < k; i++ {
		g.SetSym(i, i, g.At(i, i)+lam)
	}
	var rhs mat.VecDense
	rhs.MulVec(x.T(), y)
	var ch mat.Cholesky
	if !ch.Factorize(&g) {
		return 0, fmt.Errorf("neighbour Gram matrix is singular")
	}
	var b mat.VecDense
	if err := ch.SolveVecTo(&b, &rhs); err != nil {
		return 0, err
	}
	var fit mat.VecDense
	fit.MulVec(x, &b)
	fit.SubVec(y, &fit)
	return mat.Dot(&fit, &fit), nil
}

// leaveOneOut returns outn^2 / (Sigma^-1)_pp and 1 / (Sigma^-1)_pp for
// the covariance Sigma of the centred columns (ridge 1e-3 of its mean
// diagonal, so that dead units do not make it singular).
func leaveOneOut(c *mat.Dense, outn []float64) ([]float64, []float64, error) {
	rows, n := c.Dims()
	var s mat.SymDense
	s.SymOuterK(1/float64(rows), c.T())
	tr := 0.0
	for i := 0; i < n; i++ {
		tr += s.At(i, i)
	}
	lam := 1e-3*tr/float64(n) + 1e-30
	for i := 0; i < n; i++ {
		s.SetSym(i, i, s.At(i, i)+lam)
	}
	var ch mat.Cholesky
	if !ch.Factorize(&s) {
		return nil, nil, fmt.Errorf("covariance is singular")
	}
	var inv mat.SymDense
	if err := ch.InverseTo(&inv); err != nil {
		return nil, nil, err
	}
	obs := make([]float64, n)
	loo := make([]float64, n)
	for p := 0; p < n; p++ {
		loo[p] = 1 / inv.At(p, p)
		obs[p] = outn[p] * outn[p] * loo[p]
	}
	return obs, loo, nil
}
