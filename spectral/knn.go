package spectral

import (
	"errors"
	"fmt"
	"math"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"

	"gonum.org/v1/gonum/blas/blas32"
	"gonum.org/v1/gonum/mat"
)

// Neighbors holds the exact k nearest neighbours of every node (column).
// Row p is Index[p*K:(p+1)*K], sorted by (squared distance, index).
type Neighbors struct {
	N, K  int
	Index []int
	Dist2 []float64
}

// Of returns the neighbours of node p.
func (nb *Neighbors) Of(p int) []int { return nb.Index[p*nb.K : (p+1)*nb.K] }

// KNN returns the exact k nearest neighbours of every column of x under the
// squared Euclidean distance SquaredDistance, with ties broken by the smaller
// column index. k is capped at n-1. threads <= 0 means GOMAXPROCS; the
// result does not depend on it.
func KNN(x mat.Matrix, k, threads int) (*Neighbors, error) {
	if k < 1 {
		return nil, fmt.Errorf("spectral: k = %d, want >= 1", k)
	}
	ix, err := newKNNIndex(x, threads)
	if err != nil {
		return nil, err
	}
	return ix.query(k), nil
}

// SquaredDistance is the distance that KNN ranks by: four partial sums over
// i mod 4, added as (s0+s1)+(s2+s3). It is symmetric bit for bit, and zero
// for identical vectors.
func SquaredDistance(a, b []float64) float64 {
	b = b[:len(a)]
	var s0, s1, s2, s3 float64
	i := 0
	for ; i+4 <= len(a); i += 4 {
		d0 := a[i] - b[i]
		d1 := a[i+1] - b[i+1]
		d2 := a[i+2] - b[i+2]
		d3 := a[i+3] - b[i+3]
		// float64() forbids fusing into FMA, which would change the sums.
		s0 += float64(d0 * d0)
		s1 += float64(d1 * d1)
		s2 += float64(d2 * d2)
		s3 += float64(d3 * d3)
	}
	for ; i < len(a); i++ {
		d := a[i] - b[i]
		s0 += float64(d * d)
	}
	return (s0 + s1) + (s2 + s3)
}

// knnIndex holds everything about one point set that does not depend on k:
// the float64 columns, groups of identical columns, and the float32 search
// structure over one representative per group.
//
// Exactness: the float32 Gram pass only proposes candidates. Each candidate
// key L is a certified lower bound of the true squared distance (see
// buildSearch), the candidates are re-ranked with SquaredDistance, and a row
// is accepted only if every non-candidate's lower bound exceeds the distance
// of its (k+1)-th entry. Rows that fail get one more pass that collects every
// representative whose key is below their current (k+1)-th distance (see
// refine), so the answer is always the float64 brute-force answer.
type knnIndex struct {
	n, m    int
	threads int
	xt      []float64 // n x m: node p's signal is xt[p*m:(p+1)*m]

	repOf   []int   // node -> representative id
	members [][]int // representative id -> nodes with that exact column, ascending

	// Float32 search over representatives (built lazily).
	kernel     string
	exactBelow int  // use exhaustive float64 when #representatives <= this
	noC        bool // tests: force the Go distance loop
	refineCap  int  // tests: override refine's collection cap
	built      bool
	packed     []float32 // panel-packed scaled, centred columns of the representatives
	upad       int       // representatives padded to a multiple of panel
	akey       []float64 // per representative: (1-gamma)*norm2 - tau/2
	scale2     float64   // squared scale: scaled distance = scale2 * float64 distance
	relSlack   float64   // relative rounding slack of SquaredDistance

	// Counters for tests and benchmarks.
	passes, refined, exhaustive int
}

func resolveThreads(t int) int {
	if t <= 0 {
		t = runtime.GOMAXPROCS(0)
	}
	return t
}

func newKNNIndex(x mat.Matrix, threads int) (*knnIndex, error) {
	return newKNNIndexReuse(x, threads, nil)
}

// newKNNIndexReuse takes over the large buffers of old (which must not be
// used afterwards): fresh pages cost a fault each, which is a measurable
// part of the run time at n = 11008 on a VM.
func newKNNIndexReuse(x mat.Matrix, threads int, old *knnIndex) (*knnIndex, error) {
	m, n := x.Dims()
	if n == 0 {
		return nil, errors.New("spectral: no columns")
	}
	if m == 0 {
		return nil, errors.New("spectral: no rows (samples)")
	}
	var xbuf []float64
	var pbuf []float32
	if old != nil {
		xbuf, pbuf = old.xt, old.packed
		old.xt, old.packed = nil, nil
	}
	xt, err := transposeInto(xbuf, x, resolveThreads(threads))
	if err != nil {
		return nil, err
	}
	ix := &knnIndex{n: n, m: m, threads: resolveThreads(threads), xt: xt,
		kernel: bestKernel, exactBelow: 256, packed: pbuf}
	ix.group()
	return ix, nil
}

