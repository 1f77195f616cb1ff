package recover

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"

	"github.com/onnx-cria/onnx-cria/dataset"
	"github.com/onnx-cria/onnx-cria/onnxio"
	"github.com/onnx-cria/onnx-cria/onnxio/onnxpb"
	"github.com/onnx-cria/onnx-cria/ort"
	"github.com/onnx-cria/onnx-cria/rewrite"
	"gonum.org/v1/gonum/mat"
)

// LSQOptions control least-squares recovery.
type LSQOptions struct {
	// Ridge is the relative ridge: the penalty is lambda ||W||^2 with
	// lambda = Ridge * trace(X^T X) / d (the mean squared input feature),
	// and the bias is not penalised. Default 1e-3.
	Ridge float64
	// Samples is the number of calibration rows (a seeded subset; 1024).
	Samples int
	// MaxRows bounds the regression rows of a layer (32768): when the
	// calibration rows times the positions per row (tokens, or output
	// pixels of a convolution) exceed it, positions are kept with
	// probability MaxRows/total by a generator seeded with (Seed, layer).
	MaxRows int
	Seed    int64
	Batch   int // rows per ORT run (64)
	Runtime ort.Config
	Log     func(format string, args ...any)
}

func (o *LSQOptions) defaults() {
	if o.Ridge == 0 {
		o.Ridge = 1e-3
	}
	if o.Samples <= 0 {
		o.Samples = 1024
	}
	if o.MaxRows <= 0 {
		o.MaxRows = 32768
	}
	if o.Batch <= 0 {
		o.Batch = 64
	}
	if o.Log == nil {
		o.Log = func(string, ...any) {}
	}
}

// LayerFit reports the refit of one layer. Errors are relative:
// ||X W + b - Y||^2 / ||Y||^2 over the regression rows, with the layer's
// weights before and after the refit.
type LayerFit struct {
	Node    string  `json:"node"`
	Op      string  `json:"op"`
	Weight  string  `json:"weight"`
	Inputs  int     `json:"inputs"`  // features per output unit (per conv group), bias excluded
	Outputs int     `json:"outputs"` // output units refit
	Bias    bool    `json:"bias"`
	Rows    int     `json:"rows"`
	Before  float64 `json:"rel_error_before"`
	After   float64 `json:"rel_error_after"`
	Applied bool    `json:"applied"`
	Note    string  `json:"note,omitempty"`
}

// lsqLayer is a consumer layer to refit.
type lsqLayer struct {
	node   *onnxpb.NodeProto // in the model being refit
	label  string
	op     string
	input  string // X
	target string // tensor of the original model to match
	weight string // weight constant (in the pruned model)
	bias   string // bias constant, "" if none
	// A Conv without bias that feeds a BatchNormalization alone gets its
	// bias folded into the normalisation's: B += scale/sqrt(var+eps) * b.
	bnBias   string
	bnFactor []float64
	keep     []int // output units of the original layer that remain
	alpha    float64
	beta     float64
	transB   bool
	groups   int
	outW     int // output units
	inW      int // input features per group (without bias)
	kernels  []int64
}

