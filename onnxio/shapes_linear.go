package onnxio

import "github.com/onnx-cria/onnx-cria/onnxio/onnxpb"

func init() {
	shapeRules.Add("", 1, (*inferer).inferConv, "Conv")
	shapeRules.Add("", 10, (*inferer).inferConv, "ConvInteger")
	shapeRules.Add("", 1, (*inferer).inferConvTranspose, "ConvTranspose")
	shapeRules.Add("", 1, (*inferer).inferPool, "MaxPool", "AveragePool", "LpPool")
	shapeRules.Add("", 1, (*inferer).inferGlobalPool, "GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool")
	shapeRules.Add("", 1, (*inferer).inferGemm, "Gemm")
	shapeRules.Add("", 1, (*inferer).inferMatMul, "MatMul")
	shapeRules.Add("", 10, (*inferer).inferMatMul, "MatMulInteger")
}

func (s *inferer) inferConv(n *onnxpb.NodeProto, i int) {
	x, w, ok := s.in2(n)
	if !ok {
		return
	}
	if len(w) < 3 || len(x) != len(w) {
		s.fail(n, i, n.Input[1], "weight rank %d does not fit input rank %d", len(w), len(x))
		return
	}
	group := AttrInt(n, "group", 1)
	if group <= 0 || (w[0] >= 0 && w[0]%group != 0) {
		s.fail(n, i, n.Input[1], "%d output channels are not divisible by group %d", w[0], group)
		return
	}
	if x[1] >= 0 && w[1] >= 0 && x[1] != w[1]*group {
		s.fail(n, i, n.Input[1], "input has %d channels, weight %v with group %d expects %d", x[1], w, group, w[1]*group)
	}
	if b, ok := s.in(n, 2); ok {
		if len(b) != 1 || (b[0] >= 0 && w[0] >= 0 && b[0] != w[0]) {
			s.fail(n, i, n.Input[2], "bias shape %v does not match %d output channels", b, w[0])
		}
	}
	out := []int64{x[0], w[0]}
	out = append(out, s.spatial(n, x[2:], w[2:])...)
	s.set(n, 0, out, s.dt(n, 0))
}

// window returns the stride, dilation and begin and end padding of
// spatial axis k (of r) of a convolution or pooling node.
func window(n *onnxpb.NodeProto, k, r int) (st, dl, pb, pe int64) {
	st, dl = 1, 1
	if strides := AttrInts(n, "strides"); k < len(strides) {
		st = strides[k]
	}
	if dil := AttrInts(n, "dilations"); k < len(dil) {
		dl = dil[k]
	}
	if pads := AttrInts(n, "pads"); len(pads) == 2*r {
		pb, pe = pads[k], pads[k+r]
	}
	return st, dl, pb, pe
}

// spatial computes convolution and pooling output sizes.
func (s *inferer) spatial(n *onnxpb.NodeProto, in, kernel []int64) []int64 {
	r := len(in)
	autoPad := AttrString(n, "auto_pad", "NOTSET")
	ceil := AttrInt(n, "ceil_mode", 0) == 1
	out := make([]int64, r)
	for k := 0; k < r; k++ {
		st, dl, pb, pe := window(n, k, r)
		if in[k] < 0 || kernel[k] < 0 || st <= 0 {
			out[k] = -1
			continue
		}
		ek := dl*(kernel[k]-1) + 1
		switch autoPad {
		case "SAME_UPPER", "SAME_LOWER":
			out[k] = (in[k] + st - 1) / st
		case "VALID":
			out[k] = (in[k]-ek)/st + 1
		default:
			num := in[k] + pb + pe - ek
			if ceil {
				out[k] = (num+st-1)/st + 1
				// The last window must start inside the input or left padding.
				if (out[k]-1)*st >= in[k]+pb {
					out[k]--
				}
			} else {
				out[k] = num/st + 1
			}
		}
	}
	return out
}

