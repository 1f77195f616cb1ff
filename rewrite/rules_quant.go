package rewrite

import (
	"fmt"

	"github.com/onnx-cria/onnx-cria/onnxio"
	"github.com/onnx-cria/onnx-cria/onnxio/onnxpb"
	"github.com/onnx-cria/onnx-cria/onnxio/ops"
)

// Quantized weights are pruned without dequantizing them. In the QDQ
// format a weight is DequantizeLinear(codes, scale, zero point) of
// constants: the codes are sliced like a float weight, and a per-axis scale
// and zero point along the pruned axis with them (a per-tensor one, or one
// along another axis, stays). Activations' QuantizeLinear/DequantizeLinear
// pairs pass units through. MatMulNBits (ONNX Runtime's blockwise-quantized
// MatMul) loses output rows with their blocks, scales and zero points, and
// input units only in whole quantization blocks.

func init() {
	rules.Add("", 10, ruleQDQ, "QuantizeLinear", "DequantizeLinear")
	rules.Add(ops.MS, 1, ruleMatMulNBits, "MatMulNBits")
}

// dequantized returns the index of the DequantizeLinear node whose output
// t is, when its codes are a constant.
func (a *Analysis) dequantized(t string) (int, bool) {
	p := a.ix.ProducerNode(t)
	if p == nil || p.GetOpType() != "DequantizeLinear" || (p.GetDomain() != "" && p.GetDomain() != "ai.onnx") || len(p.Input) < 2 {
		return 0, false
	}
	if _, c := a.constOf(p.Input[0]); c == nil {
		return 0, false
	}
	return a.ix.Producer[t], true
}

// weight returns the constant t is, or the constant codes of the
// DequantizeLinear that makes it (which have t's shape), or nil.
func (a *Analysis) weight(t string) *onnxpb.TensorProto {
	if _, c := a.constOf(t); c != nil {
		return c
	}
	if d, ok := a.dequantized(t); ok {
		_, c := a.constOf(a.ix.Node(d).Input[0])
		return c
	}
	return nil
}

// quantAxis returns the axis of x (of the given rank) that the per-axis
// scale of a QuantizeLinear or DequantizeLinear node runs along, -1 for a
// per-tensor scale, and false for blocked quantization (a scale with x's
// rank), which is not pruned.
func (a *Analysis) quantAxis(n *onnxpb.NodeProto, rank int) (int, bool) {
	d, ok := a.dims(safe(n.Input, 1))
	switch {
	case !ok || len(d) > 1:
		return 0, false
	case len(d) == 0 || d[0] == 1:
		return -1, true
	}
	ax := int(onnxio.AttrInt(n, "axis", 1))
	if ax < 0 {
		ax += rank
	}
	return ax, true
}

// paramDQ registers the codes of DequantizeLinear node d (and its per-axis
// scale and zero point, when they run along axis) as losing positions
// along axis with the units of l.
func (an *analyzer) paramDQ(d, axis int, l Layout, role string) {
	n := an.ix.Node(d)
	qa, ok := an.quantAxis(n, an.rank(n.Output[0]))
	if !ok || onnxio.AttrInt(n, "block_size", 0) != 0 {
		an.block(l, fmt.Sprintf("DequantizeLinear node %s quantizes by blocks, which onnx-cria does not slice", onnxio.NodeLabel(n, d)))
		return
	}
	an.param(d, 0, axis, l, role)
	if qa == axis {
		an.param(d, 1, 0, l, role)
		if len(n.Input) > 2 && n.Input[2] != "" {
			an.param(d, 2, 0, l, roleAffine)
		}
	}
	an.setLayout(n.Output[0], axis, l)
}

// ruleQDQ passes an activation's units through QuantizeLinear and
// DequantizeLinear; a per-axis scale and zero point along a unit axis are
// sliced with it.
func ruleQDQ(an *analyzer, n *onnxpb.NodeProto, i int) {
	x := n.Input[0]
	if len(an.lay[x]) == 0 {
		return
	}
	r := an.rank(x)
	qa, ok := an.quantAxis(n, r)
	for ax, l := range an.lay[x] {
		if !ok {
			an.block(l, fmt.Sprintf("%s node %s quantizes by blocks, which onnx-cria does not slice", n.GetOpType(), an.cur))
			continue
		}
		an.setLayout(n.Output[0], ax, l)
		if ax == qa {
			an.param(i, 1, 0, l, roleAffine)
			if len(n.Input) > 2 && n.Input[2] != "" {
				an.param(i, 2, 0, l, roleAffine)
			}
		}
	}
}

