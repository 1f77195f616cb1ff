package spectral

import (
	"math"
	"sort"

	"gonum.org/v1/gonum/mat"
)

// Weighting selects the edge weights of the kNN graphs.
type Weighting int

const (
	// Unweighted gives every edge weight 1 (the default of docs/METHOD.md §2).
	Unweighted Weighting = iota
	// Gaussian gives edge (p,q) weight exp(-d^2/sigma^2).
	Gaussian
)

func (w Weighting) String() string {
	switch w {
	case Unweighted:
		return "unweighted"
	case Gaussian:
		return "gaussian"
	}
	return "Weighting(?)"
}

// Graph is an undirected weighted graph in compressed sparse row form: the
// neighbours of node p are Ind[Ptr[p]:Ptr[p+1]] (ascending, no self loops),
// with weights W and squared distances Dist2 at the same positions. Every
// edge appears in both of its rows.
type Graph struct {
	N     int
	Ptr   []int
	Ind   []int
	W     []float64
	Dist2 []float64
}

// Edges returns the number of undirected edges.
func (g *Graph) Edges() int { return len(g.Ind) / 2 }

// GraphStats describes a graph that Score built.
type GraphStats struct {
	K          int     // k finally used (after doubling)
	Edges      int     // undirected edges
	Connected  bool    // counting only edges of positive weight
	Components int     // connected components (positive-weight edges)
	Sigma      float64 // Gaussian width used (0 when unweighted)
}

// UnionGraph symmetrises neighbour lists by union: (p,q) is an edge when q
// is among p's neighbours or p among q's. Weights are 1 or Gaussian with
// width sigma (sigma <= 0: median edge distance, see medianSigma).
func UnionGraph(nb *Neighbors, weighting Weighting, sigma float64) (*Graph, float64) {
	n, k := nb.N, nb.K
	deg := make([]int, n+1)
	for p := 0; p < n; p++ {
		for _, q := range nb.Of(p) {
			deg[p]++
			deg[q]++
		}
	}
	type half struct {
		q int
		d float64
	}
	rows := make([][]half, n)
	for p := 0; p < n; p++ {
		rows[p] = make([]half, 0, deg[p])
	}
	for p := 0; p < n; p++ {
		for j, q := range nb.Of(p) {
			d := nb.Dist2[p*k+j]
			rows[p] = append(rows[p], half{q, d})
			rows[q] = append(rows[q], half{p, d})
		}
	}
	total := 0
	for _, d := range deg {
		total += d
	}
	g := &Graph{N: n, Ptr: make([]int, n+1), Ind: make([]int, 0, total), Dist2: make([]float64, 0, total)}
	for p := 0; p < n; p++ {
		r := rows[p]
		sort.Slice(r, func(a, b int) bool { return r[a].q < r[b].q })
		last := -1
		for _, h := range r {
			if h.q == last {
				continue // both lists had the edge; SquaredDistance is symmetric
			}
			last = h.q
			g.Ind = append(g.Ind, h.q)
			g.Dist2 = append(g.Dist2, h.d)
		}
		g.Ptr[p+1] = len(g.Ind)
	}
	g.W = make([]float64, len(g.Ind))
	if weighting == Unweighted {
		for i := range g.W {
			g.W[i] = 1
		}
		return g, 0
	}
	if sigma <= 0 {
		sigma = medianSigma(g)
	}
	for i, d := range g.Dist2 {
		g.W[i] = 1
		if sigma > 0 {
			g.W[i] = math.Exp(-d / (sigma * sigma))
		}
	}
	return g, sigma
}

// medianSigma is the median Euclidean length of the edges (each edge once,
// lower median). If that is 0 (many identical columns) it is the median of
// the positive lengths; if every length is 0 it is 0 and all weights are 1.
func medianSigma(g *Graph) float64 {
	var d, pos []float64
	for p := 0; p < g.N; p++ {
		for i := g.Ptr[p]; i < g.Ptr[p+1]; i++ {
			if g.Ind[i] > p {
				d = append(d, g.Dist2[i])
				if g.Dist2[i] > 0 {
					pos = append(pos, g.Dist2[i])
				}
			}
		}
	}
	med := func(v []float64) float64 {
		if len(v) == 0 {
			return 0
		}
		sort.Float64s(v)
		return math.Sqrt(v[(len(v)-1)/2])
	}
	if s := med(d); s > 0 {
		return s
	}
	return med(pos)
}

// Components counts the connected components over edges of positive weight.
func (g *Graph) Components() int {
	seen := make([]bool, g.N)
	stack := []int{}
	c := 0
	for s := 0; s < g.N; s++ {
		if seen[s] {
			continue
		}
		c++
		seen[s] = true
		stack = append(stack[:0], s)
		for len(stack) > 0 {
			p := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			for i := g.Ptr[p]; i < g.Ptr[p+1]; i++ {
				if q := g.Ind[i]; g.W[i] > 0 && !seen[q] {
					seen[q] = true
					stack = append(stack, q)
				}
			}
		}
	}
	return c
}

// KNNGraph builds the graph of docs/METHOD.md §2 over the columns of x: exact kNN
// (k capped at n-1), union, weights; while disconnected, k doubles (capped
// at n-1). Only opts.K, Weighting, Sigma and Threads are used.
func KNNGraph(x mat.Matrix, opts Options) (*Graph, GraphStats, error) {
	o, err := opts.resolve()
	if err != nil {
		return nil, GraphStats{}, err
	}
	ix, err := newKNNIndex(x, o.Threads)
	if err != nil {
		return nil, GraphStats{}, err
	}
	g, st := ix.graph(o)
	return g, st, nil
}

func (ix *knnIndex) graph(o Options) (*Graph, GraphStats) {
	n := ix.n
	k := min(o.K, n-1)
	for {
		nb := ix.query(k)
		g, sigma := UnionGraph(nb, o.Weighting, o.Sigma)
		c := g.Components()
		if c == 1 || k >= n-1 {
			return g, GraphStats{K: k, Edges: g.Edges(), Connected: c == 1, Components: c, Sigma: sigma}
		}
		k = min(2*k, n-1)
	}
}