func (s *inferer) inferConvTranspose(n *onnxpb.NodeProto, i int) {
	x, w, ok := s.in2(n)
	if !ok || len(w) < 3 || len(x) != len(w) {
		return
	}
	group := AttrInt(n, "group", 1)
	if x[1] >= 0 && w[0] >= 0 && x[1] != w[0] {
		s.fail(n, i, n.Input[1], "input has %d channels, weight %v expects %d", x[1], w, w[0])
	}
	out := []int64{x[0], -1}
	if w[1] >= 0 {
		out[1] = w[1] * group
	}
	r := len(x) - 2
	outPad, outShape := AttrInts(n, "output_padding"), AttrInts(n, "output_shape")
	for k := 0; k < r; k++ {
		if len(outShape) == r {
			out = append(out, outShape[k])
			continue
		}
		st, dl, pb, pe := window(n, k, r)
		op := int64(0)
		if k < len(outPad) {
			op = outPad[k]
		}
		if x[k+2] < 0 || w[k+2] < 0 {
			out = append(out, -1)
			continue
		}
		out = append(out, st*(x[k+2]-1)+op+((w[k+2]-1)*dl+1)-pb-pe)
	}
	s.set(n, 0, out, s.dt(n, 0))
}

func (s *inferer) inferPool(n *onnxpb.NodeProto, i int) {
	x, ok := s.in(n, 0)
	if !ok || len(x) < 3 {
		return
	}
	kernel := AttrInts(n, "kernel_shape")
	if len(kernel) != len(x)-2 {
		s.fail(n, i, n.Input[0], "kernel_shape %v does not fit input rank %d", kernel, len(x))
		return
	}
	out := append([]int64{x[0], x[1]}, s.spatial(n, x[2:], kernel)...)
	s.set(n, 0, out, s.dt(n, 0))
	s.set(n, 1, clone(out), Int64)
}

func (s *inferer) inferGlobalPool(n *onnxpb.NodeProto, i int) {
	if x, ok := s.in(n, 0); ok && len(x) >= 2 {
		out := clone(x)
		for k := 2; k < len(out); k++ {
			out[k] = 1
		}
		s.set(n, 0, out, s.dt(n, 0))
	}
}

func (s *inferer) inferGemm(n *onnxpb.NodeProto, i int) {
	a, b, ok := s.in2(n)
	if !ok {
		return
	}
	if len(a) != 2 || len(b) != 2 {
		s.fail(n, i, n.Input[1], "Gemm needs 2-D operands, got %v and %v", a, b)
		return
	}
	m, ka := a[0], a[1]
	if AttrInt(n, "transA", 0) == 1 {
		m, ka = a[1], a[0]
	}
	kb, nn := b[0], b[1]
	if AttrInt(n, "transB", 0) == 1 {
		kb, nn = b[1], b[0]
	}
	if ka >= 0 && kb >= 0 && ka != kb {
		s.fail(n, i, n.Input[1], "inner dimensions disagree: A %v, B %v (transA=%d, transB=%d)", a, b,
			AttrInt(n, "transA", 0), AttrInt(n, "transB", 0))
	}
	out := []int64{m, nn}
	if c, ok := s.in(n, 2); ok {
		if _, err := broadcast(out, c); err != nil || len(c) > 2 {
			s.fail(n, i, n.Input[2], "C %v does not broadcast to the output %v", c, out)
		}
	}
	s.set(n, 0, out, s.dt(n, 0))
}

func (s *inferer) inferMatMul(n *onnxpb.NodeProto, i int) {
	a, b, ok := s.in2(n)
	if !ok {
		return
	}
	if len(a) == 0 || len(b) == 0 {
		s.fail(n, i, n.Input[0], "MatMul of a scalar")
		return
	}
	aa, bb := clone(a), clone(b)
	if len(aa) == 1 {
		aa = []int64{1, aa[0]}
	}
	if len(bb) == 1 {
		bb = []int64{bb[0], 1}
	}
	ka, kb := aa[len(aa)-1], bb[len(bb)-2]
	if ka >= 0 && kb >= 0 && ka != kb {
		s.fail(n, i, n.Input[1], "inner dimensions disagree: %v x %v", a, b)
		return
	}
	batch, err := broadcast(aa[:len(aa)-2], bb[:len(bb)-2])
	if err != nil {
		s.fail(n, i, n.Input[1], "batch dimensions: %v", err)
		return
	}
	out := batch
	if len(a) > 1 {
		out = append(out, aa[len(aa)-2])
	}
	if len(b) > 1 {
		out = append(out, bb[len(bb)-1])
	}
	dt := s.dt(n, 0)
	if n.GetOpType() == "MatMulInteger" {
		dt = Int32
	}
	s.set(n, 0, out, dt)
}
