package rewrite

import (
	"fmt"
	"testing"

	"github.com/onnx-cria/onnx-cria/onnxio"
)

// Edge cases beyond the basic structures: combinations of offsets,
// strides and couplings.

// DenseNet-style: a Concat of two branches added to a third tensor, then a
// depthwise conv over the concatenation.
func TestEdgeConcatCoupled(t *testing.T) {
	b := convNet(t, 13, func(b *builder, x string) (string, int64) {
		p := b.op("Conv", "p", strs(x, b.w("p.w", 4, 8, 1, 1), b.w("p.b", 4)))
		q := b.op("Conv", "q", strs(x, b.w("q.w", 6, 8, 1, 1), b.w("q.b", 6)))
		c := b.op("Concat", "cat", strs(p, q), aI("axis", 1))
		r := b.op("Conv", "r", strs(x, b.w("r.w", 10, 8, 3, 3), b.w("r.b", 10)), aIs("pads", 1, 1, 1, 1))
		h := b.op("Add", "sum", strs(r, c))
		h = b.op("Relu", "sum.relu", strs(h))
		h = b.op("Conv", "dw", strs(h, b.w("dw.w", 20, 1, 3, 3)), aI("group", 10), aIs("pads", 1, 1, 1, 1))
		h = b.op("Relu", "dw.relu", strs(h))
		return h, 20
	})
	m := b.model()
	a := analyze(t, m, want{"conv1:channels", "channels", 8}, want{"p:channels", "channels", 4}, want{"q:channels", "channels", 6})
	if g := groupOf(t, a, "r"); !contains(g.Sources, "p") && !contains(g.Sources, "q") {
		t.Errorf("r's channels are not split into p's and q's: %v", g.Sources)
	}
	checkModel(t, m)
}

// A Split at boundaries that differ from the Concat before it.
func TestEdgeConcatThenSplit(t *testing.T) {
	b := newBuilder(t, 13)
	x := b.in("x", -1, 8)
	p := b.op("Relu", "p.relu", strs(b.op("MatMul", "p", strs(x, b.w("p.w", 8, 4)))))
	q := b.op("Relu", "q.relu", strs(b.op("MatMul", "q", strs(x, b.w("q.w", 8, 6)))))
	c := b.op("Concat", "cat", strs(p, q), aI("axis", 1))
	parts := b.opN("Split", "split", strs(c, b.ints("split.sizes", 5, 5)), 2, aI("axis", 1))
	y1 := b.op("MatMul", "y1", strs(parts[0], b.w("y1.w", 5, 3)))
	y2 := b.op("MatMul", "y2", strs(parts[1], b.w("y2.w", 5, 3)))
	b.out(b.op("Add", "y", strs(y1, y2)))
	m := b.model()
	// q's first unit goes to the first half with p's four: a group of one.
	a := analyze(t, m, want{"p:neurons", "neurons", 4}, want{"split:neurons#2", "neurons", 5})
	if g := a.Group("split:neurons#1"); g == nil || g.Width != 1 || g.Prunable() {
		t.Errorf("q's first unit:\n%s", summary(a))
	}
	checkModel(t, m)
}

// The same tensor concatenated twice, and a tensor added to itself.
func TestEdgeSelfConcat(t *testing.T) {
	b := newBuilder(t, 13)
	x := b.in("x", -1, 8)
	h := b.op("Relu", "fc1.relu", strs(b.op("MatMul", "fc1", strs(x, b.w("fc1.w", 8, 6)))))
	h2 := b.op("Add", "double", strs(h, h))
	c := b.op("Concat", "cat", strs(h, h2), aI("axis", -1))
	b.out(b.op("MatMul", "y", strs(c, b.w("y.w", 12, 3))))
	m := b.model()
	a := analyze(t, m, want{"fc1:neurons", "neurons", 6})
	if g := groupOf(t, a, "fc1"); g.ParamsPerUnit != 8+2*3 {
		t.Errorf("params per unit %d", g.ParamsPerUnit)
	}
	checkModel(t, m)
}

// PRelu with per-channel slopes, Where, a spatial ReduceMean, Conv1d.
func TestEdgeElementwiseMix(t *testing.T) {
	b := newBuilder(t, 13)
	x := b.in("x", -1, 4, 16)
	h := b.op("Conv", "c1", strs(x, b.w("c1.w", 10, 4, 3), b.w("c1.b", 10)), aIs("pads", 1, 1))
	h = b.op("PRelu", "prelu", strs(h, b.w("prelu.slope", 10, 1)))
	pos := b.op("Greater", "pos", strs(h, b.fs("zero", 0)))
	h = b.op("Where", "where", strs(pos, h, b.op("Mul", "neg", strs(h, b.w("neg.s", 10, 1)))))
	h = b.op("Conv", "c2", strs(h, b.w("c2.w", 7, 10, 1)))
	h = b.op("Elu", "elu", strs(h))
	h = b.op("Sub", "shift", strs(b.w("shift.c", 7, 1), h))
	h = b.op("ReduceMean", "mean", strs(h), aIs("axes", 2), aI("keepdims", 0))
	b.out(b.op("Gemm", "fc", strs(h, b.w("fc.w", 7, 3))))
	m := b.model()
	analyze(t, m, want{"c1:channels", "channels", 10}, want{"c2:channels", "channels", 7})
	checkModel(t, m)
}

