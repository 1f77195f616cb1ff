package rewrite

import (
	"fmt"

	"github.com/onnx-cria/onnx-cria/onnxio"
	"github.com/onnx-cria/onnx-cria/onnxio/onnxpb"
	"github.com/onnx-cria/onnx-cria/onnxio/ops"
)

// Rules for ONNX Runtime's transformer ops (domain com.microsoft, version
// 1, as its contrib operator schemas define them). The fused activations
// (Gelu, QuickGelu, BiasGelu, FastGelu) need no rule: they are elementwise
// entries of ops.Facts. The attention ops lose whole heads (grouped-query
// attention whole KV groups): the packed projection weights and biases are
// sliced per head and the head-count attributes rewritten. Their KV caches
// (past inputs, present outputs) and per-head attention biases are
// barriers.

func init() {
	rules.Add(ops.MS, 1, ruleSkipNorm, "SkipLayerNormalization", "SkipSimplifiedLayerNormalization")
	rules.Add(ops.MS, 1, ruleRotary, "RotaryEmbedding")
	rules.Add(ops.MS, 1, ruleAttention, "Attention")
	rules.Add(ops.MS, 1, ruleMHA, "MultiHeadAttention")
	rules.Add(ops.MS, 1, ruleGQA, "GroupQueryAttention")
	// LayerNormalization and SimplifiedLayerNormalization are also ONNX
	// Runtime's own ops of the default domain from version 1; RMSNorm is
	// ONNX's from 23. Their inputs are X, scale (and LayerNorm's bias).
	rules.Add("", 1, ruleLayerNorm, "LayerNormalization", "SimplifiedLayerNormalization")
	rules.Add("", 23, ruleLayerNorm, "RMSNormalization")
}

// ruleSkipNorm: input + skip (+ bias) is an elementwise sum whose units the
// normalised output (0) and the sum output (3) carry; the normalisation
// over the last axis is passed through with a warning, as LayerNorm is.
// SkipLayerNormalization's inputs are input, skip, gamma, beta, bias;
// SkipSimplifiedLayerNormalization's input, skip, gamma, bias.
func ruleSkipNorm(an *analyzer, n *onnxpb.NodeProto, i int) {
	affine, bias := []int{2, 3}, 4
	if n.GetOpType() == "SkipSimplifiedLayerNormalization" {
		affine, bias = []int{2}, 3
	}
	an.elementwise(n, i, []int{0, 1, bias}, []int{0, 3})
	r := an.rank(n.Input[0])
	if r < 1 {
		return
	}
	l := an.lay[n.Output[0]][r-1]
	if l == nil {
		return
	}
	if an.opts.NoNormThrough {
		an.block(l, fmt.Sprintf("%s node %s normalises over the unit axis", n.GetOpType(), an.cur))
	} else {
		an.warn(l, fmt.Sprintf("%s node %s normalises over the pruned axis: its statistics change", n.GetOpType(), an.cur))
	}
	for _, k := range affine {
		if k < len(n.Input) && n.Input[k] != "" {
			an.param(i, k, 0, l, roleAffine)
		}
	}
	for _, o := range []int{1, 2} { // mean and inverse standard deviation
		if o < len(n.Output) && an.used(n.Output[o]) {
			an.mapAxes(n.Output[0], n.Output[o], func(ax int) (int, bool) { return ax, ax < r-1 },
				fmt.Sprintf("statistics output of %s node %s", n.GetOpType(), an.cur))
		}
	}
}

// used reports whether tensor t is read by a node or is a graph output.
func (an *analyzer) used(t string) bool {
	_, out := an.ix.Outputs[t]
	return t != "" && (len(an.ix.Consumers[t]) > 0 || out)
}

// splitHeads gives the unit axis of input slot k of n (its last axis) the
// structure of count heads: the layout of the heads, or nil (having
// blocked the units) when the axis has no units or cannot be split.
func (an *analyzer) splitHeads(n *onnxpb.NodeProto, k, count int, kind string) Layout {
	t := n.Input[k]
	d, ok := an.dims(t)
	if !ok || len(d) == 0 {
		an.blockTensor(t, fmt.Sprintf("%s node %s: shape of %q unknown", n.GetOpType(), an.cur, t))
		return nil
	}
	for ax, l := range an.lay[t] {
		if ax != len(d)-1 {
			an.block(l, fmt.Sprintf("%s node %s mixes units along axis %d of %q", n.GetOpType(), an.cur, ax, t))
		}
	}
	l := an.lay[t][len(d)-1]
	if l == nil {
		return nil
	}
	h, err := an.sp.split(l, count, kind, an.cur)
	if err != nil {
		an.block(l, fmt.Sprintf("%s node %s cannot split %q into %d heads: %v", n.GetOpType(), an.cur, t, count, err))
		return nil
	}
	return h
}

