package shrink

import (
	"fmt"
	"math"

	"github.com/onnx-cria/onnx-cria/capture"
	"github.com/onnx-cria/onnx-cria/onnxio"
	"github.com/onnx-cria/onnx-cria/rewrite"
	"github.com/onnx-cria/onnx-cria/spectral"
	"gonum.org/v1/gonum/mat"
)

// Output scores a unit by what it passes on: its post-activation states on
// the calibration data together with the weights that read it
// (||W_out[:,p]||, every outgoing weight). The kinds:
//
//	wanda          mean|a_p| * ||W_out[:,p]||: Wanda's |activation| x |weight|
//	               for a whole unit (Sun et al., 2023, structured form)
//	flap           var(a_p) * ||W_out[:,p]||^2: the fluctuation of the unit's
//	               contribution to the next layer (FLAP, An et al., 2024)
//	obs            ||W_out[:,p]||^2 / (Sigma^-1)_pp, Sigma the covariance of A:
//	               how much the next layer's output error grows when p is
//	               removed and the layer is refit on the others (the
//	               least-squares recovery's own loss; Optimal Brain Surgeon
//	               for a unit)
//	spectral-flap  the spectral score times flap, units whose output is
//	               constant first: spectral structural importance weighted
//	               by how much the unit's distortion reaches the next layer
//
// States are one value per sample (capture's average over positions), so
// variances and means are over samples. See docs/RESEARCH.md for why these
// were tried and how they fare.
type Output struct{ Kind string }

func (c Output) Name() string    { return c.Kind }
func (Output) NeedsStates() bool { return true }

// NeedsNonlinearity: spectral-flap carries the spectral score.
func (c Output) NeedsNonlinearity() bool { return c.Kind == "spectral-flap" }

func (c Output) Score(r *Round) (map[string]*Scored, error) { return EachGroup(r, c.group) }

func (c Output) group(in Input) (*Scored, error) {
	if in.A == nil {
		return nil, fmt.Errorf("group %s: no captured states", in.Group.Name)
	}
	outn, err := outgoingNorms(in.Analysis.Model, in.Group)
	if err != nil {
		return nil, err
	}
	rows, n := in.A.Dims()
	mean, vari, absMean := make([]float64, n), make([]float64, n), make([]float64, n)
	for p := 0; p < n; p++ {
		var s, ss, sa float64
		for i := 0; i < rows; i++ {
			v := in.A.At(i, p)
			s, ss, sa = s+v, ss+v*v, sa+math.Abs(v)
		}
		mean[p] = s / float64(rows)
		vari[p] = math.Max(ss/float64(rows)-mean[p]*mean[p], 0)
		absMean[p] = sa / float64(rows)
	}
	scores := make([]float64, n)
	detail := map[string]any{}
	switch c.Kind {
	case "wanda":
		for p := range scores {
			scores[p] = absMean[p] * outn[p]
		}
	case "flap":
		for p := range scores {
			scores[p] = vari[p] * outn[p] * outn[p]
		}
	case "obs":
		loo, err := leaveOneOut(in.A, mean)
		if err != nil {
			return nil, fmt.Errorf("group %s: %w", in.Group.Name, err)
		}
		for p := range scores {
			scores[p] = outn[p] * outn[p] * loo[p]
		}
	case "spectral-flap":
		o := DefaultSpectralOptions()
		o.Seed = uint64(in.Seed)
		sr, err := spectral.Score(in.Z, in.A, o)
		if err != nil {
			return nil, fmt.Errorf("group %s: %w", in.Group.Name, err)
		}
		for p := range scores {
			scores[p] = sr.Scores[p] * vari[p] * outn[p] * outn[p]
		}
		detail["eigenvalues"] = sr.Eigenvalues
	default:
		return nil, fmt.Errorf("unknown output criterion %q", c.Kind)
	}
	return &Scored{Scores: scores, Detail: detail}, nil
}