// transposeChecked copies x (m x n) into an n x m row-major slice and rejects
// NaN and Inf, naming the first bad column.
// RawMatrix32er is a row-major float32 matrix (capture's storage) that the
// scorer reads directly instead of through At.
type RawMatrix32er interface {
	RawMatrix32() blas32.General
}

func transposeChecked(x mat.Matrix, threads int) ([]float64, error) {
	return transposeInto(nil, x, threads)
}

func transposeInto(buf []float64, x mat.Matrix, threads int) ([]float64, error) {
	m, n := x.Dims()
	xt := reuseF64(buf, n*m)
	// 8 columns (one cache line of a source row) at a time: 8 sequential
	// write streams, and the finiteness check in the same pass.
	const bs = 8
	nb := (n + bs - 1) / bs
	bad := make([]int, n) // row+1 of the first non-finite value
	get := func(i, j int) float64 { return x.At(i, j) }
	var data []float64
	var data32 []float32
	stride := 0
	switch rm := x.(type) {
	case mat.RawMatrixer:
		raw := rm.RawMatrix()
		data, stride = raw.Data, raw.Stride
	case RawMatrix32er:
		raw := rm.RawMatrix32()
		data32, stride = raw.Data, raw.Stride
	}
	parallelFor(nb, threads, func(b int) {
		j0, j1 := b*bs, min(b*bs+bs, n)
		switch {
		case data != nil:
			// Row-major walk: each source cache line is read once.
			for i := 0; i < m; i++ {
				for j, v := range data[i*stride+j0 : i*stride+j1] {
					xt[(j0+j)*m+i] = v
				}
			}
		case data32 != nil:
			for i := 0; i < m; i++ {
				for j, v := range data32[i*stride+j0 : i*stride+j1] {
					xt[(j0+j)*m+i] = float64(v)
				}
			}
		default:
			for i := 0; i < m; i++ {
				for j := j0; j < j1; j++ {
					xt[j*m+i] = get(i, j)
				}
			}
		}
		for j := j0; j < j1; j++ {
			dst := xt[j*m : (j+1)*m]
			for i, v := range dst {
				if v-v != 0 { // NaN or Inf
					bad[j] = i + 1
					break
				}
			}
		}
	})
	for j, i := range bad {
		if i > 0 {
			return nil, fmt.Errorf("spectral: column %d has %v at row %d", j, xt[j*m+i-1], i-1)
		}
	}
	return xt, nil
}

func (ix *knnIndex) row(p int) []float64 { return ix.xt[p*ix.m : (p+1)*ix.m] }

// group finds identical columns (equal values; -0 equals +0). Their mutual
// distance is exactly 0, so only one representative enters the search.
func (ix *knnIndex) group() {
	n := ix.n
	ix.repOf = make([]int, n)
	byHash := make(map[uint64][]int, n)
	for p := 0; p < n; p++ {
		h := uint64(14695981039346656037)
		for _, v := range ix.row(p) {
			if v == 0 {
				v = 0 // -0 -> +0
			}
			h ^= math.Float64bits(v)
			h *= 1099511628211
			h ^= h >> 29
		}
		rep := -1
		for _, r := range byHash[h] {
			if equalRows(ix.row(ix.members[r][0]), ix.row(p)) {
				rep = r
				break
			}
		}
		if rep < 0 {
			rep = len(ix.members)
			ix.members = append(ix.members, nil)
			byHash[h] = append(byHash[h], rep)
		}
		ix.members[rep] = append(ix.members[rep], p)
		ix.repOf[p] = rep
	}
}

func equalRows(a, b []float64) bool {
	for i, v := range a {
		if v != b[i] {
			return false
		}
	}
	return true
}

func (ix *knnIndex) repRow(r int) []float64 { return ix.row(ix.members[r][0]) }

