package shrink

import (
	"math"
	"testing"

	"github.com/onnx-cria/onnx-cria/capture"
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

// A cluster of hundreds of equal eigenvalues (dead or constant units) is
// kept whole for the scores, but the report lists only the first S
// eigenvalues and describes the cluster.
func TestClusterReportIsBounded(t *testing.T) {
	const side = 20
	n := side * side
	z, a := make([]float32, 2*n), make([]float32, 2*n)
	for j := 0; j < n; j++ {
		// A grid of neurons; the layer moves one of them (see spectral's
		// TestLargeClusterIsSolvedOnce).
		z[j], z[n+j] = float32(j%side)+0.1*float32(j%7)/7, float32(j/side)+0.1*float32(j%5)/5
	}
	copy(a, z)
	a[210] += 0.45
	a[n+210] += 0.45
	o := DefaultSpectralOptions()
	o.K = 4
	c := NewSpectral(o)
	sc, err := c.group(Input{Group: &rewrite.Group{Name: "grid"}, Z: capture.NewMatrix(2, n, z), A: capture.NewMatrix(2, n, a)})
	if err != nil {
		t.Fatal(err)
	}
	cl, ok := sc.Detail["cluster"].(map[string]any)
	if !ok {
		t.Fatalf("no cluster reported: %v", sc.Detail["eigenvalues"])
	}
	if ev := sc.Detail["eigenvalues"].([]float64); len(ev) != o.S || cl["pairs"].(int) < 100 {
		t.Errorf("eigenvalues %v, cluster %v", ev, cl)
	}
}
