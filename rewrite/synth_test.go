package rewrite

import (
	"fmt"
	"math"
	"testing"

	"github.com/onnx-cria/onnx-cria/onnxio"
	"github.com/onnx-cria/onnx-cria/onnxio/onnxpb"
)

// Synthetic models, one structure each, through the rewriter's contract
// (checkModel) and assertions about the groups the analysis finds.

// Dense layers.

func TestSynthGemm(t *testing.T) {
	for _, ta := range []int64{0, 1} {
		for _, tb := range []int64{0, 1} {
			for _, c := range []string{"none", "vec", "row", "scalar"} {
				t.Run(fmt.Sprintf("transA=%d/transB=%d/C=%s", ta, tb, c), func(t *testing.T) {
					b := newBuilder(t, 17)
					x := b.in("x", -1, 6)
					w1 := []int64{6, 12}
					if tb == 1 {
						w1 = []int64{12, 6}
					}
					h := b.op("Gemm", "fc1", strs(x, b.w("fc1.w", w1...), b.w("fc1.b", 12)), aI("transB", tb))
					h = b.op("Relu", "relu1", strs(h))
					if ta == 1 {
						h = b.op("Transpose", "t", strs(h), aIs("perm", 1, 0))
					}
					w2 := []int64{12, 5}
					if tb == 1 {
						w2 = []int64{5, 12}
					}
					ins := strs(h, b.w("fc2.w", w2...))
					switch c {
					case "vec":
						ins = append(ins, b.w("fc2.b", 5))
					case "row":
						ins = append(ins, b.w("fc2.b", 1, 5))
					case "scalar":
						ins = append(ins, b.fs("fc2.b", 0.25))
					}
					y := b.op("Gemm", "fc2", ins, aI("transA", ta), aI("transB", tb), aF("alpha", 0.5), aF("beta", 2))
					b.out(y)
					m := b.model()
					analyze(t, m, want{"fc1:neurons", "neurons", 12})
					checkModel(t, m)
				})
			}
		}
	}
}

// A Gemm whose first operand is transposed and fed with units on its row
// axis: the batch axis of the Gemm, not a feature axis.
func TestSynthGemmTransAInput(t *testing.T) {
	b := newBuilder(t, 13)
	x := b.in("x", 6, -1)
	h := b.op("Gemm", "fc1", strs(x, b.w("fc1.w", 6, 10), b.w("fc1.b", 10)), aI("transA", 1))
	h = b.op("Relu", "relu1", strs(h))
	y := b.op("Gemm", "fc2", strs(h, b.w("fc2.w", 4, 10)), aI("transB", 1))
	b.out(y)
	m := b.model()
	analyze(t, m, want{"fc1:neurons", "neurons", 10})
	checkModel(t, m)
}

func TestSynthMatMul(t *testing.T) {
	for _, shape := range [][]int64{{-1, 8}, {-1, 5, 8}, {-1, 2, 5, 8}} {
		t.Run(fmt.Sprintf("rank%d", len(shape)), func(t *testing.T) {
			b := newBuilder(t, 17)
			x := b.in("x", shape...)
			h := b.op("MatMul", "l1", strs(x, b.w("l1.w", 8, 16)))
			h = b.op("Add", "l1.add", strs(h, b.w("l1.b", 16)))
			h = b.op("Relu", "relu1", strs(h))
			h = b.op("MatMul", "l2", strs(h, b.w("l2.w", 16, 12)))
			h = b.op("Add", "l2.add", strs(b.w("l2.b", 12), h)) // bias first
			h = b.op("Tanh", "tanh2", strs(h))
			y := b.op("MatMul", "l3", strs(h, b.w("l3.w", 12, 3)))
			b.out(y)
			m := b.model()
			analyze(t, m, want{"l1:neurons", "neurons", 16}, want{"l2:neurons", "neurons", 12})
			checkModel(t, m)
		})
	}
}

func TestSynthLinearChain(t *testing.T) {
	b := newBuilder(t, 11)
	h := b.in("x", -1, 7)
	widths := []int64{7, 20, 14, 9}
	var groups []want
	for k := 1; k < len(widths); k++ {
		name := fmt.Sprintf("fc%d", k)
		h = b.op("Gemm", name, strs(h, b.w(name+".w", widths[k], widths[k-1]), b.w(name+".b", widths[k])), aI("transB", 1))
		h = b.op("Relu", name+".relu", strs(h))
		groups = append(groups, want{name + ":neurons", "neurons", int(widths[k])})
	}
	y := b.op("Gemm", "head", strs(h, b.w("head.w", 3, 9), b.w("head.b", 3)), aI("transB", 1))
	b.out(y)
	m := b.model()
	a := analyze(t, m, groups...)
	if o := groupOf(t, a, "fc2").Observe; o == nil || o.Pre != "fc2" || o.Post != "fc2.relu" {
		t.Errorf("fc2 observation: %+v", o)
	}
	blockedWith(t, a, "head", "graph output")
	checkModel(t, m)
}

// Convolutions.

func convNet(t *testing.T, opset int64, mid func(b *builder, x string) (string, int64), opsetOverride ...int64) *builder {
	if len(opsetOverride) > 0 {
		opset = opsetOverride[0]
	}
	b := newBuilder(t, opset)
	x := b.in("x", -1, 3, 12, 12)
	h := b.op("Conv", "conv1", strs(x, b.w("conv1.w", 8, 3, 3, 3), b.w("conv1.b", 8)), aIs("pads", 1, 1, 1, 1))
	h = b.op("Relu", "relu1", strs(h))
	h, c := mid(b, h)
	h = b.op("GlobalAveragePool", "gap", strs(h))
	h = b.op("Flatten", "flat", strs(h))
	y := b.op("Gemm", "fc", strs(h, b.w("fc.w", 5, c), b.w("fc.b", 5)), aI("transB", 1))
	b.out(y)
	return b
}

func TestSynthConvPlain(t *testing.T) {
	b := convNet(t, 13, func(b *builder, x string) (string, int64) {
		h := b.op("Conv", "conv2", strs(x, b.w("conv2.w", 10, 8, 3, 3)),
			aIs("strides", 2, 2), aIs("pads", 2, 1, 2, 0), aIs("dilations", 2, 1), aIs("kernel_shape", 3, 3))
		h = b.op("BatchNormalization", "bn2", strs(h, b.pos("bn2.s", 10), b.w("bn2.b", 10), b.w("bn2.m", 10), b.pos("bn2.v", 10)))
		h = b.op("Relu", "relu2", strs(h))
		h = b.op("Conv", "conv3", strs(h, b.w("conv3.w", 6, 10, 1, 1), b.w("conv3.b", 6)))
		h = b.op("Sigmoid", "sig3", strs(h))
		return h, 6
	})
	m := b.model()
	a := analyze(t, m, want{"conv1:channels", "channels", 8}, want{"conv2:channels", "channels", 10}, want{"conv3:channels", "channels", 6})
	g := groupOf(t, a, "conv2")
	if g.ParamsPerUnit != 8*9+4+6 {
		t.Errorf("conv2 params per unit %d, want %d", g.ParamsPerUnit, 8*9+4+6)
	}
	checkModel(t, m)
}

