package rewrite

import (
	"fmt"

	"github.com/onnx-cria/onnx-cria/onnxio"
	"github.com/onnx-cria/onnx-cria/onnxio/onnxpb"
)

// Heads folded into the batch axis. nn.MultiheadAttention's export views
// each of q, k and v [..., B, H*D] as [..., B*H, D], with B*H computed at
// run time as the batch times the constant H, runs the attention batched
// over that axis, and merges the heads back with [..., B*H, D] ->
// [..., H*D]. Whatever the leading sizes, the flat order puts head h at the
// positions of the folded axis congruent to h modulo H, so the folded axis
// carries the heads with a run-time repeat count (dynR), and pruning to H'
// heads needs only the constant H rewritten to H'.

// foldUse is a Reshape that folds heads into the batch axis with the
// factor read by Mul node mul at slot.
type foldUse struct {
	mul, slot, reshape int
	lay                Layout // the heads
}

// foldHeads handles Reshape node i of x (units on its last axis only) to
// out, of the same rank, whose last axis is a head size that divides the
// units and whose axis before it is a run-time size times the head count.
// It reports whether it did (or blocked the units for a reason of its own).
func (an *analyzer) foldHeads(n *onnxpb.NodeProto, i int, din, dout []int64) bool {
	x, out := n.Input[0], n.Output[0]
	r := len(din)
	l := an.lay[x][r-1]
	if r < 2 || len(dout) != r || len(an.lay[x]) != 1 || l == nil || din[r-1] <= 0 || dout[r-1] <= 0 || dout[r-2] >= 0 {
		return false
	}
	d := dout[r-1]
	if din[r-1]%d != 0 || din[r-1] == d {
		return false
	}
	h := din[r-1] / d
	mul, slot, ok := an.foldFactor(n.Input[1], r, r-2, h)
	if !ok {
		return false
	}
	heads, err := an.sp.split(l, int(h), "heads", an.cur)
	if err != nil {
		an.block(l, fmt.Sprintf("Reshape node %s folds the unit axis into the batch: %v", an.cur, err))
		return true
	}
	e, err := an.sp.expand(heads)
	if err != nil || len(e) != 1 || e[0].R != 1 || e[0].B != 1 {
		an.block(l, fmt.Sprintf("Reshape node %s folds units that are not whole heads into the batch", an.cur))
		return true
	}
	an.setLayout(out, r-2, Layout{{heads[0].S, dynR, 1}})
	c := an.ix.Node(mul).Input[slot]
	name, _ := an.constOf(c)
	an.fixes = append(an.fixes, shapeFix{node: mul, axis: 0, lay: heads,
		elems: []elem{{kind: elemConst, value: h, tensor: name, user: mul, slot: slot}}})
	an.folds = append(an.folds, foldUse{mul: mul, slot: slot, reshape: i, lay: heads})
	return true
}

// foldFactor finds, in the target shape t of a rank-r Reshape, element ax
// as a 1-element input of a Concat computed as Mul(size, h), size without
// units, h a 1-element constant: the Mul node and the constant's slot.
func (an *analyzer) foldFactor(t string, r, ax int, h int64) (int, int, bool) {
	elems := an.prov(t, 0)
	if len(elems) != r || !elems[ax].hasWhole {
		return 0, 0, false
	}
	w := elems[ax].whole
	cur := an.ix.Node(w[0]).Input[w[1]]
	for k := 0; k < 8; k++ {
		p := an.ix.ProducerNode(cur)
		if p == nil {
			return 0, 0, false
		}
		switch p.GetOpType() {
		case "Unsqueeze", "Squeeze", "Cast", "Identity":
			cur = p.Input[0]
			continue
		case "Mul":
			for slot := 0; slot < 2 && len(p.Input) == 2; slot++ {
				name, c := an.constOf(p.Input[slot])
				if c == nil || onnxio.NumElements(c.GetDims()) != 1 || len(an.sizes[p.Input[1-slot]]) > 0 {
					continue
				}
				if v := an.constElems(name); len(v) == 1 && v[0].value == h {
					return an.ix.Producer[cur], slot, true
				}
			}
		}
		return 0, 0, false
	}
	return 0, 0, false
}

// checkFolds blocks the heads of a fold whose head count constant feeds
// anything but the folds that rewrite it: rewriting it would change that
// use too.
func (an *analyzer) checkFolds() {
	folds := map[int][]foldUse{}
	for _, f := range an.folds {
		folds[f.mul] = append(folds[f.mul], f)
	}
	for mul, fs := range folds {
		ok := map[int]bool{}
		for _, f := range fs {
			ok[f.reshape] = true
		}
		if bad := an.foldReader(an.ix.Node(mul).Output[0], ok, 0); bad != "" {
			for _, f := range fs {
				an.block(f.lay, fmt.Sprintf("the head count read by Mul node %s also sizes %s", onnxio.NodeLabel(an.ix.Node(mul), mul), bad))
			}
		}
	}
}

