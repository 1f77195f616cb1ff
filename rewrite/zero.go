package rewrite

import (
	"fmt"
	"slices"

	"github.com/onnx-cria/onnx-cria/onnxio"
	"github.com/onnx-cria/onnx-cria/onnxio/onnxpb"
)

// ZeroUnits returns a copy of the analysed model in which the weights that
// read the planned units (each group's "out" parameters) are zero. Removing
// those units from the copy must leave its outputs unchanged to float
// rounding: that is how a rewrite is checked on any model, trained or not.
// Quantized weights are zeroed as they dequantize: their codes set to the
// zero point, unless a float scale of the same units is zeroed instead (a
// per-axis scale along the units, MatMulNBits' block scales). The analysed
// model is not modified.
func (a *Analysis) ZeroUnits(p Plan) (*onnxio.Model, error) {
	c := a.Model.Clone()
	ix := onnxio.NewIndex(c.Graph())
	for name, units := range p {
		g := a.Group(name)
		if g == nil {
			return nil, fmt.Errorf("plan names group %q, which the analysis does not have", name)
		}
		scaled := map[string]bool{} // float "out" tensors of the group
		for _, ref := range g.Params {
			if t := ix.Const(ref.Tensor); ref.Role == roleOut && t != nil && onnxio.DataType(t.GetDataType()).IsFloat() {
				scaled[ref.Tensor] = true
			}
		}
		for _, ref := range g.Params {
			if ref.Role != roleOut {
				continue
			}
			t := ix.Const(ref.Tensor)
			if t == nil {
				return nil, fmt.Errorf("group %s: weight %q is not a constant of the model", name, ref.Tensor)
			}
			zero := func(int) float64 { return 0 }
			if !onnxio.DataType(t.GetDataType()).IsFloat() {
				z, ok, err := a.codeZero(c, ix, ref.Tensor, scaled)
				if err != nil {
					return nil, fmt.Errorf("group %s: weight %q: %w", name, ref.Tensor, err)
				}
				if !ok {
					continue // its scales are zeroed
				}
				zero = z
			}
			vals, err := c.Float64s(t)
			if err != nil {
				return nil, fmt.Errorf("group %s: weight %q: %w", name, ref.Tensor, err)
			}
			UnitRuns(t.GetDims(), ref, g.Width, func(u, lo, hi int) {
				if slices.Contains(units, u) {
					for e := lo; e < hi; e++ {
						vals[e] = zero(e)
					}
				}
			})
			raw, err := onnxio.EncodeFloat64s(onnxio.DataType(t.GetDataType()), vals)
			if err != nil {
				return nil, fmt.Errorf("group %s: weight %q: %w", name, ref.Tensor, err)
			}
			if err := onnxio.SetRawData(t, t.GetDims(), raw); err != nil {
				return nil, err
			}
		}
	}
	return c, nil
}

// codeZero returns, for the quantized codes named codes, the code that
// dequantizes to zero at each element: the zero point of the
// DequantizeLinear that reads them. It reports false when the codes need
// no change because a scale in scaled is zeroed for them, or when no
// DequantizeLinear reads them (MatMulNBits, whose block scales are).
func (a *Analysis) codeZero(m *onnxio.Model, ix *onnxio.Index, codes string, scaled map[string]bool) (func(int) float64, bool, error) {
	var dq *onnxpb.NodeProto
	for _, k := range ix.Consumers[codes] {
		if n := ix.Node(k); n.GetOpType() == "DequantizeLinear" && n.Input[0] == codes {
			dq = n
		}
	}
	if dq == nil || scaled[safe(dq.Input, 1)] {
		return nil, false, nil
	}
	zp := ix.Const(safe(dq.Input, 2))
	if zp == nil {
		return func(int) float64 { return 0 }, true, nil
	}
	zv, err := m.Float64s(zp)
	if err != nil {
		return nil, false, err
	}
	if len(zv) == 1 {
		return func(int) float64 { return zv[0] }, true, nil
	}
	dims := ix.Const(codes).GetDims()
	ax := int(onnxio.AttrInt(dq, "axis", 1))
	if ax < 0 {
		ax += len(dims)
	}
	if ax < 0 || ax >= len(dims) || int64(len(zv)) != dims[ax] {
		return nil, false, fmt.Errorf("zero point %q does not run along axis %d", zp.GetName(), ax)
	}
	inner := int(onnxio.NumElements(dims[ax+1:]))
	return func(e int) float64 { return zv[(e/inner)%int(dims[ax])] }, true, nil
}
