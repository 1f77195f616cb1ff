package rewrite

import (
	"fmt"
	"math"
	"slices"

	"github.com/onnx-cria/onnx-cria/onnxio"
	"github.com/onnx-cria/onnx-cria/onnxio/onnxpb"
)

// The op-rule table: how each op moves, couples, creates and consumes unit
// axes. Keyed by (domain, op type, opset range), looked up once per node. An
// op that is not here is a barrier: units that reach it are not pruned and
// the report names the op.

type rule struct {
	domain   string
	op       string
	from, to int64 // opset range, inclusive; 0 = unbounded
	fn       func(an *analyzer, n *onnxpb.NodeProto, i int)
}

var ruleTable []rule

func register(domain string, from, to int64, fn func(an *analyzer, n *onnxpb.NodeProto, i int), ops ...string) {
	for _, op := range ops {
		ruleTable = append(ruleTable, rule{domain: domain, op: op, from: from, to: to, fn: fn})
	}
}

func lookupRule(domain, op string, opset int64) *rule {
	if domain == "ai.onnx" {
		domain = ""
	}
	for k := range ruleTable {
		r := &ruleTable[k]
		if r.domain == domain && r.op == op && (r.from == 0 || opset >= r.from) && (r.to == 0 || opset <= r.to) {
			return r
		}
	}
	return nil
}

// Ops whose outputs are elementwise functions of their inputs (with NumPy
// broadcasting): units pass through and dynamic operands are coupled.
var elementwiseOps = []string{
	"Relu", "LeakyRelu", "PRelu", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Erf", "Gelu",
	"Elu", "Selu", "Celu", "Softplus", "Softsign", "Mish", "ThresholdedRelu", "Sqrt", "Exp", "Log",
	"Neg", "Abs", "Reciprocal", "Identity", "Cast", "Floor", "Ceil", "Round", "Sign", "Sin", "Cos",
	"Not", "IsNaN", "IsInf", "Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Sum", "Mean",
	"Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual", "And", "Or", "Xor", "Mod", "Where",
	"Dropout", "Clip", "BitShift", "Shrink",
}

// Nonlinearities: where capture observes a group's pre- and post-activation
// states.
var activationOps = map[string]bool{
	"Relu": true, "LeakyRelu": true, "PRelu": true, "Clip": true, "Sigmoid": true, "HardSigmoid": true,
	"HardSwish": true, "Tanh": true, "Erf": true, "Gelu": true, "Elu": true, "Selu": true, "Celu": true,
	"Softplus": true, "Softsign": true, "Mish": true, "ThresholdedRelu": true,
}

func init() {
	register("", 0, 0, ruleElementwise, elementwiseOps...)
	register("", 0, 0, ruleNoUnits, "Shape", "Size", "Constant", "ConstantOfShape", "Range", "RandomNormalLike", "RandomUniformLike", "EyeLike")
	register("", 0, 0, ruleGemm, "Gemm")
	register("", 0, 0, ruleMatMul, "MatMul")
	register("", 0, 0, ruleConv, "Conv")
	register("", 0, 0, ruleConvTranspose, "ConvTranspose")
	register("", 0, 0, ruleBatchNorm, "BatchNormalization")
	register("", 0, 0, ruleInstanceNorm, "InstanceNormalization")
	register("", 17, 0, ruleLayerNorm, "LayerNormalization")
	register("", 0, 0, rulePool, "MaxPool", "AveragePool", "LpPool", "GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool")
	register("", 0, 0, ruleFlatten, "Flatten")
	register("", 5, 0, ruleReshape, "Reshape")
	register("", 0, 0, ruleTranspose, "Transpose")
	register("", 0, 0, ruleUnsqueeze, "Unsqueeze")
	register("", 0, 0, ruleSqueeze, "Squeeze")
	register("", 0, 0, ruleConcat, "Concat")
	register("", 0, 0, ruleSplit, "Split")
	register("", 10, 0, ruleSlice, "Slice")
	register("", 0, 0, ruleGather, "Gather")
	register("", 0, 0, ruleReduce, "ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd",
		"ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare", "ArgMax", "ArgMin")
	register("", 13, 0, ruleSoftmax, "Softmax", "LogSoftmax", "Hardmax")
	register("", 0, 12, ruleSoftmaxOld, "Softmax", "LogSoftmax", "Hardmax")
	register("", 8, 0, ruleExpand, "Expand")
	register("", 0, 0, ruleTile, "Tile")
	register("", 11, 0, rulePad, "Pad")
	register("", 0, 0, ruleCumSum, "CumSum", "Trilu")
}

// rank of t: its inferred rank, or -1.
func (an *analyzer) rank(t string) int {
	d, ok := an.dims(t)
	if !ok {
		return -1
	}
	return len(d)
}

func (an *analyzer) needShape(n *onnxpb.NodeProto, t string) ([]int64, bool) {
	d, ok := an.dims(t)
	if !ok && len(an.lay[t]) > 0 {
		an.blockTensor(t, fmt.Sprintf("shape of %q is unknown at node %s", t, an.cur))
	}
	return d, ok
}

func ruleNoUnits(an *analyzer, n *onnxpb.NodeProto, i int) {}

// ruleElementwise couples every operand's axes under broadcasting, slices
// constant operands, and passes the units to the output.
func ruleElementwise(an *analyzer, n *onnxpb.NodeProto, i int) {
	inputs := []int{}
	for k := range n.Input {
		inputs = append(inputs, k)
	}
	switch n.GetOpType() {
	case "Clip", "Dropout":
		inputs = []int{0} // min/max, ratio and training flags are scalars
	}
	an.elementwise(n, i, inputs, []int{0})
	if n.GetOpType() == "Dropout" && len(n.Output) > 1 {
		an.elementwise(n, i, []int{0}, []int{1})
	}
}

