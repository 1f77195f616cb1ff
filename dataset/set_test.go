package dataset

import (
	"slices"
	"strings"
	"testing"
)

// rowSet is a set whose array "x" has row i filled with i, and labels i%10.
func rowSet(t *testing.T, n int) *Set {
	t.Helper()
	x := arange(t, "x", Float32, []int{n, 3}, func(i int) float64 { return float64(i / 3) })
	y := arange(t, "labels", Int64, []int{n}, func(i int) float64 { return float64(i % 10) })
	return &Set{Path: "calib.npz", Arrays: []*Array{x, y}}
}

func TestSetN(t *testing.T) {
	s := rowSet(t, 12)
	if n, err := s.N(); n != 12 || err != nil {
		t.Errorf("N = %d, %v", n, err)
	}
	if s.Get("labels") == nil || s.Get("nope") != nil || !slices.Equal(s.Names(), []string{"x", "labels"}) {
		t.Error("Get or Names")
	}
	s.Arrays = append(s.Arrays, arange(t, "short", Uint8, []int{5}, func(int) float64 { return 0 }))
	_, err := s.N()
	wantErr(t, err, nil, "calib.npz", `array "short" has 5 rows`, `array "x" has 12`)
	if _, err := s.Subset(3, 1); err == nil {
		t.Error("Subset of a ragged set succeeded")
	}
	if _, err := s.Batches(4); err == nil {
		t.Error("Batches of a ragged set succeeded")
	}

	_, err = (&Set{}).N()
	wantErr(t, err, nil, "(in-memory set)", "no arrays")
	sc := &Set{Path: "p.npy", Arrays: []*Array{must(New("s", nil, []float64{1}))}}
	_, err = sc.N()
	wantErr(t, err, nil, "p.npy", `array "s" is 0-d`)
}

func TestSubsetIndicesPinned(t *testing.T) {
	// Values from an independent implementation of the documented algorithm;
	// a change here breaks reproducibility of published subsets.
	for _, tc := range []struct {
		total, n int
		seed     int64
		want     []int
	}{
		{10, 3, 42, []int{2, 4, 7}},
		{100, 10, -7, []int{7, 10, 18, 42, 45, 48, 57, 58, 81, 90}},
		{1000, 5, 0, []int{28, 109, 432, 883, 970}},
	} {
		got := must(SubsetIndices(tc.total, tc.n, tc.seed))
		if !slices.Equal(got, tc.want) {
			t.Errorf("SubsetIndices(%d, %d, %d) = %v, want %v", tc.total, tc.n, tc.seed, got, tc.want)
		}
	}
}

func TestSubsetIndices(t *testing.T) {
	for _, total := range []int{1, 2, 7, 100, 60000} {
		for _, n := range []int{0, 1, total / 2, total - 1} {
			for seed := range int64(5) {
				idx := must(SubsetIndices(total, n, seed))
				if len(idx) != n || !slices.IsSorted(idx) {
					t.Fatalf("(%d, %d, %d): %v", total, n, seed, idx)
				}
				if len(slices.Compact(slices.Clone(idx))) != n {
					t.Fatalf("(%d, %d, %d): duplicates in %v", total, n, seed, idx)
				}
				if n > 0 && (idx[0] < 0 || idx[n-1] >= total) {
					t.Fatalf("(%d, %d, %d): out of range %v", total, n, seed, idx)
				}
				if again := must(SubsetIndices(total, n, seed)); !slices.Equal(idx, again) {
					t.Fatalf("(%d, %d, %d): not deterministic", total, n, seed)
				}
			}
		}
	}
	a := must(SubsetIndices(1000, 100, 1))
	b := must(SubsetIndices(1000, 100, 2))
	if slices.Equal(a, b) {
		t.Error("seeds 1 and 2 chose the same rows")
	}
	for _, n := range []int{10, 11, 1 << 40} {
		if got := must(SubsetIndices(10, n, 3)); !slices.Equal(got, []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}) {
			t.Errorf("n=%d >= total: %v", n, got)
		}
	}
	if _, err := SubsetIndices(10, -1, 0); err == nil {
		t.Error("negative n accepted")
	}
	if _, err := SubsetIndices(-1, 1, 0); err == nil {
		t.Error("negative total accepted")
	}
	// Roughly uniform: over many seeds every row is chosen about n/total of the time.
	const total, n, runs = 20, 5, 4000
	counts := make([]int, total)
	for seed := range int64(runs) {
		for _, i := range must(SubsetIndices(total, n, seed)) {
			counts[i]++
		}
	}
	want := runs * n / total // 1000; binomial sd ~27
	for i, c := range counts {
		if c < want-150 || c > want+150 {
			t.Errorf("row %d chosen %d times, want about %d", i, c, want)
		}
	}
}