// buildSearch packs the representatives as float32 after centring (distances
// are translation invariant) and scaling by a power of two (exact) so that
// the largest magnitude is at most 1.
//
// Error bound. With y the scaled columns, y' = float32(y), nrm_p = |y'_p|^2
// (float64) and g the float32 dot product (recursive summation, m terms),
// D' = nrm_p + nrm_q - 2g satisfies |D' - |y_p-y_q|^2| <= (m+4)u(nrm_p+nrm_q)
// + O(m 2^-148) with u = 2^-24 (m u for the sum, 4u for rounding the inputs).
// We use gamma = 2(m+8)u and tau = m*1e-38, so L = D' - gamma(nrm_p+nrm_q) -
// tau = akey_p + akey_q - 2g is a lower bound of the exact scaled distance.
func (ix *knnIndex) buildSearch() {
	if ix.built {
		return
	}
	ix.built = true
	u, m := len(ix.members), ix.m
	// Centre: per sample, the median over (a deterministic stride sample of
	// at most 257) representatives. Distances do not change, but the error
	// bound scales with |x_p - c|^2: the mean would put c far from a mass of
	// near-zero ReLU columns and make their bounds useless (measured: 1279
	// of 2520 rows needed a second pass with the mean, 58 with the median),
	// while c = 0 fails when all columns share a large offset.
	center := make([]float64, m)
	const chunk = 64
	nchunks := (m + chunk - 1) / chunk
	maxDev := make([]float64, nchunks)
	stride := max(1, u/257)
	ns := (u + stride - 1) / stride
	parallelFor(nchunks, ix.threads, func(c int) {
		lo, hi := c*chunk, min(c*chunk+chunk, m)
		// Gather the chunk sample-major, reading each row segment once.
		vals := make([]float64, (hi-lo)*ns)
		for t, r := 0, 0; r < u; t, r = t+1, r+stride {
			for i, v := range ix.repRow(r)[lo:hi] {
				vals[i*ns+t] = v
			}
		}
		for i := lo; i < hi; i++ {
			center[i] = selectKth(vals[(i-lo)*ns:(i-lo+1)*ns], ns/2)
		}
		for r := 0; r < u; r++ {
			row := ix.repRow(r)
			for i := lo; i < hi; i++ {
				if d := math.Abs(row[i] - center[i]); d > maxDev[c] {
					maxDev[c] = d
				}
			}
		}
	})
	maxAbs := 0.0
	for _, d := range maxDev {
		maxAbs = math.Max(maxAbs, d)
	}
	scale := 1.0
	if maxAbs > 0 {
		_, e := math.Frexp(maxAbs) // maxAbs < 2^e
		scale = math.Ldexp(1, -e)
	}
	if !(maxAbs <= math.MaxFloat64) {
		ix.exactBelow = math.MaxInt // differences overflow: search exhaustively
	}
	ix.scale2 = scale * scale
	ix.relSlack = 4 * float64(m) * 0x1p-53
	gamma := 2 * float64(m+8) * 0x1p-24
	tau := float64(m) * 1e-38

	ix.upad = (u + panel - 1) / panel * panel
	ix.packed = reuseF32(ix.packed, ix.upad*m)
	clear(ix.packed[u/panel*m*panel:]) // zero the padding columns of the last panel
	ix.akey = make([]float64, u)
	parallelFor(ix.upad/panel, ix.threads, func(pn int) {
		for r := pn * panel; r < min(pn*panel+panel, u); r++ {
			nrm := 0.0
			dst := ix.packed[pn*m*panel+r%panel:]
			for k, v := range ix.repRow(r) {
				f := float32((v - center[k]) * scale)
				dst[k*panel] = f
				nrm += float64(f) * float64(f)
			}
			ix.akey[r] = (1-gamma)*nrm - tau/2
		}
	})
}

// entry is a node at a squared distance.
type entry struct {
	d   float64
	idx int
}

func entryLess(a, b entry) bool { return a.d < b.d || (a.d == b.d && a.idx < b.idx) }

// query returns the exact k nearest neighbours (k capped at n-1).
func (ix *knnIndex) query(k int) *Neighbors {
	n := ix.n
	k = min(k, n-1)
	nb := &Neighbors{N: n, K: k, Index: make([]int, n*k), Dist2: make([]float64, n*k)}
	if k == 0 {
		return nb
	}
	u := len(ix.members)
	lists := make([][]entry, u) // per representative: first k+1 nodes by (d, index)
	if u-1 > ix.exactBelow {
		ix.buildSearch() // may fall back to exhaustive
	}
	if u-1 <= ix.exactBelow {
		ix.exhaustive += u
		ix.parallel(u, func(i int) { lists[i] = ix.exactList(i, k) })
	} else {
		kc := k + max(8, k/2)
		cands, thr := ix.searchAll(kc)
		todo, bound := ix.certify(lists, allReps(u), cands, thr, k)
		if len(todo) > 0 {
			ix.refine(lists, todo, bound, k)
		}
	}
	for p := 0; p < n; p++ {
		out := nb.Index[p*k : p*k]
		dist := nb.Dist2[p*k : p*k]
		for _, e := range lists[ix.repOf[p]] {
			if len(out) == k {
				break
			}
			if e.idx == p {
				continue
			}
			out = append(out, e.idx)
			dist = append(dist, e.d)
		}
	}
	return nb
}