// Reshape that copies the channel axis with 0 and flattens the rest.
// (With [0, 0, -1] shape inference cannot size the last axis for a run-time
// batch, and the reshape back is a barrier.)
func TestEdgeReshapeCopy(t *testing.T) {
	b := convNet(t, 13, func(b *builder, x string) (string, int64) {
		h := b.op("Reshape", "r", strs(x, b.ints("r.shape", 0, 0, 144))) // [N,8,144]
		h = b.op("Softmax", "sm", strs(h), aI("axis", 2))
		h = b.op("Reshape", "back", strs(h, b.ints("back.shape", -1, 8, 12, 12)))
		h = b.op("Conv", "conv2", strs(h, b.w("conv2.w", 6, 8, 1, 1)))
		h = b.op("Relu", "relu2", strs(h))
		return h, 6
	})
	m := b.model()
	analyze(t, m, want{"conv1:channels", "channels", 8}, want{"conv2:channels", "channels", 6})
	checkModel(t, m)
}

// Expand of a per-channel gate and Tile on spatial axes.
func TestEdgeExpandTile(t *testing.T) {
	b := convNet(t, 13, func(b *builder, x string) (string, int64) {
		s := b.op("GlobalAveragePool", "gp", strs(x))
		s = b.op("Sigmoid", "gate", strs(b.op("Conv", "se", strs(s, b.w("se.w", 8, 8, 1, 1)))))
		s = b.op("Expand", "gate.x", strs(s, b.ints("gate.shape", 1, 8, 12, 12)))
		h := b.op("Mul", "gated", strs(x, s))
		h = b.op("MaxPool", "mp", strs(h), aIs("kernel_shape", 2, 2), aIs("strides", 2, 2))
		h = b.op("Tile", "tile", strs(h, b.ints("tile.reps", 1, 1, 2, 2)))
		h = b.op("Conv", "conv2", strs(h, b.w("conv2.w", 6, 8, 1, 1)))
		h = b.op("Relu", "relu2", strs(h))
		return h, 6
	})
	m := b.model()
	analyze(t, m, want{"conv1:channels", "channels", 8}, want{"conv2:channels", "channels", 6})
	checkModel(t, m)
}

// Barriers with reasons: partial slices, grouped ConvTranspose, channel
// gathers, a constant multiplied by a computed tensor.
func TestEdgeBarriers(t *testing.T) {
	cases := []struct {
		name   string
		mid    func(b *builder, x string) string
		reason string
	}{
		{"slice-step", func(b *builder, x string) string {
			h := b.op("Slice", "s", strs(x, b.ints("s.s", -1), b.ints("s.e", -9223372036854775807), b.ints("s.a", 1), b.ints("s.st", -1)))
			return h
		}, "Slice node s"},
		{"gather-channels", func(b *builder, x string) string {
			return b.op("Gather", "g", strs(x, b.ints("g.i", 7, 6, 5, 4, 3, 2, 1, 0)), aI("axis", 1))
		}, "Gather node g selects along the unit axis"},
		{"convtranspose-grouped", func(b *builder, x string) string {
			return b.op("ConvTranspose", "ct", strs(x, b.w("ct.w", 8, 4, 1, 1)), aI("group", 2))
		}, "only plain and depthwise forms"},
		{"pad-channels", func(b *builder, x string) string {
			h := b.op("Pad", "p", strs(x, b.ints("p.p", 0, 1, 0, 0, 0, 1, 0, 0)))
			return b.op("Slice", "s", strs(h, b.ints("s.s", 1), b.ints("s.e", 9), b.ints("s.a", 1)))
		}, "Pad node p pads the unit axis"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := convNet(t, 13, func(b *builder, x string) (string, int64) {
				h := c.mid(b, x)
				h = b.op("Conv", "conv2", strs(h, b.w("conv2.w", 6, 8, 1, 1)))
				return b.op("Relu", "relu2", strs(h)), 6
			})
			m := b.model()
			a := analyze(t, m, want{"conv2:channels", "channels", 6})
			blockedWith(t, a, "conv1", c.reason)
			checkModel(t, m)
		})
	}
}

// Conv with 1-D and 3-D kernels.
func TestEdgeConvRanks(t *testing.T) {
	for _, r := range []int{1, 3} {
		t.Run(fmt.Sprintf("conv%dd", r), func(t *testing.T) {
			b := newBuilder(t, 13)
			sp := []int64{-1, 3, 6, 6, 6}[:2+r]
			x := b.in("x", sp...)
			k := func(c, cin int64) []int64 { return append([]int64{c, cin}, []int64{3, 3, 3}[:r]...) }
			pads := []int64{1, 1, 1, 1, 1, 1}[:2*r]
			h := b.op("Conv", "c1", strs(x, b.w("c1.w", k(6, 3)...)), aIs("pads", pads...))
			h = b.op("Relu", "r1", strs(h))
			h = b.op("Conv", "c2", strs(h, b.w("c2.w", k(6, 1)...)), aI("group", 6), aIs("pads", pads...))
			h = b.op("Relu", "r2", strs(h))
			h = b.op("Conv", "c3", strs(h, b.w("c3.w", k(4, 6)...)))
			b.out(h)
			m := b.model()
			analyze(t, m, want{"c1:channels", "channels", 6})
			checkModel(t, m)
		})
	}
}