func (an *analyzer) elementwise(n *onnxpb.NodeProto, i int, inputs, outs []int) {
	out := n.Output[outs[0]]
	r := an.rank(out)
	if r < 0 {
		for _, s := range inputs {
			if len(an.lay[n.Input[s]]) > 0 {
				an.blockTensor(n.Input[s], fmt.Sprintf("output shape of %s is unknown (node %s)", n.GetOpType(), an.cur))
			}
		}
		return
	}
	for k := 0; k < r; k++ {
		var have []Layout
		var consts [][2]int
		var plain []string
		for _, s := range inputs {
			if s >= len(n.Input) || n.Input[s] == "" {
				continue
			}
			t := n.Input[s]
			d, ok := an.dims(t)
			if !ok {
				if len(an.lay[t]) > 0 {
					an.blockTensor(t, fmt.Sprintf("shape of %q is unknown at node %s", t, an.cur))
				}
				continue
			}
			ax := k - (r - len(d))
			if ax < 0 {
				continue
			}
			if l := an.lay[t][ax]; l != nil {
				have = append(have, l)
				continue
			}
			if d[ax] == 1 {
				continue
			}
			if name, _ := an.constOf(t); name != "" {
				consts = append(consts, [2]int{s, ax})
			} else {
				plain = append(plain, t)
			}
		}
		if len(have) == 0 {
			continue
		}
		l := have[0]
		for _, h := range have[1:] {
			an.unify(l, h, fmt.Sprintf("operands of %s", n.GetOpType()))
		}
		for _, c := range consts {
			an.param(i, c[0], c[1], l, roleAffine)
		}
		for _, t := range plain {
			an.block(l, fmt.Sprintf("combined by %s (node %s) with %q, which carries no prunable units", n.GetOpType(), an.cur, t))
		}
		for _, o := range outs {
			if o < len(n.Output) && n.Output[o] != "" {
				an.setLayout(n.Output[o], k, l)
			}
		}
	}
}

// mapAxes moves the units of in to out with an axis map; axes the map drops
// (ok false) block their units with reason.
func (an *analyzer) mapAxes(in, out string, f func(ax int) (int, bool), reason string) {
	for ax, l := range an.lay[in] {
		if o, ok := f(ax); ok {
			an.setLayout(out, o, l)
		} else {
			an.block(l, reason)
		}
	}
}

func ruleGemm(an *analyzer, n *onnxpb.NodeProto, i int) {
	transA := onnxio.AttrInt(n, "transA", 0) == 1
	transB := onnxio.AttrInt(n, "transB", 0) == 1
	bname, bt := an.constOf(n.Input[1])
	if bt == nil || len(bt.GetDims()) != 2 {
		an.blockInputs(n, fmt.Sprintf("Gemm node %s has no constant 2-D weight", an.cur))
		return
	}
	_ = bname
	kAxisB, nAxisB := 0, 1
	if transB {
		kAxisB, nAxisB = 1, 0
	}
	kAxisA, mAxisA := 1, 0
	if transA {
		kAxisA, mAxisA = 0, 1
	}
	a := n.Input[0]
	if l := an.lay[a][kAxisA]; l != nil {
		an.param(i, 1, kAxisB, l, roleOut)
	}
	if l := an.lay[a][mAxisA]; l != nil {
		an.setLayout(n.Output[0], 0, l)
	}
	width := int(bt.GetDims()[nAxisB])
	out := an.fresh(width, "neurons")
	an.param(i, 1, nAxisB, out, roleIn)
	if len(n.Input) > 2 && n.Input[2] != "" {
		if _, ct := an.constOf(n.Input[2]); ct != nil {
			d := ct.GetDims()
			if len(d) >= 1 && d[len(d)-1] == int64(width) && width > 1 {
				an.param(i, 2, len(d)-1, out, roleAffine)
			}
		} else {
			an.block(out, fmt.Sprintf("Gemm node %s adds a computed C", an.cur))
		}
	}
	an.setLayout(n.Output[0], 1, out)
}

func ruleMatMul(an *analyzer, n *onnxpb.NodeProto, i int) {
	a, b := n.Input[0], n.Input[1]
	da, oka := an.dims(a)
	db, okb := an.dims(b)
	if !oka || !okb {
		an.blockInputs(n, fmt.Sprintf("MatMul node %s has operands of unknown shape", an.cur))
		return
	}
	_, bt := an.constOf(b)
	_, at := an.constOf(a)
	if at != nil && bt == nil {
		an.blockInputs(n, fmt.Sprintf("MatMul node %s multiplies a constant by a computed tensor", an.cur))
		return
	}
	if len(da) < 2 || len(db) < 2 {
		an.blockInputs(n, fmt.Sprintf("MatMul node %s has a 1-D operand", an.cur))
		return
	}
	ro := an.rank(n.Output[0])
	if bt != nil {
		if len(db) != 2 {
			an.blockInputs(n, fmt.Sprintf("MatMul node %s has a batched constant weight", an.cur))
			return
		}
		if l := an.lay[a][len(da)-1]; l != nil {
			an.param(i, 1, 0, l, roleOut)
		}
		for ax, l := range an.lay[a] {
			if ax < len(da)-1 {
				an.setLayout(n.Output[0], ax, l)
			}
		}
		out := an.fresh(int(db[1]), "neurons")
		an.param(i, 1, 1, out, roleIn)
		an.setLayout(n.Output[0], ro-1, out)
		return
	}
	// Two computed operands (attention): batch axes couple like an
	// elementwise op, rows and columns pass, the contracted axes couple.
	for k := 0; k < ro-2; k++ {
		var have []Layout
		for _, op := range []struct {
			t string
			d []int64
		}{{a, da}, {b, db}} {
			ax := k - (ro - len(op.d))
			if ax < 0 || ax >= len(op.d)-2 {
				continue
			}
			if l := an.lay[op.t][ax]; l != nil {
				have = append(have, l)
			} else if op.d[ax] != 1 && len(have) > 0 {
				an.block(have[0], fmt.Sprintf("batch axis of MatMul node %s meets %q without units", an.cur, op.t))
			}
		}
		if len(have) == 2 {
			an.unify(have[0], have[1], "batch axes of MatMul")
		}
		if len(have) > 0 {
			an.setLayout(n.Output[0], k, have[0])
		}
	}
	if l := an.lay[a][len(da)-2]; l != nil {
		an.setLayout(n.Output[0], ro-2, l)
	}
	if l := an.lay[b][len(db)-1]; l != nil {
		an.setLayout(n.Output[0], ro-1, l)
	}
	// Units summed over in a product of two computed tensors (the head
	// size of q.k when a single head is left) have no outgoing weights:
	// removing them changes every product, whatever the units' values.
	ka, kb := an.lay[a][len(da)-1], an.lay[b][len(db)-2]
	switch {
	case ka != nil && kb != nil:
		r := fmt.Sprintf("contracted by MatMul node %s between two computed tensors", an.cur)
		an.block(ka, r)
		an.block(kb, r)
	case ka != nil:
		an.block(ka, fmt.Sprintf("contracted by MatMul node %s with an axis without units", an.cur))
	case kb != nil:
		an.block(kb, fmt.Sprintf("contracted by MatMul node %s with an axis without units", an.cur))
	}
}

