package rewrite

import (
	"math"
	"testing"

	"github.com/onnx-cria/onnx-cria/onnxio"
)

// Quantized weights pruned without dequantizing: QDQ (per-tensor and
// per-channel scales, with and without zero points, int8 and uint8, an
// int32 bias) and MatMulNBits (4-bit blocks along K). checkModel runs ORT
// before and after and checks parity against zeroing: codes set to the zero
// point, or the block scales zeroed.

// q adds an integer initializer of type dt with values of the given range.
func (b *builder) q(name string, dt onnxio.DataType, dims []int64, lo, hi int) string {
	vals := make([]float64, onnxio.NumElements(dims))
	for k := range vals {
		vals[k] = float64(lo + b.r.IntN(hi-lo+1))
	}
	raw, err := onnxio.EncodeFloat64s(dt, vals)
	if err != nil {
		b.t.Fatal(err)
	}
	t, err := onnxio.NewTensor(b.claim(name), dt, dims, raw)
	if err != nil {
		b.t.Fatal(err)
	}
	b.inits = append(b.inits, t)
	return name
}

// dq is DequantizeLinear of fresh codes: per tensor when axis < 0, else
// one scale (and zero point) per index along axis.
func (b *builder) dq(name string, dt onnxio.DataType, dims []int64, axis int, zp bool) string {
	lo, hi := -127, 127
	if dt == onnxio.Uint8 {
		lo, hi = 0, 255
	}
	codes := b.q(name+".q", dt, dims, lo, hi)
	sdims, n := []int64{}, int64(1)
	if axis >= 0 {
		n = dims[axis]
		sdims = []int64{n}
	}
	scale := make([]float64, n)
	for k := range scale {
		scale[k] = 0.002 + 0.01*b.r.Float64()
	}
	ins := strs(codes, b.f(name+".s", sdims, scale...))
	if zp {
		ins = append(ins, b.q(name+".z", dt, sdims, (lo+hi)/2-20, (lo+hi)/2+20))
	}
	if axis >= 0 {
		return b.op("DequantizeLinear", name, ins, aI("axis", int64(axis)))
	}
	return b.op("DequantizeLinear", name, ins)
}

// qdq is an activation's QuantizeLinear/DequantizeLinear pair (uint8, per
// tensor).
func (b *builder) qdq(x, name string) string {
	s, z := b.fs(name+".s", 0.05), b.q(name+".z", onnxio.Uint8, nil, 128, 128)
	return b.op("DequantizeLinear", name, strs(b.op("QuantizeLinear", name+".q", strs(x, s, z)), s, z))
}

func TestQuantQDQMLP(t *testing.T) {
	b := newBuilder(t, 13)
	x := b.qdq(b.in("x", -1, 16), "xq")
	h := b.op("Relu", "r1", strs(b.op("Add", "b1", strs(b.op("MatMul", "fc1", strs(x, b.dq("w1", onnxio.Int8, []int64{16, 24}, -1, false))), b.w("fc1.b", 24)))))
	h = b.qdq(h, "h1q")
	h = b.op("Relu", "r2", strs(b.op("Add", "b2", strs(b.op("MatMul", "fc2", strs(h, b.dq("w2", onnxio.Int8, []int64{24, 12}, 1, false))), b.w("fc2.b", 12)))))
	h = b.qdq(h, "h2q")
	b.out(b.op("Gemm", "fc3", strs(h, b.dq("w3", onnxio.Uint8, []int64{5, 12}, 0, true), b.w("fc3.b", 5)), aI("transB", 1)))
	m := b.model()
	a := analyze(t, m, want{"fc1:neurons", "neurons", 24}, want{"fc2:neurons", "neurons", 12})
	checkModel(t, m)
	// The codes lose rows or columns; per-axis scales and zero points go
	// with them only along their own axis.
	p, err := a.Apply(Plan{"fc1:neurons": {0, 5}, "fc2:neurons": {1, 2, 3}})
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string][]int64{"w1.q": {16, 22}, "w2.q": {22, 9}, "w2.s": {9}, "w3.q": {5, 9}, "w3.s": {5}, "w3.z": {5}} {
		if got := dimsOf(t, p, name); len(got) != len(want) || got[0] != want[0] || got[len(got)-1] != want[len(want)-1] {
			t.Errorf("%s: dims %v, want %v", name, got, want)
		}
	}
	// Quantized codes count as parameters, before and after.
	before, _ := m.ParamCount()
	after, _ := p.ParamCount()
	// codes and scales of w1, w2, w3 (w3's uint8 zero points are no
	// parameters), the biases, and the three activation scales
	if before != 16*24+1+24*12+12+5*12+5+24+12+5+3 || after >= before {
		t.Errorf("parameters %d -> %d", before, after)
	}
}