// Models as exporters write them: value_info for every tensor (stale after
// pruning), shared weights behind Identity nodes, weights in Constant
// nodes, half-precision weights.

// declareAll adds value_info for every node output that inference sizes.
func declareAll(b *builder) {
	m := b.model()
	sh := onnxio.InferShapes(m, false)
	for _, n := range m.Graph().GetNode() {
		for _, o := range n.Output {
			if d, ok := sh.Dims[o]; ok && sh.DTypes[o] != 0 && !contains(b.outputs, o) {
				v := onnxio.NewValueInfo(o, sh.DTypes[o], symDims(d))
				b.vinfo = append(b.vinfo, v)
			}
		}
	}
}

func TestEdgeValueInfo(t *testing.T) {
	t.Run("conv", func(t *testing.T) {
		b := convNet(t, 13, func(b *builder, x string) (string, int64) {
			h := b.op("Conv", "conv2", strs(x, b.w("conv2.w", 6, 8, 3, 3)), aIs("pads", 1, 1, 1, 1))
			h = b.op("Relu", "relu2", strs(h))
			h = b.op("Conv", "dw", strs(h, b.w("dw.w", 6, 1, 3, 3)), aI("group", 6))
			return b.op("Relu", "relu3", strs(h)), 6
		})
		declareAll(b)
		m := b.model()
		analyze(t, m, want{"conv1:channels", "channels", 8}, want{"conv2:channels", "channels", 6})
		checkModel(t, m)
	})
	t.Run("attention", func(t *testing.T) {
		b := attention(t, attnOpts{opset: 13, shapes: "init", t: 5, heads: 8, kv: 2, d: 2})
		declareAll(b)
		m := b.model()
		if len(m.Graph().GetValueInfo()) < 20 {
			t.Fatalf("only %d value_info entries", len(m.Graph().GetValueInfo()))
		}
		a := analyze(t, m, want{"k.split:kv-groups", "kv-groups", 2})
		_ = a
		checkModel(t, m)
	})
}

// torch.onnx writes a parameter used by two modules once and reads it
// through Identity nodes.
func TestEdgeTiedThroughIdentity(t *testing.T) {
	b := newBuilder(t, 13)
	x := b.in("x", -1, 8)
	w := b.w("shared.w", 8, 8)
	h := b.op("MatMul", "l1", strs(x, b.op("Identity", "w1", strs(w))))
	h = b.op("Relu", "relu1", strs(h))
	h = b.op("MatMul", "l2", strs(h, b.op("Identity", "w2", strs(w))))
	h = b.op("Relu", "relu2", strs(h))
	bias := b.w("shared.b", 8)
	h = b.op("Add", "l2.bias", strs(h, bias))
	y := b.op("MatMul", "l3", strs(h, b.w("l3.w", 8, 3)))
	y = b.op("Add", "out", strs(y, b.op("Slice", "b3", strs(b.op("Identity", "b.id", strs(bias)), b.ints("b3.s", 0), b.ints("b3.e", 3)))))
	b.out(y)
	m := b.model()
	analyze(t, m, want{"l1:neurons", "neurons", 8}) // coupled by the shared weight
	checkModel(t, m)
}

// Weights held by Constant nodes rather than initializers.
func TestEdgeConstantNodeWeights(t *testing.T) {
	b := newBuilder(t, 13)
	x := b.in("x", -1, 3, 8, 8)
	cw := func(name string, dims ...int64) string {
		init := b.w(name+".init", dims...)
		t0 := b.inits[len(b.inits)-1]
		b.inits = b.inits[:len(b.inits)-1]
		delete(b.names, init)
		t0.Name = nil
		return b.op("Constant", name, nil, aT("value", t0))
	}
	h := b.op("Conv", "conv1", strs(x, cw("conv1.w", 8, 3, 3, 3), cw("conv1.b", 8)))
	h = b.op("Relu", "relu1", strs(h))
	h = b.op("Conv", "conv2", strs(h, cw("conv2.w", 6, 8, 1, 1)))
	h = b.op("Relu", "relu2", strs(h))
	h = b.op("Flatten", "flat", strs(b.op("GlobalAveragePool", "gap", strs(h))))
	b.out(b.op("Gemm", "fc", strs(h, cw("fc.w", 6, 4))))
	m := b.model()
	analyze(t, m, want{"conv1:channels", "channels", 8}, want{"conv2:channels", "channels", 6})
	checkModel(t, m)
}

