package spectral

import (
	"math"
	"math/rand/v2"
	"sort"
	"testing"

	"gonum.org/v1/gonum/mat"
)

// bruteKNN is the reference: every pair in float64, sorted by (distance,
// index), written independently of the production code (plain sequential
// sum).
func bruteKNN(x *mat.Dense, k int) [][]int {
	m, n := x.Dims()
	k = min(k, n-1)
	out := make([][]int, n)
	for p := 0; p < n; p++ {
		type e struct {
			d float64
			q int
		}
		var all []e
		for q := 0; q < n; q++ {
			if q == p {
				continue
			}
			d := 0.0
			for i := 0; i < m; i++ {
				t := x.At(i, p) - x.At(i, q)
				d += t * t
			}
			all = append(all, e{d, q})
		}
		sort.Slice(all, func(i, j int) bool {
			return all[i].d < all[j].d || (all[i].d == all[j].d && all[i].q < all[j].q)
		})
		for _, v := range all[:k] {
			out[p] = append(out[p], v.q)
		}
	}
	return out
}

func randDense(rng *rand.Rand, m, n int) *mat.Dense {
	d := make([]float64, m*n)
	for i := range d {
		d[i] = rng.NormFloat64()
	}
	return mat.NewDense(m, n, d)
}

// lowRank returns rank-r signals plus noise: columns cluster along a few
// directions, so near neighbours are much closer than in pure noise.
func lowRank(rng *rand.Rand, m, n, r int, noise float64) *mat.Dense {
	f := randDense(rng, m, r)
	w := randDense(rng, r, n)
	var z mat.Dense
	z.Mul(f, w)
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			z.Set(i, j, z.At(i, j)+noise*rng.NormFloat64())
		}
	}
	return &z
}

// refined counts rows settled by the second pass, per case name.
var refined = map[string]int{}

func checkKNN(t *testing.T, name string, x *mat.Dense, k int, kernels []string, exactBelow int) {
	checkKNNCap(t, name, x, k, kernels, exactBelow, 0)
}

func checkKNNCap(t *testing.T, name string, x *mat.Dense, k int, kernels []string, exactBelow, refineCap int) {
	t.Helper()
	want := bruteKNN(x, k)
	for _, kern := range kernels {
		for _, threads := range []int{1, 3} {
			ix, err := newKNNIndex(x, threads)
			if err != nil {
				t.Fatal(err)
			}
			ix.kernel = kern
			ix.exactBelow = exactBelow
			ix.noC = kern == "go"
			ix.refineCap = refineCap
			nb := ix.query(k)
			refined[name] += ix.refined
			for p := range want {
				got := nb.Of(p)
				for j := range want[p] {
					if got[j] != want[p][j] {
						t.Fatalf("%s kernel=%s threads=%d: node %d neighbours %v, want %v", name, kern, threads, p, got, want[p])
					}
				}
			}
		}
	}
}

func TestKNNBruteForce(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	kernels := availableKernels()
	if raceEnabled {
		kernels = kernels[:1]
	}
	for _, tc := range []struct {
		name string
		x    *mat.Dense
		k    int
	}{
		{"gauss-40x150", randDense(rng, 40, 150), 10},
		{"gauss-7x130", randDense(rng, 7, 130), 5},
		{"lowrank-64x200", lowRank(rng, 64, 200, 3, 0.05), 10},
		{"tiny-3x5", randDense(rng, 3, 5), 10},
		{"sparse-relu-64x300", sparseRelu(rng, 64, 300), 10},
	} {
		checkKNN(t, tc.name, tc.x, tc.k, kernels, 0)
		checkKNN(t, tc.name+"/exhaustive", tc.x, tc.k, kernels[:1], 1<<30)
	}
}

// Duplicate and dead (all-zero) columns make exact distance ties; ties must
// go to the smaller index, and a group larger than k must be handled.
func TestKNNTies(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	x := randDense(rng, 16, 120)
	for j := 40; j < 60; j++ { // 20 dead neurons
		for i := 0; i < 16; i++ {
			x.Set(i, j, 0)
		}
	}
	for _, j := range []int{70, 90, 110} { // three copies of column 5
		for i := 0; i < 16; i++ {
			x.Set(i, j, x.At(i, 5))
		}
	}
	x.Set(3, 61, math.Copysign(0, -1)) // -0 equals +0
	for i := 0; i < 16; i++ {
		if i != 3 {
			x.Set(i, 61, 0)
		}
	}
	// Two points equidistant from a third (exact in binary).
	for i := 0; i < 16; i++ {
		x.Set(i, 100, 8)
		x.Set(i, 101, 8)
		x.Set(i, 102, 8)
	}
	x.Set(0, 101, 9)
	x.Set(1, 102, 9)
	checkKNN(t, "ties", x, 10, availableKernels(), 0)
	checkKNN(t, "ties-k3", x, 3, availableKernels()[:1], 0)
}