// foldReader returns a reader of t, through shape plumbing, that is not
// one of the folding Reshapes in ok (as its target shape), or "".
func (an *analyzer) foldReader(t string, ok map[int]bool, depth int) string {
	for _, c := range an.ix.Consumers[t] {
		n := an.ix.Node(c)
		switch {
		case depth < 8 && (n.GetOpType() == "Unsqueeze" || n.GetOpType() == "Cast" || n.GetOpType() == "Identity" || n.GetOpType() == "Concat"):
			if n.GetOpType() != "Concat" && n.Input[0] != t {
				return onnxio.NodeLabel(n, c)
			}
			if bad := an.foldReader(n.Output[0], ok, depth+1); bad != "" {
				return bad
			}
		case n.GetOpType() == "Reshape" && ok[c] && n.Input[1] == t && n.Input[0] != t:
		default:
			return onnxio.NodeLabel(n, c)
		}
	}
	return ""
}

// unfoldHeads handles Reshape node n of x, whose axis before the last
// carries folded heads ({S, dynR, B}) and whose last axis of static size D
// carries none, to out with one axis fewer and a last axis of the heads'
// size times D: the heads merge back, each owning blocks of B*D. It reports
// whether it did.
func (an *analyzer) unfoldHeads(n *onnxpb.NodeProto, din, dout []int64) bool {
	x, out := n.Input[0], n.Output[0]
	r := len(din)
	if r < 2 || len(dout) != r-1 || len(an.lay[x]) != 1 || an.lay[x][r-2] == nil || din[r-1] <= 0 {
		return false
	}
	e, err := an.sp.expand(an.lay[x][r-2])
	if err != nil || len(e) != 1 || e[0].R != dynR {
		return false
	}
	g := e[0]
	if dout[r-2] != int64(an.sp.s[g.S].size*g.B)*din[r-1] {
		an.block(Layout{g}, fmt.Sprintf("Reshape node %s merges the folded heads into an axis of another or unknown size", an.cur))
		return true
	}
	an.setLayout(out, r-2, Layout{{g.S, 1, g.B * int(din[r-1])}})
	return true
}

// foldReplicated handles Reshape node i of x, a tensor without units, to
// out: a key padding mask folded like the heads it is added to. x is
// Expand([B, 1, ...] -> [B, H, ...]) with H a constant of the Expand's
// target shape, and the Reshape merges B and H into out's axis 0 with the
// factor of a fold already seen (Mul(B, H), the same Mul node): every
// head gets a copy of the same values, so out carries the heads like the
// folded scores, and pruning to H' heads needs the Expand's H rewritten
// with the fold's. It reports whether it did.
func (an *analyzer) foldReplicated(n *onnxpb.NodeProto, i int) bool {
	x, out := n.Input[0], n.Output[0]
	din, ok1 := an.dims(x)
	dout, ok2 := an.dims(out)
	if !ok1 || !ok2 || len(din) < 3 || len(dout) != len(din)-1 || din[1] <= 1 || dout[0] >= 0 {
		return false
	}
	h := din[1]
	ei := an.ix.Producer[x]
	e := an.ix.ProducerNode(x)
	if e == nil || e.GetOpType() != "Expand" || len(e.Input) < 2 || len(an.ix.Consumers[x]) != 1 {
		return false
	}
	src, ok := an.dims(e.Input[0])
	if !ok || len(src) != len(din) || src[1] != 1 || len(an.lay[e.Input[0]]) > 0 {
		return false
	}
	mul, slot, ok := an.foldFactor(n.Input[1], len(dout), 0, h)
	if !ok {
		return false
	}
	var fold *foldUse
	for k := range an.folds {
		if an.folds[k].mul == mul && an.folds[k].slot == slot {
			fold = &an.folds[k]
		}
	}
	if fold == nil {
		return false
	}
	elems := an.targetElems(e, ei, 1, len(din))
	if len(elems) != len(din) {
		return false
	}
	if el := elems[1]; el.kind != elemConst || el.value != h {
		return false
	}
	an.setLayout(out, 0, Layout{{fold.lay[0].S, dynR, 1}})
	an.fixes = append(an.fixes, shapeFix{node: ei, axis: 1, lay: fold.lay, elems: elems})
	an.folds = append(an.folds, foldUse{mul: mul, slot: slot, reshape: i, lay: fold.lay})
	return true
}