func ruleConv(an *analyzer, n *onnxpb.NodeProto, i int) {
	x := n.Input[0]
	dx, okx := an.dims(x)
	_, wt := an.constOf(n.Input[1])
	if wt == nil || !okx || len(dx) < 3 {
		an.blockInputs(n, fmt.Sprintf("Conv node %s has no constant weight or an input of unknown shape", an.cur))
		return
	}
	w := wt.GetDims()
	group := int(onnxio.AttrInt(n, "group", 1))
	in := an.lay[x][1]
	for ax, l := range an.lay[x] {
		if ax != 1 {
			an.block(l, fmt.Sprintf("Conv node %s mixes units along axis %d", an.cur, ax))
		}
	}
	hasBias := len(n.Input) > 2 && n.Input[2] != ""
	var out Layout
	switch {
	case group == 1:
		if in != nil {
			an.param(i, 1, 1, in, roleOut)
		}
		out = an.fresh(int(w[0]), "channels")
	case int64(group) == dx[1] && w[1] == 1:
		// Depthwise: output channel m reads input channel m / mult.
		if in == nil {
			return
		}
		mult := int(w[0]) / group
		e, err := an.sp.expand(in)
		if err != nil {
			an.block(in, err.Error())
			return
		}
		out = make(Layout, len(e))
		for k, g := range e {
			out[k] = Seg{g.S, g.R, g.B * mult}
		}
		an.convs = append(an.convs, convFix{node: i, in: in, wIn: 1, group: true})
	default:
		// Grouped: units are whole groups.
		gs := an.fresh(group, "conv-groups")
		cin := int(dx[1]) / group
		if in != nil {
			an.unify(in, Layout{{gs[0].S, 1, cin}}, "grouped Conv input")
		} else {
			an.block(gs, fmt.Sprintf("grouped Conv node %s reads channels without units", an.cur))
		}
		out = Layout{{gs[0].S, 1, int(w[0]) / group}}
		an.convs = append(an.convs, convFix{node: i, in: Layout{{gs[0].S, 1, cin}}, wIn: cin, group: true})
	}
	an.param(i, 1, 0, out, roleIn)
	if hasBias {
		an.param(i, 2, 0, out, roleAffine)
	}
	an.setLayout(n.Output[0], 1, out)
}

func ruleConvTranspose(an *analyzer, n *onnxpb.NodeProto, i int) {
	x := n.Input[0]
	dx, okx := an.dims(x)
	_, wt := an.constOf(n.Input[1])
	group := int(onnxio.AttrInt(n, "group", 1))
	if wt == nil || !okx || len(dx) < 3 || (group != 1 && !(int64(group) == dx[1] && wt.GetDims()[0] == dx[1])) {
		an.blockInputs(n, fmt.Sprintf("ConvTranspose node %s: only plain and depthwise forms are pruned", an.cur))
		return
	}
	w := wt.GetDims()
	in := an.lay[x][1]
	for ax, l := range an.lay[x] {
		if ax != 1 {
			an.block(l, fmt.Sprintf("ConvTranspose node %s mixes units along axis %d", an.cur, ax))
		}
	}
	var out Layout
	if group == 1 {
		if in != nil {
			an.param(i, 1, 0, in, roleOut)
		}
		out = an.fresh(int(w[1]), "channels")
		an.param(i, 1, 1, out, roleIn)
	} else {
		if in == nil {
			return
		}
		an.param(i, 1, 0, in, roleIn)
		e, err := an.sp.expand(in)
		if err != nil {
			an.block(in, err.Error())
			return
		}
		for _, g := range e {
			out = append(out, Seg{g.S, g.R, g.B * int(w[1])})
		}
		an.convs = append(an.convs, convFix{node: i, in: in, wIn: 1, group: true})
	}
	if len(n.Input) > 2 && n.Input[2] != "" {
		an.param(i, 2, 0, out, roleAffine)
	}
	an.setLayout(n.Output[0], 1, out)
}

func ruleBatchNorm(an *analyzer, n *onnxpb.NodeProto, i int) {
	if len(n.Output) > 1 || onnxio.AttrInt(n, "training_mode", 0) == 1 {
		an.blockInputs(n, fmt.Sprintf("BatchNormalization node %s runs in training mode", an.cur))
		return
	}
	x := n.Input[0]
	an.mapAxes(x, n.Output[0], func(ax int) (int, bool) { return ax, true }, "")
	if l := an.lay[x][1]; l != nil {
		for k := 1; k < len(n.Input) && k < 5; k++ {
			an.param(i, k, 0, l, roleAffine)
		}
	}
}

func ruleInstanceNorm(an *analyzer, n *onnxpb.NodeProto, i int) {
	x := n.Input[0]
	an.mapAxes(x, n.Output[0], func(ax int) (int, bool) { return ax, true }, "")
	if l := an.lay[x][1]; l != nil {
		an.param(i, 1, 0, l, roleAffine)
		an.param(i, 2, 0, l, roleAffine)
	}
}