// Far-apart magnitudes stress the float32 scaling: small columns fall below
// the float32 resolution of the shared scale and must be found by the
// certified fallback.
func TestKNNScales(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	x := randDense(rng, 12, 100)
	for j := 0; j < 100; j++ {
		s := math.Pow(10, float64(j%7-3)*6)
		for i := 0; i < 12; i++ {
			x.Set(i, j, x.At(i, j)*s)
		}
	}
	checkKNN(t, "scales", x, 6, availableKernels()[:1], 0)
	if refined["scales"] == 0 {
		t.Error("the second pass was never exercised")
	}
	// Rows that collect too much in the second pass go exhaustive.
	checkKNNCap(t, "scales-cap", x, 6, availableKernels()[:1], 0, 1)
	// A common offset far larger than the spread.
	y := randDense(rng, 12, 100)
	for j := 0; j < 100; j++ {
		for i := 0; i < 12; i++ {
			y.Set(i, j, 1e6+y.At(i, j))
		}
	}
	checkKNN(t, "offset", y, 6, availableKernels()[:1], 0)
	// Differences that overflow float64 fall back to the exhaustive search
	// (distances are then +Inf ties, ranked by index).
	w := randDense(rng, 4, 40)
	for j := 0; j < 40; j++ {
		setCol(w, j, func(i int) float64 { return math.Copysign(1+0.5*rng.Float64(), w.At(i, j)) * 1e308 })
	}
	checkKNN(t, "overflow", w, 5, availableKernels()[:1], 0)
}

func TestKNNRejectsNaN(t *testing.T) {
	x := mat.NewDense(3, 4, nil)
	x.Set(2, 3, math.Inf(-1))
	if _, err := KNN(x, 2, 1); err == nil || err.Error() != "spectral: column 3 has -Inf at row 2" {
		t.Fatalf("err = %v", err)
	}
}

// sparseRelu is a ReLU layer whose biases make many neurons dead or active
// on few samples: exact groups plus many near-zero columns.
func sparseRelu(rng *rand.Rand, m, n int) *mat.Dense {
	z := lowRank(rng, m, n, 4, 0.5)
	z.Scale(0.5, z)
	for j := 0; j < n; j++ {
		b := -6 + 7*rng.Float64()
		setCol(z, j, func(i int) float64 { return math.Max(z.At(i, j)+b, 0) })
	}
	return z
}

// The C distance kernel must reproduce SquaredDistance bit for bit, or the
// kNN answer would depend on the build.
func TestSquaredDistanceC(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 9))
	for m := 1; m <= 41; m++ {
		xt := make([]float64, 9*m)
		for i := range xt {
			xt[i] = rng.NormFloat64() * math.Pow(10, float64(rng.IntN(30)-15))
		}
		idx := []int32{1, 2, 3, 4, 5, 6, 7, 8, 0}
		out := make([]float64, len(idx))
		if !sqDistBatch(xt[:m], xt, m, idx, out) {
			t.Skip("no C kernel on this machine")
		}
		for j, q := range idx {
			if want := SquaredDistance(xt[:m], xt[int(q)*m:int(q+1)*m]); out[j] != want {
				t.Fatalf("m=%d j=%d: C %v Go %v", m, j, out[j], want)
			}
		}
	}
}

func TestSelectKth(t *testing.T) {
	rng := rand.New(rand.NewPCG(2, 2))
	for n := 1; n < 60; n++ {
		v := make([]float64, n)
		for i := range v {
			v[i] = float64(rng.IntN(7)) // many ties
		}
		s := append([]float64(nil), v...)
		sort.Float64s(s)
		for k := 0; k < n; k++ {
			w := append([]float64(nil), v...)
			if got := selectKth(w, k); got != s[k] {
				t.Fatalf("n=%d k=%d: %v, want %v", n, k, got, s[k])
			}
		}
	}
}
