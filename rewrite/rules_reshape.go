package rewrite

import (
	"fmt"
	"slices"

	"github.com/onnx-cria/onnx-cria/onnxio"
	"github.com/onnx-cria/onnx-cria/onnxio/onnxpb"
)

func init() {
	rules.Add("", 1, ruleFlatten, "Flatten")
	rules.Add("", 5, ruleReshape, "Reshape")
	rules.Add("", 8, ruleExpand, "Expand")
	rules.Add("", 1, ruleTile, "Tile")
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
	an.reshapeAxes(x, d, n.Output[0], []int64{onnxio.NumElements(d[:axis]), onnxio.NumElements(d[axis:])}, groups)
}

func ruleReshape(an *analyzer, n *onnxpb.NodeProto, i int) {
	x, o := n.Input[0], n.Output[0]
	if len(an.lay[x]) == 0 {
		an.foldReplicated(n, i)
		return
	}
	din, ok1 := an.needShape(n, x)
	dout, ok2 := an.dims(o)
	if !ok1 || !ok2 {
		an.blockTensor(x, fmt.Sprintf("Reshape node %s has an output of unknown shape", an.cur))
		return
	}
	allowZero := onnxio.AttrInt(n, "allowzero", 0) == 1
	if an.foldHeads(n, i, din, dout) {
		return // the folded axis's size is rewritten through its factor
	}
	dout = an.solveReshape(x, din, dout, an.prov(n.Input[1], 0), allowZero)
	if !an.unfoldHeads(n, din, dout) {
		an.reshapeAxes(x, din, o, dout, reshapeGroupsSym(din, dout))
	}
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
	elems := an.targetElems(n, i, slot, r)
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
				an.checks = append(an.checks, layoutCheck{il, l, fmt.Sprintf("Reshape node %s copies axis %d from an input axis with other units", an.cur, ax), nil})
			} else {
				an.block(l, fmt.Sprintf("Reshape node %s copies axis %d from an input axis without units", an.cur, ax))
			}
		case e.kind == elemConst:
			an.fixes = append(an.fixes, shapeFix{node: i, axis: ax, lay: l, elems: elems})
		case e.kind == elemShape:
			if sl := an.lay[e.tensor][e.axis]; sl != nil {
				var fix *sizeFix
				if e.hasWhole && n.GetOpType() == "Reshape" {
					fix = &sizeFix{node: e.whole[0], slot: e.whole[1], lay: l, other: sl}
				}
				an.checks = append(an.checks, layoutCheck{sl, l, fmt.Sprintf("%s node %s takes the size of axis %d from %q, which has other units", n.GetOpType(), an.cur, ax, e.tensor), fix})
			} else if e.hasWhole && n.GetOpType() == "Reshape" {
				// A size that never changes, where the units will: frozen.
				an.sizeFixes = append(an.sizeFixes, sizeFix{node: e.whole[0], slot: e.whole[1], lay: l})
			} else {
				an.block(l, fmt.Sprintf("%s node %s takes the size of a unit axis from %q, which has no units", n.GetOpType(), an.cur, e.tensor))
			}
		default:
			an.block(l, fmt.Sprintf("%s node %s computes the size of a unit axis at run time", n.GetOpType(), an.cur))
		}
	}
}

// targetElems traces the target shape input (slot) of node i, n, to
// where its elements come from; an Expand's, which aligns to the right,
// is padded in front to rank r with elements that name no axis.
func (an *analyzer) targetElems(n *onnxpb.NodeProto, i, slot, r int) []elem {
	elems := an.withUser(an.prov(n.Input[slot], 0), n.Input[slot], i, slot)
	if n.GetOpType() == "Expand" && len(elems) < r {
		pad := make([]elem, r-len(elems))
		for k := range pad {
			pad[k] = elem{kind: elemNone}
		}
		elems = append(pad, elems...)
	}
	return elems
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
		nonOneIn, nonOneOut := nonOne(din, g.in), nonOne(dout, g.out)
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
			if err == nil && len(e) == 1 && e[0].R == dynR && outer != 1 {
				err = fmt.Errorf("its units repeat a run-time number of times")
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
				nl[k] = Seg{s.S, mulR(s.R, int(outer)), s.B * int(inner)}
			}
			an.setLayout(out, nonOneOut[0], nl)
		case len(nonOneIn) == 1 && len(nonOneOut) > 1:
			o := nonOneOut[0]
			if t := an.shuffleAfter(out, nonOneOut); t != "" {
				an.block(l, fmt.Sprintf("channel shuffle (Reshape node %s, Transpose node %s) interleaves the units of the concatenated parts; onnx-cria does not prune through it", an.cur, t))
				continue
			}
			rep := 1
			if len(nonOneOut) >= 3 && (dout[o] == 2 || dout[o] == 3) {
				// [3, heads, head size] (or [2, ...] for k and v): a packed
				// projection; its heads are on the second axis.
				rep, o = int(dout[o]), nonOneOut[1]
			}
			nl, err := an.sp.splitRep(l, rep, int(dout[o]), "heads", an.cur)
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

// shuffleAfter returns the label of the Transpose that swaps the first two
// of the axes a unit axis was split into (a channel shuffle: ShuffleNet's
// Reshape [N, g, C/g, H, W], Transpose, Reshape back), or "".
func (an *analyzer) shuffleAfter(out string, split []int) string {
	if len(split) < 2 {
		return ""
	}
	cons := an.ix.Consumers[out]
	if len(cons) != 1 {
		return ""
	}
	t := an.ix.Node(cons[0])
	perm := onnxio.AttrInts(t, "perm")
	a, b := split[0], split[1]
	if t.GetOpType() != "Transpose" || len(perm) <= b || perm[a] != int64(b) || perm[b] != int64(a) {
		return ""
	}
	return onnxio.NodeLabel(t, cons[0])
}

// nonOne returns the axes whose size in d is not 1.
func nonOne(d []int64, axes []int) []int {
	var out []int
	for _, k := range axes {
		if d[k] != 1 {
			out = append(out, k)
		}
	}
	return out
}
