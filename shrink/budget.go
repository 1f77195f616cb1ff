package shrink

import (
	"github.com/onnx-cria/onnx-cria/onnxio"
)

// FLOPs counts floating-point operations for one sample: two per
// multiply-add of the Conv, ConvTranspose, Gemm and MatMul nodes of the main
// graph. Dimensions of unknown size (the batch) count as 1.
func FLOPs(m *onnxio.Model) int64 {
	sh := onnxio.InferShapes(m, true)
	dim := func(t string) []int64 {
		d, ok := sh.Shape(t)
		if !ok {
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
	var total int64
	for _, n := range m.Graph().GetNode() {
		if len(n.Output) == 0 || len(n.Input) < 2 {
			continue
		}
		out := dim(n.Output[0])
		switch n.GetOpType() {
		case "Conv":
			w := dim(n.Input[1])
			if out == nil || len(w) < 2 {
				continue
			}
			// Each output element reads C/group channels times the kernel.
			total += 2 * prod(out[1:]) * prod(w[1:])
		case "ConvTranspose":
			x, w := dim(n.Input[0]), dim(n.Input[1])
			if x == nil || len(w) < 2 {
				continue
			}
			total += 2 * prod(x[1:]) * prod(w[1:])
		case "Gemm":
			a := dim(n.Input[0])
			if out == nil || len(a) != 2 {
				continue
			}
			k := a[1]
			if onnxio.AttrInt(n, "transA", 0) == 1 {
				k = a[0]
			}
			total += 2 * prod(out) * k
		case "MatMul":
			a := dim(n.Input[0])
			if out == nil || len(a) == 0 {
				continue
			}
			total += 2 * prod(out) * a[len(a)-1]
		}
	}
	return total
}
