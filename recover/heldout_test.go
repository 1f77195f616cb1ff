package recover

import (
	"fmt"
	"strings"
	"testing"

	"github.com/onnx-cria/onnx-cria/onnxio"
)

// An underdetermined refit (fewer regression rows than unknowns) fits its
// rows almost exactly: it is flagged, its error on held-out samples is
// reported, and it is kept only if that error falls consistently.
func TestLSQUnderdeterminedIsFlagged(t *testing.T) {
	orig, pruned, kept, calib, _ := mlpFixture(t)
	// 200 samples: 25 held out, 175 rows to fit; /fc2 reads 256 units
	// (257 unknowns with the bias), /fc3 reads 128 (129).
	_, fits, err := LSQ(orig, pruned, kept, calib, LSQOptions{Samples: 200, Seed: 1, Runtime: testRT})
	if err != nil {
		t.Fatal(err)
	}
	if len(fits) != 2 {
		t.Fatalf("%d layers refit, want 2 (/fc2, /fc3)", len(fits))
	}
	for _, f := range fits {
		t.Logf("%s: %d rows, %d inputs, error %.3g -> %.3g, held out %d rows %.3g -> %.3g, applied %v, flag %q: %s",
			f.Node, f.Rows, f.Inputs, f.Before, f.After, f.HeldOutRows, f.HeldOutBefore, f.HeldOutAfter, f.Applied, f.Flag, f.Warning)
		if f.Rows != 175 || f.HeldOutRows != 25 {
			t.Errorf("%s: %d rows fit and %d held out, want 175 and 25", f.Node, f.Rows, f.HeldOutRows)
		}
		under := f.Rows < f.Inputs+1
		if under != (f.Flag == "underdetermined") {
			t.Errorf("%s: %d rows for %d unknowns, flag %q", f.Node, f.Rows, f.Inputs+1, f.Flag)
		}
		if under {
			if !strings.Contains(f.Warning, "underdetermined") || !strings.Contains(f.Warning, "held-out") {
				t.Errorf("%s: warning %q does not explain the flag and the check", f.Node, f.Warning)
			}
			// The rows it was solved on are fit almost exactly: the error
			// there says nothing, the held-out one does.
			if !(f.After < 1e-3 && f.HeldOutAfter > 10*f.After) {
				t.Errorf("%s: error %.3g on its rows, %.3g held out", f.Node, f.After, f.HeldOutAfter)
			}
		}
		if f.Applied && !(f.HeldOutAfter < f.HeldOutBefore) {
			t.Errorf("%s: applied though the held-out error rose %.3g -> %.3g", f.Node, f.HeldOutBefore, f.HeldOutAfter)
		}
	}
	if fits[0].Flag != "underdetermined" || fits[1].Flag != "" {
		t.Errorf("flags %q, %q: want /fc2 underdetermined and /fc3 not", fits[0].Flag, fits[1].Flag)
	}
}

// With one or two calibration rows no refit can be checked on enough
// held-out samples, so the pruned weights stay: before this check, the
// refit from one row took the MLP's accuracy from 0.83 to about 0.09.
func TestLSQDegenerateCalibrationKeepsWeights(t *testing.T) {
	orig, pruned, kept, calib, eval := mlpFixture(t)
	base := accuracy(t, pruned, eval)
	for _, n := range []int{1, 2} {
		out, fits, err := LSQ(orig, pruned, kept, calib, LSQOptions{Samples: n, Seed: 1, Runtime: testRT})
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range fits {
			t.Logf("%d rows: %s applied %v, flag %q: %s", n, f.Node, f.Applied, f.Flag, f.Warning)
			if f.Applied || f.Warning == "" {
				t.Errorf("%d rows: %s applied %v, warning %q", n, f.Node, f.Applied, f.Warning)
			}
		}
		if !sameWeights(t, out, pruned) {
			t.Errorf("%d rows: the weights changed", n)
		}
		if acc := accuracy(t, out, eval); acc != base {
			t.Errorf("%d rows: accuracy %.4f, the pruned model's %.4f", n, acc, base)
		}
	}
}

// sameWeights compares every initializer of two models.
func sameWeights(t *testing.T, a, b *onnxio.Model) bool {
	t.Helper()
	ib := onnxio.NewIndex(b.Graph())
	for _, ta := range a.Graph().GetInitializer() {
		tb := ib.Init[ta.GetName()]
		if tb == nil {
			return false
		}
		va, err := a.Float64s(ta)
		if err != nil {
			continue // not a float tensor
		}
		vb, err := b.Float64s(tb)
		if err != nil || len(va) != len(vb) {
			return false
		}
		for i := range va {
			if va[i] != vb[i] {
				return false
			}
		}
	}
	return true
}

// When the tensors kept between passes would take more than MaxMemory for
// all calibration samples, fewer samples are used.
func TestLSQMemoryBound(t *testing.T) {
	orig, pruned, kept, calib, _ := mlpFixture(t)
	cur := pruned.Clone()
	layers, _, err := findLayers(orig, cur, kept)
	if err != nil {
		t.Fatal(err)
	}
	waves, err := schedule(cur, layers)
	if err != nil {
		t.Fatal(err)
	}
	inputs, targets := wants(waves)
	pc, ok1, err := keptBytes(cur, inputs, flat(inputs))
	if err != nil {
		t.Fatal(err)
	}
	po, ok2, err := keptBytes(orig, targets, flat(targets))
	if err != nil || !ok1 || !ok2 {
		t.Fatalf("kept bytes: %v %v %v", ok1, ok2, err)
	}
	// The pruned model keeps /fc2's input (256 floats) while its second
	// pass makes /fc3's (128); the original keeps /fc2's output (256) while
	// it makes /fc3's (10).
	t.Logf("per sample: pruned model %d bytes, original %d", pc, po)
	if pc != 4*(256+128) || po != 4*(256+10) {
		t.Errorf("kept bytes per sample %d and %d, want %d and %d", pc, po, 4*(256+128), 4*(256+10))
	}
	var lines []string
	_, fits, err := LSQ(orig, pruned, kept, calib, LSQOptions{Samples: 1024, Seed: 1, Runtime: testRT, MaxMemory: 100 * (pc + po),
		Log: func(f string, a ...any) { lines = append(lines, fmt.Sprintf(f, a...)) }})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fits {
		if f.Rows+f.HeldOutRows != 100 {
			t.Errorf("%s: %d + %d rows, want 100 samples in all", f.Node, f.Rows, f.HeldOutRows)
		}
	}
	if len(lines) == 0 || !strings.Contains(lines[0], "using 100") {
		t.Errorf("log %q does not say that fewer samples were used", lines)
	}
}