func ruleLayerNorm(an *analyzer, n *onnxpb.NodeProto, i int) {
	x := n.Input[0]
	r := an.rank(x)
	if r < 0 {
		an.blockInputs(n, fmt.Sprintf("LayerNormalization node %s: input shape unknown", an.cur))
		return
	}
	axis := int(onnxio.AttrInt(n, "axis", -1))
	if axis < 0 {
		axis += r
	}
	for ax, l := range an.lay[x] {
		switch {
		case ax < axis:
			an.setLayout(n.Output[0], ax, l)
		case ax == r-1 && axis == r-1 && !an.opts.NoNormThrough:
			an.warn(l, fmt.Sprintf("LayerNormalization node %s normalises over the pruned axis: its statistics change", an.cur))
			an.setLayout(n.Output[0], ax, l)
			for k := 1; k < len(n.Input) && k < 3; k++ {
				if n.Input[k] != "" {
					if _, t := an.constOf(n.Input[k]); t != nil {
						an.param(i, k, len(t.GetDims())-1, l, roleAffine)
					}
				}
			}
		default:
			an.block(l, fmt.Sprintf("LayerNormalization node %s normalises over the unit axis together with others", an.cur))
		}
	}
	for k := 1; k < len(n.Output); k++ {
		an.mapAxes(x, n.Output[k], func(ax int) (int, bool) { return ax, ax < axis }, fmt.Sprintf("statistics output of LayerNormalization node %s", an.cur))
	}
}

func rulePool(an *analyzer, n *onnxpb.NodeProto, i int) {
	for _, o := range n.Output {
		an.mapAxes(n.Input[0], o, func(ax int) (int, bool) { return ax, ax < 2 },
			fmt.Sprintf("%s node %s pools over the unit axis", n.GetOpType(), an.cur))
	}
}

func ruleFlatten(an *analyzer, n *onnxpb.NodeProto, i int) {
	x := n.Input[0]
	d, ok := an.needShape(n, x)
	if !ok {
		return
	}
	axis := int(onnxio.AttrInt(n, "axis", 1))
	if axis < 0 {
		axis += len(d)
	}
	var g0, g1 []int
	for k := range d {
		if k < axis {
			g0 = append(g0, k)
		} else {
			g1 = append(g1, k)
		}
	}
	groups := []rgroup{{in: g0, out: []int{0}}, {in: g1, out: []int{1}}}
	an.reshapeAxes(x, d, n.Output[0], []int64{prod(d[:axis]), prod(d[axis:])}, groups)
}

func prod(d []int64) int64 {
	p := int64(1)
	for _, v := range d {
		if v < 0 {
			return -1
		}
		p *= v
	}
	return p
}

func ruleReshape(an *analyzer, n *onnxpb.NodeProto, i int) {
	x, o := n.Input[0], n.Output[0]
	if len(an.lay[x]) == 0 {
		return
	}
	din, ok1 := an.needShape(n, x)
	dout, ok2 := an.dims(o)
	if !ok1 || !ok2 {
		an.blockTensor(x, fmt.Sprintf("Reshape node %s has an output of unknown shape", an.cur))
		return
	}
	allowZero := onnxio.AttrInt(n, "allowzero", 0) == 1
	dout = an.solveReshape(x, din, dout, an.prov(n.Input[1], 0), allowZero)
	an.reshapeAxes(x, din, o, dout, reshapeGroupsSym(din, dout))
	an.fixShape(n, i, 1, o, x, allowZero)
}

// symSize stands for a run-time size that is the same on both sides of a
// reshape; it is larger than any product of real sizes it meets.
const symSize = 1<<31 - 1

// reshapeGroupsSym is reshapeGroups for shapes that, besides leading
// run-time (batch) axes, have one more run-time axis on each side, such as
// the sequence in [B,KV,G,T,D] -> [B,H,T,D]. When the known sizes on both
// sides have the same product, the two run-time sizes are equal and can be
// paired; a group that mixes such an axis with others stays opaque.
func reshapeGroupsSym(in, out []int64) []rgroup {
	i := 0
	for i < len(in) && i < len(out) && in[i] < 0 && out[i] < 0 {
		i++
	}
	unk := func(d []int64) (int, int64) {
		at, p := -1, int64(1)
		for k := i; k < len(d); k++ {
			if d[k] < 0 {
				if at >= 0 {
					return -2, 0
				}
				at = k
				continue
			}
			p *= d[k]
		}
		return at, p
	}
	ai, pi := unk(in)
	ao, po := unk(out)
	if ai < 0 || ao < 0 || pi != po {
		return reshapeGroups(in, out)
	}
	in2, out2 := append([]int64(nil), in...), append([]int64(nil), out...)
	in2[ai], out2[ao] = symSize, symSize
	gs := reshapeGroups(in2, out2)
	for k, g := range gs {
		if slices.Contains(g.in, ai) || slices.Contains(g.out, ao) {
			if len(g.in) != 1 || len(g.out) != 1 || g.in[0] != ai || g.out[0] != ao {
				gs[k].opaque = true
			}
		}
	}
	return gs
}

// solveReshape fills in the -1 of a reshape target that shape inference
// could not size because the target also copies a run-time size of the
// input (x.view(x.size(0), -1)): the copied axes cancel, and the -1 is the
// rest of the input.
func (an *analyzer) solveReshape(x string, din, dout []int64, elems []elem, allowZero bool) []int64 {
	if len(elems) != len(dout) {
		return dout
	}
	copied := map[int]bool{} // input axes copied to the same output index
	free := -1
	num, den := int64(1), int64(1)
	for k, e := range elems {
		switch {
		case k < len(din) && e.kind == elemShape && e.tensor == x && e.axis == k:
			copied[k] = true
		case k < len(din) && e.kind != elemShape && e.value == 0 && !allowZero:
			copied[k] = true
		case e.kind != elemShape && e.value == -1:
			if free >= 0 {
				return dout
			}
			free = k
		case dout[k] >= 0:
			den *= dout[k]
		default:
			return dout
		}
	}
	if free < 0 || dout[free] >= 0 {
		return dout
	}
	for k, d := range din {
		if copied[k] {
			continue
		}
		if d < 0 {
			return dout
		}
		num *= d
	}
	if den == 0 || num%den != 0 {
		return dout
	}
	out := append([]int64(nil), dout...)
	out[free] = num / den
	return out
}

