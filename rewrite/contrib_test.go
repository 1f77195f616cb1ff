package rewrite

import (
	"testing"

	"github.com/onnx-cria/onnx-cria/onnxio"
	"github.com/onnx-cria/onnx-cria/onnxio/onnxpb"
)

// ONNX Runtime's transformer ops (com.microsoft), built from their contrib
// operator schemas and run through checkModel: ORT 1.30 runs every model
// before and after, removing units with zero outgoing weights changes no
// output, and half of every group leaves a valid, smaller model.

const ms = "com.microsoft::"

func contribBuilder(t *testing.T) *builder {
	b := newBuilder(t, 17)
	b.use("com.microsoft", 1)
	return b
}

// A BERT layer as ORT's transformer optimizer fuses it: Attention with a
// packed QKV weight (qkv_hidden_sizes given), SkipLayerNormalization with
// the output projection's bias, and an FFN through BiasGelu, then one
// through FastGelu with a bias, Gelu and QuickGelu.
func TestContribAttention(t *testing.T) {
	for _, sizes := range [][]int64{nil, {32, 32, 16}} {
		b := contribBuilder(t)
		x := b.in("x", -1, 6, 16)
		mask := b.op("Cast", "mask32", strs(b.inT("attention_mask", onnxio.Int64, -1, 6)), aI("to", int64(onnxio.Int32)))
		qkv, dv := int64(96), int64(32)
		attrs := []*onnxpb.AttributeProto{aI("num_heads", 4)}
		if sizes != nil {
			qkv, dv = sizes[0]+sizes[1]+sizes[2], sizes[2]
			attrs = append(attrs, aIs("qkv_hidden_sizes", sizes...))
		}
		a := b.op(ms+"Attention", "attn", strs(x, b.w("attn.w", 16, qkv), b.w("attn.b", qkv), mask), attrs...)
		o := b.op("MatMul", "o", strs(a, b.w("o.w", dv, 16)))
		h := b.opN(ms+"SkipLayerNormalization", "ln1", strs(o, x, b.pos("ln1.g", 16), b.w("ln1.beta", 16), b.w("o.b", 16)), 4, aF("epsilon", 1e-5))
		f := b.op(ms+"BiasGelu", "gelu1", strs(b.op("MatMul", "fc1", strs(h[0], b.w("fc1.w", 16, 24))), b.w("fc1.b", 24)))
		f = b.op(ms+"FastGelu", "gelu2", strs(b.op("MatMul", "fc2", strs(f, b.w("fc2.w", 24, 20))), b.w("fc2.b", 20)))
		f = b.op(ms+"Gelu", "gelu3", strs(b.op("MatMul", "fc3", strs(f, b.w("fc3.w", 20, 20)))))
		f = b.op(ms+"QuickGelu", "gelu4", strs(b.op("MatMul", "fc4", strs(f, b.w("fc4.w", 20, 12)))), aF("alpha", 1.702))
		y := b.op("MatMul", "fc5", strs(f, b.w("fc5.w", 12, 16)))
		s := b.opN(ms+"SkipSimplifiedLayerNormalization", "ln2", strs(y, h[3], b.pos("ln2.g", 16)), 4, aF("epsilon", 1e-5))
		b.out(b.op("ReduceMean", "pool", strs(s[0]), aIs("axes", 1), aI("keepdims", 0)))
		m := b.model()
		an := analyze(t, m, want{"attn:heads", "heads", 4}, want{"fc1:neurons", "neurons", 24},
			want{"fc2:neurons", "neurons", 20}, want{"fc3:neurons", "neurons", 20}, want{"fc4:neurons", "neurons", 12})
		g := an.Group("attn:heads")
		if o := g.Observe; o == nil || o.PreProject == nil || o.PreProject.Lo != int(qkv-dv) || o.Post != "attn" {
			t.Errorf("heads observation %+v", g.Observe)
		}
		checkModel(t, m)
		pruned, err := an.Apply(Plan{"attn:heads": {0, 2}})
		if err != nil {
			t.Fatal(err)
		}
		n := onnxio.NewIndex(pruned.Graph()).ProducerNode("attn")
		if got := onnxio.AttrInt(n, "num_heads", 0); got != 2 {
			t.Errorf("num_heads %d after removing 2 of 4", got)
		}
		if sizes != nil {
			if got := onnxio.AttrInts(n, "qkv_hidden_sizes"); len(got) != 3 || got[0] != 16 || got[2] != 8 {
				t.Errorf("qkv_hidden_sizes %v", got)
			}
		}
		if d := dimsOf(t, pruned, "attn.w"); d[1] != qkv/2 {
			t.Errorf("attn.w dims %v", d)
		}
	}
}