// Half-precision weights between Casts.
func TestEdgeFloat16(t *testing.T) {
	b := newBuilder(t, 13)
	x := b.in("x", -1, 8)
	half := func(name string, dims ...int64) string {
		b.w(name, dims...)
		t0 := b.inits[len(b.inits)-1]
		vals, err := onnxio.DecodeFloat64s(onnxio.Float, t0.GetRawData())
		if err != nil {
			t.Fatal(err)
		}
		raw, err := onnxio.EncodeFloat64s(onnxio.Float16, vals)
		if err != nil {
			t.Fatal(err)
		}
		t1, err := onnxio.NewTensor(name, onnxio.Float16, dims, raw)
		if err != nil {
			t.Fatal(err)
		}
		b.inits[len(b.inits)-1] = t1
		return name
	}
	h := b.op("Cast", "x16", strs(x), aI("to", int64(onnxio.Float16)))
	h = b.op("MatMul", "fc1", strs(h, half("fc1.w", 8, 12)))
	h = b.op("Add", "fc1.add", strs(h, half("fc1.b", 12)))
	h = b.op("Relu", "relu", strs(h))
	h = b.op("MatMul", "fc2", strs(h, half("fc2.w", 12, 3)))
	b.out(b.op("Cast", "y", strs(h), aI("to", int64(onnxio.Float))))
	m := b.model()
	analyze(t, m, want{"fc1:neurons", "neurons", 12})
	checkModel(t, m)
}

// BERT-style pooling of the first token, and a per-head constant bias on
// attention scores.
func TestEdgeTokenSelectAndHeadBias(t *testing.T) {
	b := newBuilder(t, 13)
	x := b.in("x", -1, 5, 16)
	q := b.op("Reshape", "q.split", strs(b.op("MatMul", "q", strs(x, b.w("q.w", 16, 16))), b.ints("q.shape", 0, 0, 4, 4)))
	q = b.op("Transpose", "q.t", strs(q), aIs("perm", 0, 2, 1, 3))
	k := b.op("Reshape", "k.split", strs(b.op("MatMul", "k", strs(x, b.w("k.w", 16, 16))), b.ints("k.shape", 0, 0, 4, 4)))
	k = b.op("Transpose", "k.t", strs(k), aIs("perm", 0, 2, 3, 1))
	v := b.op("Reshape", "v.split", strs(b.op("MatMul", "v", strs(x, b.w("v.w", 16, 16))), b.ints("v.shape", 0, 0, 4, 4)))
	v = b.op("Transpose", "v.t", strs(v), aIs("perm", 0, 2, 1, 3))
	s := b.op("MatMul", "scores", strs(q, k))
	s = b.op("Add", "bias", strs(s, b.w("rel.bias", 1, 4, 5, 5)))
	s = b.op("Mul", "alibi", strs(s, b.w("slopes", 4, 1, 1)))
	p := b.op("Softmax", "softmax", strs(s), aI("axis", -1))
	c := b.op("Transpose", "ctx.t", strs(b.op("MatMul", "ctx", strs(p, v))), aIs("perm", 0, 2, 1, 3))
	c = b.op("Reshape", "ctx.merge", strs(c, b.ints("ctx.shape", 0, 0, 16)))
	h := b.op("MatMul", "o", strs(c, b.w("o.w", 16, 16)))
	cls := b.op("Gather", "cls", strs(h, b.i64("first", 0)), aI("axis", 1)) // [N,16]
	cls = b.op("Tanh", "pool", strs(b.op("Gemm", "pooler", strs(cls, b.w("pooler.w", 16, 8)))))
	b.out(b.op("Gemm", "head", strs(cls, b.w("head.w", 8, 2))))
	m := b.model()
	analyze(t, m, want{"q.split:heads", "heads", 4}, want{"o:neurons", "neurons", 16}, want{"pooler:neurons", "neurons", 8})
	checkModel(t, m)
}

// timm's ViT attention (and torchvision's Swin): qkv reshaped to
// [B,N,3,H,D], permuted to [3,B,H,N,D] and indexed. The heads are on the H
// axis, repeated over the q/k/v axis, which carries no units: the heads
// prune (the q/k/v axis was once taken for three heads, then blocked).
func TestEdgeFusedQKV5D(t *testing.T) {
	b := newBuilder(t, 13)
	x := b.in("x", -1, 5, 16)
	qkv := b.op("MatMul", "qkv", strs(x, b.w("qkv.w", 16, 48)))
	qkv = b.op("Reshape", "qkv.r", strs(qkv, b.ints("qkv.shape", 0, 0, 3, 4, 4)))
	qkv = b.op("Transpose", "qkv.t", strs(qkv), aIs("perm", 2, 0, 3, 1, 4))
	q := b.op("Gather", "q", strs(qkv, b.i64("i0", 0)), aI("axis", 0))
	k := b.op("Gather", "k", strs(qkv, b.i64("i1", 1)), aI("axis", 0))
	v := b.op("Gather", "v", strs(qkv, b.i64("i2", 2)), aI("axis", 0))
	s := b.op("MatMul", "scores", strs(q, b.op("Transpose", "k.t", strs(k), aIs("perm", 0, 1, 3, 2))))
	p := b.op("Softmax", "softmax", strs(s), aI("axis", -1))
	c := b.op("Transpose", "ctx.t", strs(b.op("MatMul", "ctx", strs(p, v))), aIs("perm", 0, 2, 1, 3))
	c = b.op("Reshape", "ctx.merge", strs(c, b.ints("ctx.shape", 0, 0, 16)))
	h := b.op("Add", "res", strs(x, b.op("MatMul", "proj", strs(c, b.w("proj.w", 16, 16)))))
	u := b.op("Gelu", "gelu", strs(b.op("MatMul", "fc1", strs(h, b.w("fc1.w", 16, 32)))))
	h = b.op("Add", "res2", strs(h, b.op("MatMul", "fc2", strs(u, b.w("fc2.w", 32, 16)))))
	b.out(h)
	b.opset = 20 // Gelu
	m := b.model()
	// [B, T, 3, H, D]: the heads are on the fourth axis, the third picks q,
	// k or v (torchvision's Swin and timm's ViT do this; the third axis was
	// once taken for three heads).
	a := analyze(t, m, want{"fc1:neurons", "neurons", 32}, want{"qkv.r:heads", "heads", 4})
	if g := a.Group("qkv.r:heads"); g.ParamsPerUnit != 3*16*4+4*16 {
		t.Errorf("params per head %d", g.ParamsPerUnit)
	}
	checkModel(t, m)
}