func TestSetSubset(t *testing.T) {
	s := rowSet(t, 50)
	before := s.Arrays[0].Clone()
	sub := must(s.Subset(8, 11))
	rows := must(SubsetIndices(50, 8, 11))
	if sub.Path != s.Path || len(sub.Arrays) != 2 || sub.Arrays[0].Len() != 8 || sub.Arrays[1].Len() != 8 {
		t.Fatalf("subset: %v", sub.Arrays)
	}
	x, y := sub.Arrays[0].Float32s(), sub.Arrays[1].Int64s()
	for k, r := range rows {
		// Rows stay aligned across arrays.
		if x[3*k] != float32(r) || y[k] != int64(r%10) {
			t.Errorf("row %d: x %v labels %v, want row %d", k, x[3*k], y[k], r)
		}
	}
	if again := must(s.Subset(8, 11)); !Equal(again.Arrays[0], sub.Arrays[0]) {
		t.Error("same seed, different subset")
	}
	zeroData(sub.Arrays[0])
	if !Equal(s.Arrays[0], before) {
		t.Error("Subset changed or shares the source")
	}
	all := must(s.Subset(500, 1))
	if !Equal(all.Arrays[0], s.Arrays[0]) || !Equal(all.Arrays[1], s.Arrays[1]) {
		t.Error("n >= N did not give every row in order")
	}
	if _, err := s.Subset(-2, 1); err == nil || !strings.Contains(err.Error(), "calib.npz") {
		t.Errorf("negative n: %v", err)
	}
}

func TestRangesAndBatches(t *testing.T) {
	for _, tc := range []struct {
		n, size int
		want    []Range
	}{
		{10, 4, []Range{{0, 4}, {4, 8}, {8, 10}}},
		{8, 4, []Range{{0, 4}, {4, 8}}},
		{3, 10, []Range{{0, 3}}},
		{3, 0, []Range{{0, 3}}},
		{3, -1, []Range{{0, 3}}},
		{0, 4, nil},
	} {
		if got := Ranges(tc.n, tc.size); !slices.Equal(got, tc.want) {
			t.Errorf("Ranges(%d, %d) = %v, want %v", tc.n, tc.size, got, tc.want)
		}
	}
	if (Range{3, 7}).Len() != 4 {
		t.Error("Range.Len")
	}
	got := must(rowSet(t, 5).Batches(2))
	if !slices.Equal(got, []Range{{0, 2}, {2, 4}, {4, 5}}) {
		t.Errorf("Set.Batches = %v", got)
	}
}

func TestBelowRejects(t *testing.T) {
	// With a bound just over 2^63 about half the draws are rejected.
	g := splitMix64(5)
	const bound = 1<<63 + 12345
	high := 0
	for range 2000 {
		v := g.below(bound)
		if v >= bound {
			t.Fatalf("below(%d) = %d", uint64(bound), v)
		}
		if v >= 1<<62 {
			high++
		}
	}
	if high < 880 || high > 1120 { // about half the draws land in [2^62, bound)
		t.Errorf("%d of 2000 draws in the upper half", high)
	}
}