func allReps(u int) []int {
	r := make([]int, u)
	for i := range r {
		r[i] = i
	}
	return r
}

// parallel runs f(0..n-1) on ix.threads goroutines.
func (ix *knnIndex) parallel(n int, f func(i int)) {
	parallelFor(n, ix.threads, f)
}

func parallelFor(n, threads int, f func(i int)) {
	if threads <= 1 || n <= 1 {
		for i := 0; i < n; i++ {
			f(i)
		}
		return
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for t := 0; t < min(threads, n); t++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				f(i)
			}
		}()
	}
	wg.Wait()
}

// expand turns representatives at known distances into the first k+1 nodes
// by (distance, index). Members of one group share the distance, so at most
// k+1 of each can matter.
func (ix *knnIndex) expand(r int, reps []entry, k int) []entry {
	all := make([]entry, 0, (len(reps)+1)*2)
	own := ix.members[r]
	for _, p := range own[:min(len(own), k+1)] {
		all = append(all, entry{0, p})
	}
	for _, e := range reps {
		mem := ix.members[e.idx]
		for _, p := range mem[:min(len(mem), k+1)] {
			all = append(all, entry{e.d, p})
		}
	}
	sort.Slice(all, func(i, j int) bool { return entryLess(all[i], all[j]) })
	return all[:min(len(all), k+1)]
}

// exactList compares representative r with every other one in float64.
func (ix *knnIndex) exactList(r, k int) []entry {
	u := len(ix.members)
	others := make([]int32, 0, u-1)
	for q := 0; q < u; q++ {
		if q != r {
			others = append(others, int32(q))
		}
	}
	return ix.expand(r, ix.repDistances(r, others), k)
}

// repDistances returns SquaredDistance from representative r to each of
// reps, by the C kernel when available (same sums, about 4x faster).
func (ix *knnIndex) repDistances(r int, reps []int32) []entry {
	out := make([]entry, len(reps))
	d := make([]float64, len(reps))
	nodes := make([]int32, len(reps))
	for j, q := range reps {
		nodes[j] = int32(ix.members[q][0])
	}
	a := ix.repRow(r)
	if !ix.noC && sqDistBatch(a, ix.xt, ix.m, nodes, d) {
		for j, q := range reps {
			out[j] = entry{d[j], int(q)}
		}
		return out
	}
	for j, q := range reps {
		out[j] = entry{SquaredDistance(a, ix.repRow(int(q))), int(q)}
	}
	return out
}

// certify re-ranks the candidates of rows[i] exactly and stores the lists of
// the rows whose candidate set provably contains the answer. thr[i] is the
// smallest lower bound any non-candidate can have (+Inf when every
// representative was a candidate). It returns the other rows with, for
// each, a bound on the keys of every representative that can still enter
// its first k+1 entries: the scaled distance of its current (k+1)-th entry,
// which can only be too large, plus rounding slack.
func (ix *knnIndex) certify(lists [][]entry, rows []int, cands [][]int32, thr []float64, k int) ([]int, []float64) {
	bounds := make([]float64, len(rows))
	ix.parallel(len(rows), func(i int) {
		r := rows[i]
		list := ix.expand(r, ix.repDistances(r, cands[i]), k)
		b := list[len(list)-1].d * ix.scale2 * (1 + ix.relSlack)
		if thr[i] > b {
			lists[r] = list
			return
		}
		bounds[i] = math.Max(b, math.SmallestNonzeroFloat64) // > 0 marks failure
	})
	var todo []int
	var bound []float64
	for i, b := range bounds {
		if b > 0 {
			todo = append(todo, rows[i])
			bound = append(bound, b)
		}
	}
	return todo, bound
}