// torch.nn.MultiheadAttention (torch 1.13): a packed in-projection split with
// unflatten/Gather, then heads merged with the batch axis ([T, B*H, D]).
func TestEdgeTorchMHA(t *testing.T) {
	b := newBuilder(t, 14)
	x := b.in("x", 5, 2, 16) // [T,B,E]
	proj := b.op("Add", "in_proj", strs(b.op("MatMul", "in_proj.mm", strs(x, b.w("in_proj.w", 16, 48))), b.w("in_proj.b", 48)))
	proj = b.op("Reshape", "unflat", strs(proj, b.ints("unflat.shape", 5, 2, 3, 16)))
	proj = b.op("Unsqueeze", "unsq", strs(proj, b.ints("unsq.axes", 0)))
	proj = b.op("Transpose", "tr", strs(proj), aIs("perm", 3, 1, 2, 0, 4))
	proj = b.op("Squeeze", "sq", strs(proj, b.ints("sq.axes", 3)))
	heads := func(name string, idx int64) string {
		t0 := b.op("Gather", name, strs(proj, b.i64(name+".i", idx)), aI("axis", 0)) // [T,B,E]
		t0 = b.op("Reshape", name+".view", strs(t0, b.ints(name+".shape", 5, 8, 4))) // [T,B*H,D]
		return b.op("Transpose", name+".t", strs(t0), aIs("perm", 1, 0, 2))          // [B*H,T,D]
	}
	q, k, v := heads("q", 0), heads("k", 1), heads("v", 2)
	s := b.op("MatMul", "scores", strs(q, b.op("Transpose", "k.tt", strs(k), aIs("perm", 0, 2, 1))))
	p := b.op("Softmax", "softmax", strs(s), aI("axis", -1))
	c := b.op("Transpose", "ctx.t", strs(b.op("MatMul", "ctx", strs(p, v))), aIs("perm", 1, 0, 2))
	c = b.op("Reshape", "ctx.merge", strs(c, b.ints("ctx.shape", 10, 16)))
	o := b.op("Gemm", "out_proj", strs(c, b.w("out_proj.w", 16, 16), b.w("out_proj.b", 16)), aI("transB", 1))
	o = b.op("Reshape", "o.view", strs(o, b.ints("o.shape", 5, 2, 16)))
	u := b.op("Relu", "relu", strs(b.op("MatMul", "fc1", strs(o, b.w("fc1.w", 16, 24)))))
	b.out(b.op("MatMul", "fc2", strs(u, b.w("fc2.w", 24, 16))))
	m := b.model()
	a := analyze(t, m, want{"fc1:neurons", "neurons", 24}, want{"out_proj:neurons", "neurons", 16})
	blockedWith(t, a, "in_proj.mm")
	checkModel(t, m)
}

// Attention with a single head and no reshape: q and k units are summed
// over in q.k^T, which no outgoing weight can silence (barrier); v's units
// reach the output projection (prunable).
func TestEdgeSingleHead(t *testing.T) {
	b := newBuilder(t, 13)
	x := b.in("x", -1, 5, 16)
	q := b.op("MatMul", "q", strs(x, b.w("q.w", 16, 8)))
	k := b.op("MatMul", "k", strs(x, b.w("k.w", 16, 8)))
	v := b.op("MatMul", "v", strs(x, b.w("v.w", 16, 6)))
	s := b.op("MatMul", "scores", strs(q, b.op("Transpose", "kt", strs(k), aIs("perm", 0, 2, 1))))
	p := b.op("Softmax", "softmax", strs(s), aI("axis", -1))
	c := b.op("MatMul", "ctx", strs(p, v))
	b.out(b.op("MatMul", "o", strs(c, b.w("o.w", 6, 16))))
	m := b.model()
	a := analyze(t, m, want{"v:neurons", "neurons", 6})
	blockedWith(t, a, "q", "contracted by MatMul node scores between two computed tensors")
	checkModel(t, m)
}

