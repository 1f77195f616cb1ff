package recover

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/onnx-cria/onnx-cria/autodiff"
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
	// One in eight of them (at least one, when there are two or more) is
	// held out: refits are solved on the others and kept only when they
	// lower the error on the held-out rows.
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
	// Progress, if set, is called with the layers refit so far out of
	// all, at the start and after each pass.
	Progress func(label string, done, total int)
	// BiasOnly keeps every refit layer's weights and fits its bias alone:
	// the layer's output mean restored, FLAP's bias compensation for the
	// units removed (An et al., 2024). Layers without a bias keep theirs.
	BiasOnly bool
	// MaxMemory bounds the bytes of the tensors both models keep between
	// passes for all calibration samples (2 GiB): with more samples than
	// fit, a seeded subset of them is used, and Log says so.
	MaxMemory int64
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
	if o.Progress == nil {
		o.Progress = func(string, int, int) {}
	}
	if o.MaxMemory <= 0 {
		o.MaxMemory = 2 << 30
	}
}

// LayerFit reports the refit of one layer. Errors are relative:
// ||X W + b - Y||^2 / ||Y||^2, with the layer's weights before and after
// the refit, over the regression rows the refit was solved on and over
// rows of held-out calibration samples.
type LayerFit struct {
	Node    string  `json:"node"`
	Op      string  `json:"op"`
	Weight  string  `json:"weight"`
	Inputs  int     `json:"inputs"`  // features per output unit (per conv group), bias excluded
	Outputs int     `json:"outputs"` // output units refit
	Bias    bool    `json:"bias"`
	Rows    int     `json:"rows"` // regression rows solved on
	Before  float64 `json:"rel_error_before"`
	After   float64 `json:"rel_error_after"`
	// HeldOutRows are regression rows from the held-out calibration
	// samples; the refit is applied only if it lowers their error.
	HeldOutRows   int     `json:"held_out_rows"`
	HeldOutBefore float64 `json:"held_out_rel_error_before"`
	HeldOutAfter  float64 `json:"held_out_rel_error_after"`
	Applied       bool    `json:"applied"`
	// Flag is "underdetermined" (fewer rows than unknowns per output) or
	// "ill-conditioned" (the ridge outweighs the data in most input
	// directions), with Warning saying it in words; "" otherwise.
	Flag    string  `json:"flag,omitempty"`
	Warning string  `json:"warning,omitempty"`
	Seconds float64 `json:"seconds"`        // this layer's share of the refit's time
	Note    string  `json:"note,omitempty"` // why a layer that changed is not refit
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
	// bnMean: a Conv without bias that feeds a BatchNormalization alone
	// gets its fitted bias folded into the normalisation's running mean,
	// mean -= b: exact at inference, and right in training with batch
	// statistics too, where a bias before the normalisation cancels (a
	// fold into the shift would survive training as a spurious offset).
	bnMean  string
	keep    []int // output units of the original layer that remain
	alpha   float64
	beta    float64
	transB  bool
	groups  int
	outW    int // output units
	inW     int // input features per group (without bias)
	kernels []int64
	index   int // of the node in the pruned model's graph
}

// LSQ refits the layers whose input width pruning changed: every Gemm,
// MatMul with a constant 2-D weight, and 2-D (or 1-D) Conv of pruned that
// reads fewer features than its counterpart in orig. Each is refit by
// ridge regression so that, on the calibration set, its output from the
// pruned model's inputs matches the original model's output of the same
// layer, restricted to the output units that remain when the layer's own
// outputs were pruned as well. kept maps group names of
// rewrite.Analyze(orig) to the original units that remain (the Kept lists
// of shrink's report; groups not listed lost nothing). A MatMul whose only
// consumer adds a constant bias is refit with that bias, and a Conv
// without a bias that only feeds a BatchNormalization is refit with a bias
// folded into the normalisation's running mean. Convolutions are refit on im2col
// patches of subsampled output positions. pruned is not modified.
//
// Each layer is fit given the layers refit before it: the pruned model
// is run in passes, each refitting the layers whose inputs no remaining
// layer affects (the q, k and v projections of a block together; layers
// reading the same input the same way share one set of normal
// equations), and each pass runs only the nodes that the previous ones
// have not, from the tensors they left; the original model's targets are
// computed alongside in the same way. Both models are thus run once in
// all. See the package documentation for what is held in memory.
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
	waves, err := schedule(cur, layers)
	if err != nil {
		return nil, nil, err
	}
	bound, nFit, err := calibRows(orig, cur, calib, waves, &o)
	if err != nil {
		return nil, nil, err
	}
	batches, err := makeBatches(bound, 0, nFit, o.Batch)
	if err != nil {
		return nil, nil, err
	}
	held, err := makeBatches(bound, nFit, bound.N, o.Batch)
	if err != nil {
		return nil, nil, err
	}
	r := &refitter{o: &o, cur: cur, nFit: len(batches), fitRows: nFit, heldOut: bound.N - nFit}
	if r.p, err = newProducts(o.Runtime); err != nil {
		return nil, nil, err
	}
	defer r.p.destroy()
	inputs, targets := wants(waves)
	batches = append(batches, held...)
	r.cs = newStager(cur, "the pruned model", batches, flat(inputs), o.Runtime)
	r.os = newStager(orig, "the original model", batches, flat(targets), o.Runtime)
	o.Progress("least-squares refit", 0, len(layers))
	var done []LayerFit
	for _, wave := range waves {
		start := time.Now()
		wf, err := r.wave(wave)
		if err != nil {
			return nil, nil, err
		}
		secs := time.Since(start).Seconds() / float64(len(wave))
		for i := range wf {
			wf[i].Seconds = secs
			logFit(&o, wf[i])
		}
		done = append(done, wf...)
		o.Progress("least-squares refit", len(done), len(layers))
	}
	order := map[string]int{}
	for i, l := range layers {
		order[l.label] = i
	}
	slices.SortStableFunc(done, func(a, b LayerFit) int { return order[a.Node] - order[b.Node] })
	cur.Path, cur.Size, cur.Hash = "", 0, ""
	return cur, append(fits, done...), nil
}