func TestSynthConvGrouped(t *testing.T) {
	b := convNet(t, 13, func(b *builder, x string) (string, int64) {
		h := b.op("Conv", "conv2", strs(x, b.w("conv2.w", 8, 4, 3, 3), b.w("conv2.b", 8)), aI("group", 2), aIs("pads", 1, 1, 1, 1))
		h = b.op("Relu", "relu2", strs(h))
		h = b.op("Conv", "conv3", strs(h, b.w("conv3.w", 16, 2, 3, 3), b.w("conv3.b", 16)), aI("group", 4))
		h = b.op("Relu", "relu3", strs(h))
		h = b.op("Conv", "conv4", strs(h, b.w("conv4.w", 6, 16, 1, 1), b.w("conv4.b", 6)))
		h = b.op("Relu", "relu4", strs(h))
		return h, 6
	})
	m := b.model()
	// conv1's channels are read in two groups of 4 by conv2; conv2's
	// groups each feed two of conv3's groups: all three layers lose whole
	// conv2 groups together.
	a := analyze(t, m, want{"conv2:conv-groups", "conv-groups", 2}, want{"conv4:channels", "channels", 6})
	if g := groupOf(t, a, "conv2"); !contains(g.Sources, "conv1") || !contains(g.Sources, "conv3") {
		t.Errorf("conv2 group sources %v", g.Sources)
	}
	// conv1 rows 4x(27+1), conv2 4x(4x9+1), conv3 8x(2x9+1), conv4 columns 6x8.
	if g := groupOf(t, a, "conv2"); g.ParamsPerUnit != 4*28+4*37+8*19+6*8 {
		t.Errorf("params per unit %d", g.ParamsPerUnit)
	}
	pruned, err := a.Apply(Plan{"conv2:conv-groups": {0}})
	if err != nil {
		t.Fatal(err)
	}
	if d := dimsOf(t, pruned, "conv3.w"); d[0] != 8 || d[1] != 2 {
		t.Errorf("conv3.w dims %v", d)
	}
	checkModel(t, m)
}

func TestSynthConvDepthwise(t *testing.T) {
	for _, mult := range []int64{1, 2} {
		t.Run(fmt.Sprintf("mult%d", mult), func(t *testing.T) {
			b := convNet(t, 13, func(b *builder, x string) (string, int64) {
				h := b.op("Conv", "dw", strs(x, b.w("dw.w", 8*mult, 1, 3, 3), b.w("dw.b", 8*mult)), aI("group", 8), aIs("pads", 1, 1, 1, 1))
				h = b.op("BatchNormalization", "dw.bn", strs(h, b.pos("dw.bn.s", 8*mult), b.w("dw.bn.b", 8*mult), b.w("dw.bn.m", 8*mult), b.pos("dw.bn.v", 8*mult)))
				h = b.op("Clip", "relu6", strs(h, b.fs("zero", 0), b.fs("six", 6)))
				h = b.op("Conv", "pw", strs(h, b.w("pw.w", 6, 8*mult, 1, 1), b.w("pw.b", 6)))
				h = b.op("Relu", "relu.pw", strs(h))
				return h, 6
			})
			m := b.model()
			a := analyze(t, m, want{"conv1:channels", "channels", 8}, want{"pw:channels", "channels", 6})
			g := groupOf(t, a, "conv1")
			// conv1's row (27+1), dw's mult filters (9+1 each) and BN (4
			// each), pw's columns (6 per dw output).
			if want := 28 + mult*(10+4+6); g.ParamsPerUnit != want {
				t.Errorf("conv1 params per unit %d, want %d", g.ParamsPerUnit, want)
			}
			checkModel(t, m)
			pruned, err := a.Apply(Plan{"conv1:channels": {1, 4, 5}})
			if err != nil {
				t.Fatal(err)
			}
			if d := dimsOf(t, pruned, "dw.w"); d[0] != 5*mult {
				t.Errorf("dw.w dims %v", d)
			}
		})
	}
}

func TestSynthConvTranspose(t *testing.T) {
	t.Run("plain", func(t *testing.T) {
		b := convNet(t, 13, func(b *builder, x string) (string, int64) {
			h := b.op("ConvTranspose", "up", strs(x, b.w("up.w", 8, 6, 3, 3), b.w("up.b", 6)), aIs("strides", 2, 2), aIs("pads", 1, 1, 1, 1), aIs("output_padding", 1, 1))
			h = b.op("Relu", "relu.up", strs(h))
			h = b.op("Conv", "conv3", strs(h, b.w("conv3.w", 4, 6, 3, 3)))
			h = b.op("Relu", "relu3", strs(h))
			return h, 4
		})
		m := b.model()
		analyze(t, m, want{"conv1:channels", "channels", 8}, want{"up:channels", "channels", 6}, want{"conv3:channels", "channels", 4})
		checkModel(t, m)
	})
	t.Run("depthwise", func(t *testing.T) {
		b := convNet(t, 13, func(b *builder, x string) (string, int64) {
			h := b.op("ConvTranspose", "up", strs(x, b.w("up.w", 8, 1, 2, 2), b.w("up.b", 8)), aI("group", 8), aIs("strides", 2, 2))
			h = b.op("Relu", "relu.up", strs(h))
			h = b.op("Conv", "conv3", strs(h, b.w("conv3.w", 4, 8, 3, 3)))
			h = b.op("Relu", "relu3", strs(h))
			return h, 4
		})
		m := b.model()
		analyze(t, m, want{"conv1:channels", "channels", 8}, want{"conv3:channels", "channels", 4})
		checkModel(t, m)
	})
}

// Normalisation.

func TestSynthInstanceNorm(t *testing.T) {
	b := convNet(t, 13, func(b *builder, x string) (string, int64) {
		h := b.op("Conv", "conv2", strs(x, b.w("conv2.w", 6, 8, 3, 3)))
		h = b.op("InstanceNormalization", "in2", strs(h, b.pos("in2.s", 6), b.w("in2.b", 6)))
		h = b.op("LeakyRelu", "act2", strs(h), aF("alpha", 0.1))
		return h, 6
	})
	m := b.model()
	analyze(t, m, want{"conv1:channels", "channels", 8}, want{"conv2:channels", "channels", 6})
	checkModel(t, m)
}

// mlpWithNorm builds x -> fc1 -> norm -> relu -> fc2 -> out, the norm over
// fc1's units.
func mlpWithNorm(t *testing.T, opset int64, norm func(b *builder, h string) string) *builder {
	b := newBuilder(t, opset)
	x := b.in("x", -1, 4, 8)
	h := b.op("MatMul", "fc1", strs(x, b.w("fc1.w", 8, 12)))
	h = b.op("Add", "fc1.add", strs(h, b.w("fc1.b", 12)))
	h = norm(b, h)
	h = b.op("Relu", "relu", strs(h))
	h = b.op("MatMul", "fc2", strs(h, b.w("fc2.w", 12, 10)))
	h = b.op("Relu", "relu2", strs(h))
	y := b.op("MatMul", "fc3", strs(h, b.w("fc3.w", 10, 3)))
	b.out(y)
	return b
}

func TestSynthLayerNorm(t *testing.T) {
	check := func(t *testing.T, b *builder) {
		m := b.model()
		a := analyze(t, m, want{"fc1:neurons", "neurons", 12}, want{"fc2:neurons", "neurons", 10})
		if g := groupOf(t, a, "fc1"); len(g.Warnings) == 0 {
			t.Errorf("fc1 group: no warning about normalisation statistics")
		}
		checkModel(t, m)
		na, err := Analyze(m, Options{NoNormThrough: true})
		if err != nil {
			t.Fatal(err)
		}
		if groupOf(t, na, "fc1").Prunable() {
			t.Errorf("NoNormThrough: fc1 is still prunable")
		}
	}
	t.Run("opset17", func(t *testing.T) {
		check(t, mlpWithNorm(t, 17, func(b *builder, h string) string {
			return b.op("LayerNormalization", "ln", strs(h, b.pos("ln.g", 12), b.w("ln.b", 12)), aI("axis", -1), aF("epsilon", 1e-5))
		}))
	})
	t.Run("decomposed-opset14", func(t *testing.T) {
		check(t, mlpWithNorm(t, 14, func(b *builder, h string) string {
			mu := b.op("ReduceMean", "ln.mean", strs(h), aIs("axes", -1))
			d := b.op("Sub", "ln.sub", strs(h, mu))
			sq := b.op("Pow", "ln.pow", strs(d, b.fs("two", 2)))
			v := b.op("ReduceMean", "ln.var", strs(sq), aIs("axes", -1))
			v = b.op("Add", "ln.eps", strs(v, b.fs("eps", 1e-5)))
			s := b.op("Sqrt", "ln.sqrt", strs(v))
			n := b.op("Div", "ln.div", strs(d, s))
			n = b.op("Mul", "ln.mul", strs(n, b.pos("ln.g", 12)))
			return b.op("Add", "ln.add", strs(n, b.w("ln.b", 12)))
		}))
	})
	t.Run("decomposed-opset18", func(t *testing.T) {
		check(t, mlpWithNorm(t, 18, func(b *builder, h string) string {
			axes := b.ints("axes", -1)
			mu := b.op("ReduceMean", "ln.mean", strs(h, axes))
			d := b.op("Sub", "ln.sub", strs(h, mu))
			sq := b.op("Mul", "ln.sq", strs(d, d))
			v := b.op("ReduceMean", "ln.var", strs(sq, axes))
			v = b.op("Add", "ln.eps", strs(v, b.fs("eps", 1e-5)))
			s := b.op("Sqrt", "ln.sqrt", strs(v))
			n := b.op("Div", "ln.div", strs(d, s))
			n = b.op("Mul", "ln.mul", strs(b.pos("ln.g", 12), n))
			return b.op("Add", "ln.add", strs(n, b.w("ln.b", 12)))
		}))
	})
	t.Run("rmsnorm", func(t *testing.T) {
		check(t, mlpWithNorm(t, 17, func(b *builder, h string) string {
			sq := b.op("Pow", "rms.pow", strs(h, b.fs("two", 2)))
			v := b.op("ReduceMean", "rms.mean", strs(sq), aIs("axes", -1))
			v = b.op("Add", "rms.eps", strs(v, b.fs("eps", 1e-6)))
			s := b.op("Sqrt", "rms.sqrt", strs(v))
			r := b.op("Reciprocal", "rms.rcp", strs(s))
			n := b.op("Mul", "rms.mul", strs(h, r))
			return b.op("Mul", "rms.g", strs(b.pos("rms.w", 12), n))
		}))
	})
}

