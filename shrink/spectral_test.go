package shrink

import (
	"math"
	"testing"

	"github.com/onnx-cria/onnx-cria/dataset"
	"github.com/onnx-cria/onnx-cria/onnxio"
	"github.com/onnx-cria/onnx-cria/rewrite"
	"github.com/onnx-cria/onnx-cria/spectral"
)

// On hidden states captured from the trained fixtures, the sparse
// iterative solver and the dense oracle agree: eigenvalues to 1e-6
// relative, scores to 1e-6 after normalisation.
func TestSparseMatchesDenseOnRealActivations(t *testing.T) {
	checked := 0
	for _, f := range fixtures(t) {
		m, err := onnxio.Load(f.model)
		if err != nil {
			t.Fatal(err)
		}
		calib, err := dataset.Load(f.calib)
		if err != nil {
			t.Fatal(err)
		}
		if calib, err = calib.Subset(256, 3); err != nil {
			t.Fatal(err)
		}
		a, err := rewrite.Analyze(m, rewrite.Options{})
		if err != nil {
			t.Fatal(err)
		}
		var groups []*rewrite.Group
		for _, g := range a.Prunable() {
			if g.Observe != nil && g.Width >= 16 && g.Width <= 600 {
				groups = append(groups, g)
			}
		}
		if len(groups) == 0 {
			continue
		}
		states, err := captureStates(m, groups, calib, &Config{Batch: 64}, 1)
		if err != nil {
			t.Fatal(err)
		}
		for k, g := range groups {
			z, y := states.Data[2*k], states.Data[2*k+1]
			dense, sparse := spectral.DefaultOptions(), spectral.DefaultOptions()
			dense.Solver, sparse.Solver = spectral.Dense, spectral.Sparse
			rd, err := spectral.Score(z, y, dense)
			if err != nil {
				t.Fatalf("%s %s dense: %v", f.name, g.Name, err)
			}
			rs, err := spectral.Score(z, y, sparse)
			if err != nil {
				t.Fatalf("%s %s sparse: %v", f.name, g.Name, err)
			}
			if len(rd.Eigenvalues) != len(rs.Eigenvalues) {
				t.Errorf("%s %s (n=%d): dense kept %d eigenvalues %v (next %v), sparse %d %v (next %v)", f.name, g.Name, g.Width, len(rd.Eigenvalues), rd.Eigenvalues, rd.NextEigenvalue, len(rs.Eigenvalues), rs.Eigenvalues, rs.NextEigenvalue)
				continue
			}
			for k := range rd.Eigenvalues {
				if d := math.Abs(rd.Eigenvalues[k]-rs.Eigenvalues[k]) / math.Abs(rd.Eigenvalues[k]); d > 1e-6 {
					t.Errorf("%s %s: eigenvalue %d dense %v sparse %v (rel %g)", f.name, g.Name, k, rd.Eigenvalues[k], rs.Eigenvalues[k], d)
				}
			}
			worst := 0.0
			for u := range rd.Scores {
				worst = math.Max(worst, math.Abs(rd.Scores[u]-rs.Scores[u]))
			}
			if worst > 1e-6 {
				t.Errorf("%s %s (n=%d): scores differ by up to %g; eigenvalues %v next %v / %v next %v", f.name, g.Name, g.Width, worst, rd.Eigenvalues, rd.NextEigenvalue, rs.Eigenvalues, rs.NextEigenvalue)
			}
			checked++
		}
	}
	if checked == 0 {
		t.Fatal("no group checked")
	}
	t.Logf("%d groups agree", checked)
}
