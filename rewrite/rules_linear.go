package rewrite

import (
	"fmt"

	"github.com/onnx-cria/onnx-cria/onnxio"
	"github.com/onnx-cria/onnx-cria/onnxio/onnxpb"
)

func init() {
	rules.Add("", 1, ruleGemm, "Gemm")
	rules.Add("", 1, ruleMatMul, "MatMul")
	rules.Add("", 1, ruleConv, "Conv")
	rules.Add("", 1, ruleConvTranspose, "ConvTranspose")
	rules.Add("", 1, rulePool, "MaxPool", "AveragePool", "LpPool", "GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool")
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

func rulePool(an *analyzer, n *onnxpb.NodeProto, i int) {
	for _, o := range n.Output {
		an.mapAxes(n.Input[0], o, func(ax int) (int, bool) { return ax, ax < 2 },
			fmt.Sprintf("%s node %s pools over the unit axis", n.GetOpType(), an.cur))
	}
}
