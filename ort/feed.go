package ort

import (
	"fmt"

	"github.com/onnx-cria/onnx-cria/dataset"
	"github.com/onnx-cria/onnx-cria/onnxio"
)

// DTypeOf maps a NumPy array element type to the ONNX element type.
func DTypeOf(d dataset.DType) (onnxio.DataType, error) {
	switch d {
	case dataset.Float32:
		return onnxio.Float, nil
	case dataset.Float64:
		return onnxio.Double, nil
	case dataset.Int64:
		return onnxio.Int64, nil
	case dataset.Int32:
		return onnxio.Int32, nil
	case dataset.Uint8:
		return onnxio.Uint8, nil
	case dataset.Bool:
		return onnxio.Bool, nil
	case dataset.Float16:
		return onnxio.Float16, nil
	}
	return onnxio.Undefined, fmt.Errorf("no ONNX element type for %v", d)
}

// FromArray wraps a dataset array as an input tensor named name, sharing
// its memory.
func FromArray(name string, a *dataset.Array) (Tensor, error) {
	dt, err := DTypeOf(a.DType)
	if err != nil {
		return Tensor{}, fmt.Errorf("array %q: %w", a.Name, err)
	}
	shape := make([]int64, len(a.Shape))
	for k, d := range a.Shape {
		shape[k] = int64(d)
	}
	return Tensor{Name: name, DType: dt, Shape: shape, Data: a.Data()}, nil
}

// SpecsOf turns session inputs into the specs dataset.Set.Match checks.
func SpecsOf(inputs []Info) ([]dataset.InputSpec, error) {
	var out []dataset.InputSpec
	for _, in := range inputs {
		var d dataset.DType
		switch in.DType {
		case onnxio.Float:
			d = dataset.Float32
		case onnxio.Double:
			d = dataset.Float64
		case onnxio.Int64:
			d = dataset.Int64
		case onnxio.Int32:
			d = dataset.Int32
		case onnxio.Uint8:
			d = dataset.Uint8
		case onnxio.Bool:
			d = dataset.Bool
		case onnxio.Float16:
			d = dataset.Float16
		default:
			return nil, fmt.Errorf("model input %q has element type %s, which .npy data cannot feed", in.Name, in.DType)
		}
		out = append(out, dataset.InputSpec{Name: in.Name, DType: d, Shape: in.Shape})
	}
	return out, nil
}

// Bind matches data to the session's inputs by name, dtype and shape;
// labels names the labels array ("" for the default).
func (s *Session) Bind(data *dataset.Set, labels string) (*dataset.Bound, error) {
	specs, err := SpecsOf(s.Inputs())
	if err != nil {
		return nil, err
	}
	return data.Match(specs, labels)
}

// Feed converts a batch of bound data to session inputs, sharing memory.
func Feed(b *dataset.Bound, batch dataset.Batch) ([]Tensor, error) {
	in := make([]Tensor, len(batch.Inputs))
	for k, a := range batch.Inputs {
		t, err := FromArray(b.Specs[k].Name, a)
		if err != nil {
			return nil, err
		}
		in[k] = t
	}
	return in, nil
}

// ModelInputs describes m's data inputs (graph inputs that are not
// initializers) for dataset.Set.Match, without a session.
func ModelInputs(m *onnxio.Model) ([]dataset.InputSpec, error) {
	inits := map[string]bool{}
	for _, t := range m.Graph().GetInitializer() {
		inits[t.GetName()] = true
	}
	var infos []Info
	for _, v := range m.Graph().GetInput() {
		if inits[v.GetName()] {
			continue
		}
		dt, shape, ok := onnxio.TensorType(v)
		if !ok {
			return nil, fmt.Errorf("graph input %q is not a tensor", v.GetName())
		}
		info := Info{Name: v.GetName(), DType: dt}
		if shape != nil {
			info.Shape = onnxio.StaticDims(shape)
		}
		infos = append(infos, info)
	}
	return SpecsOf(infos)
}