// Flatten(axis=2) of NCHW merges the channels with the run-time batch: the
// channels can no longer be followed (they had a layout with a negative
// repeat count before).
func TestEdgeFlattenIntoBatch(t *testing.T) {
	b := convNet(t, 13, func(b *builder, x string) (string, int64) {
		h := b.op("Flatten", "fl", strs(x), aI("axis", 2)) // [N*8, 144]
		h = b.op("MatMul", "mm", strs(h, b.w("mm.w", 144, 144)))
		h = b.op("Reshape", "back", strs(h, b.ints("back.shape", -1, 8, 12, 12)))
		h = b.op("Conv", "conv2", strs(h, b.w("conv2.w", 6, 8, 1, 1)))
		return b.op("Relu", "relu2", strs(h)), 6
	})
	m := b.model()
	a := analyze(t, m, want{"conv2:channels", "channels", 6})
	blockedWith(t, a, "conv1", "merged with an axis of unknown size")
	for t0, axes := range a.lay {
		for ax, l := range axes {
			for _, s := range l {
				if s.R < 1 || s.B < 1 {
					t.Errorf("%s axis %d has layout %v", t0, ax, l)
				}
			}
		}
	}
	checkModel(t, m)
}

// ShuffleNet's channel shuffle (torchvision, exported by torch 1.13): two
// branches concatenated, Reshape [N, 2, C/2, H, W], Transpose of the two
// split axes, Reshape back. It interleaves the branches' channels: a named
// barrier. The next block splits the shuffled channels in halves with
// Slices whose bounds are computed from the run-time shape, and concatenates
// the first half with its branch: a part of unknown length, also named, and
// no group of unknown width is made (it was -1, which made shrink panic).
func TestEdgeChannelShuffle(t *testing.T) {
	b := convNet(t, 13, func(b *builder, x string) (string, int64) {
		b1 := b.op("Conv", "branch1", strs(x, b.w("branch1.w", 8, 8, 1, 1)))
		b2 := b.op("Relu", "b2.relu", strs(b.op("Conv", "branch2", strs(x, b.w("branch2.w", 8, 8, 1, 1)))))
		b2 = b.op("Conv", "branch2b", strs(b2, b.w("branch2b.w", 8, 8, 1, 1)))
		cat := b.op("Concat", "cat", strs(b1, b2), aI("axis", 1))
		sh := b.op("Reshape", "shuffle", strs(cat, b.ints("shuffle.shape", -1, 2, 8, 12, 12)))
		sh = b.op("Transpose", "shuffle.t", strs(sh), aIs("perm", 0, 2, 1, 3, 4))
		// x.view(batchsize, -1, height, width), the sizes read from the
		// concatenation's shape: the channel count is known only at run time.
		cs := b.op("Shape", "cat.shape", strs(cat))
		dim := func(k int64) string {
			g := b.op("Gather", fmt.Sprintf("cat.dim%d", k), strs(cs, b.i64(fmt.Sprintf("cat.i%d", k), k)), aI("axis", 0))
			return b.op("Unsqueeze", fmt.Sprintf("cat.u%d", k), strs(g, b.ints(fmt.Sprintf("cat.ua%d", k), 0)))
		}
		back := b.op("Concat", "back.shape", strs(dim(0), b.ints("minus1", -1), dim(2), dim(3)), aI("axis", 0))
		sh = b.op("Reshape", "shuffle.back", strs(sh, back))
		// x.chunk(2, dim=1) as torch exports it: the half from the shape.
		c := b.op("Gather", "c", strs(b.op("Shape", "shp", strs(sh)), b.ints("c.i", 1)), aI("axis", 0))
		half := b.op("Div", "half", strs(c, b.ints("two", 2)))
		x1 := b.op("Slice", "x1", strs(sh, b.ints("zero", 0), half, b.ints("ax1", 1)))
		x2 := b.op("Slice", "x2", strs(sh, half, b.op("Mul", "end", strs(half, b.ints("two2", 2))), b.ints("ax2", 1)))
		y := b.op("Relu", "y.relu", strs(b.op("Conv", "next", strs(x2, b.w("next.w", 6, 8, 1, 1)))))
		y = b.op("Conv", "nextb", strs(y, b.w("nextb.w", 8, 6, 1, 1)))
		return b.op("Concat", "cat2", strs(x1, y), aI("axis", 1)), 16
	})
	m := b.model()
	a := analyze(t, m, want{"conv1:channels", "channels", 8}, want{"branch2:channels", "channels", 8}, want{"next:channels", "channels", 6})
	blockedWith(t, a, "branch1", "channel shuffle (Reshape node shuffle, Transpose node shuffle.t)")
	blockedWith(t, a, "nextb", `Concat node cat2 joins "x1", whose length along the unit axis is known only at run time`)
	for _, g := range a.Groups {
		if g.Width < 1 {
			t.Errorf("group %s has width %d", g.Name, g.Width)
		}
	}
	checkModel(t, m)
}