// Structure: branches, offsets, strides, repeats.

func TestSynthResidual(t *testing.T) {
	b := convNet(t, 13, func(b *builder, x string) (string, int64) {
		a := b.op("Conv", "a1", strs(x, b.w("a1.w", 6, 8, 3, 3), b.w("a1.b", 6)), aIs("pads", 1, 1, 1, 1))
		a = b.op("Relu", "a1.relu", strs(a))
		a = b.op("Conv", "a2", strs(a, b.w("a2.w", 10, 6, 3, 3), b.w("a2.b", 10)), aIs("pads", 1, 1, 1, 1))
		c := b.op("Conv", "skip", strs(x, b.w("skip.w", 10, 8, 1, 1)))
		c = b.op("BatchNormalization", "skip.bn", strs(c, b.pos("skip.bn.s", 10), b.w("skip.bn.b", 10), b.w("skip.bn.m", 10), b.pos("skip.bn.v", 10)))
		h := b.op("Add", "res", strs(a, c))
		h = b.op("Relu", "res.relu", strs(h))
		// A second block whose identity branch is the sum itself.
		d := b.op("Conv", "d1", strs(h, b.w("d1.w", 10, 10, 3, 3)), aIs("pads", 1, 1, 1, 1))
		d = b.op("Relu", "d1.relu", strs(d))
		h = b.op("Add", "res2", strs(h, d))
		return h, 10
	})
	m := b.model()
	a := analyze(t, m, want{"conv1:channels", "channels", 8}, want{"a1:channels", "channels", 6}, want{"a2:channels", "channels", 10})
	g := groupOf(t, a, "a2")
	for _, src := range []string{"skip", "d1"} {
		if !contains(g.Sources, src) {
			t.Errorf("residual group sources %v lack %s", g.Sources, src)
		}
	}
	checkModel(t, m)
}

func TestSynthInceptionConcat(t *testing.T) {
	b := convNet(t, 13, func(b *builder, x string) (string, int64) {
		p := b.op("Conv", "b1", strs(x, b.w("b1.w", 4, 8, 1, 1), b.w("b1.b", 4)))
		p = b.op("Relu", "b1.relu", strs(p))
		q := b.op("Conv", "b2", strs(x, b.w("b2.w", 6, 8, 3, 3), b.w("b2.b", 6)), aIs("pads", 1, 1, 1, 1))
		q = b.op("Relu", "b2.relu", strs(q))
		r := b.op("MaxPool", "b3", strs(x), aIs("kernel_shape", 3, 3), aIs("strides", 1, 1), aIs("pads", 1, 1, 1, 1))
		h := b.op("Concat", "cat", strs(p, q, r), aI("axis", 1))
		h = b.op("Conv", "mix", strs(h, b.w("mix.w", 7, 18, 1, 1), b.w("mix.b", 7)))
		h = b.op("Relu", "mix.relu", strs(h))
		return h, 7
	})
	m := b.model()
	a := analyze(t, m, want{"conv1:channels", "channels", 8}, want{"b1:channels", "channels", 4},
		want{"b2:channels", "channels", 6}, want{"mix:channels", "channels", 7})
	g := groupOf(t, a, "b2")
	for _, p := range g.Params {
		if p.Tensor == "mix.w" && (len(p.Segs) != 1 || p.Segs[0].Off != 4) {
			t.Errorf("b2 in mix.w at %+v, want offset 4", p.Segs)
		}
	}
	g = groupOf(t, a, "conv1")
	for _, p := range g.Params {
		if p.Tensor == "mix.w" && (len(p.Segs) != 1 || p.Segs[0].Off != 10) {
			t.Errorf("conv1 in mix.w at %+v, want offset 10", p.Segs)
		}
	}
	checkModel(t, m)
}

// ViT's class token: a constant [1, 1, E] expanded to the batch and joined
// to the tokens along the token axis carries the hidden units on its last
// axis, and is sliced with them.
func TestSynthClassToken(t *testing.T) {
	b := newBuilder(t, 13)
	x := b.in("x", -1, 4, 8)
	h := b.op("MatMul", "fc1", strs(x, b.w("fc1.w", 8, 12)))
	batch := b.op("Unsqueeze", "bs", strs(b.op("Gather", "bg", strs(b.op("Shape", "xs", strs(x)), b.i64("bg.i", 0)), aI("axis", 0)), b.ints("bs.axes", 0)))
	cls := b.op("Expand", "cls", strs(b.w("cls.token", 1, 1, 12), b.op("Concat", "cls.shape", strs(batch, b.ints("ones", 1, 1)), aI("axis", 0))))
	h = b.op("Concat", "tokens", strs(cls, h), aI("axis", 1))
	h = b.op("Relu", "relu1", strs(h))
	h = b.op("MatMul", "fc2", strs(h, b.w("fc2.w", 12, 10)))
	h = b.op("Relu", "relu2", strs(h))
	b.out(b.op("MatMul", "fc3", strs(h, b.w("fc3.w", 10, 3))))
	m := b.model()
	a := analyze(t, m, want{"fc1:neurons", "neurons", 12}, want{"fc2:neurons", "neurons", 10})
	checkModel(t, m)
	pruned, err := a.Apply(Plan{"fc1:neurons": {1, 2, 9}})
	if err != nil {
		t.Fatal(err)
	}
	if d := dimsOf(t, pruned, "cls.token"); d[2] != 9 {
		t.Errorf("cls.token is %v after removing 3 of 12 units", d)
	}
}

// A fused projection split three ways, with the sizes as an attribute
// (opset 11), an input (13) or num_outputs (18).
func TestSynthSplitFused(t *testing.T) {
	for _, opset := range []int64{11, 13, 18} {
		t.Run(fmt.Sprintf("opset%d", opset), func(t *testing.T) {
			b := newBuilder(t, opset)
			x := b.in("x", -1, 5, 8)
			h := b.op("MatMul", "qkv", strs(x, b.w("qkv.w", 8, 30)))
			h = b.op("Add", "qkv.add", strs(h, b.w("qkv.b", 30)))
			sizes := []int64{10, 12, 8}
			var parts []string
			switch opset {
			case 11:
				parts = b.opN("Split", "split", strs(h), 3, aI("axis", -1), aIs("split", sizes...))
			case 13:
				parts = b.opN("Split", "split", strs(h, b.ints("sizes", sizes...)), 3, aI("axis", 2))
			default:
				sizes = []int64{10, 10, 10}
				parts = b.opN("Split", "split", strs(h), 3, aI("axis", -1), aI("num_outputs", 3))
			}
			var outs []string
			var groups []want
			for k, p := range parts {
				name := fmt.Sprintf("p%d", k)
				r := b.op("Relu", name+".relu", strs(p))
				outs = append(outs, b.op("MatMul", name+".proj", strs(r, b.w(name+".w", sizes[k], 4))))
				groups = append(groups, want{fmt.Sprintf("split:neurons#%d", k+1), "neurons", int(sizes[k])})
			}
			b.out(outs...)
			m := b.model()
			a := analyze(t, m, groups...)
			checkModel(t, m)
			pruned, err := a.Apply(Plan{"split:neurons#2": {0, 3}})
			if err != nil {
				t.Fatal(err)
			}
			if d := dimsOf(t, pruned, "qkv.w"); d[1] != 28 {
				t.Errorf("qkv.w dims %v", d)
			}
		})
	}
}

