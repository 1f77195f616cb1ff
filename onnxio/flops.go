package onnxio

import "github.com/onnx-cria/onnx-cria/onnxio/onnxpb"

// FLOPs counts floating-point operations for one sample: two per
// multiply-add of the Conv, ConvTranspose, Gemm and MatMul nodes of the
// main graph. Dimensions of unknown size (the batch) count as 1.
func FLOPs(m *Model) int64 {
	sh := InferShapes(m, true)
	dims := func(t string) []int64 {
		d, ok := sh.Shape(t)
		if !ok {
			return nil
		}
		return d
	}
	var total int64
	for _, n := range m.Graph().GetNode() {
		in := func(k int) []int64 { return dims(n.Input[k]) }
		total += NodeFLOPs(n, in, dims(n.Output[0]))
	}
	return total
}

// NodeFLOPs is FLOPs' count for one node, given the shapes of its inputs
// by slot and of its first output (nil when unknown). Unknown sizes count
// as 1.
func NodeFLOPs(n *onnxpb.NodeProto, in func(k int) []int64, out0 []int64) int64 {
	if len(n.Output) == 0 || len(n.Input) < 2 {
		return 0
	}
	switch n.GetOpType() {
	case "Conv", "ConvTranspose", "Gemm", "MatMul":
	default:
		return 0
	}
	dim := func(d []int64) []int64 {
		if d == nil {
			return nil
		}
		out := make([]int64, len(d))
		for k, v := range d {
			out[k] = max(v, 1)
		}
		return out
	}
	prod := func(d []int64) int64 {
		p := int64(1)
		for _, v := range d {
			p *= v
		}
		return p
	}
	out := dim(out0)
	switch n.GetOpType() {
	case "Conv":
		w := dim(in(1))
		if out == nil || len(w) < 2 {
			return 0
		}
		// Each output element reads C/group channels times the kernel.
		return 2 * prod(out[1:]) * prod(w[1:])
	case "ConvTranspose":
		x, w := dim(in(0)), dim(in(1))
		if x == nil || len(w) < 2 {
			return 0
		}
		return 2 * prod(x[1:]) * prod(w[1:])
	case "Gemm":
		a := dim(in(0))
		if out == nil || len(a) != 2 {
			return 0
		}
		k := a[1]
		if AttrInt(n, "transA", 0) == 1 {
			k = a[0]
		}
		return 2 * prod(out) * k
	case "MatMul":
		a := dim(in(0))
		if out == nil || len(a) == 0 {
			return 0
		}
		return 2 * prod(out) * a[len(a)-1]
	}
	return 0
}
