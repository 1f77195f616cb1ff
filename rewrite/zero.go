package rewrite

import (
	"fmt"
	"slices"

	"github.com/onnx-cria/onnx-cria/onnxio"
)

// ZeroUnits returns a copy of the analysed model in which the weights that
// read the planned units (each group's "out" parameters) are zero. Removing
// those units from the copy must leave its outputs unchanged to float
// rounding: that is how a rewrite is checked on any model, trained or not.
// The analysed model is not modified.
func (a *Analysis) ZeroUnits(p Plan) (*onnxio.Model, error) {
	c := a.Model.Clone()
	ix := onnxio.NewIndex(c.Graph())
	for name, units := range p {
		g := a.Group(name)
		if g == nil {
			return nil, fmt.Errorf("plan names group %q, which the analysis does not have", name)
		}
		for _, ref := range g.Params {
			if ref.Role != roleOut {
				continue
			}
			t := ix.Const(ref.Tensor)
			if t == nil {
				return nil, fmt.Errorf("group %s: weight %q is not a constant of the model", name, ref.Tensor)
			}
			vals, err := c.Float64s(t)
			if err != nil {
				return nil, fmt.Errorf("group %s: weight %q: %w", name, ref.Tensor, err)
			}
			UnitRuns(t.GetDims(), ref, g.Width, func(u, lo, hi int) {
				if slices.Contains(units, u) {
					clear(vals[lo:hi])
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