// LSQ refits the layers whose input width pruning changed: every Gemm,
// MatMul with a constant 2-D weight, and 2-D (or 1-D) Conv of pruned that
// reads fewer features than its counterpart in orig. Each is refit by
// ridge regression so that, on the calibration set, its output from the
// pruned model's inputs matches the original model's output of the same
// layer, restricted to the output units that remain when the layer's own
// outputs were pruned as well. kept maps group names of
// rewrite.Analyze(orig) to the original units that remain (the Kept lists
// of shrink's report; groups not listed lost nothing). Layers are refit in
// graph order and each one's inputs are recaptured through the layers
// already refit; a refit is kept only if it lowers the layer's error. A
// MatMul whose only consumer adds a constant bias is refit with that bias,
// and a Conv without a bias that only feeds a BatchNormalization is refit
// with a bias folded into the normalisation's.
// Convolutions are refit on im2col patches of subsampled output positions.
// pruned is not modified.
func LSQ(orig, pruned *onnxio.Model, kept map[string][]int, calib *dataset.Set, o LSQOptions) (*onnxio.Model, []LayerFit, error) {
	o.defaults()
	if calib == nil {
		return nil, nil, errors.New("least-squares recovery needs calibration data")
	}
	cur := pruned.Clone()
	layers, fits, err := findLayers(orig, cur, kept)
	if err != nil {
		return nil, nil, err
	}
	if len(layers) == 0 {
		return cur, fits, nil
	}
	n, err := calib.N()
	if err != nil {
		return nil, nil, err
	}
	if n > o.Samples {
		if calib, err = calib.Subset(o.Samples, o.Seed); err != nil {
			return nil, nil, err
		}
	}
	var targets []string
	for _, l := range layers {
		targets = append(targets, l.target)
	}
	os, err := ort.NewSessionForModel(orig, targets, o.Runtime)
	if err != nil {
		return nil, nil, err
	}
	defer os.Destroy()
	bound, err := os.Bind(calib, "")
	if err != nil {
		return nil, nil, err
	}
	base := len(orig.Graph().GetOutput())
	for li, l := range layers {
		fit, err := refit(cur, l, li, os, base+li, bound, &o)
		if err != nil {
			return nil, nil, fmt.Errorf("least squares for %s (%s): %w", l.label, l.op, err)
		}
		o.Log("lsq %-40s %s %d in x %d out, %d rows: relative error %.4g -> %.4g%s", l.label, l.op, fit.Inputs, fit.Outputs, fit.Rows, fit.Before, fit.After, map[bool]string{true: "", false: " (kept the old weights)"}[fit.Applied])
		fits = append(fits, fit)
	}
	cur.Path, cur.Size, cur.Hash = "", 0, ""
	return cur, fits, nil
}

// findLayers lists the layers of cur to refit, in graph order, plus notes
// for layers that changed but cannot be refit.
func findLayers(orig, cur *onnxio.Model, kept map[string][]int) ([]*lsqLayer, []LayerFit, error) {
	an, err := rewrite.Analyze(orig, rewrite.Options{})
	if err != nil {
		return nil, nil, err
	}
	oix := onnxio.NewIndex(orig.Graph())
	cix := onnxio.NewIndex(cur.Graph())
	var layers []*lsqLayer
	var notes []LayerFit
	skip := func(n *onnxpb.NodeProto, i int, w, why string) {
		notes = append(notes, LayerFit{Node: onnxio.NodeLabel(n, i), Op: n.GetOpType(), Weight: w, Note: why})
	}
	for i, n := range cur.Graph().GetNode() {
		op := n.GetOpType()
		if n.GetDomain() != "" || (op != "Gemm" && op != "MatMul" && op != "Conv") || len(n.Input) < 2 || len(n.Output) == 0 {
			continue
		}
		oi, ok := oix.Producer[n.Output[0]]
		if !ok {
			continue
		}
		on := orig.Graph().Node[oi]
		if on.GetOpType() != op {
			continue
		}
		w, ow := cix.Const(n.Input[1]), oix.Const(on.Input[1])
		if w == nil || ow == nil {
			continue
		}
		wd, owd := w.GetDims(), ow.GetDims()
		l := &lsqLayer{node: n, label: onnxio.NodeLabel(n, i), op: op, input: n.Input[0], target: n.Output[0], weight: n.Input[1], alpha: 1, beta: 1, groups: 1}
		var inNow, inBefore, outAxis int64
		switch op {
		case "Gemm":
			if onnxio.AttrInt(n, "transA", 0) != 0 || len(wd) != 2 {
				continue
			}
			l.transB = onnxio.AttrInt(n, "transB", 0) != 0
			l.alpha = float64(onnxio.AttrFloat(n, "alpha", 1))
			l.beta = float64(onnxio.AttrFloat(n, "beta", 1))
			kAx := 0
			if l.transB {
				kAx, outAxis = 1, 0
			} else {
				outAxis = 1
			}
			inNow, inBefore = wd[kAx], owd[kAx]
			l.inW, l.outW = int(wd[kAx]), int(wd[outAxis])
		case "MatMul":
			if len(wd) != 2 {
				continue
			}
			inNow, inBefore, outAxis = wd[0], owd[0], 1
			l.inW, l.outW = int(wd[0]), int(wd[1])
		case "Conv":
			if len(wd) != 4 && len(wd) != 3 {
				continue
			}
			l.groups = int(onnxio.AttrInt(n, "group", 1))
			inNow = wd[1] * int64(l.groups)
			inBefore = owd[1] * onnxio.AttrInt(on, "group", 1)
			outAxis = 0
			l.kernels = wd[2:]
			l.inW, l.outW = int(onnxio.NumElements(wd[1:])), int(wd[0])
		}
		if inNow == inBefore {
			continue // its inputs kept their width
		}
		if l.alpha == 0 || l.beta == 0 {
			skip(n, i, l.weight, "alpha or beta is zero")
			continue
		}
		if len(cix.Consumers[l.weight]) != 1 {
			skip(n, i, l.weight, "the weight is shared with other nodes")
			continue
		}
		// A bias the refit can own: Gemm's C or Conv's B with one value
		// per output, or a constant added to a MatMul's only use.
		if (op == "Gemm" || op == "Conv") && len(n.Input) > 2 && n.Input[2] != "" {
			b := cix.Const(n.Input[2])
			if b == nil || onnxio.NumElements(b.GetDims()) != int64(l.outW) || len(cix.Consumers[n.Input[2]]) != 1 {
				skip(n, i, l.weight, "its bias is not a per-unit constant of its own")
				continue
			}
			l.bias = n.Input[2]
		}
		if op == "Conv" && l.bias == "" {
			if err := l.foldIntoBN(cur, cix); err != nil {
				return nil, nil, fmt.Errorf("%s: %w", l.label, err)
			}
		}
		if op == "MatMul" {
			if cs := cix.Consumers[n.Output[0]]; len(cs) == 1 {
				add := cur.Graph().Node[cs[0]]
				if add.GetOpType() == "Add" && len(add.Input) == 2 {
					other := add.Input[1]
					if other == n.Output[0] {
						other = add.Input[0]
					}
					_, inOrig := oix.Producer[add.Output[0]]
					if b := cix.Const(other); b != nil && len(b.GetDims()) == 1 && b.GetDims()[0] == int64(l.outW) && len(cix.Consumers[other]) == 1 && inOrig {
						l.bias, l.target = other, add.Output[0]
					}
				}
			}
		}
		// Output units: those of the original layer minus the ones pruned.
		origOut := int(owd[outAxis])
		keep, err := keptOutputs(an, on.Input[1], int(outAxis), origOut, kept)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", l.label, err)
		}
		if len(keep) != l.outW {
			skip(n, i, l.weight, fmt.Sprintf("%d output units remain by the report, the weight has %d", len(keep), l.outW))
			continue
		}
		l.keep = keep
		layers = append(layers, l)
	}
	return layers, notes, nil
}

