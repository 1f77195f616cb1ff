// Package spectral scores neurons by spectral structural importance
// (docs/METHOD.md §2-§4; section numbers below refer to that file). It is
// pure numerics on matrices and knows nothing about ONNX.
//
// # The method
//
// A layer is observed on M samples as Z (pre-activation) and A
// (post-activation), both M x n: rows are samples, columns are neurons, and
// neuron p's signal is column p. Score
//
//  1. builds the input graph G_X over the columns of Z and the output graph
//     G_Y over the columns of A: exact k nearest neighbours under Euclidean
//     distance, symmetrised by union, unit or Gaussian weights, with k
//     doubled while the graph is disconnected (§2);
//  2. forms the Laplacians L = D - W and solves L_X u = zeta B u for the s
//     largest zeta, B being L_Y regularised (§3);
//  3. scores each edge (p,q) of G_X by eta = sum_i zeta_i (u_i(p)-u_i(q))^2
//     with unit 2-norm u_i, normalises eta by its maximum, averages it over
//     each neuron's edges and normalises by the largest average (§4).
//
// High scores mark neurons that take part in the layer's dominant
// distortion; low scores mark pruning candidates.
//
// # Defaults and where they come from
//
// The zero value of every Options field selects its default, and
// Result.Options reports the values that were used.
//
//   - K = 10, capped at n-1 (§2). Doubling while disconnected, capped at n-1
//     (§2). GraphStats.K reports the k finally used per graph.
//   - Weighting = Unweighted (§2). Gaussian uses w = exp(-d^2/sigma^2) (§2);
//     Sigma = 0 takes the median Euclidean length of the graph's edges, or
//     of its positive lengths if that median is 0, or unit weights if all
//     lengths are 0. Connectivity counts only edges whose weight is
//     positive (Gaussian weights can underflow).
//   - S = 2 (§3), capped at n-1.
//   - Reg = RegRankOne: B = L_Y + (1/n) 1 1^T (§3). The constant vector
//     then has zeta = 0, every other eigenvector is orthogonal to 1, and on
//     1^⊥ B equals L_Y, so the reported pairs are
//     those of (L_X, L_Y) on 1^⊥ and do not depend on the 1/n factor. It
//     needs a connected G_Y; Score returns an error otherwise (possible
//     only with Gaussian weights at k = n-1). RegEps uses L_Y + eps I with
//     eps = Eps * mean degree of G_Y, Eps = 1e-6 (our choice); it shifts
//     each zeta down by O(eps / lambda_2(L_Y)).
//   - Solver = Auto: dense for n <= DenseMaxN = 64, sparse above. Measured
//     on this project's 2-core machine (GELU layers, s = 2): dense 0.3 ms vs
//     sparse 0.7 ms at n = 32, 1.8 vs 1.5 ms at 64, 7.8 vs 3.1 ms at 150,
//     151 vs 44 ms at 300; dense is O(n^3), far too slow past a few thousand
//     nodes.
//   - Tol = 1e-10: the sparse solver stops when every returned pair has
//     backward error |L_X u - zeta B u| <= Tol (|L_X| + zeta |B|) |u|
//     (Gershgorin bounds for the norms); its inner CG solves run to
//     Tol/100. This keeps the sparse path within 1e-9 of the dense oracle
//     in the tests, well inside the 1e-6 at which §3 requires the two
//     solvers to agree. MaxIter = 600 Lanczos steps (our choice; 50-80
//     suffice for s = 2 at n = 11008).
//   - Seed = 0 seeds the Lanczos start vector; Threads = 0 means GOMAXPROCS.
//     Results are bit-identical for the same inputs, options and seed,
//     whatever Threads is.
//
// # kNN: exact, fast, deterministic
//
// Distances are ranked by SquaredDistance (float64), ties by the smaller
// index. Identical columns (dead or duplicated neurons) are grouped first,
// so a group costs one search. The search computes a float32 Gram matrix,
// only its upper triangle and never all of it at once, in 96 x 512 tiles,
// keeping per row the best k+8 candidates (k + k/2 for k > 16) in a bounded
// heap. The tile kernel is C (AVX-512, AVX2+FMA or plain, chosen at run time;
// pure Go without cgo). Each candidate key is a proven lower bound of the
// true distance (error analysis in buildSearch); candidates are re-ranked in
// float64 and a row is accepted only if no non-candidate can beat its
// (k+1)-th entry. Rows that fail get one more Gram pass that collects every
// column whose bound is below their current (k+1)-th distance (or, past
// 4096 such columns, an exhaustive float64 scan), so the result always
// equals float64 brute force. The Gram runs on columns centred at the
// per-sample median: the bound scales with the squared norms, and the median
// keeps both near-zero ReLU columns and columns with a shared offset small.
//
// # Sparse eigensolver
//
// Lanczos on B^-1 L_X in the B inner product, restricted to 1^⊥, with full
// reorthogonalisation (classical Gram-Schmidt, twice) and Rayleigh-Ritz on
// V^T L_X V. Each step solves B w = L_X v by conjugate gradients with the
// Jacobi preconditioner, applying the rank-one term without forming it.
// kNN Laplacians have about 2kn non-zeros, so a step costs tens of sparse
// products.
//
// # Degenerate cases
//
//   - n = 1: Scores = [1], no eigenpairs. n = 0 or M = 0: error.
//   - NaN or Inf in Z or A: error naming the matrix, column and row.
//   - W_Y = c W_X (for example a layer that is linear over the data, A = cZ):
//     every non-constant zeta equals 1/c, the eigenvectors are an arbitrary
//     basis, and Result.NoDistortion is set with every score 1. This is
//     exactly the case "all generalized eigenvalues equal": two Laplacians
//     that agree up to a factor on 1^⊥ agree everywhere.
//   - max eta = 0 or max score = 0: every score is 1.
//   - zeta_s equal to zeta_{s+1} (within 1e-6 relative, the solvers'
//     agreement) leaves the eigenvectors at the cut arbitrary inside the
//     eigenspace, and the scores with them. Score then takes the whole
//     cluster of equal eigenvalues (Result.Clustered; more than S pairs) and
//     a Euclidean-orthonormal basis inside it, which makes the scores
//     basis-independent (they depend on the cluster's projector only). Up
//     to n = 1024 the cluster is solved densely, since single-vector Lanczos
//     cannot resolve multiplicities; above, the sparse solver extends s up to
//     max(4S, 16) and sets Result.ClusterCut if the cluster is larger still.
//     Small layers hit this: the trained depthwise CNN's 16-channel stem has
//     zeta = 1.24 followed by eleven eigenvalues equal to 1.
//
// # What the scores guarantee
//
// Dead or duplicated neurons score exactly 0 when their group hangs off the
// rest of both graphs through one neuron (then every eigenvector with
// zeta != 1 is constant on the group). They are not low in general: a
// duplicated pair that is a hub of G_X but not of G_Y carries the
// eigenvalue (deg_X+1)/(deg_Y+1) and can score highest. The tests construct
// both cases.
//
// # Style
//
// As in gonum, inputs are never modified and building blocks (KNN,
// UnionGraph, KNNGraph, Graph.Laplacian, GeneralizedEigsDense,
// GeneralizedEigsSparse, NeuronScores) are exported for reuse and tests.
package spectral
