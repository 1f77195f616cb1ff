package rewrite

import (
	"testing"

	"github.com/onnx-cria/onnx-cria/onnxio"
	"github.com/onnx-cria/onnx-cria/onnxio/onnxpb"
)

// Run-time sizes of unit axes that flow into places Apply cannot see.

// torch.cat([x, torch.zeros_like(x)], 1): the zeros follow x's width at run
// time, so they carry x's channels and the second half of the Concat
// shrinks with x: conv1's channels prune, conv2 losing both of its input
// channels for each.
func TestShapeZerosLike(t *testing.T) {
	b := convNet(t, 13, func(b *builder, x string) (string, int64) {
		z := b.op("ConstantOfShape", "zeros", strs(b.op("Shape", "xs", strs(x))),
			aT("value", mustFloatTensor(t, 0)))
		h := b.op("Concat", "cat", strs(x, z), aI("axis", 1))
		h = b.op("Conv", "conv2", strs(h, b.w("conv2.w", 6, 16, 1, 1)))
		return b.op("Relu", "relu2", strs(h)), 6
	})
	m := b.model()
	analyze(t, m, want{"conv1:channels", "channels", 8}, want{"conv2:channels", "channels", 6})
	checkModel(t, m)
}

// A constant reshaped to the width of a hidden tensor.
func TestShapeReshapeConstToWidth(t *testing.T) {
	m := mlp3(t, 13, func(b *builder, h string) string {
		w := b.op("Gather", "hw", strs(b.op("Shape", "hs", strs(h)), b.ints("hs.i", 1)), aI("axis", 0))
		bias := b.op("Reshape", "bias", strs(b.w("bias.c", 12), b.op("Concat", "bias.shape", strs(b.ints("one", 1), w), aI("axis", 0))))
		return b.op("Add", "shift", strs(h, bias))
	}).model()
	a := analyze(t, m, want{"fc2:neurons", "neurons", 10})
	blockedWith(t, a, "fc1")
	checkModel(t, m)
}

func mustFloatTensor(t *testing.T, v float64) *onnxpb.TensorProto {
	raw, err := onnxio.EncodeFloat64s(onnxio.Float, []float64{v})
	if err != nil {
		t.Fatal(err)
	}
	x, err := onnxio.NewTensor("", onnxio.Float, []int64{1}, raw)
	if err != nil {
		t.Fatal(err)
	}
	return x
}

// nn.MultiheadAttention's export sizes the per-head view of a projection
// with the head size computed at run time as the hidden width over the head
// count. The view's axes carry no units, so when the hidden width prunes,
// the size is frozen at its present value.
func TestShapeHeadSizeFromHiddenWidth(t *testing.T) {
	m := mlp3(t, 13, func(b *builder, h string) string {
		q := b.op("MatMul", "q", strs(h, b.w("q.w", 12, 12)))
		width := b.op("Gather", "hw", strs(b.op("Shape", "hs", strs(h)), b.i64("hs.i", 1)), aI("axis", 0))
		hd := b.op("Unsqueeze", "hd", strs(b.op("Div", "hdiv", strs(width, b.i64("four", 4))), b.ints("hd.axes", 0)))
		// [B, 12] -> [B*4, 3]: the q units fold into the batch axis.
		v := b.op("Reshape", "heads", strs(q, b.op("Concat", "heads.shape", strs(b.ints("m1", -1), hd), aI("axis", 0))))
		v = b.op("Relu", "heads.act", strs(v))
		return b.op("Reshape", "merge", strs(v, b.ints("merge.shape", -1, 12)))
	}).model()
	a := analyze(t, m, want{"fc1:neurons", "neurons", 12}, want{"fc2:neurons", "neurons", 10})
	blockedWith(t, a, "q", "Reshape")
	checkModel(t, m)
	pruned, err := a.Apply(Plan{"fc1:neurons": {0, 5, 7, 11}})
	if err != nil {
		t.Fatal(err)
	}
	if d := dimsOf(t, pruned, "fc1.w"); d[1] != 8 {
		t.Errorf("fc1.w is %v after removing 4 of 12 units", d)
	}
}

// A Slice of the unit axis with bounds known now, computed at run time from
// the axis's width (as nn.MultiheadAttention's export cuts q, k and v out
// of the packed projection): the units on either side of each cut are
// groups of their own, and Apply writes the bounds as constants.
func TestShapeSliceRuntimeBounds(t *testing.T) {
	b := convNet(t, 13, func(b *builder, x string) (string, int64) {
		w := b.op("Gather", "xw", strs(b.op("Shape", "xs", strs(x)), b.ints("xw.i", 1)), aI("axis", 0))
		third := b.op("Div", "third", strs(w, b.ints("three", 3))) // 8 / 3 = 2
		end := b.op("Mul", "end", strs(third, b.ints("times", 3))) // 6
		h := b.op("Slice", "s", strs(x, third, end, b.ints("s.a", 1)))
		h = b.op("Conv", "conv2", strs(h, b.w("conv2.w", 6, 4, 1, 1)))
		return b.op("Relu", "relu2", strs(h)), 6
	})
	m := b.model()
	a := analyze(t, m, want{"s:channels#1", "channels", 2}, want{"s:channels#2", "channels", 4},
		want{"s:channels#3", "channels", 2}, want{"conv2:channels", "channels", 6})
	checkModel(t, m)
	pruned, err := a.Apply(Plan{"s:channels#1": {1}, "s:channels#2": {0, 3}})
	if err != nil {
		t.Fatal(err)
	}
	runModel(t, pruned, inputsFor(t, m, 2, 1)) // the rewritten bounds run
	if d := dimsOf(t, pruned, "conv1.w"); d[0] != 5 {
		t.Errorf("conv1.w is %v after removing 3 of 8 channels", d)
	}
}

// The bounds of a Slice along one unit axis computed from the width of
// another: they are written as constants when either changes.
func TestShapeSliceBoundsFromOtherUnits(t *testing.T) {
	b := convNet(t, 13, func(b *builder, x string) (string, int64) {
		y := b.op("Relu", "y.relu", strs(b.op("Conv", "y", strs(x, b.w("y.w", 8, 8, 1, 1)))))
		w := b.op("Gather", "yw", strs(b.op("Shape", "ys", strs(y)), b.ints("yw.i", 1)), aI("axis", 0))
		lo := b.op("Div", "lo", strs(w, b.ints("four", 4)))   // 2
		hi := b.op("Mul", "hi", strs(lo, b.ints("times", 3))) // 6
		h := b.op("Concat", "cat", strs(b.op("Slice", "s", strs(x, lo, hi, b.ints("s.a", 1))), y), aI("axis", 1))
		h = b.op("Conv", "conv2", strs(h, b.w("conv2.w", 6, 12, 1, 1)))
		return b.op("Relu", "relu2", strs(h)), 6
	})
	m := b.model()
	analyze(t, m, want{"s:channels#1", "channels", 2}, want{"s:channels#2", "channels", 4},
		want{"s:channels#3", "channels", 2}, want{"y:channels", "channels", 8}, want{"conv2:channels", "channels", 6})
	checkModel(t, m)
}