// foldIntoBN sets up the bias fold when the Conv's only consumer is a
// BatchNormalization (inference form) with constant parameters of its own.
func (l *lsqLayer) foldIntoBN(m *onnxio.Model, ix *onnxio.Index) error {
	cs := ix.Consumers[l.node.Output[0]]
	if len(cs) != 1 {
		return nil
	}
	bn := m.Graph().Node[cs[0]]
	if bn.GetOpType() != "BatchNormalization" || len(bn.Input) < 5 || bn.Input[0] != l.node.Output[0] ||
		onnxio.AttrInt(bn, "training_mode", 0) != 0 || len(ix.Consumers[bn.Input[2]]) != 1 {
		return nil
	}
	vals := make([][]float64, 5)
	for k := 1; k < 5; k++ {
		t := ix.Const(bn.Input[k])
		if t == nil || onnxio.NumElements(t.GetDims()) != int64(l.outW) {
			return nil
		}
		v, err := m.Float64s(t)
		if err != nil {
			return err
		}
		vals[k] = v
	}
	eps := float64(onnxio.AttrFloat(bn, "epsilon", 1e-5))
	l.bnFactor = make([]float64, l.outW)
	for u := range l.bnFactor {
		l.bnFactor[u] = vals[1][u] / math.Sqrt(vals[4][u]+eps)
	}
	l.bnBias = bn.Input[2]
	return nil
}

// hasBias reports whether the refit fits a bias column.
func (l *lsqLayer) hasBias() bool { return l.bias != "" || l.bnBias != "" }