// Gate and up projections fused into one weight and split in two, then
// multiplied (SwiGLU): the halves are one space.
func TestSynthSplitGate(t *testing.T) {
	b := newBuilder(t, 13)
	x := b.in("x", -1, 5, 8)
	h := b.op("MatMul", "gu", strs(x, b.w("gu.w", 8, 24)))
	p := b.opN("Split", "split", strs(h), 2, aI("axis", -1))
	s := b.op("Sigmoid", "sig", strs(p[0]))
	s = b.op("Mul", "silu", strs(p[0], s))
	s = b.op("Mul", "gate", strs(s, p[1]))
	y := b.op("MatMul", "down", strs(s, b.w("down.w", 12, 8)))
	b.out(y)
	m := b.model()
	analyze(t, m, want{"split:neurons", "neurons", 12})
	checkModel(t, m)
}

// Slice of the full channel range (and of a spatial window), Pad of the
// spatial axes, pools.
func TestSynthSlicePadPool(t *testing.T) {
	b := convNet(t, 13, func(b *builder, x string) (string, int64) {
		h := b.op("Slice", "all", strs(x, b.ints("all.s", 0, 1), b.ints("all.e", math.MaxInt64, -1), b.ints("all.a", 1, 2)))
		h = b.op("Pad", "pad", strs(h, b.ints("pad.p", 0, 0, 1, 2, 0, 0, 2, 1)))
		h = b.op("Conv", "conv2", strs(h, b.w("conv2.w", 10, 8, 3, 3), b.w("conv2.b", 10)))
		h = b.op("Relu", "relu2", strs(h))
		h = b.op("MaxPool", "mp", strs(h), aIs("kernel_shape", 2, 2), aIs("strides", 2, 2))
		h = b.op("Slice", "win", strs(h, b.ints("win.s", 1), b.ints("win.e", 4), b.ints("win.a", -1)))
		h = b.op("Conv", "conv3", strs(h, b.w("conv3.w", 6, 10, 1, 1), b.w("conv3.b", 6)))
		h = b.op("Relu", "relu3", strs(h))
		h = b.op("AveragePool", "ap", strs(h), aIs("kernel_shape", 3, 3), aIs("pads", 1, 1, 1, 1))
		return h, 6
	})
	m := b.model()
	analyze(t, m, want{"conv1:channels", "channels", 8}, want{"conv2:channels", "channels", 10}, want{"conv3:channels", "channels", 6})
	checkModel(t, m)
}

// Flatten of NCHW into a Gemm: each channel owns H*W consecutive features.
func TestSynthFlattenStride(t *testing.T) {
	for _, form := range []string{"flatten", "reshape"} {
		t.Run(form, func(t *testing.T) {
			b := newBuilder(t, 13)
			x := b.in("x", -1, 3, 8, 8)
			h := b.op("Conv", "conv1", strs(x, b.w("conv1.w", 6, 3, 3, 3), b.w("conv1.b", 6)), aIs("strides", 2, 2), aIs("pads", 1, 1, 1, 1))
			h = b.op("Relu", "relu1", strs(h))
			h = b.op("MaxPool", "mp", strs(h), aIs("kernel_shape", 2, 2), aIs("strides", 2, 2)) // [N,6,2,2]
			if form == "flatten" {
				h = b.op("Flatten", "flat", strs(h))
			} else {
				h = b.op("Reshape", "flat", strs(h, b.ints("flat.shape", -1, 24)))
			}
			h = b.op("Gemm", "fc1", strs(h, b.w("fc1.w", 24, 10), b.w("fc1.b", 10)))
			h = b.op("Relu", "relu.fc1", strs(h))
			y := b.op("Gemm", "fc2", strs(h, b.w("fc2.w", 10, 3)))
			b.out(y)
			m := b.model()
			a := analyze(t, m, want{"conv1:channels", "channels", 6}, want{"fc1:neurons", "neurons", 10})
			for _, p := range groupOf(t, a, "conv1").Params {
				if p.Tensor == "fc1.w" && (p.PerUnit != 40 || p.Segs[0].B != 4 || p.Segs[0].R != 1) {
					t.Errorf("conv1 in fc1.w: %+v", p)
				}
			}
			checkModel(t, m)
		})
	}
}

// Transpose to NHWC, then Flatten or Reshape: the channels repeat H*W
// times with a stride of C.
func TestSynthTransposeRepeat(t *testing.T) {
	for _, form := range []string{"flatten", "reshape", "reshape-shape"} {
		t.Run(form, func(t *testing.T) {
			b := newBuilder(t, 15)
			x := b.in("x", -1, 3, 6, 6)
			h := b.op("Conv", "conv1", strs(x, b.w("conv1.w", 5, 3, 3, 3), b.w("conv1.b", 5)), aIs("strides", 2, 2), aIs("pads", 1, 1, 1, 1))
			h = b.op("Relu", "relu1", strs(h))
			h = b.op("Transpose", "nhwc", strs(h), aIs("perm", 0, 2, 3, 1)) // [N,3,3,5]
			switch form {
			case "flatten":
				h = b.op("Flatten", "flat", strs(h))
			case "reshape":
				h = b.op("Reshape", "flat", strs(h, b.ints("flat.shape", 0, 45)))
			default:
				n := b.op("Shape", "flat.n", strs(h), aI("end", 1))
				h = b.op("Reshape", "flat", strs(h, b.op("Concat", "flat.shape", strs(n, b.ints("flat.rest", -1)), aI("axis", 0))))
			}
			h = b.op("MatMul", "fc1", strs(h, b.w("fc1.w", 45, 7)))
			h = b.op("Relu", "relu.fc1", strs(h))
			y := b.op("MatMul", "fc2", strs(h, b.w("fc2.w", 7, 2)))
			b.out(y)
			m := b.model()
			a := analyze(t, m, want{"conv1:channels", "channels", 5}, want{"fc1:neurons", "neurons", 7})
			for _, p := range groupOf(t, a, "conv1").Params {
				if p.Tensor == "fc1.w" && (p.PerUnit != 9*7 || p.Segs[0].R != 9 || p.Segs[0].B != 1) {
					t.Errorf("conv1 in fc1.w: %+v", p)
				}
			}
			checkModel(t, m)
		})
	}
}

// Squeeze-and-excitation: the gate multiplies the channels it was computed
// from, so the squeeze's input channels and the excitation's outputs are one
// space.
func TestSynthSqueezeExcite(t *testing.T) {
	for _, gate := range []string{"Sigmoid", "HardSigmoid"} {
		t.Run(gate, func(t *testing.T) {
			b := convNet(t, 13, func(b *builder, x string) (string, int64) {
				s := b.op("GlobalAveragePool", "se.pool", strs(x))
				s = b.op("Conv", "se.fc1", strs(s, b.w("se.fc1.w", 4, 8, 1, 1), b.w("se.fc1.b", 4)))
				s = b.op("Relu", "se.relu", strs(s))
				s = b.op("Conv", "se.fc2", strs(s, b.w("se.fc2.w", 8, 4, 1, 1), b.w("se.fc2.b", 8)))
				s = b.op(gate, "se.gate", strs(s))
				h := b.op("Mul", "se.mul", strs(x, s))
				h = b.op("Conv", "conv2", strs(h, b.w("conv2.w", 6, 8, 3, 3), b.w("conv2.b", 6)))
				h = b.op("HardSwish", "act2", strs(h))
				return h, 6
			}, 14)
			m := b.model()
			a := analyze(t, m, want{"conv1:channels", "channels", 8}, want{"se.fc1:channels", "channels", 4}, want{"conv2:channels", "channels", 6})
			if g := groupOf(t, a, "se.fc2"); g != groupOf(t, a, "conv1") {
				t.Errorf("the excitation's outputs are not the block's channels:\n%s", summary(a))
			}
			checkModel(t, m)
		})
	}
}