// MultiHeadAttention after separate q, k and v MatMuls, with the packed
// bias and a key padding mask; the heads of the two layers and the FFN
// neurons are groups.
func TestContribMHA(t *testing.T) {
	b := contribBuilder(t)
	x := b.in("x", -1, 6, 16)
	mask := b.op("Cast", "mask32", strs(b.inT("attention_mask", onnxio.Int64, -1, 6)), aI("to", int64(onnxio.Int32)))
	q := b.op("MatMul", "q", strs(x, b.w("q.w", 16, 16)))
	k := b.op("MatMul", "k", strs(x, b.w("k.w", 16, 16)))
	v := b.op("MatMul", "v", strs(x, b.w("v.w", 16, 24)))
	a := b.op(ms+"MultiHeadAttention", "mha", strs(q, k, v, b.w("mha.b", 56), mask), aI("num_heads", 4))
	y := b.op("Add", "res", strs(x, b.op("MatMul", "o", strs(a, b.w("o.w", 24, 16)))))
	f := b.op(ms+"FastGelu", "act", strs(b.op("MatMul", "fc1", strs(y, b.w("fc1.w", 16, 20)))))
	b.out(b.op("MatMul", "fc2", strs(f, b.w("fc2.w", 20, 8))))
	m := b.model()
	an := analyze(t, m, want{"mha:heads", "heads", 4}, want{"fc1:neurons", "neurons", 20})
	if o := an.Group("mha:heads").Observe; o == nil || o.Pre != "v" || o.PreB != 6 || o.PostB != 6 {
		t.Errorf("heads observation %+v", o)
	}
	checkModel(t, m)
}