// keptOutputs lists the positions along the output axis of an original
// weight that pruning left, from the groups whose units that axis computes.
func keptOutputs(an *rewrite.Analysis, weight string, axis, width int, kept map[string][]int) ([]int, error) {
	removed := map[int]bool{}
	for _, g := range an.Groups {
		k, ok := kept[g.Name]
		if !ok {
			continue
		}
		keepUnit := map[int]bool{}
		for _, u := range k {
			keepUnit[u] = true
		}
		for _, p := range g.Params {
			if p.Tensor != weight || p.Role != "in" || p.Axis != axis {
				continue
			}
			for u := 0; u < g.Width; u++ {
				if keepUnit[u] {
					continue
				}
				for _, pos := range rewrite.Positions(p.Segs, g.Width, u) {
					if pos >= width {
						return nil, fmt.Errorf("group %s places unit %d at %d on an axis of %d", g.Name, u, pos, width)
					}
					removed[pos] = true
				}
			}
		}
	}
	var keep []int
	for p := 0; p < width; p++ {
		if !removed[p] {
			keep = append(keep, p)
		}
	}
	return keep, nil
}

// normal holds the normal equations of one regression.
type normal struct {
	d, n   int // features (with the bias column), outputs
	g      *mat.SymDense
	c      *mat.Dense
	yy     float64
	rows   int
	xb, yb []float64 // pending rows
	nb     int
}

const blockRows = 256

func newNormal(d, n int) *normal {
	return &normal{d: d, n: n, g: mat.NewSymDense(d, nil), c: mat.NewDense(d, n, nil),
		xb: make([]float64, blockRows*d), yb: make([]float64, blockRows*n)}
}

// row returns buffers for the next row's features and targets.
func (e *normal) row() (x, y []float64) {
	if e.nb == blockRows {
		e.flush()
	}
	x = e.xb[e.nb*e.d : (e.nb+1)*e.d]
	y = e.yb[e.nb*e.n : (e.nb+1)*e.n]
	e.nb++
	e.rows++
	return x, y
}

func (e *normal) flush() {
	if e.nb == 0 {
		return
	}
	x := mat.NewDense(e.nb, e.d, e.xb[:e.nb*e.d])
	y := mat.NewDense(e.nb, e.n, e.yb[:e.nb*e.n])
	e.g.SymRankK(e.g, 1, x.T())
	var c mat.Dense
	c.Mul(x.T(), y)
	e.c.Add(e.c, &c)
	for _, v := range e.yb[:e.nb*e.n] {
		e.yy += v * v
	}
	e.nb = 0
}

// sqErr is ||X W - Y||^2 from the normal equations.
func (e *normal) sqErr(w *mat.Dense) float64 {
	var gw mat.Dense
	gw.Mul(e.g, w)
	var s float64
	for i := 0; i < e.d; i++ {
		for j := 0; j < e.n; j++ {
			s += w.At(i, j) * (gw.At(i, j) - 2*e.c.At(i, j))
		}
	}
	return s + e.yy
}

// solve returns the ridge solution; the last feature is the bias when
// bias is set and is not penalised.
func (e *normal) solve(ridge float64, bias bool) (*mat.Dense, error) {
	e.flush()
	nf := e.d
	if bias {
		nf--
	}
	var tr float64
	for i := 0; i < nf; i++ {
		tr += e.g.At(i, i)
	}
	lambda := ridge * tr / float64(max(nf, 1))
	for try := 0; try < 4; try++ {
		a := mat.NewSymDense(e.d, nil)
		a.CopySym(e.g)
		for i := 0; i < nf; i++ {
			a.SetSym(i, i, a.At(i, i)+lambda)
		}
		var ch mat.Cholesky
		if ch.Factorize(a) {
			var w mat.Dense
			if err := ch.SolveTo(&w, e.c); err == nil {
				return &w, nil
			}
		}
		lambda = math.Max(lambda*100, 1e-12*(tr+1))
	}
	return nil, errors.New("the normal equations are singular")
}

