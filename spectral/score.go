package spectral

import (
	"fmt"
	"math"
	"time"

	"gonum.org/v1/gonum/floats"
	"gonum.org/v1/gonum/mat"
)

// EdgeScore is the normalised distortion eta of one edge of G_X (P < Q).
type EdgeScore struct {
	P, Q int
	Eta  float64
}

// Timings splits the wall time of Score.
type Timings struct {
	GraphX, GraphY, Eigen, Score time.Duration
}

// Result is the outcome of Score.
type Result struct {
	// Scores has one entry per neuron (column), in [0, 1] with maximum 1.
	Scores []float64
	// Eigenvalues are zeta_1 >= ... >= zeta_s; NextEigenvalue is zeta_{s+1}.
	// A small gap between the last two means the eigenvectors, and so the
	// scores, are ill-determined.
	Eigenvalues    []float64
	NextEigenvalue float64
	// Eigenvectors is n x s with unit 2-norm columns (nil when n < 2).
	Eigenvectors *mat.Dense
	// Edges holds eta for every edge of G_X when Options.EdgeScores is set.
	Edges []EdgeScore
	// GraphX and GraphY describe the input and output graphs.
	GraphX, GraphY GraphStats
	// Clustered reports that zeta_s was part of a cluster of (numerically)
	// equal eigenvalues: the pairs returned then cover the whole cluster
	// (more than S of them), with a Euclidean-orthonormal basis inside it,
	// so that the scores do not depend on the solver's arbitrary choice of
	// eigenvectors. ClusterCut reports that the cluster was larger than the
	// cap of the sparse solver, max(4S, 16) pairs, and had to be cut (scores
	// then do depend on the solver). Below n = 1024 clusters are solved
	// densely, uncapped.
	Clustered, ClusterCut bool
	// NoDistortion reports W_Y = c W_X (c > 0): every non-constant zeta is
	// 1/c, the eigenvectors are arbitrary, and all scores are set to 1.
	NoDistortion bool
	// Options holds the values actually used (defaults filled, S capped).
	Options Options
	// Solver is "dense" or "sparse" (empty when n < 2); Kernel is the Gram
	// kernel of the kNN candidate search.
	Solver, Kernel string
	// Iterations and CGIterations count sparse solver work; Residual is the
	// largest backward error of the returned eigenpairs (see Eigs).
	Iterations, CGIterations int
	Residual                 float64
	// Solves counts the eigensolver runs: one, plus for a cluster a dense
	// one (n <= 1024) or a few wider sparse ones (capped).
	Solves  int
	Timings Timings
}

// Score computes the spectral structural importance of every neuron
// (docs/METHOD.md §2-§4). z and a are M x n: rows are samples, columns neurons;
// z holds pre-activation and a post-activation states. The inputs are not
// modified.
func Score(z, a mat.Matrix, opts Options) (*Result, error) {
	o, err := opts.resolve()
	if err != nil {
		return nil, err
	}
	m, n := z.Dims()
	if ma, na := a.Dims(); ma != m || na != n {
		return nil, fmt.Errorf("spectral: Z is %d x %d but A is %d x %d", m, n, ma, na)
	}
	if n == 0 || m == 0 {
		return nil, fmt.Errorf("spectral: Z and A are %d x %d; need at least one sample and one neuron", m, n)
	}
	o.S = min(o.S, max(n-1, 1))
	res := &Result{Options: o, Kernel: bestKernel}
	if n == 1 {
		// One neuron: no graph, nothing to compare it with.
		if _, err := transposeChecked(z, 1); err != nil {
			return nil, fmt.Errorf("Z: %w", err)
		}
		if _, err := transposeChecked(a, 1); err != nil {
			return nil, fmt.Errorf("A: %w", err)
		}
		res.Scores = []float64{1}
		res.GraphX = GraphStats{Connected: true, Components: 1}
		res.GraphY = res.GraphX
		return res, nil
	}

	t0 := time.Now()
	gx, ix, err := buildGraph("Z", z, o, nil)
	if err != nil {
		return nil, err
	}
	t1 := time.Now()
	gy, _, err := buildGraph("A", a, o, ix)
	if err != nil {
		return nil, err
	}
	t2 := time.Now()
	res.GraphX, res.GraphY = gx.stats, gy.stats
	res.Timings.GraphX, res.Timings.GraphY = t1.Sub(t0), t2.Sub(t1)
	if !gy.stats.Connected && o.Reg == RegRankOne {
		return nil, fmt.Errorf("spectral: G_Y has %d components even at k = %d (Gaussian weights underflow?); L_Y + (1/n)11^T is singular, use RegEps", gy.stats.Components, gy.stats.K)
	}

	lx, ly := gx.g.Laplacian(), gy.g.Laplacian()
	e, err := solveEigs(lx, ly, o, res)
	if err != nil {
		return nil, err
	}
	t3 := time.Now()
	res.Timings.Eigen = t3.Sub(t2)
	res.Eigenvalues, res.NextEigenvalue, res.Eigenvectors = e.Values, e.Next, e.Vectors
	res.Iterations, res.CGIterations, res.Residual = e.Iterations, e.CGIterations, e.Residual

	res.NoDistortion = proportional(gx.g, gy.g)
	var edges []EdgeScore
	res.Scores, edges = NeuronScores(gx.g, e.Values, e.Vectors)
	if res.NoDistortion {
		for i := range res.Scores {
			res.Scores[i] = 1
		}
		for i := range edges {
			edges[i].Eta = 1
		}
	}
	if o.EdgeScores {
		res.Edges = edges
	}
	res.Timings.Score = time.Since(t3)
	return res, nil
}