// attentionHeads unifies the head layouts of the given inputs of n; when
// any input lacks them, every head is blocked, since the heads must go
// from all of query, key and value at once.
func (an *analyzer) attentionHeads(n *onnxpb.NodeProto, slots []int, count int, kind string) Layout {
	var heads Layout
	missing := ""
	for _, k := range slots {
		h := an.splitHeads(n, k, count, kind)
		switch {
		case h == nil:
			missing = n.Input[k]
		case heads == nil:
			heads = h
		default:
			an.unify(heads, h, fmt.Sprintf("heads of the inputs of %s", n.GetOpType()))
		}
	}
	if heads != nil && missing != "" {
		an.block(heads, fmt.Sprintf("%s node %s reads %q, whose heads onnx-cria cannot follow", n.GetOpType(), an.cur, missing))
	}
	return heads
}

// cacheBarrier blocks heads whose node reads a KV cache (past inputs at
// the given slots) or a per-head attention bias (a slot whose axis 1 is
// not 1), and gives present outputs the heads on axis 1, so that the graph
// output they reach blocks them too.
func (an *analyzer) cacheBarrier(n *onnxpb.NodeProto, heads Layout, past []int, bias int, present []int) {
	an.cacheAt(n, heads, past, 1, bias, present)
}

// cacheAt is cacheBarrier for caches whose heads are on axis ax
// (Attention's packed past [2, B, N, P, H] has them on 2).
func (an *analyzer) cacheAt(n *onnxpb.NodeProto, heads Layout, past []int, ax, bias int, present []int) {
	for _, k := range past {
		if k < len(n.Input) && n.Input[k] != "" && !an.cacheInput(n.Input[k], ax, heads) {
			an.block(heads, fmt.Sprintf("%s node %s reads the KV cache %q, whose heads are not pruned", n.GetOpType(), an.cur, n.Input[k]))
		}
	}
	if bias < len(n.Input) && n.Input[bias] != "" {
		if d, ok := an.dims(n.Input[bias]); !ok || len(d) != 4 || d[1] != 1 {
			an.block(heads, fmt.Sprintf("%s node %s adds the attention bias %q per head", n.GetOpType(), an.cur, n.Input[bias]))
		}
	}
	for _, o := range present {
		if o < len(n.Output) && n.Output[o] != "" {
			an.setLayout(n.Output[o], ax, heads)
		}
	}
}

// ruleMHA: MultiHeadAttention with separate 3-D query [B, S, D], key
// [B, L, D] and value [B, L, Dv]; the packed bias [D + D + Dv] is sliced
// per head. Packed QKV or KV inputs are barriers.
func ruleMHA(an *analyzer, n *onnxpb.NodeProto, i int) {
	h := int(onnxio.AttrInt(n, "num_heads", 0))
	separate := h >= 1 && len(n.Input) >= 3
	for k := 0; k < 3 && separate; k++ {
		d, ok := an.dims(n.Input[k])
		separate = n.Input[k] != "" && ok && len(d) == 3
	}
	if !separate {
		an.blockInputs(n, fmt.Sprintf("MultiHeadAttention node %s: only separate 3-D query, key and value are pruned", an.cur))
		return
	}
	heads := an.attentionHeads(n, []int{0, 1, 2}, h, "heads")
	if heads == nil {
		return
	}
	s := heads[0].S
	dq, _ := an.dims(n.Input[0])
	dk, _ := an.dims(n.Input[1])
	dv, _ := an.dims(n.Input[2])
	hq, hk, hv := int(dq[2])/h, int(dk[2])/h, int(dv[2])/h
	if len(n.Input) > 3 && n.Input[3] != "" {
		an.param(i, 3, 0, Layout{{s, 1, hq}, {s, 1, hk}, {s, 1, hv}}, roleAffine)
	}
	an.cacheBarrier(n, heads, []int{6, 7}, 5, []int{1, 2})
	an.setLayout(n.Output[0], 2, Layout{{s, 1, hv}})
	an.attrs = append(an.attrs, attrFix{node: i, attr: "num_heads", lays: []Layout{heads}, div: 1})
}

// ruleGQA: GroupQueryAttention with separate query [B, S, N*H], key and
// value [B, S, KV*H]: units are KV groups, each a KV head and its N/KV
// query heads (the same number per group, as the op requires). A packed
// QKV input is a barrier.
func ruleGQA(an *analyzer, n *onnxpb.NodeProto, i int) {
	h, kv := int(onnxio.AttrInt(n, "num_heads", 0)), int(onnxio.AttrInt(n, "kv_num_heads", 0))
	if kv < 1 || h < kv || h%kv != 0 || len(n.Input) < 3 || n.Input[1] == "" || n.Input[2] == "" {
		an.blockInputs(n, fmt.Sprintf("GroupQueryAttention node %s: only separate query, key and value are pruned", an.cur))
		return
	}
	groups := an.attentionHeads(n, []int{0, 1, 2}, kv, "kv-groups")
	if groups == nil {
		return
	}
	s, rep := groups[0].S, h/kv
	// Name the groups after this node: their space may come from the
	// RotaryEmbedding before it.
	root := &an.sp.s[an.sp.find(s)]
	root.kind, root.origin = "kv-groups", an.cur
	dq, _ := an.dims(n.Input[0])
	hd := int(dq[2]) / h
	an.cacheBarrier(n, groups, []int{3, 4}, 10, []int{1, 2})
	if len(n.Input) > 11 && n.Input[11] != "" { // head_sink [N]
		an.param(i, 11, 0, Layout{{s, 1, rep}}, roleAffine)
	}
	an.setLayout(n.Output[0], 2, Layout{{s, 1, rep * hd}})
	an.attrs = append(an.attrs,
		attrFix{node: i, attr: "num_heads", lays: []Layout{{{s, 1, rep}}}, div: 1},
		attrFix{node: i, attr: "kv_num_heads", lays: []Layout{groups}, div: 1})
}