// Attention.

// attnOpts describes a multi-head attention block: heads (query heads), kv
// (key/value heads; kv < heads is grouped-query attention), head size d,
// how the shape constants are written, and whether Q, K and V come from
// one fused projection split three ways.
type attnOpts struct {
	opset     int64
	heads, kv int64
	d         int64
	t         int64  // sequence length; -1 for a run-time size
	shapes    string // "init", "concat" (Shape->Gather pieces), "minus1"
	fused     bool
}

func attention(t *testing.T, o attnOpts) *builder {
	b := newBuilder(t, o.opset)
	const e = 16
	x := b.in("x", -1, o.t, e)
	hq, hk, d := o.heads, o.kv, o.d
	unsq := func(name, in string) string {
		if o.opset >= 13 {
			return b.op("Unsqueeze", name, strs(in, b.ints(name+".axes", 0)))
		}
		return b.op("Unsqueeze", name, strs(in), aIs("axes", 0))
	}
	// size k of tensor src at run time, as a 1-D tensor.
	size := func(name, src string, k int64) string {
		sh := b.op("Shape", name+".shape", strs(src))
		g := b.op("Gather", name+".gather", strs(sh, b.i64(name+".idx", k)), aI("axis", 0))
		return unsq(name+".unsq", g)
	}
	// target builds the shape input of a Reshape of src: sizes of -1 mean
	// "copy src's axis k" for the leading axes.
	target := func(name, src string, dims ...int64) string {
		switch o.shapes {
		case "concat", "torch":
			var parts []string
			for k, v := range dims {
				if v == 0 {
					parts = append(parts, size(fmt.Sprintf("%s.s%d", name, k), src, int64(k)))
				} else {
					parts = append(parts, b.ints(fmt.Sprintf("%s.c%d", name, k), v))
				}
			}
			return b.op("Concat", name, parts, aI("axis", 0))
		case "minus1":
			// One -1 in place of the last sized axis before the head size.
			out := append([]int64(nil), dims...)
			for k := len(out) - 2; k >= 0; k-- {
				if out[k] != 0 {
					out[k] = -1
					break
				}
			}
			if out[len(out)-1] != d {
				out[len(out)-1] = -1
				for k := range out[:len(out)-1] {
					if out[k] == -1 {
						out[k] = dims[k]
					}
				}
			}
			return b.ints(name, out...)
		}
		return b.ints(name, dims...)
	}
	var q, k, v string
	if o.fused {
		qkv := b.op("MatMul", "qkv", strs(x, b.w("qkv.w", e, (hq+2*hk)*d)))
		qkv = b.op("Add", "qkv.add", strs(qkv, b.w("qkv.b", (hq+2*hk)*d)))
		var parts []string
		if o.opset >= 13 {
			parts = b.opN("Split", "qkv.split", strs(qkv, b.ints("qkv.sizes", hq*d, hk*d, hk*d)), 3, aI("axis", 2))
		} else {
			parts = b.opN("Split", "qkv.split", strs(qkv), 3, aI("axis", 2), aIs("split", hq*d, hk*d, hk*d))
		}
		q, k, v = parts[0], parts[1], parts[2]
	} else {
		proj := func(name string, n int64) string {
			h := b.op("MatMul", name, strs(x, b.w(name+".w", e, n*d)))
			return b.op("Add", name+".add", strs(h, b.w(name+".b", n*d)))
		}
		q, k, v = proj("q", hq), proj("k", hk), proj("v", hk)
	}
	q = b.op("Reshape", "q.split", strs(q, target("q.shape", q, 0, 0, hq, d)))
	q = b.op("Transpose", "q.t", strs(q), aIs("perm", 0, 2, 1, 3)) // [B,H,T,D]
	heads := func(name, in string) string {
		h := b.op("Reshape", name+".split", strs(in, target(name+".shape", in, 0, 0, hk, d)))
		h = b.op("Transpose", name+".t", strs(h), aIs("perm", 0, 2, 1, 3)) // [B,KV,T,D]
		if hk == hq {
			return h
		}
		// repeat_kv: [B,KV,T,D] -> [B,KV,1,T,D] -> [B,KV,G,T,D] -> [B,H,T,D]
		var u string
		if o.opset >= 13 {
			u = b.op("Unsqueeze", name+".rep.unsq", strs(h, b.ints(name+".rep.axes", 2)))
		} else {
			u = b.op("Unsqueeze", name+".rep.unsq", strs(h), aIs("axes", 2))
		}
		var shape string
		if o.shapes == "concat" || o.shapes == "torch" {
			kv := b.ints(name+".rep.kv", hk)
			if o.shapes == "torch" {
				kv = size(name+".rep.kvs", h, 1) // hidden_states.shape[1]
			}
			shape = b.op("Concat", name+".rep.shape", strs(size(name+".rep.b", h, 0), kv,
				b.ints(name+".rep.g", hq/hk), size(name+".rep.t", h, 2), b.ints(name+".rep.d", d)), aI("axis", 0))
		}
		if o.shapes == "torch" {
			// torch.onnx's export of expand: -1 entries mean "keep".
			sh := b.op("Reshape", name+".rep.flat", strs(shape, b.ints(name+".rep.m1", -1)))
			ones := b.op("ConstantOfShape", name+".rep.ones", strs(b.op("Shape", name+".rep.len", strs(sh))),
				aT("value", onnxio.NewInt64Tensor("", []int64{1}, []int64{1})))
			neg := b.op("Mul", name+".rep.neg", strs(ones, b.i64(name+".rep.minus", -1)))
			eq := b.op("Equal", name+".rep.eq", strs(sh, neg))
			shape = b.op("Where", name+".rep.where", strs(eq, ones, sh))
		}
		if shape == "" {
			shape = b.ints(name+".rep.shape", 1, hk, hq/hk, 1, 1)
		}
		u = b.op("Expand", name+".rep", strs(u, shape))
		return b.op("Reshape", name+".rep.merge", strs(u, target(name+".rep.merge.shape", u, 0, hq, -1, d)))
	}
	k = heads("k", k)
	k = b.op("Transpose", "k.tt", strs(k), aIs("perm", 0, 1, 3, 2)) // [B,H,D,T]
	v = heads("v", v)
	s := b.op("MatMul", "scores", strs(q, k))
	s = b.op("Div", "scale", strs(s, b.fs("sqrt_d", math.Sqrt(float64(d)))))
	p := b.op("Softmax", "softmax", strs(s), aI("axis", -1))
	c := b.op("MatMul", "context", strs(p, v))
	c = b.op("Transpose", "context.t", strs(c), aIs("perm", 0, 2, 1, 3))
	c = b.op("Reshape", "context.merge", strs(c, target("context.shape", c, 0, 0, hq*d)))
	y := b.op("MatMul", "o", strs(c, b.w("o.w", hq*d, e)))
	y = b.op("Add", "o.add", strs(y, b.w("o.b", e)))
	b.out(y)
	return b
}