// fixShape records, for every unit axis of out, how the target shape input
// (slot) of node i names its size, so that Apply can rewrite it; it blocks
// what cannot be rewritten.
func (an *analyzer) fixShape(n *onnxpb.NodeProto, i, slot int, out, in string, allowZero bool) {
	if len(an.lay[out]) == 0 {
		return
	}
	r := an.rank(out)
	elems := an.withUser(an.prov(n.Input[slot], 0), n.Input[slot], i, slot)
	if n.GetOpType() == "Expand" && len(elems) < r {
		// Expand aligns its shape to the right.
		pad := make([]elem, r-len(elems))
		for k := range pad {
			pad[k] = elem{kind: elemNone}
		}
		elems = append(pad, elems...)
	}
	for ax, l := range an.lay[out] {
		if elems == nil || len(elems) != r {
			an.block(l, fmt.Sprintf("the target shape of %s node %s is computed in a way onnx-cria cannot rewrite", n.GetOpType(), an.cur))
			continue
		}
		e := elems[ax]
		// Values that mean "keep the input's size" are fine whatever
		// computed them; only a literal size must be rewritten.
		known := e.kind == elemConst || (e.kind == elemOther && e.value != onnxio.Unknown)
		switch {
		case e.kind == elemNone:
			// Expand: axis not named by the shape; the input's size stands.
		case known && e.value == -1 && n.GetOpType() == "Reshape":
		case known && e.value == 1 && n.GetOpType() == "Expand":
		case known && e.value == 0 && !allowZero && n.GetOpType() == "Reshape":
			if il := an.lay[in][ax]; il != nil {
				an.checks = append(an.checks, layoutCheck{il, l, fmt.Sprintf("Reshape node %s copies axis %d from an input axis with other units", an.cur, ax)})
			} else {
				an.block(l, fmt.Sprintf("Reshape node %s copies axis %d from an input axis without units", an.cur, ax))
			}
		case e.kind == elemConst:
			an.fixes = append(an.fixes, shapeFix{node: i, axis: ax, lay: l, elems: elems})
		case e.kind == elemShape:
			if sl := an.lay[e.tensor][e.axis]; sl != nil {
				an.checks = append(an.checks, layoutCheck{sl, l, fmt.Sprintf("%s node %s takes the size of axis %d from %q, which has other units", n.GetOpType(), an.cur, ax, e.tensor)})
			} else {
				an.block(l, fmt.Sprintf("%s node %s takes the size of a unit axis from %q, which has no units", n.GetOpType(), an.cur, e.tensor))
			}
		default:
			an.block(l, fmt.Sprintf("%s node %s computes the size of a unit axis at run time", n.GetOpType(), an.cur))
		}
	}
}

type rgroup struct {
	in, out []int
	opaque  bool
}

// reshapeGroups pairs the axes of a reshape: each group of input axes has
// the same number of elements as its group of output axes. Leading unknown
// (batch) axes pair one to one; known axes are grouped from the right;
// whatever is left in the middle is one opaque group.
func reshapeGroups(in, out []int64) []rgroup {
	var gs []rgroup
	i, j := 0, 0
	for i < len(in) && j < len(out) && in[i] < 0 && out[j] < 0 {
		gs = append(gs, rgroup{in: []int{i}, out: []int{j}})
		i++
		j++
	}
	var tail []rgroup
	p, q := len(in)-1, len(out)-1
	for p >= i && q >= j && in[p] >= 0 && out[q] >= 0 {
		gi, gout := []int{p}, []int{q}
		pi, po := in[p], out[q]
		pp, qq := p-1, q-1
		ok := true
		for pi != po {
			if pi < po {
				if pp < i || in[pp] < 0 {
					ok = false
					break
				}
				pi *= in[pp]
				gi = append([]int{pp}, gi...)
				pp--
			} else {
				if qq < j || out[qq] < 0 {
					ok = false
					break
				}
				po *= out[qq]
				gout = append([]int{qq}, gout...)
				qq--
			}
		}
		if !ok {
			break
		}
		tail = append([]rgroup{{in: gi, out: gout}}, tail...)
		p, q = pp, qq
	}
	if p >= i || q >= j {
		var mi, mo []int
		for k := i; k <= p; k++ {
			mi = append(mi, k)
		}
		for k := j; k <= q; k++ {
			mo = append(mo, k)
		}
		gs = append(gs, rgroup{in: mi, out: mo, opaque: true})
	}
	return append(gs, tail...)
}

// reshapeAxes moves units through a reshape given its axis groups.
func (an *analyzer) reshapeAxes(x string, din []int64, out string, dout []int64, groups []rgroup) {
	for _, g := range groups {
		var unitAxes []int
		for _, ax := range g.in {
			if an.lay[x][ax] != nil {
				unitAxes = append(unitAxes, ax)
			}
		}
		if len(unitAxes) == 0 {
			continue
		}
		reason := fmt.Sprintf("Reshape at node %s regroups the unit axis in a way onnx-cria cannot follow", an.cur)
		if g.opaque || len(unitAxes) > 1 {
			for _, ax := range unitAxes {
				an.block(an.lay[x][ax], reason)
			}
			continue
		}
		ax := unitAxes[0]
		l := an.lay[x][ax]
		var nonOneIn, nonOneOut []int
		for _, k := range g.in {
			if din[k] != 1 {
				nonOneIn = append(nonOneIn, k)
			}
		}
		for _, k := range g.out {
			if dout[k] != 1 {
				nonOneOut = append(nonOneOut, k)
			}
		}
		switch {
		case len(nonOneOut) == 1:
			outer, inner := int64(1), int64(1)
			for _, k := range g.in {
				if k < ax {
					outer *= din[k]
				} else if k > ax {
					inner *= din[k]
				}
			}
			e, err := an.sp.expand(l)
			if err == nil && len(e) > 1 && outer != 1 {
				err = fmt.Errorf("a concatenated axis is repeated")
			}
			if err == nil && (outer < 1 || inner < 1) {
				// Merged with an axis of run-time size (Flatten(axis=2) of
				// NCHW puts the channels inside the batch).
				err = fmt.Errorf("it is merged with an axis of unknown size")
			}
			if err != nil {
				an.block(l, reason+": "+err.Error())
				continue
			}
			nl := make(Layout, len(e))
			for k, s := range e {
				nl[k] = Seg{s.S, s.R * int(outer), s.B * int(inner)}
			}
			an.setLayout(out, nonOneOut[0], nl)
		case len(nonOneIn) == 1 && len(nonOneOut) > 1:
			o := nonOneOut[0]
			nl, err := an.sp.split(l, int(dout[o]), "heads", an.cur)
			if err != nil {
				an.block(l, reason+": "+err.Error())
				continue
			}
			an.setLayout(out, o, nl)
		default:
			an.block(l, reason)
		}
	}
}