// A decoder layer as ORT's generative-AI builder writes it: RMSNorm,
// q/k/v MatMuls, RotaryEmbedding on q and k (3-D, the head size from the
// caches), GroupQueryAttention with 4 query heads over 2 KV heads, a
// residual SkipSimplifiedLayerNormalization and a SwiGLU FFN. A KV group
// goes with its query heads; both head counts are rewritten.
func TestContribGQA(t *testing.T) {
	b := contribBuilder(t)
	ids := b.inT("input_ids", onnxio.Int64, -1, 6)
	x := b.op("Gather", "embed", strs(b.w("embed.w", 50, 32), ids), aI("axis", 0))
	shape := b.op("Shape", "shape", strs(ids))
	batch := b.op("Gather", "batch", strs(shape, b.ints("zero1", 0)), aI("axis", 0))
	seq := b.op("Gather", "seq", strs(shape, b.i64("one", 1)), aI("axis", 0))
	total := b.op("Cast", "total", strs(seq), aI("to", int64(onnxio.Int32)))
	seqlens := b.op("Expand", "seqlens", strs(b.op("Cast", "last", strs(b.op("Sub", "seqm1", strs(seq, b.i64("one_s", 1)))), aI("to", int64(onnxio.Int32))), batch))
	rng := b.op("Unsqueeze", "rng", strs(b.op("Range", "range", strs(b.i64("zero_s", 0), seq, b.i64("one_s2", 1))), b.ints("axes0", 0)))
	pos := b.op("Expand", "pos", strs(rng, b.op("Concat", "bs", strs(batch, b.op("Unsqueeze", "seq1", strs(seq, b.ints("axes0b", 0)))), aI("axis", 0))))
	// head size 8: caches [max_len, 4]
	cos, sin := make([]float64, 16*4), make([]float64, 16*4)
	for p := range 16 {
		for j := range 4 {
			cos[p*4+j], sin[p*4+j] = float64(p+j)/20+0.5, float64(p-j)/30
		}
	}
	cc, sc := b.f("cos", []int64{16, 4}, cos...), b.f("sin", []int64{16, 4}, sin...)
	n := b.op("SimplifiedLayerNormalization", "norm", strs(x, b.pos("norm.g", 32)), aI("axis", -1), aF("epsilon", 1e-5))
	q := b.op(ms+"RotaryEmbedding", "q.rot", strs(b.op("MatMul", "q", strs(n, b.w("q.w", 32, 32))), pos, cc, sc))
	k := b.op(ms+"RotaryEmbedding", "k.rot", strs(b.op("MatMul", "k", strs(n, b.w("k.w", 32, 16))), pos, cc, sc), aI("num_heads", 2))
	v := b.op("MatMul", "v", strs(n, b.w("v.w", 32, 16)))
	a := b.op(ms+"GroupQueryAttention", "gqa", strs(q, k, v, "", "", seqlens, total), aI("num_heads", 4), aI("kv_num_heads", 2))
	o := b.op("MatMul", "o", strs(a, b.w("o.w", 32, 32)))
	s := b.opN(ms+"SkipSimplifiedLayerNormalization", "ln", strs(o, x, b.pos("ln.g", 32)), 4, aF("epsilon", 1e-5))
	gate := b.op("MatMul", "gate", strs(s[0], b.w("gate.w", 32, 24)))
	up := b.op("MatMul", "up", strs(s[0], b.w("up.w", 32, 24)))
	act := b.op("Mul", "act", strs(b.op("Mul", "silu", strs(gate, b.op("Sigmoid", "sig", strs(gate)))), up))
	y := b.op("Add", "res", strs(s[3], b.op("MatMul", "down", strs(act, b.w("down.w", 24, 32)))))
	b.out(b.op("MatMul", "lm", strs(y, b.w("lm.w", 32, 50))))
	m := b.model()
	an := analyze(t, m, want{"embed:hidden", "hidden", 32}, want{"gqa:kv-groups", "kv-groups", 2}, want{"gate:neurons", "neurons", 24})
	if o := an.Group("gqa:kv-groups").Observe; o == nil || o.Pre != "v" || o.PreB != 8 || o.PostB != 16 {
		t.Errorf("KV group observation %+v", o)
	}
	checkModel(t, m)
	pruned, err := an.Apply(Plan{"gqa:kv-groups": {1}})
	if err != nil {
		t.Fatal(err)
	}
	ix := onnxio.NewIndex(pruned.Graph())
	g := ix.ProducerNode("gqa")
	if h, kv := onnxio.AttrInt(g, "num_heads", 0), onnxio.AttrInt(g, "kv_num_heads", 0); h != 2 || kv != 1 {
		t.Errorf("GroupQueryAttention num_heads %d, kv_num_heads %d after removing a KV group of 2", h, kv)
	}
	if h := onnxio.AttrInt(ix.ProducerNode("k.rot"), "num_heads", 0); h != 1 {
		t.Errorf("RotaryEmbedding num_heads %d", h)
	}
	if d := dimsOf(t, pruned, "q.w"); d[1] != 16 {
		t.Errorf("q.w dims %v", d)
	}
}

// The KV cache of GroupQueryAttention and MultiHeadAttention is a barrier
// that names the cache input.
func TestContribCacheBarrier(t *testing.T) {
	b := contribBuilder(t)
	x := b.in("x", 1, 1, 16)
	pk, pv := b.in("past_key", 1, 2, 3, 8), b.in("past_value", 1, 2, 3, 8)
	q := b.op("MatMul", "q", strs(x, b.w("q.w", 16, 16)))
	k := b.op("MatMul", "k", strs(x, b.w("k.w", 16, 16)))
	v := b.op("MatMul", "v", strs(x, b.w("v.w", 16, 16)))
	outs := b.opN(ms+"MultiHeadAttention", "mha", strs(q, k, v, "", "", "", pk, pv), 3, aI("num_heads", 2))
	b.out(b.op("MatMul", "o", strs(outs[0], b.w("o.w", 16, 16))), outs[1], outs[2])
	m := b.model()
	a := analyze(t, m)
	blockedWith(t, a, "k", `reads the KV cache "past_key"`)
}