func TestQuantQDQConv(t *testing.T) {
	b := newBuilder(t, 13)
	x := b.qdq(b.in("x", -1, 3, 10, 10), "xq")
	// conv1: int8 per output channel, int32 bias dequantized per channel.
	bs := make([]float64, 8)
	for k := range bs {
		bs[k] = 0.05 * (0.002 + 0.001*float64(k))
	}
	bias := b.op("DequantizeLinear", "b1", strs(b.q("b1.q", onnxio.Int32, []int64{8}, -50, 50), b.f("b1.s", []int64{8}, bs...), b.q("b1.z", onnxio.Int32, []int64{8}, 0, 0)), aI("axis", 0))
	h := b.op("Relu", "r1", strs(b.op("Conv", "conv1", strs(x, b.dq("w1", onnxio.Int8, []int64{8, 3, 3, 3}, 0, true), bias), aIs("pads", 1, 1, 1, 1))))
	h = b.qdq(h, "h1q")
	// conv2: uint8 per tensor with a zero point; conv3 1x1 int8 per channel.
	h = b.op("Relu", "r2", strs(b.op("Conv", "conv2", strs(h, b.dq("w2", onnxio.Uint8, []int64{10, 8, 3, 3}, -1, true), b.w("conv2.b", 10)), aIs("strides", 2, 2))))
	h = b.op("Relu", "r3", strs(b.op("Conv", "conv3", strs(h, b.dq("w3", onnxio.Int8, []int64{6, 10, 1, 1}, 0, false)))))
	h = b.op("Flatten", "flat", strs(b.op("GlobalAveragePool", "gap", strs(h))))
	b.out(b.op("Gemm", "fc", strs(h, b.dq("w4", onnxio.Int8, []int64{4, 6}, 0, false), b.w("fc.b", 4)), aI("transB", 1)))
	m := b.model()
	analyze(t, m, want{"conv1:channels", "channels", 8}, want{"conv2:channels", "channels", 10}, want{"conv3:channels", "channels", 6})
	checkModel(t, m)
}

// nbits packs w [K, N] (float) as MatMulNBits stores it, 4 bits in blocks
// of bs along K, and returns B, scales and packed zero points (nil for the
// symmetric form, whose zero point is 8).
func nbits(w []float64, k, n, bs int, zp bool) (q, s, z []float64) {
	blocks := k / bs
	q = make([]float64, n*blocks*bs/2)
	s = make([]float64, n*blocks)
	zb := make([]int, n*blocks)
	for c := 0; c < n; c++ {
		for bl := 0; bl < blocks; bl++ {
			lo, hi := 0.0, 0.0
			for j := 0; j < bs; j++ {
				v := w[(bl*bs+j)*n+c]
				lo, hi = math.Min(lo, v), math.Max(hi, v)
			}
			zero := 8
			scale := math.Max(math.Max(-lo, hi), 1e-6) / 7
			if zp {
				scale = math.Max(hi-lo, 1e-6) / 15
				zero = int(math.Round(-lo / scale))
			}
			s[c*blocks+bl], zb[c*blocks+bl] = scale, zero
			for j := 0; j < bs; j += 2 {
				code := func(j int) int {
					return min(15, max(0, int(math.Round(w[(bl*bs+j)*n+c]/scale))+zero))
				}
				q[(c*blocks+bl)*bs/2+j/2] = float64(code(j) | code(j+1)<<4)
			}
		}
	}
	if !zp {
		return q, s, nil
	}
	per := (blocks + 1) / 2
	z = make([]float64, n*per)
	for c := 0; c < n; c++ {
		for bl := 0; bl < blocks; bl++ {
			z[c*per+bl/2] += float64(zb[c*blocks+bl] << (4 * (bl % 2)))
		}
	}
	return q, s, z
}

func TestQuantMatMulNBits(t *testing.T) {
	b := newBuilder(t, 17)
	b.use("com.microsoft", 1)
	layer := func(name, x string, k, n int, zp bool) string {
		w := make([]float64, k*n)
		for e := range w {
			w[e] = b.r.NormFloat64() / math.Sqrt(float64(k))
		}
		q, s, z := nbits(w, k, n, 16, zp)
		qr, _ := onnxio.EncodeFloat64s(onnxio.Uint8, q)
		qt, _ := onnxio.NewTensor(b.claim(name+".B"), onnxio.Uint8, []int64{int64(n), int64(k / 16), 8}, qr)
		b.inits = append(b.inits, qt)
		ins := strs(x, name+".B", b.f(name+".scales", []int64{int64(n), int64(k / 16)}, s...))
		if zp {
			zr, _ := onnxio.EncodeFloat64s(onnxio.Uint8, z)
			zt, _ := onnxio.NewTensor(b.claim(name+".zp"), onnxio.Uint8, []int64{int64(n), int64((k/16 + 1) / 2)}, zr)
			b.inits = append(b.inits, zt)
			ins = append(ins, name+".zp")
		}
		return b.op("com.microsoft::MatMulNBits", name, ins, aI("K", int64(k)), aI("N", int64(n)), aI("bits", 4), aI("block_size", 16))
	}
	x := b.in("x", -1, 64)
	h := b.op("Relu", "r1", strs(b.op("Add", "b1", strs(layer("fc1", x, 64, 128, true), b.w("fc1.b", 128)))))
	h = b.op("Relu", "r2", strs(layer("fc2", h, 128, 48, false)))
	h = b.op("Relu", "r3", strs(layer("fc3", h, 48, 32, true)))
	b.out(layer("fc4", h, 32, 4, false))
	m := b.model()
	// fc1's 128 outputs feed fc2's K in 8 blocks of 16; fc3's 32 feed
	// fc4's in 2. fc2's cannot go: fc3's packed 4-bit zero points hold two
	// blocks a byte, and its K of 48 is three blocks.
	a := analyze(t, m, want{"fc1:blocks", "blocks", 8}, want{"fc3:blocks", "blocks", 2})
	blockedWith(t, a, "fc2", "K 48 is not a whole number of 32-wide quantization blocks")
	checkModel(t, m)
	p, err := a.Apply(Plan{"fc1:blocks": {1, 2}})
	if err != nil {
		t.Fatal(err)
	}
	ix := onnxio.NewIndex(p.Graph())
	if k, n := onnxio.AttrInt(ix.ProducerNode("fc2"), "K", 0), onnxio.AttrInt(ix.ProducerNode("fc1"), "N", 0); k != 96 || n != 96 {
		t.Errorf("after removing 2 of 8 blocks: fc2 K %d, fc1 N %d", k, n)
	}
	if d := dimsOf(t, p, "fc2.B"); d[1] != 6 {
		t.Errorf("fc2.B dims %v", d)
	}
}