func ruleTranspose(an *analyzer, n *onnxpb.NodeProto, i int) {
	x := n.Input[0]
	r := an.rank(x)
	perm := onnxio.AttrInts(n, "perm")
	if perm == nil {
		for k := r - 1; k >= 0; k-- {
			perm = append(perm, int64(k))
		}
	}
	inv := map[int]int{}
	for k, p := range perm {
		inv[int(p)] = k
	}
	an.mapAxes(x, n.Output[0], func(ax int) (int, bool) { o, ok := inv[ax]; return o, ok }, "bad Transpose")
}

// axesArg reads axes from the attribute (old opsets) or the second input.
func (an *analyzer) axesArg(n *onnxpb.NodeProto, since int64) ([]int64, bool) {
	if an.opset >= since {
		if len(n.Input) < 2 || n.Input[1] == "" {
			return nil, true
		}
		v, ok := an.shapes.Values[n.Input[1]]
		return v, ok
	}
	return onnxio.AttrInts(n, "axes"), true
}

func ruleUnsqueeze(an *analyzer, n *onnxpb.NodeProto, i int) {
	x := n.Input[0]
	axes, ok := an.axesArg(n, 13)
	ro := an.rank(n.Output[0])
	if !ok || ro < 0 {
		an.blockTensor(x, fmt.Sprintf("Unsqueeze node %s has unknown axes", an.cur))
		return
	}
	ins := map[int]bool{}
	for _, a := range axes {
		if a < 0 {
			a += int64(ro)
		}
		ins[int(a)] = true
	}
	m := map[int]int{}
	j := 0
	for k := 0; k < ro; k++ {
		if !ins[k] {
			m[j] = k
			j++
		}
	}
	an.mapAxes(x, n.Output[0], func(ax int) (int, bool) { o, ok := m[ax]; return o, ok }, "bad Unsqueeze")
}

func ruleSqueeze(an *analyzer, n *onnxpb.NodeProto, i int) {
	x := n.Input[0]
	din, ok1 := an.dims(x)
	axes, ok2 := an.axesArg(n, 13)
	if !ok1 || !ok2 {
		an.blockTensor(x, fmt.Sprintf("Squeeze node %s has unknown axes", an.cur))
		return
	}
	drop := map[int]bool{}
	for _, a := range axes {
		if a < 0 {
			a += int64(len(din))
		}
		drop[int(a)] = true
	}
	if len(axes) == 0 {
		for k, d := range din {
			if d == 1 {
				drop[k] = true
			}
		}
	}
	m := map[int]int{}
	j := 0
	for k := range din {
		if !drop[k] {
			m[k] = j
			j++
		}
	}
	an.mapAxes(x, n.Output[0], func(ax int) (int, bool) { o, ok := m[ax]; return o, ok }, "Squeeze of a unit axis")
}

func ruleConcat(an *analyzer, n *onnxpb.NodeProto, i int) {
	r := an.rank(n.Output[0])
	if r < 0 {
		an.blockInputs(n, fmt.Sprintf("Concat node %s: shape unknown", an.cur))
		return
	}
	axis := int(onnxio.AttrInt(n, "axis", 0))
	if axis < 0 {
		axis += r
	}
	any := false
	for _, in := range n.Input {
		if l := an.lay[in][axis]; l != nil {
			any = true
		}
	}
	if any {
		var out Layout
		for _, in := range n.Input {
			d, ok := an.dims(in)
			if !ok {
				an.blockInputs(n, fmt.Sprintf("Concat node %s: shape unknown", an.cur))
				return
			}
			if l := an.lay[in][axis]; l != nil {
				out = append(out, l...)
				continue
			}
			if d[axis] == 0 {
				continue
			}
			// Positions without units: a space that is never pruned.
			fixed := an.fresh(int(d[axis]), "fixed")
			an.block(fixed, fmt.Sprintf("concatenated by node %s from %q, which has no units", an.cur, in))
			if name, _ := an.constOf(in); name != "" {
				an.param(i, indexOf(n.Input, in), axis, fixed, roleAffine)
			}
			out = append(out, fixed...)
		}
		an.setLayout(n.Output[0], axis, out)
	}
	// Other axes couple like an elementwise op.
	for k := 0; k < r; k++ {
		if k == axis {
			continue
		}
		var have []Layout
		for _, in := range n.Input {
			if l := an.lay[in][k]; l != nil {
				have = append(have, l)
			}
		}
		if len(have) == 0 {
			continue
		}
		if len(have) != len(n.Input) {
			an.block(have[0], fmt.Sprintf("Concat node %s joins tensors with and without units on axis %d", an.cur, k))
		}
		for _, h := range have[1:] {
			an.unify(have[0], h, "Concat operands")
		}
		an.setLayout(n.Output[0], k, have[0])
	}
}

func indexOf(l []string, s string) int {
	for k, x := range l {
		if x == s {
			return k
		}
	}
	return -1
}

