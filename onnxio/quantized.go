package onnxio

import "github.com/onnx-cria/onnx-cria/onnxio/onnxpb"

// QuantizedWeights returns the integer constants of m's main graph that
// hold quantized weights, with the number of weights each element holds:
// the codes a DequantizeLinear reads (one each) and the packed blocks of
// ONNX Runtime's MatMulNBits (8/bits each). ParamCount counts them as
// parameters, so a quantized model's parameters are its weights, not only
// its float scales and biases.
func QuantizedWeights(m *Model) map[*onnxpb.TensorProto]float64 {
	g := m.Graph()
	if g == nil {
		return nil
	}
	ix := NewIndex(g)
	out := map[*onnxpb.TensorProto]float64{}
	for _, n := range g.GetNode() {
		if len(n.GetInput()) < 2 {
			continue
		}
		d := n.GetDomain()
		switch {
		case n.GetOpType() == "DequantizeLinear" && (d == "" || d == "ai.onnx"):
			if t := ix.Const(n.Input[0]); t != nil && DataType(t.GetDataType()).IsInt() {
				out[t] = 1
			}
		case n.GetOpType() == "MatMulNBits" && d == "com.microsoft":
			bits := AttrInt(n, "bits", 4)
			if t := ix.Const(n.Input[1]); t != nil && bits > 0 && 8%bits == 0 {
				out[t] = float64(8 / bits)
			}
		}
	}
	return out
}