// GPT-2's merge of the heads, y.transpose(1, 2).reshape(b, t, d), takes d
// from the residual stream's run-time shape: once heads go, the merged
// axis is narrower than the stream, so the rewriter replaces that run-time
// size with a constant (it blocked the heads before).
func TestEdgeMergeHeadsFromShape(t *testing.T) {
	b := newBuilder(t, 13)
	x := b.in("x", -1, -1, 16)
	shape := b.op("Shape", "x.shape", strs(x))
	dim := func(k int64) string {
		g := b.op("Gather", fmt.Sprintf("x.dim%d", k), strs(shape, b.i64(fmt.Sprintf("x.i%d", k), k)), aI("axis", 0))
		return b.op("Unsqueeze", fmt.Sprintf("x.u%d", k), strs(g, b.ints(fmt.Sprintf("x.ua%d", k), 0)))
	}
	heads := func(name string) string {
		h := b.op("MatMul", name, strs(x, b.w(name+".w", 16, 16)))
		h = b.op("Reshape", name+".r", strs(h, b.ints(name+".shape", 0, 0, 4, 4)))
		return b.op("Transpose", name+".t", strs(h), aIs("perm", 0, 2, 1, 3))
	}
	q, k, v := heads("q"), heads("k"), heads("v")
	s := b.op("MatMul", "scores", strs(q, b.op("Transpose", "k.tt", strs(k), aIs("perm", 0, 1, 3, 2))))
	c := b.op("MatMul", "ctx", strs(b.op("Softmax", "p", strs(s), aI("axis", -1)), v))
	c = b.op("Transpose", "ctx.t", strs(c), aIs("perm", 0, 2, 1, 3))
	target := b.op("Concat", "merge.shape", strs(dim(0), dim(1), dim(2)), aI("axis", 0))
	c = b.op("Reshape", "merge", strs(c, target))
	y := b.op("Add", "res", strs(x, b.op("MatMul", "o", strs(c, b.w("o.w", 16, 16)))))
	b.out(b.op("MatMul", "head", strs(y, b.w("head.w", 16, 3))))
	m := b.model()
	a := analyze(t, m, want{"q.r:heads", "heads", 4})
	checkModel(t, m)
	p, err := a.Apply(Plan{"q.r:heads": {0, 3}})
	if err != nil {
		t.Fatal(err)
	}
	n := onnxio.NewIndex(p.Graph()).ProducerNode("merge.shape")
	if c := onnxio.NewIndex(p.Graph()).Const(n.Input[2]); c == nil || onnxio.NumElements(c.GetDims()) != 1 {
		t.Errorf("the merged width is still read at run time: %v", n.Input)
	}
}

// A ConvNeXt block: depthwise Conv, channels last, LayerNorm, a Linear MLP,
// back to channels first, residual. The residual stream is one group with
// Conv channels and Linear neurons ("mixed"); it is marked Conv, so that
// the width planner keeps it on ONNX Runtime's Conv kernel block, and the
// MLP's neurons are not.
func TestEdgeConvNeXtChannels(t *testing.T) {
	b := newBuilder(t, 17)
	x := b.in("x", -1, 3, 8, 8)
	stem := b.op("Conv", "stem", strs(x, b.w("stem.w", 16, 3, 2, 2), b.w("stem.b", 16)), aIs("strides", 2, 2))
	h := b.op("Conv", "dw", strs(stem, b.w("dw.w", 16, 1, 3, 3), b.w("dw.b", 16)), aI("group", 16), aIs("pads", 1, 1, 1, 1))
	h = b.op("Transpose", "nhwc", strs(h), aIs("perm", 0, 2, 3, 1))
	h = b.op("LayerNormalization", "ln", strs(h, b.pos("ln.g", 16), b.w("ln.b", 16)), aI("axis", -1))
	h = b.op("Gelu", "gelu", strs(b.op("MatMul", "up", strs(h, b.w("up.w", 16, 64)))))
	h = b.op("MatMul", "down", strs(h, b.w("down.w", 64, 16)))
	h = b.op("Add", "res", strs(stem, b.op("Transpose", "nchw", strs(h), aIs("perm", 0, 3, 1, 2))))
	b.out(b.op("Flatten", "flat", strs(b.op("GlobalAveragePool", "gap", strs(h)))))
	b.opset = 20 // Gelu
	m := b.model()
	a, err := Analyze(m, Options{})
	if err != nil {
		t.Fatal(err)
	}
	stream, mlp := groupOf(t, a, "stem"), groupOf(t, a, "up")
	if stream.Kind != "mixed" || !stream.Conv || mlp.Conv {
		t.Errorf("stream %s kind %s conv %v; MLP %s conv %v\n%s", stream.Name, stream.Kind, stream.Conv, mlp.Name, mlp.Conv, summary(a))
	}
}