func ruleSplit(an *analyzer, n *onnxpb.NodeProto, i int) {
	x := n.Input[0]
	d, ok := an.needShape(n, x)
	if !ok {
		return
	}
	axis := int(onnxio.AttrInt(n, "axis", 0))
	if axis < 0 {
		axis += len(d)
	}
	for ax, l := range an.lay[x] {
		if ax != axis {
			for _, o := range n.Output {
				an.setLayout(o, ax, l)
			}
			continue
		}
		var sizes []int
		for _, o := range n.Output {
			od, ok := an.dims(o)
			if !ok {
				an.block(l, fmt.Sprintf("Split node %s: output shape unknown", an.cur))
				sizes = nil
				break
			}
			sizes = append(sizes, int(od[axis]))
		}
		if sizes == nil {
			continue
		}
		if an.opset >= 13 && len(n.Input) > 1 && n.Input[1] != "" {
			if _, t := an.constOf(n.Input[1]); t == nil {
				an.block(l, fmt.Sprintf("Split node %s cuts the unit axis at sizes computed at run time", an.cur))
				continue
			}
		}
		parts, err := an.cut(l, sizes)
		if err != nil {
			an.block(l, fmt.Sprintf("Split node %s cuts the unit axis: %v", an.cur, err))
			continue
		}
		for k, o := range n.Output {
			an.setLayout(o, ax, parts[k])
		}
		an.splits = append(an.splits, splitFix{node: i, parts: parts})
	}
}

// cut divides a layout at the given sizes, refining a space that a cut
// falls inside into the pieces on either side.
func (an *analyzer) cut(l Layout, sizes []int) ([]Layout, error) {
	e, err := an.sp.expand(l)
	if err != nil {
		return nil, err
	}
	// Refine segments so that every boundary falls between segments.
	var segs Layout
	bounds := map[int]bool{}
	acc := 0
	for _, s := range sizes {
		acc += s
		bounds[acc] = true
	}
	off := 0
	for _, g := range e {
		n := an.sp.s[g.S].size
		length := n * g.R * g.B
		var inside []int
		for b := off + 1; b < off+length; b++ {
			if bounds[b] {
				inside = append(inside, b-off)
			}
		}
		if len(inside) == 0 {
			segs = append(segs, g)
			off += length
			continue
		}
		if g.R != 1 {
			return nil, fmt.Errorf("boundary inside a repeated segment")
		}
		var parts Layout
		prev := 0
		for _, b := range append(inside, length) {
			if (b-prev)%g.B != 0 {
				return nil, fmt.Errorf("boundary inside a unit's block")
			}
			parts = append(parts, Seg{an.sp.add((b-prev)/g.B, an.sp.s[g.S].kind, an.cur), 1, 1})
			prev = b
		}
		an.sp.s[g.S].alias = parts
		for _, p := range parts {
			segs = append(segs, Seg{p.S, 1, g.B})
		}
		off += length
	}
	var out []Layout
	k := 0
	for _, s := range sizes {
		var part Layout
		got := 0
		for got < s && k < len(segs) {
			part = append(part, segs[k])
			got += an.sp.length(Layout{segs[k]})
			k++
		}
		if got != s {
			return nil, fmt.Errorf("split sizes do not match the axis")
		}
		out = append(out, part)
	}
	return out, nil
}

func ruleSlice(an *analyzer, n *onnxpb.NodeProto, i int) {
	x := n.Input[0]
	din, ok1 := an.dims(x)
	dout, ok2 := an.dims(n.Output[0])
	if !ok1 || !ok2 || len(din) != len(dout) {
		an.blockTensor(x, fmt.Sprintf("Slice node %s: shapes unknown", an.cur))
		return
	}
	for ax, l := range an.lay[x] {
		if din[ax] == dout[ax] && an.fullSlice(n, ax, len(din)) {
			an.setLayout(n.Output[0], ax, l)
			continue
		}
		if din[ax] == dout[ax] {
			an.block(l, fmt.Sprintf("Slice node %s slices the unit axis with bounds known only at run time", an.cur))
			continue
		}
		an.block(l, fmt.Sprintf("Slice node %s slices the unit axis", an.cur))
	}
}

// fullSlice reports whether Slice node n keeps axis ax whole, step 1.
func (an *analyzer) fullSlice(n *onnxpb.NodeProto, ax, r int) bool {
	vals := func(k int) ([]int64, bool) {
		if k >= len(n.Input) || n.Input[k] == "" {
			return nil, false
		}
		v, ok := an.shapes.Values[n.Input[k]]
		return v, ok
	}
	starts, ok1 := vals(1)
	ends, ok2 := vals(2)
	if !ok1 || !ok2 {
		return false
	}
	axes, ok := vals(3)
	if !ok {
		axes = nil
		for k := range starts {
			axes = append(axes, int64(k))
		}
	}
	steps, _ := vals(4)
	for k, a := range axes {
		if a < 0 {
			a += int64(r)
		}
		if int(a) != ax {
			continue
		}
		if k < len(steps) && steps[k] != 1 {
			return false
		}
		return starts[k] == 0 && (ends[k] >= math.MaxInt32 || ends[k] == math.MaxInt64)
	}
	return true // axis not sliced
}

func ruleGather(an *analyzer, n *onnxpb.NodeProto, i int) {
	data, idx := n.Input[0], n.Input[1]
	axis := int(onnxio.AttrInt(n, "axis", 0))
	dd, ok1 := an.dims(data)
	di, ok2 := an.dims(idx)
	if !ok1 || !ok2 {
		an.blockInputs(n, fmt.Sprintf("Gather node %s: shapes unknown", an.cur))
		return
	}
	if axis < 0 {
		axis += len(dd)
	}
	an.blockTensor(idx, fmt.Sprintf("used as indices by Gather node %s", an.cur))
	if _, t := an.constOf(data); t != nil && len(dd) == 2 && axis == 0 && dd[1] > 1 && onnxio.DataType(t.GetDataType()).IsFloat() {
		// An embedding table: each column is a unit of the model's width
		// (with constant indices too: position embeddings at a fixed length).
		out := an.fresh(int(dd[1]), "embedding")
		an.param(i, 0, 1, out, roleIn)
		an.setLayout(n.Output[0], len(di), out)
		return
	}
	an.mapAxes(data, n.Output[0], func(ax int) (int, bool) {
		switch {
		case ax < axis:
			return ax, true
		case ax > axis:
			return ax + len(di) - 1, true
		}
		return 0, false
	}, fmt.Sprintf("Gather node %s selects along the unit axis", an.cur))
}