// heapSet keeps, for each of its rows, the kc smallest (key, index) pairs in
// a bounded max-heap. The kept set is unique under this total order, so it
// does not depend on the order of pushes (threads, tiles).
type heapSet struct {
	kc  int
	key []float64
	idx []int32
	cnt []int32
	thr []float64 // key of the root when full, +Inf before
}

func newHeapSet(rows, kc int) *heapSet {
	h := &heapSet{kc: kc, key: make([]float64, rows*kc), idx: make([]int32, rows*kc),
		cnt: make([]int32, rows), thr: make([]float64, rows)}
	for i := range h.thr {
		h.thr[i] = math.Inf(1)
	}
	return h
}

func heapLess(ka float64, ia int32, kb float64, ib int32) bool {
	return ka < kb || (ka == kb && ia < ib)
}

// push offers (key, q) to row r; callers pre-filter with key <= thr[r].
func (h *heapSet) push(r int, key float64, q int32) {
	kc := h.kc
	keys := h.key[r*kc : (r+1)*kc]
	ids := h.idx[r*kc : (r+1)*kc]
	c := int(h.cnt[r])
	if c < kc {
		// Sift up.
		i := c
		for i > 0 {
			p := (i - 1) / 2
			if !heapLess(keys[p], ids[p], key, q) {
				break
			}
			keys[i], ids[i] = keys[p], ids[p]
			i = p
		}
		keys[i], ids[i] = key, q
		c++
		h.cnt[r] = int32(c)
		if c == kc {
			h.thr[r] = keys[0]
		}
		return
	}
	if !heapLess(key, q, keys[0], ids[0]) {
		return
	}
	// Replace the root and sift down.
	i := 0
	for {
		l := 2*i + 1
		if l >= kc {
			break
		}
		if rr := l + 1; rr < kc && heapLess(keys[l], ids[l], keys[rr], ids[rr]) {
			l = rr
		}
		if !heapLess(key, q, keys[l], ids[l]) {
			break
		}
		keys[i], ids[i] = keys[l], ids[l]
		i = l
	}
	keys[i], ids[i] = key, q
	h.thr[r] = keys[0]
}

// rows returns the kept pairs of row r.
func (h *heapSet) rowEntries(r int) ([]float64, []int32) {
	c := int(h.cnt[r])
	return h.key[r*h.kc : r*h.kc+c], h.idx[r*h.kc : r*h.kc+c]
}

const (
	rowBlock = 96  // rows per work item (a multiple of panel)
	colBlock = 512 // columns per Gram tile (a multiple of panel)
)

// searchAll finds kc candidates for every representative, computing each
// pair once (upper triangle) into per-thread heaps that are merged after.
func (ix *knnIndex) searchAll(kc int) ([][]int32, []float64) {
	ix.passes++
	u := len(ix.members)
	nblocks := (ix.upad + rowBlock - 1) / rowBlock
	threads := min(ix.threads, nblocks)
	heaps := make([]*heapSet, threads)
	var next atomic.Int64
	var wg sync.WaitGroup
	for t := 0; t < threads; t++ {
		heaps[t] = newHeapSet(u, kc)
		wg.Add(1)
		go func(h *heapSet) {
			defer wg.Done()
			tile := make([]float32, rowBlock*colBlock)
			for {
				b := int(next.Add(1) - 1)
				if b >= nblocks {
					return
				}
				i0 := b * rowBlock
				mr := min(rowBlock, ix.upad-i0)
				for j0 := i0; j0 < ix.upad; j0 += colBlock {
					nc := min(colBlock, ix.upad-j0)
					gramTile(ix.kernel, ix.packed, ix.packed, ix.m, i0, mr, j0, nc, tile, colBlock)
					ix.scanTriangle(h, tile, i0, mr, j0, nc, u)
				}
			}
		}(heaps[t])
	}
	wg.Wait()
	// Merge.
	cands := make([][]int32, u)
	thr := make([]float64, u)
	ix.parallel(u, func(r int) {
		var keys []float64
		var ids []int32
		for _, h := range heaps {
			k, i := h.rowEntries(r)
			keys = append(keys, k...)
			ids = append(ids, i...)
		}
		ord := make([]int, len(keys))
		for i := range ord {
			ord[i] = i
		}
		sort.Slice(ord, func(a, b int) bool { return heapLess(keys[ord[a]], ids[ord[a]], keys[ord[b]], ids[ord[b]]) })
		if len(ord) > kc {
			ord = ord[:kc]
		}
		c := make([]int32, len(ord))
		for i, o := range ord {
			c[i] = ids[o]
		}
		cands[r] = c
		switch {
		case len(ord) < min(kc, u-1):
			thr[r] = math.Inf(-1) // keys were not comparable (overflow): never certify
		case kc < u-1:
			thr[r] = keys[ord[kc-1]]
		default:
			thr[r] = math.Inf(1) // every representative is a candidate
		}
	})
	return cands, thr
}