// ruleMatMulNBits: B [N, blocks, blob], scales [N, blocks], zero points
// [N, blocks] (or packed [N, ceil(blocks*bits/8)]) and bias [N] lose the
// rows of removed output units; N is rewritten. Input units go in whole
// blocks of block_size along K (with packed 4-bit zero points, two blocks:
// a zero point byte holds two blocks), so the units that feed K are
// coarsened to such blocks; K is rewritten.
func ruleMatMulNBits(an *analyzer, n *onnxpb.NodeProto, i int) {
	a := n.Input[0]
	k, nOut := int(onnxio.AttrInt(n, "K", 0)), int(onnxio.AttrInt(n, "N", 0))
	bits, bs := int(onnxio.AttrInt(n, "bits", 4)), int(onnxio.AttrInt(n, "block_size", 0))
	_, bt := an.constOf(safe(n.Input, 1))
	da, ok := an.dims(a)
	if bt == nil || len(bt.GetDims()) != 3 || !ok || len(da) < 2 || k < 1 || nOut < 1 || bs < 1 || bits < 1 || 8%bits != 0 {
		an.blockInputs(n, fmt.Sprintf("MatMulNBits node %s: no constant B or unknown shapes", an.cur))
		return
	}
	for ax, l := range an.lay[a] {
		if ax < len(da)-1 {
			an.setLayout(n.Output[0], ax, l)
		}
	}
	packedZP := false
	if zp := safe(n.Input, 3); zp != "" {
		if _, zt := an.constOf(zp); zt != nil && onnxio.DataType(zt.GetDataType()) == onnxio.Uint8 && 8/bits > 1 {
			packedZP = true
		}
	}
	if l := an.lay[a][len(da)-1]; l != nil {
		an.nbitsInput(n, i, l, k, bs, bits, packedZP)
	}
	out := an.fresh(nOut, "neurons")
	for _, slot := range []int{1, 2, 3, 5} { // B, scales, zero points, bias
		if slot < len(n.Input) && n.Input[slot] != "" {
			role := roleIn
			if slot == 5 {
				role = roleAffine
			}
			an.param(i, slot, 0, out, role)
		}
	}
	if safe(n.Input, 4) != "" {
		an.block(out, fmt.Sprintf("MatMulNBits node %s has a g_idx input, which onnx-cria does not slice", an.cur))
	}
	an.setLayout(n.Output[0], len(da)-1, out)
	an.attrs = append(an.attrs, attrFix{node: i, attr: "N", lays: []Layout{out}, div: 1})
}

// nbitsInput couples the units that MatMulNBits node n reads along K to
// whole quantization blocks (per blocks of K a unit), or blocks them.
func (an *analyzer) nbitsInput(n *onnxpb.NodeProto, i int, l Layout, k, bs, bits int, packedZP bool) {
	blocks := (k + bs - 1) / bs
	per := 1 // blocks per unit
	if packedZP {
		per = 8 / bits
	}
	if k%(bs*per) != 0 || blocks%per != 0 {
		an.block(l, fmt.Sprintf("MatMulNBits node %s: K %d is not a whole number of %d-wide quantization blocks, so its input units cannot be removed", an.cur, k, bs*per))
		return
	}
	// The blocks are the units of whoever makes the input (named after it).
	origin := an.cur
	if e, err := an.sp.expand(l); err == nil && len(e) > 0 {
		origin = an.sp.s[e[0].S].origin
	}
	units := Layout{{an.sp.add(blocks/per, "blocks", origin), 1, 1}}
	an.unify(l, Layout{{units[0].S, 1, bs * per}}, fmt.Sprintf("quantization blocks of MatMulNBits node %s", an.cur))
	an.param(i, 1, 1, Layout{{units[0].S, 1, per}}, roleOut)
	an.param(i, 2, 1, Layout{{units[0].S, 1, per}}, roleOut)
	if zp := safe(n.Input, 3); zp != "" {
		w := per
		if packedZP {
			w = 1
		}
		an.param(i, 3, 1, Layout{{units[0].S, 1, w}}, roleAffine)
	}
	an.attrs = append(an.attrs, attrFix{node: i, attr: "K", lays: []Layout{l}, div: 1})
}