// wants lists, per pass, the inputs of its layers (in the pruned model)
// and their targets (in the original).
func wants(waves [][]*lsqLayer) (inputs, targets [][]string) {
	for _, w := range waves {
		var in, tg []string
		for _, l := range w {
			in, tg = append(in, l.input), append(tg, l.target)
		}
		inputs, targets = append(inputs, in), append(targets, tg)
	}
	return inputs, targets
}

func flat(lists [][]string) []string {
	var out []string
	for _, l := range lists {
		out = append(out, l...)
	}
	return out
}

// calibRows binds the calibration data, takes the seeded subset of
// o.Samples rows, fewer if the tensors the two models keep between passes
// would take more than o.MaxMemory for them, and holds some out (see
// holdOut).
func calibRows(orig, cur *onnxio.Model, calib *dataset.Set, waves [][]*lsqLayer, o *LSQOptions) (*dataset.Bound, int, error) {
	bound, err := autodiff.BindData(orig, calib, o.Samples, o.Seed)
	if err != nil {
		return nil, 0, fmt.Errorf("calibration data: %w", err)
	}
	inputs, targets := wants(waves)
	pc, ok1, err := keptBytes(cur, inputs, flat(inputs))
	if err != nil {
		return nil, 0, err
	}
	po, ok2, err := keptBytes(orig, targets, flat(targets))
	if err != nil {
		return nil, 0, err
	}
	if per := pc + po; ok1 && ok2 && per > 0 && int64(bound.N)*per > o.MaxMemory {
		n := max(int(o.MaxMemory/per), 2)
		o.Log("lsq: %d calibration samples would keep %.1f GiB of tensors between passes (%.1f MiB each); using %d (LSQOptions.MaxMemory %.1f GiB)",
			bound.N, float64(int64(bound.N)*per)/(1<<30), float64(per)/(1<<20), n, float64(o.MaxMemory)/(1<<30))
		if bound, err = bound.Subset(n, o.Seed); err != nil {
			return nil, 0, err
		}
	}
	return holdOut(bound, o.Seed)
}

func logFit(o *LSQOptions, f LayerFit) {
	state := ""
	if !f.Applied {
		state = " (kept the old weights)"
	}
	o.Log("lsq %-40s %s %d in x %d out, %d rows: relative error %.4g -> %.4g, held out (%d rows) %.4g -> %.4g%s, %.1fs",
		f.Node, f.Op, f.Inputs, f.Outputs, f.Rows, f.Before, f.After, f.HeldOutRows, f.HeldOutBefore, f.HeldOutAfter, state, f.Seconds)
	if f.Warning != "" {
		o.Log("lsq %-40s warning: %s", f.Node, f.Warning)
	}
}

// holdOut reorders the rows of b so that the held-out ones come last: one
// in eight, at least one when there are two or more rows (a whole batch
// for a model with a fixed batch size), chosen by SubsetIndices with a
// seed derived from seed. It returns the number of rows to fit on.
func holdOut(b *dataset.Bound, seed int64) (*dataset.Bound, int, error) {
	h := b.N / 8
	if h == 0 && b.N >= 2 {
		h = 1
	}
	if fb := b.FixedBatch; fb > 0 {
		h = h / fb * fb
		if h == 0 && b.N >= 2*fb {
			h = fb
		}
	}
	if h == 0 {
		return b, b.N, nil
	}
	heldRows, err := dataset.SubsetIndices(b.N, h, seed^0x5eed)
	if err != nil {
		return nil, 0, err
	}
	isHeld := map[int]bool{}
	for _, i := range heldRows {
		isHeld[i] = true
	}
	var order []int
	for i := 0; i < b.N; i++ {
		if !isHeld[i] {
			order = append(order, i)
		}
	}
	order = append(order, heldRows...)
	out := *b
	out.Inputs = make([]*dataset.Array, len(b.Inputs))
	for k, a := range b.Inputs {
		if out.Inputs[k], err = a.Take(order); err != nil {
			return nil, 0, err
		}
	}
	out.Labels = nil
	return &out, b.N - h, nil
}