// torch.nn.MultiheadAttention as torch.onnx exports it with dynamic batch
// and sequence: q, k and v cut from the packed projection by Slices whose
// bounds are computed from its run-time width, each viewed as [S, B*H, D]
// with B*H the run-time batch times the constant H and D the run-time
// hidden width over H, the heads merged back by a view to [S*B, E] with E
// read from the input. The heads prune (the constant H and the bounds
// rewritten) and are observed (the fold view copies the run-time sequence
// length from its input, so the samples are placed), with or without a key
// padding mask expanded to the heads by a constant and folded with the
// same B*H (the Expand's head count is rewritten with the fold's).
func TestEdgeTorchMHAFolded(t *testing.T) {
	for _, masked := range []bool{false, true} {
		t.Run(fmt.Sprintf("masked=%v", masked), func(t *testing.T) {
			m := torchMHA(t, masked, -1)
			a := analyze(t, m, want{"fc0:neurons", "neurons", 16}, want{"in_proj.q.view:heads", "heads", 4}, want{"out_proj:neurons", "neurons", 16}, want{"fc1:neurons", "neurons", 12})
			if g := a.Group("in_proj.q.view:heads"); g.Observe == nil {
				t.Errorf("folded heads with a dynamic sequence unobserved: %q", g.Unobserved)
			}
			checkModel(t, m)
		})
	}
}

// torchMHA builds the graph of TestEdgeTorchMHAFolded, with a sequence
// length of seq (-1: dynamic).
func torchMHA(t *testing.T, masked bool, seq int64) *onnxio.Model {
	b := newBuilder(t, 13)
	const e, h = 16, 4
	xin := b.in("x", -1, seq, 8) // [B, S, 8]
	x := b.op("Transpose", "x.t", strs(b.op("MatMul", "fc0", strs(xin, b.w("fc0.w", 8, e)))), aIs("perm", 1, 0, 2))
	unsq := func(name, in string) string {
		return b.op("Unsqueeze", name, strs(in, b.ints(name+".axes", 0)))
	}
	size := func(name, src string, k int64) string {
		return b.op("Gather", name, strs(b.op("Shape", name+".shape", strs(src)), b.i64(name+".i", k)), aI("axis", 0))
	}
	sl, bt, width := size("S", x, 0), size("B", x, 1), size("E", x, 2)
	hd := b.op("Div", "hd", strs(width, b.i64("heads", h)))
	proj := b.op("Add", "in_proj", strs(b.w("in_proj.b", 3*e), b.op("MatMul", "in_proj.mm", strs(x, b.w("in_proj.w", e, 3*e)))))
	third := b.op("Div", "third", strs(b.op("Add", "w2", strs(b.op("Gather", "w3", strs(b.op("Shape", "pw", strs(proj)), b.ints("last", -1)), aI("axis", 0)), b.ints("two", 2))), b.ints("three", 3)))
	bounds := []string{b.ints("zero", 0), third, b.op("Mul", "2third", strs(third, b.ints("x2", 2))), b.op("Mul", "3third", strs(third, b.ints("x3", 3)))}
	bh := b.op("Mul", "bh", strs(bt, b.i64("h", h)))
	view := func(name string, k int) string {
		p := b.op("Slice", name, strs(proj, bounds[k], bounds[k+1], b.ints(name+".axes", -1)))
		shape := b.op("Concat", name+".shape", strs(unsq(name+".s", sl), unsq(name+".bh", bh), unsq(name+".hd", hd)), aI("axis", 0))
		return b.op("Reshape", name+".view", strs(p, shape)) // [S, B*H, D]
	}
	q := b.op("Transpose", "q.t", strs(view("in_proj.q", 0)), aIs("perm", 1, 0, 2))
	k := b.op("Transpose", "k.t", strs(view("in_proj.k", 1)), aIs("perm", 1, 2, 0))
	v := b.op("Transpose", "v.t", strs(view("in_proj.v", 2)), aIs("perm", 1, 0, 2))
	s := b.op("MatMul", "scores", strs(b.op("Div", "q.scale", strs(q, b.fs("sqrt_d", 2))), k))
	if masked {
		mask := b.in("mask", -1, -1) // [B, S]
		mr := b.op("Reshape", "mask.r", strs(mask, b.op("Concat", "mask.rs", strs(unsq("mask.b", bt), b.ints("ones", 1, 1), unsq("mask.s", sl)), aI("axis", 0))))
		me := b.op("Expand", "mask.e", strs(mr, b.ints("mask.es", 1, h, 1, 1)))
		mf := b.op("Reshape", "mask.f", strs(me, b.op("Concat", "mask.fs", strs(unsq("mask.bh", bh), b.ints("one", 1), unsq("mask.s2", sl)), aI("axis", 0))))
		s = b.op("Add", "masked", strs(s, mf))
	}
	c := b.op("MatMul", "ctx", strs(b.op("Softmax", "softmax", strs(s), aI("axis", -1)), v))
	c = b.op("Transpose", "ctx.t", strs(c), aIs("perm", 1, 0, 2))
	merge := b.op("Concat", "merge.shape", strs(unsq("merge.sb", b.op("Mul", "sb", strs(sl, bt))), unsq("merge.e", width)), aI("axis", 0))
	o := b.op("Gemm", "out_proj", strs(b.op("Reshape", "merge", strs(c, merge)), b.w("out_proj.w", e, e), b.w("out_proj.b", e)), aI("transB", 1))
	u := b.op("Relu", "relu1", strs(b.op("MatMul", "fc1", strs(o, b.w("fc1.w", e, 12)))))
	b.out(b.op("MatMul", "fc2", strs(u, b.w("fc2.w", 12, 3))))
	return b.model()
}
