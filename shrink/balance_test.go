package shrink

import (
	"fmt"
	"math"
	"testing"

	"github.com/onnx-cria/onnx-cria/dataset"
	"github.com/onnx-cria/onnx-cria/evaluate"
	"github.com/onnx-cria/onnx-cria/ort"
	"github.com/onnx-cria/onnx-cria/recover"
)

// The block multiples either side of a natural width stay within the
// floor and the original width.
func TestSnapDownUp(t *testing.T) {
	for _, c := range []struct {
		width, block, minW, natural, down, up int
	}{
		{96, 16, 4, 55, 48, 64},
		{96, 16, 4, 48, 48, 48}, // on a multiple
		{96, 16, 4, 90, 80, 96},
		{24, 16, 4, 20, 16, 24}, // an original width off the block
		{32, 16, 4, 9, 16, 16},  // below the floor
		{100, 1, 4, 37, 37, 37}, // single units
		{100, 1, 4, 2, 4, 4},
		{64, 16, 4, 64, 64, 64}, // untouched
	} {
		s := &unitState{width: c.width, block: c.block, minW: c.minW, eligible: true}
		if d, u := s.snapDown(c.natural), s.snapUp(c.natural); d != c.down || u != c.up {
			t.Errorf("width %d block %d: natural %d -> down %d up %d, want %d and %d", c.width, c.block, c.natural, d, u, c.down, c.up)
		}
	}
}

// A width's damage is the share of the group's scores its removals carry:
// units removed in earlier rounds first, then the least important others.
func TestDamage(t *testing.T) {
	s := &unitState{width: 4, block: 1, minW: 1, eligible: true,
		order: []int{2}, rest: []int{0, 3, 1},
		score: map[int]float64{0: 1, 1: 4, 2: 2, 3: 3}}
	for w, want := range map[int]float64{4: 0, 3: 0.2, 2: 0.3, 1: 0.6} {
		if got := s.damage(w); math.Abs(got-want) > 1e-12 {
			t.Errorf("damage(%d) = %g, want %g", w, got, want)
		}
	}
	s.score = nil // not scored yet: the share of units
	if got := s.damage(2); got != 0.5 {
		t.Errorf("unscored damage(2) = %g, want 0.5", got)
	}
}

// The bar the default widths must meet on both CNN fixtures: with
// ORT's channel blocks (8 on AVX2, 16 on AVX-512) at a target of 0.5, the
// reduction lands in [0.5, 0.52] and the accuracy after the least-squares
// refit, mean of three seeds, is at most 0.3 points below exact widths'.
func TestBlockedWidthsKeepAccuracy(t *testing.T) {
	if testing.Short() {
		t.Skip("36 shrinks and refits")
	}
	eval, err := dataset.Load("../testdata/data/fmnist_eval.npz")
	if err != nil {
		t.Fatal(err)
	}
	rt := ort.Config{Threads: 1}
	for _, fixture := range []string{"cnn", "dwcnn"} {
		m, calib := loadFixture(t, fixture, "fmnist_calib.npz")
		mean := func(block int) float64 {
			sum := 0.0
			for seed := int64(0); seed < 3; seed++ {
				small, rep, err := Run(m, calib, Config{Target: 0.5, RoundChannels: block, Seed: seed, Runtime: rt})
				if err != nil {
					t.Fatal(err)
				}
				if l := rep.Landing; block > 1 && (l == nil || l.Kind == "balanced" && l.Damage > l.NearestDamage) {
					t.Errorf("%s block %d seed %d: landing %+v", fixture, block, seed, l)
				}
				if rep.Reduction < 0.5 || rep.Reduction > 0.52 {
					t.Errorf("%s block %d seed %d: reduction %.4f, want within [0.5, 0.52]", fixture, block, seed, rep.Reduction)
				}
				fixed, _, err := recover.Run(m, small, rep.Kept(), calib, recover.Options{LSQ: true, Runtime: rt})
				if err != nil {
					t.Fatal(err)
				}
				res, err := evaluate.Run(fixed, eval, evaluate.Options{Runtime: rt})
				if err != nil {
					t.Fatal(err)
				}
				sum += res.Value
			}
			return sum / 3
		}
		exact := mean(1)
		for _, block := range []int{8, 16} {
			t.Run(fmt.Sprintf("%s/%d", fixture, block), func(t *testing.T) {
				got := mean(block)
				t.Logf("accuracy after lsq %.4f, exact widths %.4f", got, exact)
				if got < exact-0.003 {
					t.Errorf("blocks of %d: accuracy after lsq %.4f, more than 0.3 points below exact widths' %.4f", block, got, exact)
				}
			})
		}
	}
}