// ruleAttention: Attention's packed weight [Din, Dq + Dk + Dv] reads the
// input's units (rows) and computes the heads (columns, per head within
// each of q, k and v), as its bias does; qkv_hidden_sizes, when given,
// is rewritten with num_heads.
func ruleAttention(an *analyzer, n *onnxpb.NodeProto, i int) {
	x := n.Input[0]
	_, wt := an.constOf(safe(n.Input, 1))
	h := int(onnxio.AttrInt(n, "num_heads", 0))
	dx, ok := an.dims(x)
	if wt == nil || len(wt.GetDims()) != 2 || !ok || len(dx) != 3 || h < 1 {
		an.blockInputs(n, fmt.Sprintf("Attention node %s has no constant 2-D weight or a 3-D input", an.cur))
		return
	}
	sizes := onnxio.AttrInts(n, "qkv_hidden_sizes")
	if len(sizes) != 3 {
		w := wt.GetDims()[1] / 3
		sizes = []int64{w, w, w}
	}
	for ax, l := range an.lay[x] {
		if ax == 2 {
			an.param(i, 1, 0, l, roleOut)
		} else {
			an.block(l, fmt.Sprintf("Attention node %s mixes units along axis %d", an.cur, ax))
		}
	}
	heads := an.fresh(h, "heads")
	s := heads[0].S
	if sizes[0]%int64(h) != 0 || sizes[2]%int64(h) != 0 || sizes[0]+sizes[1]+sizes[2] != wt.GetDims()[1] {
		an.block(heads, fmt.Sprintf("Attention node %s: hidden sizes %v do not split into %d heads", an.cur, sizes, h))
		return
	}
	segs := Layout{{s, 1, int(sizes[0]) / h}, {s, 1, int(sizes[1]) / h}, {s, 1, int(sizes[2]) / h}}
	an.param(i, 1, 1, segs, roleIn)
	if len(n.Input) > 2 && n.Input[2] != "" {
		an.param(i, 2, 0, segs, roleAffine)
	}
	an.cacheAt(n, heads, []int{4}, 2, 5, []int{1}) // past and present [2, B, N, T, H]
	an.setLayout(n.Output[0], 2, Layout{segs[2]})
	an.attrs = append(an.attrs, attrFix{node: i, attr: "num_heads", lays: []Layout{heads}, div: 1})
	if len(onnxio.AttrInts(n, "qkv_hidden_sizes")) == 3 {
		an.attrs = append(an.attrs, attrFix{node: i, attr: "qkv_hidden_sizes", lays: []Layout{{segs[0]}, {segs[1]}, {segs[2]}}, div: 1, ints: true})
	}
}

// ruleRotary: RotaryEmbedding rotates within each head, so a 3-D input
// [B, S, N*H] loses whole heads (H from num_heads, else twice the cache's
// width) and a 4-D input [B, N, S, H] keeps its head axis whole.
func ruleRotary(an *analyzer, n *onnxpb.NodeProto, i int) {
	x, out := n.Input[0], n.Output[0]
	d, ok := an.dims(x)
	if !ok || (len(d) != 3 && len(d) != 4) {
		an.blockTensor(x, fmt.Sprintf("RotaryEmbedding node %s: input shape unknown", an.cur))
		return
	}
	last := len(d) - 1
	if len(d) == 4 {
		an.mapAxes(x, out, func(ax int) (int, bool) { return ax, ax != last },
			fmt.Sprintf("RotaryEmbedding node %s rotates within a head", an.cur))
		return
	}
	for ax, l := range an.lay[x] {
		if ax != last {
			an.setLayout(out, ax, l)
		}
	}
	l := an.lay[x][last]
	if l == nil {
		return
	}
	nh := onnxio.AttrInt(n, "num_heads", 0)
	hd := int64(0)
	if _, c := an.constOf(safe(n.Input, 2)); nh > 0 {
		hd = d[last] / nh
	} else if c != nil && len(c.GetDims()) == 2 {
		hd = 2 * c.GetDims()[1]
	}
	if hd < 1 || d[last]%hd != 0 {
		an.block(l, fmt.Sprintf("RotaryEmbedding node %s: the head size is unknown (no num_heads and no constant cos_cache)", an.cur))
		return
	}
	heads := an.splitHeads(n, 0, int(d[last]/hd), "heads")
	if heads == nil {
		return
	}
	an.setLayout(out, last, l)
	if nh > 0 {
		an.attrs = append(an.attrs, attrFix{node: i, attr: "num_heads", lays: []Layout{heads}, div: 1})
	}
}
