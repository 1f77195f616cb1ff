package rewrite

import (
	"fmt"
	"math"

	"github.com/onnx-cria/onnx-cria/onnxio"
	"github.com/onnx-cria/onnx-cria/onnxio/onnxpb"
)

func init() {
	rules.Add("", 1, ruleTranspose, "Transpose")
	rules.Add("", 1, ruleUnsqueeze, "Unsqueeze")
	rules.Add("", 1, ruleSqueeze, "Squeeze")
	rules.Add("", 1, ruleConcat, "Concat")
	rules.Add("", 1, ruleSplit, "Split")
	rules.Add("", 10, ruleSlice, "Slice")
	rules.Add("", 1, ruleGather, "Gather")
	rules.Add("", 11, rulePad, "Pad")
	rules.Add("", 11, ruleCumSum, "CumSum")
	rules.Add("", 14, ruleCumSum, "Trilu")
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
			if d[axis] < 0 {
				// A part of run-time length (a Slice with computed bounds, as
				// torch exports chunk): where the units sit is unknown.
				for _, in2 := range n.Input {
					an.block(an.lay[in2][axis], fmt.Sprintf("Concat node %s joins %q, whose length along the unit axis is known only at run time", an.cur, in))
				}
				out = nil
				break
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
		if out != nil {
			an.setLayout(n.Output[0], axis, out)
		}
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
			// A KV cache: past keys (a graph input) joined with the new ones.
			cached := true
			for slot, in := range n.Input {
				if an.lay[in][k] == nil && !an.concatConst(i, slot, k, have[0]) {
					cached = cached && an.cacheInput(in, k, have[0])
				}
			}
			if !cached {
				an.block(have[0], fmt.Sprintf("Concat node %s joins tensors with and without units on axis %d", an.cur, k))
			}
		}
		for _, h := range have[1:] {
			an.unify(have[0], h, "Concat operands")
		}
		an.setLayout(n.Output[0], k, have[0])
	}
}

// concatConst gives axis k of input slot of Concat node i the units l when
// that input is a constant that an Expand read by this Concat alone
// broadcasts along other axes only (ViT's class token joined
// to the patch tokens): the constant is sliced with the units. It reports
// whether it did.
func (an *analyzer) concatConst(i, slot, k int, l Layout) bool {
	in := an.ix.Node(i).Input[slot]
	p := an.ix.ProducerNode(in)
	if p == nil || p.GetOpType() != "Expand" || len(an.ix.Consumers[in]) != 1 {
		return false
	}
	_, t := an.constOf(p.Input[0])
	shape, ok := an.shapes.Values[p.Input[1]]
	r := an.rank(in)
	if t == nil || !ok || r < 0 {
		return false
	}
	ck, sk := k-(r-len(t.GetDims())), k-(r-len(shape))
	if ck < 0 || int(t.GetDims()[ck]) != an.sp.length(l) || (sk >= 0 && shape[sk] != 1) {
		return false // the Expand broadcasts, or names the size, of the unit axis
	}
	an.param(an.ix.Producer[in], 0, ck, l, roleAffine)
	an.setLayout(in, k, l)
	return true
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
		if err := an.sliceUnits(n, i, ax, len(din), l); err != nil {
			an.block(l, fmt.Sprintf("Slice node %s slices the unit axis: %v", an.cur, err))
		}
	}
}

// sliceUnits follows the units of axis ax through Slice node i when it
// keeps one contiguous run [lo, hi) of positions known now, step 1: the
// output carries the units of that run, and Apply writes the bounds as
// constants of the new offsets (nn.MultiheadAttention's export computes
// the bounds of q, k and v from the packed projection's run-time width).
func (an *analyzer) sliceUnits(n *onnxpb.NodeProto, i, ax, r int, l Layout) error {
	vals := func(k int) []int64 {
		if k >= len(n.Input) || n.Input[k] == "" {
			return nil
		}
		return an.shapes.Values[n.Input[k]]
	}
	starts, ends, axes, steps := vals(1), vals(2), vals(3), vals(4)
	switch {
	case len(starts) != 1 || len(ends) != 1 || an.shapes.DTypes[n.Input[1]] != onnxio.Int64 || an.shapes.DTypes[n.Input[2]] != onnxio.Int64:
		return fmt.Errorf("its bounds are not one int64 each")
	case len(n.Input) > 3 && n.Input[3] != "" && (len(axes) != 1 || (axes[0]+int64(r))%int64(r) != int64(ax)),
		(len(n.Input) <= 3 || n.Input[3] == "") && ax != 0:
		return fmt.Errorf("its axes are not known to be this one")
	case len(n.Input) > 4 && n.Input[4] != "" && (len(steps) != 1 || steps[0] != 1):
		return fmt.Errorf("its step is not known to be 1")
	}
	size := int64(an.sp.length(l))
	lo, hi, _ := onnxio.SliceBounds(starts[0], ends[0], 1, size)
	if starts[0] == onnxio.Unknown || ends[0] == onnxio.Unknown || size <= 0 || hi <= lo {
		return fmt.Errorf("its bounds are known only at run time")
	}
	var sizes []int
	for _, s := range []int64{lo, hi - lo, size - hi} {
		if s > 0 {
			sizes = append(sizes, int(s))
		}
	}
	parts, err := an.cut(l, sizes)
	if err != nil {
		return err
	}
	var before, kept Layout
	if lo > 0 {
		before, parts = parts[0], parts[1:]
	}
	kept = parts[0]
	an.setLayout(n.Output[0], ax, kept)
	end := append(append(Layout{}, before...), kept...)
	fixes := []sizeFix{{node: i, slot: 1, lay: before, other: l}, {node: i, slot: 2, lay: end, other: l}}
	an.sizeFixes = append(an.sizeFixes, fixes...)
	an.slicedBounds[i] = fixes
	return nil
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