func TestSynthAttention(t *testing.T) {
	for _, o := range []attnOpts{
		{opset: 13, shapes: "init", t: 5},
		{opset: 13, shapes: "init", t: -1},
		{opset: 11, shapes: "concat", t: -1},
		{opset: 13, shapes: "concat", t: 5},
		{opset: 14, shapes: "minus1", t: 5},
		{opset: 14, shapes: "minus1", t: -1},
		{opset: 11, shapes: "init", t: 5, fused: true},
		{opset: 13, shapes: "concat", t: -1, fused: true},
	} {
		o.heads, o.kv, o.d = 4, 4, 4
		name := fmt.Sprintf("opset%d/%s/T=%d", o.opset, o.shapes, o.t)
		if o.fused {
			name += "/fused"
		}
		t.Run(name, func(t *testing.T) {
			m := attention(t, o).model()
			a, err := Analyze(m, Options{})
			if err != nil {
				t.Fatal(err)
			}
			src := "q"
			if o.fused {
				src = "qkv"
			}
			var g *Group
			for _, x := range a.Prunable() {
				g = x
			}
			if len(a.Prunable()) != 1 || g.Kind != "heads" || g.Width != 4 || !contains(g.Sources, "k") && !o.fused {
				t.Fatalf("want one prunable group of 4 heads from %s, have\n%s", src, summary(a))
			}
			if g.Observe == nil || !g.Observe.RMS {
				t.Errorf("heads observation: %+v", g.Observe)
			}
			// Projection rows and columns and the output projection's rows.
			if g.ParamsPerUnit != 3*(16*4+4)+4*16 {
				t.Errorf("params per head %d", g.ParamsPerUnit)
			}
			checkModel(t, m)
			pruned, err := a.Apply(Plan{g.Name: {1}})
			if err != nil {
				t.Fatal(err)
			}
			if d := dimsOf(t, pruned, "o.w"); d[0] != 12 {
				t.Errorf("o.w dims %v", d)
			}
		})
	}
}

// Grouped-query attention: 8 query heads over 2 KV heads, repeated with
// Unsqueeze, Expand and Reshape. A KV head goes with its 4 query heads.
func TestSynthGQA(t *testing.T) {
	for _, o := range []attnOpts{
		{opset: 13, shapes: "init", t: 5},
		{opset: 11, shapes: "concat", t: -1},
		{opset: 14, shapes: "minus1", t: 5},
		{opset: 13, shapes: "init", t: 5, fused: true},
		{opset: 14, shapes: "torch", t: 5},
		{opset: 17, shapes: "torch", t: -1},
	} {
		o.heads, o.kv, o.d = 8, 2, 2
		name := fmt.Sprintf("opset%d/%s/T=%d", o.opset, o.shapes, o.t)
		if o.fused {
			name += "/fused"
		}
		t.Run(name, func(t *testing.T) {
			m := attention(t, o).model()
			a, err := Analyze(m, Options{})
			if err != nil {
				t.Fatal(err)
			}
			var g *Group
			for _, x := range a.Prunable() {
				g = x
			}
			if len(a.Prunable()) != 1 || g.Kind != "kv-groups" || g.Width != 2 {
				t.Fatalf("want one prunable group of 2 KV groups, have\n%s", summary(a))
			}
			t.Logf("groups:\n%s", summary(a))
			// Per KV group: 4 query heads and 1 key and 1 value head of
			// projection columns (16+1 each per channel of D=2), and 4
			// heads' rows of the output projection.
			if want := int64(6*2*17 + 4*2*16); g.ParamsPerUnit != want {
				t.Errorf("params per KV group %d, want %d", g.ParamsPerUnit, want)
			}
			checkModel(t, m)
			pruned, err := a.Apply(Plan{g.Name: {0}})
			if err != nil {
				t.Fatal(err)
			}
			if !o.fused {
				for name, want := range map[string]int64{"q.w": 8, "k.w": 2, "v.w": 2} {
					if d := dimsOf(t, pruned, name); d[1] != want {
						t.Errorf("%s dims %v, want %d columns", name, d, want)
					}
				}
			} else if d := dimsOf(t, pruned, "qkv.w"); d[1] != 12 {
				t.Errorf("qkv.w dims %v", d)
			}
			if d := dimsOf(t, pruned, "o.w"); d[0] != 8 {
				t.Errorf("o.w dims %v", d)
			}
		})
	}
}

// Embeddings and shared constants.

func TestSynthEmbedding(t *testing.T) {
	for _, pos := range []string{"table", "gather"} {
		t.Run(pos, func(t *testing.T) {
			b := newBuilder(t, 13)
			ids := b.inT("ids", onnxio.Int64, -1, 6)
			h := b.op("Gather", "embed", strs(b.w("embed.w", 20, 12), ids))
			var p string
			if pos == "table" {
				p = b.w("pos.w", 6, 12)
			} else {
				p = b.op("Gather", "pos", strs(b.w("pos.table", 10, 12), b.ints("pos.ids", 0, 1, 2, 3, 4, 5)))
			}
			h = b.op("Add", "embed.add", strs(h, p))
			u := b.op("MatMul", "fc1", strs(h, b.w("fc1.w", 12, 16)))
			u = b.op("Relu", "relu", strs(u))
			u = b.op("MatMul", "fc2", strs(u, b.w("fc2.w", 16, 12)))
			h = b.op("Add", "res", strs(h, u))
			y := b.op("MatMul", "head", strs(h, b.w("head.w", 12, 5)))
			b.out(y)
			m := b.model()
			a := analyze(t, m, want{"embed:hidden", "hidden", 12}, want{"fc1:neurons", "neurons", 16})
			g := groupOf(t, a, "embed")
			var tensors []string
			for _, p := range g.Params {
				tensors = append(tensors, p.Tensor)
			}
			if want := map[bool]string{true: "pos.w", false: "pos.table"}[pos == "table"]; !contains(tensors, want) {
				t.Errorf("embedding group params %v lack %s", tensors, want)
			}
			checkModel(t, m)
		})
	}
}

// One weight used by two layers: each use is sliced by its own units.
func TestSynthTiedWeights(t *testing.T) {
	b := newBuilder(t, 13)
	x := b.in("x", -1, 8)
	w := b.w("shared.w", 8, 8)
	h := b.op("MatMul", "l1", strs(x, w))
	h = b.op("Relu", "relu1", strs(h))
	h = b.op("MatMul", "l2", strs(h, w))
	h = b.op("Relu", "relu2", strs(h))
	y := b.op("MatMul", "l3", strs(h, b.w("l3.w", 8, 3)))
	b.out(y)
	m := b.model()
	// One weight computes both layers' units: they are coupled. l1 reads
	// the input's 8 features with it, l2 the pruned units, so the weight
	// still needs two slicings (checkModel counts the copy).
	analyze(t, m, want{"l1:neurons", "neurons", 8})
	checkModel(t, m)
}

// Two blocks that share their FFN weights (torch deduplicates the equal
// weights of nn.TransformerEncoder's deep-copied layers): the blocks' FFN
// units are coupled, so pruning slices each shared weight once, and the
// parameters fall.
func TestSynthSharedLayers(t *testing.T) {
	b := newBuilder(t, 13)
	x := b.in("x", -1, 5, 8)
	w1, b1, w2 := b.w("fc1.w", 8, 16), b.w("fc1.b", 16), b.w("fc2.w", 16, 8)
	block := func(name, x string) string {
		h := b.op("Relu", name+".relu", strs(b.op("Add", name+".b1", strs(b.op("MatMul", name+".fc1", strs(x, w1)), b1))))
		return b.op("Add", name+".res", strs(x, b.op("MatMul", name+".fc2", strs(h, w2))))
	}
	y := block("layer1", block("layer0", x))
	b.out(b.op("MatMul", "head", strs(y, b.w("head.w", 8, 3))))
	m := b.model()
	a := analyze(t, m, want{"layer0.fc1:neurons", "neurons", 16})
	checkModel(t, m)
	pruned, err := a.Apply(Plan{"layer0.fc1:neurons": {1, 4, 9, 10}})
	if err != nil {
		t.Fatal(err)
	}
	before, _ := m.ParamCount()
	after, _ := pruned.ParamCount()
	if after != before-4*(8+1+8) || len(pruned.Graph().GetInitializer()) != len(m.Graph().GetInitializer()) {
		t.Errorf("parameters %d -> %d, initializers %d -> %d", before, after, len(m.Graph().GetInitializer()), len(pruned.Graph().GetInitializer()))
	}
}

