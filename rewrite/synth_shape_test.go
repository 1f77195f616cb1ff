package rewrite

import (
	"testing"

	"github.com/onnx-cria/onnx-cria/onnxio"
	"github.com/onnx-cria/onnx-cria/onnxio/onnxpb"
)

// Run-time sizes of unit axes that flow into places Apply cannot see.

// torch.cat([x, torch.zeros_like(x)], 1): the zeros follow x's width at run
// time, so the second half of the Concat shrinks with x.
func TestShapeZerosLike(t *testing.T) {
	b := convNet(t, 13, func(b *builder, x string) (string, int64) {
		z := b.op("ConstantOfShape", "zeros", strs(b.op("Shape", "xs", strs(x))),
			aT("value", mustFloatTensor(t, 0)))
		h := b.op("Concat", "cat", strs(x, z), aI("axis", 1))
		h = b.op("Conv", "conv2", strs(h, b.w("conv2.w", 6, 16, 1, 1)))
		return b.op("Relu", "relu2", strs(h)), 6
	})
	m := b.model()
	analyze(t, m, want{"conv2:channels", "channels", 6})
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