func (ix *knnIndex) scanTriangle(h *heapSet, tile []float32, i0, mr, j0, nc, u int) {
	akey := ix.akey
	thr := h.thr
	qend := min(j0+nc, u)
	for r := 0; r < mr; r++ {
		p := i0 + r
		if p >= u {
			return
		}
		ap := akey[p]
		qs := j0
		if qs <= p {
			qs = p + 1
		}
		if qs >= qend {
			continue
		}
		crow := tile[r*colBlock+qs-j0 : r*colBlock+qend-j0]
		aq := akey[qs:qend]
		for j, g := range crow {
			q := qs + j
			l := ap + aq[j] - 2*float64(g)
			if l <= thr[p] {
				h.push(p, l, int32(q))
			}
			if l <= thr[q] {
				h.push(q, l, int32(p))
			}
		}
	}
}

// refine settles the rows that certify could not: one more Gram pass over
// their full rows collects every representative whose key is within the
// row's bound (all that can enter the first k+1 entries, since keys are
// lower bounds), and those are re-ranked exactly. A row that collects more
// than refineCap is compared exhaustively instead.
func (ix *knnIndex) refine(lists [][]entry, rows []int, bound []float64, k int) {
	ix.passes++
	ix.refined += len(rows)
	u, m := len(ix.members), ix.m
	refineCap := max(4096, 16*k)
	if ix.refineCap > 0 {
		refineCap = ix.refineCap
	}
	fpad := (len(rows) + panel - 1) / panel * panel
	a := make([]float32, fpad*m)
	for i, r := range rows {
		for k := 0; k < m; k++ {
			a[packIndex(m, k, i)] = ix.packed[packIndex(m, k, r)]
		}
	}
	coll := make([][]int32, len(rows))
	nblocks := (fpad + rowBlock - 1) / rowBlock
	parallelFor(nblocks, ix.threads, func(b int) {
		// Each row belongs to one block, hence to one goroutine.
		tile := make([]float32, rowBlock*colBlock)
		i0 := b * rowBlock
		mr := min(rowBlock, fpad-i0)
		for j0 := 0; j0 < ix.upad; j0 += colBlock {
			nc := min(colBlock, ix.upad-j0)
			gramTile(ix.kernel, a, ix.packed, m, i0, mr, j0, nc, tile, colBlock)
			for r := 0; r < mr && i0+r < len(rows); r++ {
				i := i0 + r
				self, ap, bnd := rows[i], ix.akey[rows[i]], bound[i]
				if len(coll[i]) > refineCap {
					continue
				}
				for q := j0; q < min(j0+nc, u); q++ {
					if q != self && ap+ix.akey[q]-2*float64(tile[r*colBlock+q-j0]) <= bnd {
						coll[i] = append(coll[i], int32(q))
					}
				}
			}
		}
	})
	var over atomic.Int64
	defer func() { ix.exhaustive += int(over.Load()) }()
	ix.parallel(len(rows), func(i int) {
		r := rows[i]
		if len(coll[i]) > refineCap {
			over.Add(1)
			lists[r] = ix.exactList(r, k)
			return
		}
		lists[r] = ix.expand(r, ix.repDistances(r, coll[i]), k)
	})
}

func reuseF64(b []float64, n int) []float64 {
	if cap(b) >= n {
		return b[:n]
	}
	return make([]float64, n)
}

func reuseF32(b []float32, n int) []float32 {
	if cap(b) >= n {
		return b[:n]
	}
	return make([]float32, n)
}

// selectKth returns the k-th smallest of v (0-based), reordering v (Hoare's
// selection; v holds no NaN).
func selectKth(v []float64, k int) float64 {
	lo, hi := 0, len(v)-1
	for lo < hi {
		pivot := v[lo+(hi-lo)/2]
		i, j := lo, hi
		for i <= j {
			for v[i] < pivot {
				i++
			}
			for v[j] > pivot {
				j--
			}
			if i <= j {
				v[i], v[j] = v[j], v[i]
				i++
				j--
			}
		}
		switch {
		case k <= j:
			hi = j
		case k >= i:
			lo = i
		default:
			return v[k]
		}
	}
	return v[k]
}