// outgoingNorms is, per unit, the 2-norm of every weight that reads it.
func outgoingNorms(m *onnxio.Model, g *rewrite.Group) ([]float64, error) {
	ws, err := weightsOf(onnxio.NewIndex(m.Graph()), g, "out")
	if err != nil {
		return nil, err
	}
	if len(ws) == 0 {
		return nil, fmt.Errorf("group %s: no weights read its units", g.Name)
	}
	norms := make([]float64, g.Width)
	for _, w := range ws {
		vals, err := m.Float64s(w.t)
		if err != nil {
			return nil, err
		}
		rewrite.UnitRuns(w.t.GetDims(), w.p, g.Width, func(u, lo, hi int) {
			for _, v := range vals[lo:hi] {
				norms[u] += v * v
			}
		})
	}
	for u := range norms {
		norms[u] = math.Sqrt(norms[u])
	}
	return norms, nil
}

// leaveOneOut is 1 / (Sigma^-1)_pp for the covariance Sigma of a's columns
// (a ridge of 1e-3 of its mean diagonal keeps dead units from making it
// singular): the variance of a_p that the other units cannot explain.
// With fewer samples than units (wide decoder layers, few calibration
// sequences) the inverse's diagonal comes from the samples' Gram matrix
// (Woodbury), which costs rows^2 x n instead of n^3 and n x n memory.
func leaveOneOut(a *capture.Matrix, mean []float64) ([]float64, error) {
	rows, n := a.Dims()
	c := mat.NewDense(rows, n, nil)
	for i := 0; i < rows; i++ {
		for p := 0; p < n; p++ {
			c.Set(i, p, a.At(i, p)-mean[p])
		}
	}
	tr := 0.0 // trace of Sigma: the sum of the columns' variances
	for p := 0; p < n; p++ {
		col := mat.Col(nil, p, c)
		tr += mat.Dot(mat.NewVecDense(rows, col), mat.NewVecDense(rows, col)) / float64(rows)
	}
	lam := 1e-3*tr/float64(n) + 1e-30
	var diag []float64
	var err error
	if rows < n {
		diag, err = inverseDiagGram(c, lam)
	} else {
		diag, err = inverseDiagCov(c, lam)
	}
	if err != nil {
		return nil, err
	}
	out := make([]float64, n)
	for p := range out {
		out[p] = 1 / diag[p]
	}
	return out, nil
}

// inverseDiagCov is the diagonal of (C^T C / rows + lam I)^-1, by a
// Cholesky factorisation of the n x n matrix.
func inverseDiagCov(c *mat.Dense, lam float64) ([]float64, error) {
	rows, n := c.Dims()
	var s mat.SymDense
	s.SymOuterK(1/float64(rows), c.T())
	for i := 0; i < n; i++ {
		s.SetSym(i, i, s.At(i, i)+lam)
	}
	var ch mat.Cholesky
	if !ch.Factorize(&s) {
		return nil, fmt.Errorf("the covariance of the states is singular")
	}
	var inv mat.SymDense
	if err := ch.InverseTo(&inv); err != nil {
		return nil, err
	}
	out := make([]float64, n)
	for p := range out {
		out[p] = inv.At(p, p)
	}
	return out, nil
}

// inverseDiagGram is the same diagonal through the rows x rows Gram
// matrix: (C^T C/r + lam I)^-1 = (I - C^T (lam r I + C C^T)^-1 C) / lam, so
// its (p, p) entry is (1 - c_p^T G^-1 c_p) / lam for column c_p of C.
func inverseDiagGram(c *mat.Dense, lam float64) ([]float64, error) {
	rows, n := c.Dims()
	var g mat.SymDense
	g.SymOuterK(1, c)
	for i := 0; i < rows; i++ {
		g.SetSym(i, i, g.At(i, i)+lam*float64(rows))
	}
	var ch mat.Cholesky
	if !ch.Factorize(&g) {
		return nil, fmt.Errorf("the Gram matrix of the states is singular")
	}
	var x mat.Dense // G^-1 C
	if err := ch.SolveTo(&x, c); err != nil {
		return nil, err
	}
	out := make([]float64, n)
	for p := range out {
		q := 0.0
		for i := 0; i < rows; i++ {
			q += c.At(i, p) * x.At(i, p)
		}
		out[p] = (1 - q) / lam
	}
	return out, nil
}