// A tied embedding and output layer (Gemm with transB reads the table).
func TestSynthTiedEmbedding(t *testing.T) {
	b := newBuilder(t, 13)
	ids := b.inT("ids", onnxio.Int64, -1)
	tab := b.w("embed.w", 20, 12)
	h := b.op("Gather", "embed", strs(tab, ids))
	u := b.op("Gemm", "fc1", strs(h, b.w("fc1.w", 12, 16)))
	u = b.op("Relu", "relu", strs(u))
	u = b.op("Gemm", "fc2", strs(u, b.w("fc2.w", 16, 12)))
	h = b.op("Add", "res", strs(h, u))
	y := b.op("Gemm", "head", strs(h, tab), aI("transB", 1))
	b.out(y)
	m := b.model()
	a := analyze(t, m, want{"embed:hidden", "hidden", 12}, want{"fc1:neurons", "neurons", 16})
	checkModel(t, m)
	pruned, err := a.Apply(Plan{"embed:hidden": {0, 5}})
	if err != nil {
		t.Fatal(err)
	}
	if d := dimsOf(t, pruned, "embed.w"); d[1] != 10 || len(pruned.Graph().GetInitializer()) != len(m.Graph().GetInitializer()) {
		t.Errorf("the tied table was copied or not sliced: %v", d)
	}
}

// A constant shared by two layers that are pruned independently (exporters
// deduplicate equal constants such as zero biases and unit scales).
func TestSynthSharedConstant(t *testing.T) {
	b := newBuilder(t, 13)
	x := b.in("x", -1, 3, 8, 8)
	zero := b.f("zeros8", []int64{8}, 0, 0, 0, 0, 0, 0, 0, 0)
	ones := b.f("ones8", []int64{8}, 1, 1, 1, 1, 1, 1, 1, 1)
	h := b.op("Conv", "conv1", strs(x, b.w("conv1.w", 8, 3, 3, 3), zero))
	h = b.op("BatchNormalization", "bn1", strs(h, ones, zero, b.w("bn1.m", 8), ones))
	h = b.op("Relu", "relu1", strs(h))
	h = b.op("Conv", "conv2", strs(h, b.w("conv2.w", 8, 8, 3, 3), zero))
	h = b.op("BatchNormalization", "bn2", strs(h, ones, zero, b.w("bn2.m", 8), ones))
	h = b.op("Relu", "relu2", strs(h))
	// A third use of the zeros that carries no units: a shifted input.
	h = b.op("Conv", "conv3", strs(h, b.w("conv3.w", 4, 8, 1, 1)))
	h = b.op("GlobalAveragePool", "gap", strs(h))
	y := b.op("Add", "shift", strs(h, b.op("Reshape", "zr", strs(b.op("Slice", "zs", strs(zero, b.ints("zs.s", 0), b.ints("zs.e", 4))), b.ints("zr.shape", 1, 4, 1, 1)))))
	b.out(y)
	m := b.model()
	a := analyze(t, m, want{"conv1:channels", "channels", 8}, want{"conv2:channels", "channels", 8})
	checkModel(t, m)
	pruned, err := a.Apply(Plan{"conv1:channels": {1, 2}, "conv2:channels": {0, 3, 7}})
	if err != nil {
		t.Fatal(err)
	}
	if d := dimsOf(t, pruned, "zeros8"); d[0] != 8 {
		t.Errorf("the constant read by a use without units was sliced: %v", d)
	}
}

// Barriers: the units that reach them stay, the rest of the model shrinks.

// mlp3 builds x -> fc1 -> relu -> [mid] -> fc2 -> relu -> fc3 -> out.
func mlp3(t *testing.T, opset int64, mid func(b *builder, h string) string) *builder {
	b := newBuilder(t, opset)
	x := b.in("x", -1, 8)
	h := b.op("MatMul", "fc1", strs(x, b.w("fc1.w", 8, 12)))
	h = b.op("Relu", "relu1", strs(h))
	h = mid(b, h)
	h = b.op("MatMul", "fc2", strs(h, b.w("fc2.w", 12, 10)))
	h = b.op("Relu", "relu2", strs(h))
	y := b.op("MatMul", "fc3", strs(h, b.w("fc3.w", 10, 3)))
	b.out(y)
	return b
}

func TestSynthBarrierNoRule(t *testing.T) {
	// x -> fc0 -> relu -> fc1 -> relu -> OP -> fc2 -> relu -> fc3: fc1's
	// units stop at OP, fc0's shrink; fc2's only when an exporter recorded
	// the shape of OP's output (the rewriter needs shapes).
	build := func(t *testing.T, op string, declared bool) *builder {
		b := newBuilder(t, 13)
		x := b.in("x", -1, 6)
		h := b.op("MatMul", "fc0", strs(x, b.w("fc0.w", 6, 8)))
		h = b.op("Relu", "relu0", strs(h))
		h = b.op("MatMul", "fc1", strs(h, b.w("fc1.w", 8, 12)))
		h = b.op("Relu", "relu1", strs(h))
		switch op {
		case "Einsum":
			h = b.op("Einsum", "mix", strs(h, b.w("mix.w", 12, 12)), aS("equation", "bi,ij->bj"))
		case "com.microsoft::FusedMatMul":
			b.use("com.microsoft", 1)
			h = b.op(op, "mix", strs(h, b.w("mix.w", 12, 12)), aF("alpha", 1))
		default:
			b.use("org.example", 1)
			h = b.op(op, "mix", strs(h))
		}
		if declared {
			b.declare("mix", -1, 12)
		}
		h = b.op("MatMul", "fc2", strs(h, b.w("fc2.w", 12, 10)))
		h = b.op("Relu", "relu2", strs(h))
		y := b.op("MatMul", "fc3", strs(h, b.w("fc3.w", 10, 3)))
		b.out(y)
		return b
	}
	for _, op := range []string{"Einsum", "com.microsoft::FusedMatMul", "org.example::Mystery"} {
		for _, declared := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/value_info=%v", op, declared), func(t *testing.T) {
				b := build(t, op, declared)
				m := b.model()
				groups := []want{{"fc0:neurons", "neurons", 8}}
				if declared {
					groups = append(groups, want{"fc2:neurons", "neurons", 10})
				}
				a := analyze(t, m, groups...)
				blockedWith(t, a, "fc1", fmt.Sprintf("op %s has no rule (node mix)", op))
				if len(a.Skipped) != 1 || opName(b.nodes[4]) != op || a.Skipped[0].Op != b.nodes[4].GetOpType() ||
					a.Skipped[0].Domain != b.nodes[4].GetDomain() || !contains(a.Skipped[0].Nodes, "mix") {
					t.Errorf("Skipped = %+v", a.Skipped)
				}
				if op != "org.example::Mystery" { // ORT cannot run it
					checkModel(t, m)
				}
			})
		}
	}
}

func TestSynthBarrierSoftmax(t *testing.T) {
	m := mlp3(t, 13, func(b *builder, h string) string { return b.op("Softmax", "sm", strs(h), aI("axis", -1)) }).model()
	a := analyze(t, m, want{"fc2:neurons", "neurons", 10})
	blockedWith(t, a, "fc1", "Softmax node sm normalises over the unit axis")
	checkModel(t, m)
	// Before opset 13, Softmax's axis 1 covers everything after it.
	m = mlp3(t, 11, func(b *builder, h string) string { return b.op("Softmax", "sm", strs(h)) }).model()
	blockedWith(t, analyze(t, m, want{"fc2:neurons", "neurons", 10}), "fc1", "Softmax node sm")
	checkModel(t, m)
}

// Softmax over another axis passes the units (before opset 13, the units
// must come before the axis: it flattens everything from the axis on).
func TestSynthSoftmaxOtherAxis(t *testing.T) {
	for _, opset := range []int64{11, 13} {
		t.Run(fmt.Sprint(opset), func(t *testing.T) {
			b := newBuilder(t, opset)
			x := b.in("x", -1, 4, 8)
			h := b.op("MatMul", "fc1", strs(x, b.w("fc1.w", 8, 12)))
			h = b.op("Transpose", "t1", strs(h), aIs("perm", 0, 2, 1)) // [N,12,4]
			h = b.op("Softmax", "sm", strs(h), aI("axis", 2))
			h = b.op("Transpose", "t2", strs(h), aIs("perm", 0, 2, 1))
			h = b.op("MatMul", "fc2", strs(h, b.w("fc2.w", 12, 3)))
			b.out(h)
			m := b.model()
			analyze(t, m, want{"fc1:neurons", "neurons", 12})
			checkModel(t, m)
		})
	}
}