// solveEigs solves the pencil with the solver o asks for, widened to the
// whole cluster when the cut at S falls inside one; it records the solver
// and the solves in res.
func solveEigs(lx, ly *CSR, o Options, res *Result) (*Eigs, error) {
	n := lx.N
	useDense := o.Solver == Dense || (o.Solver == Auto && n <= o.DenseMaxN)
	solve := func(o Options) (*Eigs, error) {
		res.Solves++
		if useDense {
			return GeneralizedEigsDense(lx, ly, o)
		}
		return GeneralizedEigsSparse(lx, ly, o)
	}
	res.Solver = "sparse"
	if useDense {
		res.Solver = "dense"
	}
	e, err := solve(o)
	if err != nil {
		return nil, err
	}
	// A cut through a cluster of equal eigenvalues leaves the eigenvectors
	// at the cut arbitrary within the cluster, and the scores with them:
	// take the whole cluster instead.
	if last := len(e.Values) - 1; last >= 0 && sameValue(e.Values[last], e.Next) {
		res.Clustered = true
		if !useDense && n <= clusterDenseMaxN {
			// Single-vector Lanczos cannot see multiplicities; the dense
			// oracle can, and is affordable at this size.
			useDense = true
			res.Solver = "dense"
		}
		cut := e.Values[last]
		wider := o
		if useDense {
			// A dense solve gives every pair at the cost of one: take them
			// all at once (widening step by step repeated the O(n^3)
			// decomposition up to log2(n) times when dead or constant units
			// made clusters of hundreds).
			wider.S = n - 1
			if e, err = solve(wider); err != nil {
				return nil, err
			}
		}
		limit := min(n-1, max(4*o.S, 16))
		for !useDense && sameValue(e.Values[len(e.Values)-1], e.Next) && wider.S < limit {
			wider.S = min(limit, 2*wider.S+2)
			if e, err = solve(wider); err != nil {
				return nil, err
			}
		}
		res.ClusterCut = sameValue(e.Values[len(e.Values)-1], e.Next)
		keep := 0
		for keep < len(e.Values) && (e.Values[keep] > cut || sameValue(e.Values[keep], cut)) {
			keep++
		}
		if keep < len(e.Values) {
			e.Next = e.Values[keep]
		}
		e.Values = e.Values[:keep]
		e.Vectors = mat.DenseCopyOf(e.Vectors.Slice(0, n, 0, keep))
		orthonormalizeClusters(e.Values, e.Vectors)
	}
	return e, nil
}

type builtGraph struct {
	g     *Graph
	stats GraphStats
}

func buildGraph(name string, x mat.Matrix, o Options, reuse *knnIndex) (builtGraph, *knnIndex, error) {
	ix, err := newKNNIndexReuse(x, o.Threads, reuse)
	if err != nil {
		return builtGraph{}, nil, fmt.Errorf("%s: %w", name, err)
	}
	g, st := ix.graph(o)
	return builtGraph{g, st}, ix, nil
}