func ruleReduce(an *analyzer, n *onnxpb.NodeProto, i int) {
	x := n.Input[0]
	din, ok := an.dims(x)
	if !ok {
		an.blockTensor(x, fmt.Sprintf("%s node %s: shape unknown", n.GetOpType(), an.cur))
		return
	}
	op := n.GetOpType()
	keep := onnxio.AttrInt(n, "keepdims", 1) == 1
	var axes []int64
	if op == "ArgMax" || op == "ArgMin" {
		axes = []int64{onnxio.AttrInt(n, "axis", 0)}
	} else {
		since := int64(18)
		if op == "ReduceSum" {
			since = 13
		}
		var okAx bool
		axes, okAx = an.axesArg(n, since)
		if !okAx {
			an.blockTensor(x, fmt.Sprintf("%s node %s has axes known only at run time", op, an.cur))
			return
		}
		if len(axes) == 0 && onnxio.AttrInt(n, "noop_with_empty_axes", 0) == 1 {
			an.mapAxes(x, n.Output[0], func(ax int) (int, bool) { return ax, true }, "")
			return
		}
	}
	red := map[int]bool{}
	for _, a := range axes {
		if a < 0 {
			a += int64(len(din))
		}
		red[int(a)] = true
	}
	if len(axes) == 0 {
		for k := range din {
			red[k] = true
		}
	}
	stat := keep && (op == "ReduceMean" || op == "ReduceSum" || op == "ReduceSumSquare" || op == "ReduceL2")
	m := map[int]int{}
	j := 0
	for k := range din {
		if red[k] {
			if keep {
				j++
			}
			continue
		}
		m[k] = j
		j++
	}
	for ax, l := range an.lay[x] {
		if o, ok := m[ax]; ok {
			an.setLayout(n.Output[0], o, l)
			continue
		}
		if stat && !an.opts.NoNormThrough {
			// Normalisation statistics (decomposed LayerNorm, RMSNorm):
			// structurally fine, numerically different after pruning.
			an.warn(l, fmt.Sprintf("%s node %s computes statistics over the pruned axis: they change", op, an.cur))
			continue
		}
		an.block(l, fmt.Sprintf("%s node %s reduces over the unit axis", op, an.cur))
	}
}

func ruleSoftmax(an *analyzer, n *onnxpb.NodeProto, i int) {
	x := n.Input[0]
	r := an.rank(x)
	axis := int(onnxio.AttrInt(n, "axis", -1))
	if axis < 0 {
		axis += r
	}
	an.mapAxes(x, n.Output[0], func(ax int) (int, bool) { return ax, ax != axis },
		fmt.Sprintf("%s node %s normalises over the unit axis", n.GetOpType(), an.cur))
}

// Before opset 13, Softmax flattens the input into [before axis, from axis].
func ruleSoftmaxOld(an *analyzer, n *onnxpb.NodeProto, i int) {
	x := n.Input[0]
	r := an.rank(x)
	axis := int(onnxio.AttrInt(n, "axis", 1))
	if axis < 0 {
		axis += r
	}
	an.mapAxes(x, n.Output[0], func(ax int) (int, bool) { return ax, ax < axis },
		fmt.Sprintf("%s node %s normalises over the unit axis", n.GetOpType(), an.cur))
}

func ruleExpand(an *analyzer, n *onnxpb.NodeProto, i int) {
	x := n.Input[0]
	din, ok1 := an.dims(x)
	dout, ok2 := an.dims(n.Output[0])
	if !ok1 || !ok2 {
		an.blockTensor(x, fmt.Sprintf("Expand node %s: shapes unknown", an.cur))
		return
	}
	off := len(dout) - len(din)
	an.mapAxes(x, n.Output[0], func(ax int) (int, bool) {
		return ax + off, dout[ax+off] == din[ax] || dout[ax+off] < 0
	}, fmt.Sprintf("Expand node %s broadcasts the unit axis", an.cur))
	an.fixShape(n, i, 1, n.Output[0], x, false)
}

func ruleTile(an *analyzer, n *onnxpb.NodeProto, i int) {
	x := n.Input[0]
	reps, ok := an.shapes.Values[n.Input[1]]
	an.mapAxes(x, n.Output[0], func(ax int) (int, bool) {
		return ax, ok && ax < len(reps) && reps[ax] == 1
	}, fmt.Sprintf("Tile node %s repeats the unit axis", an.cur))
}

func rulePad(an *analyzer, n *onnxpb.NodeProto, i int) {
	x := n.Input[0]
	pads, ok := an.shapes.Values[n.Input[1]]
	r := an.rank(x)
	an.mapAxes(x, n.Output[0], func(ax int) (int, bool) {
		return ax, ok && len(pads) == 2*r && pads[ax] == 0 && pads[ax+r] == 0
	}, fmt.Sprintf("Pad node %s pads the unit axis", an.cur))
}

// CumSum and Trilu act along specific axes; units elsewhere pass.
func ruleCumSum(an *analyzer, n *onnxpb.NodeProto, i int) {
	x := n.Input[0]
	r := an.rank(x)
	bad := map[int]bool{}
	if n.GetOpType() == "Trilu" {
		bad[r-1], bad[r-2] = true, true
	} else if v, ok := an.shapes.Values[n.Input[1]]; ok && len(v) == 1 {
		a := int(v[0])
		if a < 0 {
			a += r
		}
		bad[a] = true
	} else {
		for k := 0; k < r; k++ {
			bad[k] = true
		}
	}
	an.mapAxes(x, n.Output[0], func(ax int) (int, bool) { return ax, !bad[ax] },
		fmt.Sprintf("%s node %s mixes positions along the unit axis", n.GetOpType(), an.cur))
}