func TestSynthBarrierReduceMax(t *testing.T) {
	b := convNet(t, 13, func(b *builder, x string) (string, int64) {
		mx := b.op("ReduceMax", "chmax", strs(x), aIs("axes", 1), aI("keepdims", 1))
		h := b.op("Div", "norm", strs(x, b.op("Add", "chmax.eps", strs(mx, b.fs("eps", 10)))))
		h = b.op("Conv", "conv2", strs(h, b.w("conv2.w", 6, 8, 3, 3), b.w("conv2.b", 6)))
		h = b.op("Relu", "relu2", strs(h))
		return h, 6
	})
	m := b.model()
	a := analyze(t, m, want{"conv2:channels", "channels", 6})
	blockedWith(t, a, "conv1", "ReduceMax node chmax reduces over the unit axis")
	checkModel(t, m)
}

func TestSynthBarrierGraphOutput(t *testing.T) {
	b := mlp3(t, 13, func(b *builder, h string) string { return h })
	b.out("relu1")
	m := b.model()
	a := analyze(t, m, want{"fc2:neurons", "neurons", 10})
	blockedWith(t, a, "fc1", `reaches graph output "relu1"`)
	checkModel(t, m)
}

func TestSynthBarrierSubgraph(t *testing.T) {
	t.Run("If", func(t *testing.T) {
		m := mlp3(t, 13, func(b *builder, h string) string {
			c := b.op("ReduceSum", "c.sum", strs("x"), aI("keepdims", 0))
			c = b.op("Greater", "c", strs(c, b.fs("c.zero", 0)))
			yes := b.subgraph("then", func(s *builder) { s.op("Identity", "then.out", strs(h)) },
				onnxio.NewValueInfo("then.out", onnxio.Float, nil))
			no := b.subgraph("else", func(s *builder) { s.op("Neg", "else.out", strs(h)) },
				onnxio.NewValueInfo("else.out", onnxio.Float, nil))
			r := b.op("If", "branch", strs(c), aG("then_branch", yes), aG("else_branch", no))
			b.declare("branch", -1, 12)
			return r
		}).model()
		a := analyze(t, m, want{"fc2:neurons", "neurons", 10})
		blockedWith(t, a, "fc1", "read inside a subgraph of If (node branch)")
		checkModel(t, m)
	})
	t.Run("Loop", func(t *testing.T) {
		m := mlp3(t, 13, func(b *builder, h string) string {
			body := b.subgraph("body", func(s *builder) {
				s.in("i", -1)
				s.inputs[0] = onnxio.NewValueInfo("i", onnxio.Int64, nil)
				s.inputs = append(s.inputs, onnxio.NewValueInfo("cond_in", onnxio.Bool, nil), onnxio.NewValueInfo("acc", onnxio.Float, nil))
				s.op("Identity", "cond_out", strs("cond_in"))
				s.op("Add", "acc_out", strs("acc", h))
			}, onnxio.NewValueInfo("cond_out", onnxio.Bool, nil), onnxio.NewValueInfo("acc_out", onnxio.Float, nil))
			zero := b.op("Mul", "acc0", strs(h, b.fs("zero", 0)))
			r := b.op("Loop", "loop", strs(b.i64("trips", 2), "", zero), aG("body", body))
			b.declare("loop", -1, 12)
			return r
		}).model()
		a := analyze(t, m, want{"fc2:neurons", "neurons", 10})
		blockedWith(t, a, "fc1", "read inside a subgraph of Loop (node loop)", "op Loop has no rule")
		checkModel(t, m)
	})
}

// A head split whose size is computed at run time by arithmetic that
// cannot be rewritten.
func TestSynthBarrierRuntimeShape(t *testing.T) {
	m := mlp3(t, 13, func(b *builder, h string) string {
		sh := b.op("Shape", "hs", strs(h))
		n := b.op("Gather", "hs.n", strs(sh, b.ints("hs.i0", 0)), aI("axis", 0))
		w := b.op("Gather", "hs.w", strs(sh, b.ints("hs.i1", 1)), aI("axis", 0))
		w = b.op("Div", "hs.half", strs(w, b.ints("hs.two", 2)))
		r := b.op("Reshape", "pairs", strs(h, b.op("Concat", "pairs.shape", strs(n, w, b.ints("hs.k", 2)), aI("axis", 0))))
		r = b.op("Tanh", "pairs.act", strs(r))
		return b.op("Reshape", "flat", strs(r, b.ints("flat.shape", 0, -1)))
	}).model()
	a := analyze(t, m, want{"fc2:neurons", "neurons", 10})
	blockedWith(t, a, "fc1", "Reshape node pairs computes the size of a unit axis at run time")
	checkModel(t, m)
}

// Opset forms: axes as attributes (before 13) or inputs, Clip bounds as
// attributes (before 11) or inputs.
func TestSynthOpsetForms(t *testing.T) {
	for _, opset := range []int64{7, 11, 13, 18} {
		t.Run(fmt.Sprint(opset), func(t *testing.T) {
			b := newBuilder(t, opset)
			x := b.in("x", -1, 8)
			axes := func(name string, v ...int64) ([]string, []*onnxpb.AttributeProto) {
				if opset >= 13 {
					return []string{b.ints(name, v...)}, nil
				}
				return nil, []*onnxpb.AttributeProto{aIs("axes", v...)}
			}
			h := b.op("MatMul", "fc1", strs(x, b.w("fc1.w", 8, 12)))
			if opset >= 11 {
				h = b.op("Clip", "clip", strs(h, b.fs("lo", 0), b.fs("hi", 6)))
			} else {
				h = b.op("Clip", "clip", strs(h), aF("min", 0), aF("max", 6))
			}
			in, at := axes("u.axes", 2)
			h = b.op("Unsqueeze", "u", append(strs(h), in...), at...) // [N,12,1]
			raxIn, rax := axes("r.axes", 2)
			if opset >= 13 && opset < 18 {
				// ReduceSum takes axes as an input from 13, the others from 18.
				h = b.op("ReduceSum", "r", append(strs(h), raxIn...), aI("keepdims", 1))
			} else if opset >= 18 {
				h = b.op("ReduceMax", "r", append(strs(h), raxIn...), aI("keepdims", 1))
			} else {
				h = b.op("ReduceSum", "r", strs(h), append(rax, aI("keepdims", 1))...)
			}
			in, at = axes("s.axes", 2)
			h = b.op("Squeeze", "s", append(strs(h), in...), at...)
			h = b.op("MatMul", "fc2", strs(h, b.w("fc2.w", 12, 10)))
			var parts []string
			if opset >= 18 {
				parts = b.opN("Split", "split", strs(h), 2, aI("axis", 1), aI("num_outputs", 2))
			} else {
				parts = b.opN("Split", "split", strs(h), 2, aI("axis", 1)) // [N,5] each
			}
			h = b.op("Mul", "glu", strs(b.op("Sigmoid", "glu.sig", strs(parts[0])), parts[1]))
			y := b.op("MatMul", "fc3", strs(h, b.w("fc3.w", 5, 3)))
			b.out(y)
			m := b.model()
			a := analyze(t, m, want{"fc1:neurons", "neurons", 12}, want{"split:neurons", "neurons", 5})
			_ = a
			checkModel(t, m)
		})
	}
}

var _ = math.Sqrt

// The Llama fixture's KV heads are repeated with torch's Expand export;
// every layer's KV groups must be prunable.
func TestLlamaKVGroups(t *testing.T) {
	m, err := onnxio.Load("../testdata/models/llama/model.onnx")
	if err != nil {
		t.Skip(err)
	}
	a, err := Analyze(m, Options{})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, g := range a.Groups {
		if g.Kind == "kv-groups" {
			n++
			if !g.Prunable() {
				t.Errorf("%s is blocked: %v", g.Name, g.Blocked)
			}
		}
	}
	if n == 0 {
		t.Errorf("no KV groups:\n%s", summary(a))
	}
}