// proportional reports whether gy's weights are a positive multiple of gx's
// on the same edges (relative tolerance 1e-12, for Gaussian weights whose
// sigma was scaled with the data). Then L_X = c L_Y and every non-constant
// generalized eigenvalue is the same: the layer does not distort.
func proportional(gx, gy *Graph) bool {
	if len(gx.Ind) != len(gy.Ind) || len(gx.Ind) == 0 {
		return false
	}
	for i := range gx.Ptr {
		if gx.Ptr[i] != gy.Ptr[i] {
			return false
		}
	}
	for i := range gx.Ind {
		if gx.Ind[i] != gy.Ind[i] {
			return false
		}
	}
	if gx.W[0] <= 0 {
		return false
	}
	c := gy.W[0] / gx.W[0]
	for i := range gx.W {
		if math.Abs(gy.W[i]-c*gx.W[i]) > 1e-12*c*gx.W[i] {
			return false
		}
	}
	return true
}

// NeuronScores implements docs/METHOD.md §4: for each edge (p,q) of gx,
// eta = sum_i vals[i] (u_i(p) - u_i(q))^2 over the columns u_i of vecs;
// eta /= max eta; the score of p is the mean eta over its edges, divided by
// the largest score. If every eta (or every score) is 0, all scores are 1:
// no neuron is distinguished. Edges are returned with P < Q.
func NeuronScores(gx *Graph, vals []float64, vecs *mat.Dense) ([]float64, []EdgeScore) {
	n := gx.N
	edges := make([]EdgeScore, 0, len(gx.Ind)/2)
	for p := 0; p < n; p++ {
		for i := gx.Ptr[p]; i < gx.Ptr[p+1]; i++ {
			if q := gx.Ind[i]; q > p {
				eta := 0.0
				for k, z := range vals {
					d := vecs.At(p, k) - vecs.At(q, k)
					eta += z * d * d
				}
				edges = append(edges, EdgeScore{p, q, eta})
			}
		}
	}
	maxEta := 0.0
	for _, e := range edges {
		maxEta = math.Max(maxEta, e.Eta)
	}
	sum := make([]float64, n)
	deg := make([]int, n)
	for i := range edges {
		if maxEta > 0 {
			edges[i].Eta /= maxEta
		}
		e := edges[i]
		sum[e.P] += e.Eta
		sum[e.Q] += e.Eta
		deg[e.P]++
		deg[e.Q]++
	}
	maxS := 0.0
	for p := range sum {
		if deg[p] > 0 {
			sum[p] /= float64(deg[p])
		}
		maxS = math.Max(maxS, sum[p])
	}
	for p := range sum {
		if maxS > 0 {
			sum[p] /= maxS
		} else {
			sum[p] = 1
		}
	}
	return sum, edges
}

// clusterDenseMaxN is the largest n at which a cluster of equal eigenvalues
// found by the sparse solver is recomputed densely.
const clusterDenseMaxN = 1024

// sameValue reports eigenvalues equal to within the solvers' agreement.
func sameValue(a, b float64) bool {
	return math.Abs(a-b) <= 1e-6*math.Max(math.Abs(a), math.Abs(b))+1e-12
}

// orthonormalizeClusters replaces the vectors of every run of equal
// eigenvalues by a Euclidean-orthonormal basis of their span (modified
// Gram-Schmidt). A projector onto the span does not depend on the basis,
// and neither do the scores built from it.
func orthonormalizeClusters(values []float64, v *mat.Dense) {
	n, _ := v.Dims()
	for start := 0; start < len(values); {
		end := start + 1
		for end < len(values) && sameValue(values[end], values[start]) {
			end++
		}
		for j := start; j < end; j++ {
			col := mat.Col(nil, j, v)
			for i := start; i < j; i++ {
				prev := mat.Col(nil, i, v)
				d := floats.Dot(col, prev)
				floats.AddScaled(col, -d, prev)
			}
			if nrm := floats.Norm(col, 2); nrm > 0 {
				floats.Scale(1/nrm, col)
			}
			v.SetCol(j, col)
		}
		start = end
	}
	_ = n
}