// refit regresses one layer and writes the new weights into cur.
func refit(cur *onnxio.Model, l *lsqLayer, li int, orig *ort.Session, ti int, bound *dataset.Bound, o *LSQOptions) (LayerFit, error) {
	fit := LayerFit{Node: l.label, Op: l.op, Weight: l.weight, Inputs: l.inW, Outputs: l.outW, Bias: l.hasBias()}
	s, err := ort.NewSessionForModel(cur, []string{l.input}, o.Runtime)
	if err != nil {
		return fit, err
	}
	defer s.Destroy()
	xi := len(cur.Graph().GetOutput())
	d := l.inW // per group for Conv: (C/g) * kernel
	nb := 0
	if l.hasBias() {
		nb = 1
	}
	per := l.outW / l.groups
	eqs := make([]*normal, l.groups)
	for g := range eqs {
		eqs[g] = newNormal(d+nb, per)
	}
	rng := rand.New(rand.NewPCG(uint64(o.Seed), uint64(li)))
	q := -1.0
	for batch := range bound.Batches(o.Batch) {
		feed, err := ort.Feed(bound, batch)
		if err != nil {
			return fit, err
		}
		xs, err := s.Run(feed...)
		if err != nil {
			return fit, err
		}
		ys, err := orig.Run(feed...)
		if err != nil {
			return fit, err
		}
		x, y := xs[xi], ys[ti]
		xv, ok1 := x.Data.([]float32)
		yv, ok2 := y.Data.([]float32)
		if !ok1 || !ok2 {
			return fit, fmt.Errorf("least squares needs float32 tensors, got %s and %s", x.DType, y.DType)
		}
		switch l.op {
		case "Gemm", "MatMul":
			if len(x.Shape) < 1 || x.Shape[len(x.Shape)-1] != int64(d) {
				return fit, fmt.Errorf("input %q has shape %v, want %d features", l.input, x.Shape, d)
			}
			rows := len(xv) / d
			yw := len(yv) / max(rows, 1)
			if q < 0 {
				q = math.Min(1, float64(o.MaxRows)/float64(rows/batch.Len()*bound.N))
			}
			for r := 0; r < rows; r++ {
				if q < 1 && rng.Float64() >= q {
					continue
				}
				fx, fy := eqs[0].row()
				for k := 0; k < d; k++ {
					fx[k] = float64(xv[r*d+k])
				}
				if nb == 1 {
					fx[d] = 1
				}
				for j, u := range l.keep {
					fy[j] = float64(yv[r*yw+u])
				}
			}
		case "Conv":
			if err := convRows(l, x, xv, y, yv, eqs, rng, &q, bound.N, o.MaxRows); err != nil {
				return fit, err
			}
		}
	}
	// Current weights in the regression's layout, the refit, and errors.
	old, err := layerWeights(cur, l)
	if err != nil {
		return fit, err
	}
	var before, after, yy float64
	news := make([]*mat.Dense, l.groups)
	for g, e := range eqs {
		w, err := e.solve(o.Ridge, nb == 1)
		if err != nil {
			return fit, err
		}
		news[g] = w
		fit.Rows = e.rows
		before += e.sqErr(old[g])
		after += e.sqErr(w)
		yy += e.yy
	}
	if yy > 0 {
		fit.Before, fit.After = before/yy, after/yy
	}
	if fit.Rows > 0 && after < before {
		if err := setLayerWeights(cur, l, news); err != nil {
			return fit, err
		}
		fit.Applied = true
	}
	return fit, nil
}

// convRows adds im2col rows of sampled output positions.
func convRows(l *lsqLayer, x ort.Tensor, xv []float32, y ort.Tensor, yv []float32, eqs []*normal, rng *rand.Rand, q *float64, total, maxRows int) error {
	xd := append([]int64{}, x.Shape...)
	yd := append([]int64{}, y.Shape...)
	kernel := append([]int64{}, l.kernels...)
	n := l.node
	if len(xd) == 3 { // 1-D: treat as height 1
		xd = []int64{xd[0], xd[1], 1, xd[2]}
		yd = []int64{yd[0], yd[1], 1, yd[2]}
		kernel = []int64{1, kernel[0]}
	}
	if len(xd) != 4 || len(yd) != 4 {
		return fmt.Errorf("only 1-D and 2-D convolutions are refit (input shape %v)", x.Shape)
	}
	geo, err := onnxio.ConvGeometry(n, l.input, x.Shape, l.kernels, true)
	if err != nil {
		return err
	}
	pb, st, dl := geo.PadsBegin, geo.Strides, geo.Dilations
	if len(pb) == 1 {
		pb, st, dl = []int64{0, pb[0]}, []int64{1, st[0]}, []int64{1, dl[0]}
	}
	N, C, H, W := int(xd[0]), int(xd[1]), int(xd[2]), int(xd[3])
	M, OH, OW := int(yd[1]), int(yd[2]), int(yd[3])
	kh, kw := int(kernel[0]), int(kernel[1])
	G := l.groups
	cg := C / G
	og := l.outW / G
	if cg*kh*kw != l.inW {
		return fmt.Errorf("input has %d channels in %d groups, the weight wants %d features per group", C, G, l.inW)
	}
	if *q < 0 {
		*q = math.Min(1, float64(maxRows)/float64(OH*OW*total))
	}
	bias := eqs[0].d > l.inW
	for b := 0; b < N; b++ {
		for oh := 0; oh < OH; oh++ {
			for ow := 0; ow < OW; ow++ {
				if *q < 1 && rng.Float64() >= *q {
					continue
				}
				for g := 0; g < G; g++ {
					fx, fy := eqs[g].row()
					k := 0
					for c := g * cg; c < (g+1)*cg; c++ {
						base := (b*C + c) * H * W
						for i := 0; i < kh; i++ {
							h := oh*int(st[0]) - int(pb[0]) + i*int(dl[0])
							for j := 0; j < kw; j++ {
								w := ow*int(st[1]) - int(pb[1]) + j*int(dl[1])
								if h >= 0 && h < H && w >= 0 && w < W {
									fx[k] = float64(xv[base+h*W+w])
								} else {
									fx[k] = 0
								}
								k++
							}
						}
					}
					if bias {
						fx[k] = 1
					}
					for j := 0; j < og; j++ {
						u := l.keep[g*og+j]
						fy[j] = float64(yv[((b*M+u)*OH+oh)*OW+ow])
					}
				}
			}
		}
	}
	return nil
}