// schedule splits the layers into passes: each pass holds the layers
// whose input no layer of a later pass affects, in graph order.
func schedule(m *onnxio.Model, layers []*lsqLayer) ([][]*lsqLayer, error) {
	ix := onnxio.NewIndex(m.Graph())
	isLayer := map[int]int{}
	for k, l := range layers {
		isLayer[l.index] = k
	}
	// upstream[k]: the layers whose outputs reach layer k's input.
	upstream := make([][]int, len(layers))
	for k, l := range layers {
		seen := map[int]bool{}
		stack := []string{l.input}
		for len(stack) > 0 {
			t := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			i, ok := ix.Producer[t]
			if !ok || seen[i] {
				continue
			}
			seen[i] = true
			if j, ok := isLayer[i]; ok {
				upstream[k] = append(upstream[k], j)
			}
			n := m.Graph().Node[i]
			stack = append(stack, n.GetInput()...)
			stack = append(stack, onnxio.SubgraphReads(n)...)
		}
	}
	left := map[int]bool{}
	for k := range layers {
		left[k] = true
	}
	var waves [][]*lsqLayer
	for len(left) > 0 {
		var wave []*lsqLayer
		var ks []int
		for k := range layers {
			if !left[k] {
				continue
			}
			free := true
			for _, j := range upstream[k] {
				free = free && !left[j]
			}
			if free {
				wave = append(wave, layers[k])
				ks = append(ks, k)
			}
		}
		if len(wave) == 0 {
			return nil, errors.New("the layers to refit depend on each other in a cycle")
		}
		for _, k := range ks {
			delete(left, k)
		}
		waves = append(waves, wave)
	}
	return waves, nil
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
		l := &lsqLayer{node: n, index: i, label: onnxio.NodeLabel(n, i), op: op, input: n.Input[0], target: n.Output[0], weight: n.Input[1], alpha: 1, beta: 1, groups: 1}
		inNow, inBefore, outAxis, ok := l.widths(on, wd, owd)
		if !ok {
			continue
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
			l.addBias(cur, cix, oix)
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

// widths reads the layer's form from its node and weight dims now (wd) and
// in the original (owd, node on): it returns the input width now and
// before, and the weight's output axis; ok is false for a form the refit
// does not handle.
func (l *lsqLayer) widths(on *onnxpb.NodeProto, wd, owd []int64) (inNow, inBefore, outAxis int64, ok bool) {
	n := l.node
	switch l.op {
	case "Gemm":
		if onnxio.AttrInt(n, "transA", 0) != 0 || len(wd) != 2 {
			return 0, 0, 0, false
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
			return 0, 0, 0, false
		}
		inNow, inBefore, outAxis = wd[0], owd[0], 1
		l.inW, l.outW = int(wd[0]), int(wd[1])
	case "Conv":
		if len(wd) != 4 && len(wd) != 3 {
			return 0, 0, 0, false
		}
		l.groups = int(onnxio.AttrInt(n, "group", 1))
		inNow = wd[1] * int64(l.groups)
		inBefore = owd[1] * onnxio.AttrInt(on, "group", 1)
		outAxis = 0
		l.kernels = wd[2:]
		l.inW, l.outW = int(onnxio.NumElements(wd[1:])), int(wd[0])
	}
	return inNow, inBefore, outAxis, true
}

// addBias makes the constant added to a MatMul's only use its bias, when
// the Add is in the original model too and the constant is the layer's own.
func (l *lsqLayer) addBias(cur *onnxio.Model, cix, oix *onnxio.Index) {
	out := l.node.Output[0]
	cs := cix.Consumers[out]
	if len(cs) != 1 {
		return
	}
	add := cur.Graph().Node[cs[0]]
	if add.GetOpType() != "Add" || len(add.Input) != 2 {
		return
	}
	other := add.Input[1]
	if other == out {
		other = add.Input[0]
	}
	_, inOrig := oix.Producer[add.Output[0]]
	if b := cix.Const(other); b != nil && len(b.GetDims()) == 1 && b.GetDims()[0] == int64(l.outW) && len(cix.Consumers[other]) == 1 && inOrig {
		l.bias, l.target = other, add.Output[0]
	}
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
		onnxio.AttrInt(bn, "training_mode", 0) != 0 || len(ix.Consumers[bn.Input[3]]) != 1 {
		return nil
	}
	if t := ix.Const(bn.Input[3]); t == nil || onnxio.NumElements(t.GetDims()) != int64(l.outW) {
		return nil
	}
	l.bnMean = bn.Input[3]
	return nil
}

// hasBias reports whether the refit fits a bias column.
func (l *lsqLayer) hasBias() bool { return l.bias != "" || l.bnMean != "" }

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
	case l.bnMean != "":
		mt := ix.Const(l.bnMean)
		mean, err := m.Float64s(mt)
		if err != nil {
			return err
		}
		for u := range mean {
			mean[u] -= bv[u]
		}
		return set(mt, mean)
	}
	return nil
}