// layerWeights reads the layer's weights as one (features [+ bias]) x
// outputs matrix per group.
func layerWeights(m *onnxio.Model, l *lsqLayer) ([]*mat.Dense, error) {
	ix := onnxio.NewIndex(m.Graph())
	wt := ix.Const(l.weight)
	wv, err := m.Float64s(wt)
	if err != nil {
		return nil, err
	}
	var bv []float64
	if l.bias != "" {
		if bv, err = m.Float64s(ix.Const(l.bias)); err != nil {
			return nil, err
		}
	}
	nb := 0
	if l.hasBias() {
		nb = 1
	}
	per := l.outW / l.groups
	out := make([]*mat.Dense, l.groups)
	for g := range out {
		w := mat.NewDense(l.inW+nb, per, nil)
		for j := 0; j < per; j++ {
			u := g*per + j
			for k := 0; k < l.inW; k++ {
				var v float64
				switch {
				case l.op == "Conv":
					v = wv[u*l.inW+k]
				case l.op == "Gemm" && l.transB:
					v = l.alpha * wv[u*l.inW+k]
				default:
					v = l.alpha * wv[k*l.outW+u]
				}
				w.Set(k, j, v)
			}
			if l.bias != "" {
				w.Set(l.inW, j, l.beta*bv[u])
			} // a bias folded into a BatchNormalization is 0 in the conv's output space
		}
		out[g] = w
	}
	return out, nil
}

// setLayerWeights writes refit matrices back into the layer's constants.
func setLayerWeights(m *onnxio.Model, l *lsqLayer, ws []*mat.Dense) error {
	ix := onnxio.NewIndex(m.Graph())
	wt := ix.Const(l.weight)
	wv := make([]float64, onnxio.NumElements(wt.GetDims()))
	var bv []float64
	if l.hasBias() {
		bv = make([]float64, l.outW)
	}
	per := l.outW / l.groups
	for g, w := range ws {
		for j := 0; j < per; j++ {
			u := g*per + j
			for k := 0; k < l.inW; k++ {
				v := w.At(k, j)
				switch {
				case l.op == "Conv":
					wv[u*l.inW+k] = v
				case l.op == "Gemm" && l.transB:
					wv[u*l.inW+k] = v / l.alpha
				default:
					wv[k*l.outW+u] = v / l.alpha
				}
			}
			if bv != nil {
				bv[u] = w.At(l.inW, j) / l.beta
			}
		}
	}
	set := func(t *onnxpb.TensorProto, v []float64) error {
		raw, err := onnxio.EncodeFloat64s(onnxio.DataType(t.GetDataType()), v)
		if err != nil {
			return err
		}
		return onnxio.SetRawData(t, slices.Clone(t.GetDims()), raw)
	}
	if err := set(wt, wv); err != nil {
		return err
	}
	switch {
	case l.bias != "":
		return set(ix.Const(l.bias), bv)
	case l.bnBias != "":
		bt := ix.Const(l.bnBias)
		old, err := m.Float64s(bt)
		if err != nil {
			return err
		}
		for u := range old {
			old[u] += l.bnFactor[u] * bv[u]
		}
		return set(bt, old)
	}
	return nil
}
